"""k-fold patient-wise stratified cross-validation (monai_mammo.cross_validation): the fold
assignment on a hand-made datalist, the per-fold datalists, the mean ± sd summary, and a 2-fold
smoke run of the clsdet bundle through its own train / evaluate configs."""

from __future__ import annotations

import collections
import json
import math
from pathlib import Path

import pytest

from monai_mammo.cli import main
from monai_mammo.cross_validation import fold_datalist, image_class, patient_folds, summarize_folds

REPO = Path(__file__).resolve().parents[1]

# patient -> (class of each image, density): 1-3 images per patient, mixed classes within a patient
PATIENTS = {
    **{f"n{i}": (["N", "N"], "AB"[i % 2]) for i in range(14)},
    **{f"b{i}": (["B", "B"], "CD"[i % 2]) for i in range(7)},
    **{f"m{i}": (["M", "M"], "ABCD"[i % 4]) for i in range(6)},
    **{f"x{i}": (["M", "N"], "C") for i in range(3)},  # the lesion seen in one view only
    **{f"s{i}": (["NBM"[i % 3]], "B") for i in range(15)},  # one image
    **{f"t{i}": (["B", "B", "N"], "D") for i in range(2)},  # three images
}
LABELS = {"N": [0, 0], "B": [0, 1], "M": [1, 0]}


def hand_made_records() -> list[dict]:
    return [
        {"image": f"{patient}_{view}.dcm", "patient_id": patient, "label": LABELS[cls], "density": density}
        for patient, (classes, density) in PATIENTS.items()
        for view, cls in enumerate(classes)
    ]


@pytest.mark.parametrize("n_folds", [2, 3, 5])
@pytest.mark.parametrize("seed", [0, 1])
def test_folds_are_patient_wise_and_stratified_by_class(n_folds: int, seed: int) -> None:
    records = hand_made_records()
    folds = patient_folds(records, n_folds=n_folds, seed=seed)
    assert len(folds) == len(records) and set(folds) == set(range(n_folds))
    fold_of_patient = collections.defaultdict(set)
    for record, fold in zip(records, folds):
        fold_of_patient[record["patient_id"]].add(fold)
    assert all(len(f) == 1 for f in fold_of_patient.values()), "a patient in two folds"
    for cls in "NBM":
        counts = [sum(1 for r, f in zip(records, folds) if f == k and image_class(r) == cls) for k in range(n_folds)]
        assert max(counts) - min(counts) <= 1, (cls, counts)
    sizes = collections.Counter(folds).values()
    assert max(sizes) - min(sizes) <= 3  # within the largest patient's image count
    assert patient_folds(records, n_folds=n_folds, seed=seed) == folds  # deterministic


def test_folds_refuse_too_few_patients() -> None:
    with pytest.raises(ValueError, match="cannot fill 5 folds"):
        patient_folds(hand_made_records()[:4], n_folds=5)


def test_fold_datalist_tests_the_fold_and_trains_on_the_others_patient_wise() -> None:
    records = hand_made_records()
    folds = patient_folds(records, n_folds=5)
    for fold in range(5):
        d = fold_datalist(records, folds, fold, val_fraction=0.15)
        assert sorted(r["image"] for r in d["test"]) == sorted(r["image"] for r, f in zip(records, folds) if f == fold)
        assert len(d["training"]) + len(d["validation"]) + len(d["test"]) == len(records)
        patients = {name: {r["patient_id"] for r in d[name]} for name in ("training", "validation", "test")}
        assert patients["validation"] and not patients["training"] & patients["validation"]
        assert not (patients["training"] | patients["validation"]) & patients["test"]


def test_summary_is_mean_and_sample_sd_of_every_numeric_key() -> None:
    folds = [{"auc": 0.9, "n": 10, "ci": [0.8, 1.0], "curve": "a.csv", "flag": True}, {"auc": 0.7, "n": 12, "ci": [0.6, 0.8], "curve": "b.csv", "flag": False}, {"auc": 0.8, "n": 11, "ci": [0.7, 0.9], "curve": "c.csv", "flag": True}]
    s = summarize_folds(folds)
    assert set(s["mean"]) == set(s["sd"]) == {"auc", "n", "ci"} and s["n_defined"] == {"auc": 3, "n": 3, "ci": 3}
    assert s["mean"]["auc"] == pytest.approx(0.8) and s["sd"]["auc"] == pytest.approx(0.1)  # sqrt((0.01 + 0.01 + 0) / 2)
    assert s["mean"]["n"] == pytest.approx(11) and s["sd"]["n"] == pytest.approx(1.0)
    assert s["mean"]["ci"] == pytest.approx([0.7, 0.9]) and s["sd"]["ci"] == pytest.approx([0.1, 0.1])
    assert s["per_fold"]["auc"] == [0.9, 0.7, 0.8]


def test_two_fold_smoke_cross_validation_of_clsdet(tmp_path: Path) -> None:
    """One command: for each fold the bundle's train.yaml trains on the other fold and train.yaml +
    evaluate.yaml evaluate on it (smoke.yaml merged last); cv_metrics.json has mean and sd."""
    out = tmp_path / "cv"
    status = main([
        "cross-validate", "--bundle", "clsdet", "--n_folds", "2", "--output_dir", str(out),
        "--extra", str(REPO / "bundles/clsdet/configs/smoke.yaml"),
        "-O", f"phantom#cache_dir={json.dumps(str(tmp_path / 'phantoms'))}", "-O", "eval#n_bootstrap=20",
    ])  # fmt: skip
    assert status == 0
    fold_metrics = [json.loads((out / f"fold{f}" / "eval" / "metrics.json").read_text()) for f in range(2)]
    assert all((out / f"fold{f}" / "models" / "model.pt").is_file() for f in range(2))
    cv = json.loads((out / "cv_metrics.json").read_text())
    numeric = {k for m in fold_metrics for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
    assert {"auroc_m_vs_bn", "froc_m_vs_bn_sensitivity_at_1fp", "n_images"} <= numeric <= set(cv["mean"]) == set(cv["sd"])
    for key in numeric:
        values = [float(m[key]) for m in fold_metrics if isinstance(m.get(key), (int, float)) and math.isfinite(m[key])]
        assert cv["n_defined"][key] == len(values) and cv["mean"][key] == pytest.approx(sum(values) / len(values)), key
        if len(values) == 2:
            assert cv["sd"][key] == pytest.approx(abs(values[0] - values[1]) / math.sqrt(2)), key
    # the two test lists partition the images, patient-wise
    tests = [json.loads((out / f"fold{f}" / "datalist.json").read_text())["test"] for f in range(2)]
    assert sum(len(t) for t in tests) == fold_metrics[0]["n_images"] + fold_metrics[1]["n_images"] == 16
    assert not {r["patient_id"] for r in tests[0]} & {r["patient_id"] for r in tests[1]}
    assert set(json.loads((out / "folds.json").read_text())["patients"].values()) == {0, 1}
