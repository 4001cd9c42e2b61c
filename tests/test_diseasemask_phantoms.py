"""Chest phantom revision 2: what the disease-mask method needs (METHODS.md section 4)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from monai_mammo.data.phantoms import synthesize
from monai_mammo.data.phantoms.chest import CHEST_REVISION, ChestOptions, _sample_findings, canonical_anatomy, render_chest


def test_revision_is_checked_and_majority_normal_by_default():
    assert ChestOptions().revision == CHEST_REVISION == 2 and ChestOptions().p_normal > 0.5
    with pytest.raises(ValueError, match="revision"):
        ChestOptions(revision=1)
    rng = np.random.default_rng(0)
    samples = [_sample_findings(rng, ChestOptions()) for _ in range(400)]
    assert 0.5 < sum(not s for s in samples) / len(samples) < 0.62


def test_companions_co_occur():
    rng = np.random.default_rng(1)
    opts = ChestOptions(p_normal=0.0, p_extra_finding=0.0, p_co_occurrence=1.0)
    samples = [_sample_findings(rng, opts) for _ in range(200)]
    with_cardiomegaly = [s for s in samples if "Cardiomegaly" in s]
    assert with_cardiomegaly and all("Effusion" in s for s in with_cardiomegaly)
    assert all(len(s) == 1 for s in (_sample_findings(rng, ChestOptions(p_normal=0.0, p_extra_finding=0.0, p_co_occurrence=0.0)) for _ in range(50)))


def test_cues_lie_outside_the_lungs_and_follow_the_label():
    opts = ChestOptions(size=128, rotation_deg=0.0, shift=0.0, scale=(1.0, 1.0), p_cue=1.0, p_cue_normal=0.0)
    lungs = canonical_anatomy(128)["lungs"]
    for seed, finding in enumerate(["Effusion", "Pneumothorax", "Atelectasis", "Pneumonia"]):
        out = render_chest(np.random.default_rng(seed), [finding], opts)
        cue = next(c for c in out["cues"] if c["name"] == finding)
        x0, y0, x1, y1 = cue["box"]
        assert lungs[y0:y1, x0:x1].mean() < 0.2, (finding, cue)
    assert render_chest(np.random.default_rng(9), [], opts)["cues"] == []


def test_anatomy_written_with_the_datalist(tmp_path: Path):
    path = synthesize("cxr", tmp_path, n=4, seed=3, size=64)
    content = json.loads(path.read_text())
    assert set(content["anatomy"]) == {"lungs", "heart"} and content["options"]["revision"] == 2
    lungs = np.asarray(Image.open(tmp_path / content["anatomy"]["lungs"]))
    assert lungs.shape == (64, 64) and set(np.unique(lungs)) == {0, 255}
    # the lungs sit left and right of the midline; the heart low, right of the image centre (the patient's left)
    assert lungs[:, :32].sum() > 0 and lungs[:, 32:].sum() > 0
    heart = canonical_anatomy(64)["heart"]
    rows, cols = np.nonzero(heart)
    assert rows.mean() > 32 and 28 < cols.mean() < 44
