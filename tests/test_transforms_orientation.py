"""Tests for monai_mammo.transforms.orientation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_mammo.transforms.geometry import boxes_to_original
from monai_mammo.transforms.orientation import CanonicalOrientationd, chest_wall_side


def _breast(side: str, h=20, w=30) -> torch.Tensor:
    img = torch.full((1, h, w), 0.05)
    cols = torch.arange(w, dtype=torch.float32)
    profile = torch.clamp(1 - cols / (0.7 * w), min=0)  # thick at the chest wall, tapering
    img[0] += profile if side == "left" else profile.flip(0)
    return img


@pytest.mark.parametrize("lat,expected", [("L", "left"), ("R", "right")])
def test_laterality_decides(lat, expected):
    assert chest_wall_side(_breast("right" if expected == "left" else "left"), lat) == expected


def test_intensity_fallback():
    assert chest_wall_side(_breast("left"), "") == "left"
    assert chest_wall_side(_breast("right"), "", method="intensity") == "right"
    with pytest.raises(ValueError, match="no fallback"):
        chest_wall_side(_breast("right"), "", method="laterality")


def test_flip_follows_points_boxes_masks_and_inverse():
    img = MetaTensor(_breast("right"), meta={"laterality": "", "pixel_to_original": np.eye(3).tolist()})
    mask = MetaTensor(torch.zeros(1, 20, 30), meta={"pixel_to_original": np.eye(3).tolist()})
    mask[0, 2:4, 25:28] = 1
    t = CanonicalOrientationd(keys=["image", "mask"], point_keys="p", box_keys="b")
    d = t({"image": img, "mask": mask, "p": [[26.0, 3.0]], "b": [[25, 2, 28, 4]]})
    assert d["image"].meta["chest_wall_flipped"] and chest_wall_side(d["image"], "") == "left"
    np.testing.assert_allclose(d["p"], [[3.0, 3.0]])
    np.testing.assert_allclose(d["b"], [[2, 2, 5, 4]])
    assert d["mask"][0, 2:4, 2:5].sum() == 6
    np.testing.assert_allclose(boxes_to_original(d["b"], d["mask"].meta), [[25, 2, 28, 4]])
    back = t.inverse(d)
    assert torch.equal(back["mask"], mask) and torch.equal(back["image"].as_tensor(), img.as_tensor())
    np.testing.assert_allclose(back["p"], [[26.0, 3.0]])


def test_no_flip_when_already_canonical_and_right_target():
    img = MetaTensor(_breast("left"), meta={"laterality": "L"})
    d = CanonicalOrientationd(keys="image")({"image": img})
    assert d["image"].meta["chest_wall_flipped"] is False and torch.equal(d["image"].as_tensor(), img.as_tensor())
    d = CanonicalOrientationd(keys="image", chest_wall="right")({"image": MetaTensor(_breast("left"), meta={"laterality": "L"})})
    assert d["image"].meta["chest_wall_flipped"] is True
    # the datalist's laterality is used when the meta has none
    d = CanonicalOrientationd(keys="image")({"image": MetaTensor(_breast("left")), "laterality": "R"})
    assert d["image"].meta["chest_wall_flipped"] is True
