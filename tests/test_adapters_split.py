"""Patient-wise split and the shared adapter helpers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from monai_mammo.data.adapters.datalist import (
    AdapterReport,
    DatalistError,
    birads_class,
    check_box,
    mask_to_box,
    write_datalist,
)
from monai_mammo.data.adapters.split import split_by_patient


def make_records(n_patients: int, images_per_patient: int = 3) -> list[dict]:
    return [{"image": f"p{p}_{i}.dcm", "patient_id": f"p{p}", "malignant": p % 5 == 0}
            for p in range(n_patients) for i in range(images_per_patient)]


def owners(splits: dict) -> dict[str, str]:
    owner: dict[str, str] = {}
    for name, records in splits.items():
        for record in records:
            assert owner.setdefault(record["patient_id"], name) == name, f"{record['patient_id']} in two splits"
    return owner


def test_split_is_patient_wise_deterministic_and_sized() -> None:
    records = make_records(40)
    splits, info = split_by_patient(records, val_fraction=0.1, test_fraction=0.2, seed=11)
    owner = owners(splits)
    assert info["patients"] == {"training": 28, "validation": 4, "test": 8}
    assert [len(splits[s]) for s in ("training", "validation", "test")] == [84, 12, 24]
    again, _ = split_by_patient(records, val_fraction=0.1, test_fraction=0.2, seed=11)
    assert again == splits
    other, _ = split_by_patient(records, val_fraction=0.1, test_fraction=0.2, seed=12)
    assert owners(other) != owner
    # input order is kept inside each split
    assert [r["image"] for r in splits["test"]] == sorted(
        (r["image"] for r in splits["test"]), key=lambda name: [r["image"] for r in records].index(name))


def test_split_stratified_spreads_rare_class() -> None:
    records = make_records(20, 1)  # 4 malignant patients
    splits, _ = split_by_patient(records, 0.25, 0.25, seed=0, stratum=lambda r: int(r["malignant"]))
    owner = owners(splits)
    malignant = [owner[f"p{p}"] for p in range(0, 20, 5)]
    assert sorted(malignant) == ["test", "training", "training", "validation"]


def test_split_official_and_conflicts() -> None:
    records = make_records(10, 2)
    official = ["test" if r["patient_id"] in ("p1", "p2") else "training" for r in records]
    official[0] = "test"  # p0: one image in official test, one in training -> whole patient to test
    report = AdapterReport(log=False)
    splits, info = split_by_patient(records, 0.25, 0.5, seed=0, official=official, report=report)
    owner = owners(splits)
    assert {p for p, s in owner.items() if s == "test"} == {"p0", "p1", "p2"}
    assert info["patients"]["validation"] == 2 and info["test_fraction"] is None
    assert [i.action for i in report.issues] == ["note"] and "p0" in report.issues[0].location
    assert report.problems == []
    with pytest.raises(ValueError, match="no patient_id"):
        split_by_patient([{"image": "a"}])
    with pytest.raises(ValueError, match="val_fraction \\+ test_fraction"):
        split_by_patient(records, 0.5, 0.5)


def test_check_box_and_mask_box() -> None:
    report = AdapterReport(log=False)
    assert check_box([1, 2, 3, 4], (10, 10), report, "f.csv", "row 2") == [1, 2, 3, 4]
    assert check_box([8, 8, 12.5, 9], (10, 10), report, "f.csv", "row 3") == [8, 8, 10, 9]
    assert check_box([3, 3, 3, 5], (10, 10), report, "f.csv", "row 4") is None
    assert check_box([11, 11, 12, 12], (10, 10), report, "f.csv", "row 5") is None
    assert [(i.location, i.action) for i in report.issues] == [
        ("row 3", "clipped box"), ("row 4", "skipped annotation"), ("row 5", "skipped annotation")]
    with pytest.raises(DatalistError, match="strict mode"):
        report.raise_if_strict(True)
    assert "f.csv (row 4)" in report.summary()
    mask = np.zeros((6, 8), bool)
    mask[2:4, 5:7] = True
    assert mask_to_box(mask) == [5, 2, 7, 4] and mask_to_box(np.zeros((3, 3))) is None


def test_birads_class() -> None:
    assert birads_class("BI-RADS 4") == "malignant" and birads_class("4c") == "malignant"
    assert birads_class("3") == "benign" and birads_class("1") == "normal"
    assert birads_class("0") is None and birads_class("") is None
    assert birads_class("4A", {"4A": "benign", "4": "malignant"}) == "benign"


def test_write_datalist_atomic(tmp_path: Path) -> None:
    path = write_datalist({"training": [{"image": "a.png"}]}, tmp_path / "sub" / "d.json")
    assert json.loads(path.read_text()) == {"training": [{"image": "a.png"}]}
    assert [p.name for p in path.parent.iterdir()] == ["d.json"]
