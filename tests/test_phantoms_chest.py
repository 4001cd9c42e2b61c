"""Synthetic ChestX-ray14: the release's CSV formats, the real adapter reads them, true misalignment."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from monai_mammo.data.phantoms import synthesize
from monai_mammo.data.phantoms.chest import BOX_CLASSES, ChestOptions, render_chest


@pytest.fixture(scope="module")
def cxr(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize("cxr", tmp_path_factory.mktemp("cxr"), n=8, seed=2, size=128, p_normal=0.0, p_extra_finding=0.5)


def test_csv_headers_and_rows(cxr: Path) -> None:
    root = cxr.parent
    entry_lines = (root / "Data_Entry_2017.csv").read_text().splitlines()
    assert entry_lines[0] == "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],"
    rows = list(csv.reader(entry_lines[1:]))
    assert len(rows) == 8 and all(len(r) == 11 for r in rows)
    for r in rows:
        assert (root / "images" / r[0]).is_file() and r[0].endswith(".png")
        assert r[6] in ("PA", "AP") and r[5] in ("M", "F")
    box_lines = (root / "BBox_List_2017.csv").read_text().splitlines()
    assert box_lines[0] == "Image Index,Finding Label,Bbox [x,y,w,h],,,"
    for r in csv.reader(box_lines[1:]):
        assert len(r) == 6 and r[1] in {"Atelectasis", "Cardiomegaly", "Effusion", "Infiltrate", "Mass", "Nodule", "Pneumonia", "Pneumothorax"}
        assert float(r[4]) > 0 and float(r[5]) > 0
    image = np.asarray(Image.open(root / "images" / rows[0][0]))
    assert image.dtype == np.uint8 and image.shape == (128, 128)


def test_real_adapter_reads_the_phantoms(cxr: Path) -> None:
    from monai_mammo.data.adapters.chestxray14 import chestxray14_datalist

    ours = json.loads(cxr.read_text())
    ours_by_name = {Path(e["image"]).name: e for k in ("training", "validation", "test") for e in ours[k]}
    theirs = chestxray14_datalist(cxr.parent, official_split=False)
    theirs_by_name = {Path(e["image"]).name: e for k in ("training", "validation", "test") for e in theirs[k]}
    assert set(theirs_by_name) == set(ours_by_name)
    for name, e in ours_by_name.items():
        assert theirs_by_name[name]["label"] == e["label"]
        assert sorted(map(tuple, theirs_by_name[name]["boxes"])) == sorted(tuple(map(float, b)) for b in e["boxes"])


def test_findings_at_typical_locations() -> None:
    opts = ChestOptions(size=128, rotation_deg=0.0, shift=0.0, scale=(1.0, 1.0))
    big = render_chest(np.random.default_rng(1), ["Cardiomegaly"], opts)["findings"][0]["box"]
    normal_heart = render_chest(np.random.default_rng(1), ["Nodule"], opts)
    x0, y0, x1, y1 = big
    # enlarged heart: > 1/3 of the image, i.e. cardiothoracic ratio > 0.5 (the thorax spans ~64 %)
    assert (x1 - x0) / 128 > 0.33
    assert y0 > 128 * 0.45  # in the lower half of the chest
    effusion = render_chest(np.random.default_rng(2), ["Effusion"], opts)["findings"][0]["box"]
    assert effusion[3] > 128 * 0.55  # at a lung base
    nodule = normal_heart["findings"][0]["box"]
    mass = render_chest(np.random.default_rng(3), ["Mass"], opts)["findings"][0]["box"]
    assert max(nodule[2] - nodule[0], nodule[3] - nodule[1]) < max(mass[2] - mass[0], mass[3] - mass[1])
    ptx = render_chest(np.random.default_rng(4), ["Pneumothorax"], opts)["findings"][0]["box"]
    assert ptx[1] < 128 * 0.5  # apical


def test_recorded_transform_is_the_true_misalignment() -> None:
    aligned = render_chest(np.random.default_rng(7), [], ChestOptions(size=128, rotation_deg=0.0, shift=0.0, scale=(1.0, 1.0)))
    moved = render_chest(np.random.default_rng(7), [], ChestOptions(size=128, rotation_deg=10.0, shift=0.06))
    transform = np.asarray(moved["transform"])  # canonical pixel -> image pixel
    # resample the aligned image through the recorded transform: it must reproduce the moved image
    inverse = np.linalg.inv(transform)
    warped = ndimage.affine_transform(aligned["image"].astype(float), inverse[:2, :2][::-1, ::-1], offset=inverse[:2, 2][::-1], order=1)
    corr_true = np.corrcoef(warped.ravel(), moved["image"].ravel())[0, 1]
    corr_none = np.corrcoef(aligned["image"].ravel(), moved["image"].ravel())[0, 1]
    assert corr_true > 0.9 and corr_true > corr_none + 0.05, (corr_true, corr_none)
    m = moved["misalignment"]
    assert abs(m["theta_deg"]) <= 10 and 0.9 <= m["sx"] <= 1.1 and np.allclose(np.asarray(moved["alignment_theta"]), np.asarray(moved["alignment_theta"]))


def test_deterministic(tmp_path: Path, cxr: Path) -> None:
    again = synthesize("cxr", tmp_path, n=8, seed=2, size=128, p_normal=0.0, p_extra_finding=0.5)
    for file in cxr.parent.rglob("*"):
        if file.is_file():
            assert file.read_bytes() == (again.parent / file.relative_to(cxr.parent)).read_bytes(), file
    content = json.loads(again.read_text())
    entry = content["training"][0]
    assert len(entry["label"]) == 14 and all(i < 8 for i in entry["box_labels"]) and len(BOX_CLASSES) == 8
