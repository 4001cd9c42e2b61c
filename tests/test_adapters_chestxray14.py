"""ChestX-ray14 adapter on a small fixture written in the real ChestX-ray14 file format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from monai_mammo.data.adapters.chestxray14 import CXR14_CLASSES, chestxray14_datalist, class_index
from monai_mammo.data.adapters.datalist import AdapterReport, DatalistError

SIZE = 32  # stored PNG size (the release uses 1024)

DATA_ENTRY = """Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],
00000001_000.png,Cardiomegaly,0,1,058Y,M,PA,2682,2749,0.143,0.143,
00000001_001.png,Cardiomegaly|Emphysema,1,1,058Y,M,PA,2894,2729,0.143,0.143,
00000002_000.png,No Finding,0,2,081Y,M,PA,2500,2048,0.171,0.171,
00000003_000.png,Infiltration|Nodule,0,3,074Y,F,AP,2048,2500,0.168,0.168,
00000004_000.png,Hernia,0,4,081Y,F,PA,2582,2991,0.143,0.143,
00000005_000.png,Flu,0,5,069Y,F,PA,2048,2500,0.168,0.168,
00000006_000.png,Effusion,0,6,060Y,M,PA,2048,2500,0.168,0.168,
00000007_000.png,Mass,0,7,042Y,F,AP,,,,,
"""

BBOX_LIST = """Image Index,Finding Label,Bbox [x,y,w,h],,,
00000001_000.png,Cardiomegaly,8.5,10,12.25,9,
00000003_000.png,Infiltrate,2,3,4,5,
00000003_000.png,Nodule,28,28,10,10,
00000003_000.png,Nodule,40,40,2,2,
00000003_000.png,Atelectasis,1,1,0,3,
00000002_000.png,Pneumonia,1,2,three,4,
00000004_000.png,Hernia,1,1,5,5,
00000009_000.png,Mass,1,1,5,5,
"""


@pytest.fixture()
def cxr_root(tmp_path: Path) -> Path:
    root = tmp_path / "cxr"
    for index, name in enumerate(["00000001_000", "00000001_001", "00000002_000", "00000003_000",
                                  "00000004_000", "00000005_000", "00000007_000"]):
        folder = root / f"images_00{1 + index % 2}" / "images"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((SIZE, SIZE), index * 10, np.uint8)).save(folder / f"{name}.png")
    (root / "Data_Entry_2017.csv").write_text(DATA_ENTRY)
    (root / "BBox_List_2017.csv").write_text(BBOX_LIST)
    return root


def records_by_name(datalist: dict) -> dict[str, dict]:
    return {Path(r["image"]).name: r for s in ("training", "validation", "test") for r in datalist[s]}


def test_class_index() -> None:
    assert class_index("Infiltrate") == class_index("Infiltration") == 3
    assert class_index("Hernia") == 13 and class_index("No Finding") is None and len(CXR14_CLASSES) == 14


def test_chestxray14_records(cxr_root: Path) -> None:
    report = AdapterReport(log=False)
    datalist = chestxray14_datalist(cxr_root, report=report)
    records = records_by_name(datalist)
    assert sorted(records) == ["00000001_000.png", "00000001_001.png", "00000002_000.png", "00000003_000.png",
                               "00000004_000.png", "00000007_000.png"]
    first = records["00000001_000.png"]
    assert first["image"] == "images_001/images/00000001_000.png"
    assert first["label"] == [0, 1] + [0] * 12
    assert first["boxes"] == [[8.5, 10, 20.75, 19]] and first["box_labels"] == [1]
    assert first["spacing"] == pytest.approx([0.143 * 2682 / SIZE, 0.143 * 2749 / SIZE])
    assert first["patient_id"] == "1" and first["view"] == "PA" and first["age"] == 58 and first["sex"] == "M"
    assert first["acquired_size"] == [2749, 2682] and first["fully_labelled"] is True

    assert records["00000001_001.png"]["label"][10] == 1 and records["00000001_001.png"]["fully_labelled"] is False
    assert records["00000002_000.png"]["label"] == [0] * 14 and records["00000002_000.png"]["boxes"] == []

    third = records["00000003_000.png"]
    assert third["label"][3] == 1 and third["label"][5] == 1 and sum(third["label"]) == 2
    # Infiltrate -> Infiltration (3); the nodule box is clipped to the 32x32 image; the one outside
    # and the empty atelectasis box are dropped
    assert third["boxes"] == [[2, 3, 6, 8], [28, 28, 32, 32]] and third["box_labels"] == [3, 5]
    assert third["fully_labelled"] is True
    # Hernia is not a box class, but a box for it still counts
    assert records["00000004_000.png"]["box_labels"] == [13]
    assert "spacing" not in records["00000007_000.png"]

    issues = [(Path(i.source).name, i.location, i.action) for i in report.issues]
    assert ("Data_Entry_2017.csv", "row 7, field 'Finding Labels'", "skipped record") in issues  # "Flu"
    assert ("Data_Entry_2017.csv", "row 8", "skipped record") in issues  # missing 00000006_000.png
    assert ("BBox_List_2017.csv", "row 4", "clipped box") in issues
    assert ("BBox_List_2017.csv", "row 5", "skipped annotation") in issues  # outside
    assert ("BBox_List_2017.csv", "row 6", "skipped annotation") in issues  # empty
    assert ("BBox_List_2017.csv", "row 7, field 'Bbox [x,y,w,h]'", "skipped annotation") in issues
    assert ("BBox_List_2017.csv", "row 9", "skipped annotation") in issues  # unknown image
    assert datalist["labels"] == list(CXR14_CLASSES)


def test_chestxray14_splits(cxr_root: Path, tmp_path: Path) -> None:
    seeded = chestxray14_datalist(cxr_root, out_dir=tmp_path, image_size=(SIZE, SIZE), val_fraction=0.2,
                                  test_fraction=0.4, seed=1, report=AdapterReport(log=False))
    again = chestxray14_datalist(cxr_root, out_dir=tmp_path, image_size=(SIZE, SIZE), val_fraction=0.2,
                                 test_fraction=0.4, seed=1, report=AdapterReport(log=False))
    assert seeded == again
    assert records_by_name(seeded)["00000001_000.png"]["image"] == "cxr/images_001/images/00000001_000.png"
    patient_split = {}
    for split in ("training", "validation", "test"):
        for record in seeded[split]:
            assert patient_split.setdefault(record["patient_id"], split) == split
    # patient 1 has two images, both in one split; boxes reach both strata's shares
    assert sum(len(seeded[s]) for s in ("training", "validation", "test")) == 6

    (cxr_root / "train_val_list.txt").write_text("00000001_000.png\n00000001_001.png\n00000002_000.png\n"
                                                  "00000004_000.png\n")
    (cxr_root / "test_list.txt").write_text("00000003_000.png\n")
    report = AdapterReport(log=False)
    official = chestxray14_datalist(cxr_root, val_fraction=0.0, report=report)
    assert [Path(r["image"]).name for r in official["test"]] == ["00000003_000.png"]
    assert len(official["training"]) == 4 and official["validation"] == []
    assert any(i.location == "00000007_000.png" and "neither" in i.reason for i in report.issues)
    unofficial = chestxray14_datalist(cxr_root, official_split=False, report=AdapterReport(log=False))
    assert unofficial["split"]["method"] == "by patient"

    with pytest.raises(DatalistError, match="strict mode"):
        chestxray14_datalist(cxr_root, strict=True, report=AdapterReport(log=False))


def test_chestxray14_no_csv(tmp_path: Path) -> None:
    with pytest.raises(DatalistError, match="Data_Entry_2017.csv"):
        chestxray14_datalist(tmp_path)
