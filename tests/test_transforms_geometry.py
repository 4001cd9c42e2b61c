"""Tests for monai_mammo.transforms.geometry and geometric round trips through resample, flip and crop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose

from monai_mammo.transforms.breast import CropToBreastd
from monai_mammo.transforms.geometry import (
    apply_to_boxes,
    apply_to_points,
    boxes_to_original,
    compose_pixel_to_original,
    flip_matrix,
    get_pixel_to_original,
    identity,
    points_to_original,
    scale_matrix,
    translation_matrix,
)
from monai_mammo.transforms.orientation import CanonicalOrientationd
from monai_mammo.transforms.spacing import ResampleToSpacingd


def test_matrices_hand_computed():
    # resize x2: pixel centre 0 -> 0.5, edge 0 -> 0, edge 3 -> 6
    np.testing.assert_allclose(apply_to_points([[0.0, 0.0]], scale_matrix(2, 2)), [[0.5, 0.5]])
    np.testing.assert_allclose(apply_to_boxes([[0, 0, 3, 1]], scale_matrix(2, 2)), [[0, 0, 6, 2]])
    # flip of width 10: centre 0 -> 9; box [0, 0, 3, 1] (columns 0..2) -> [7, 0, 10, 1]
    np.testing.assert_allclose(apply_to_points([[0.0, 4.0]], flip_matrix(width=10)), [[9.0, 4.0]])
    np.testing.assert_allclose(apply_to_boxes([[0, 0, 3, 1]], flip_matrix(width=10)), [[7, 0, 10, 1]])
    np.testing.assert_allclose(apply_to_boxes([[2, 3, 5, 7]], translation_matrix(-2, -3)), [[0, 0, 3, 4]])
    assert apply_to_points([], identity()).shape == (0, 2) and apply_to_boxes([], identity()).shape == (0, 4)


def test_compose_order_and_no_inplace_mutation():
    meta = {"pixel_to_original": identity().tolist()}
    before = meta["pixel_to_original"]
    compose_pixel_to_original(meta, scale_matrix(0.5, 0.5))
    compose_pixel_to_original(meta, flip_matrix(width=50))
    assert before == identity().tolist()  # old list untouched
    # undo flip: 49 - 10 = 39; undo scale: (39 + 0.5) / 0.5 - 0.5 = 78.5
    np.testing.assert_allclose(points_to_original([[10.0, 5.0]], meta), [[78.5, 10.5]])
    np.testing.assert_allclose(boxes_to_original([[0, 0, 50, 40]], meta), [[0, 0, 100, 80]])


def test_bad_matrix_and_bad_points():
    with pytest.raises(ValueError, match="3x3"):
        get_pixel_to_original({"pixel_to_original": [[1, 0], [0, 1]]})
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        points_to_original([[1, 2, 3]], {})


def _case(h=120, w=90, lat="R"):
    img = torch.zeros(1, h, w)
    img[:, 20:100, 50:] = 1.0 + torch.rand(1, 80, w - 50)  # breast at the right (chest wall right)
    mask = torch.zeros(1, h, w)
    mask[:, 40:52, 60:71] = 1.0
    meta = {"spacing": [0.085, 0.1], "laterality": lat, "pixel_to_original": identity().tolist(), "affine": torch.eye(3, dtype=torch.float64)}
    breast = torch.zeros(1, h, w)
    breast[:, 20:100, 50:] = 1
    return {
        "image": MetaTensor(img, meta=dict(meta)),
        "mask": MetaTensor(mask, meta=dict(meta)),
        "breast_mask": MetaTensor(breast, meta=dict(meta)),
        "points": [[65.0, 45.0], [80.25, 90.5]],
        "boxes": [[60, 40, 71, 52]],
    }


def _pipeline():
    return Compose(
        [
            ResampleToSpacingd(keys="image", target_spacing=0.07, mask_keys=["mask", "breast_mask"], point_keys="points", box_keys="boxes"),
            CanonicalOrientationd(keys=["image", "mask", "breast_mask"], point_keys="points", box_keys="boxes"),
            CropToBreastd(keys=["image", "mask", "breast_mask"], margin=3, point_keys="points", box_keys="boxes"),
        ]
    )


def test_round_trip_points_boxes_masks_via_pixel_to_original():
    d0 = _case()
    out = _pipeline()(dict(d0))
    img, mask = out["image"], out["mask"]
    assert img.meta["chest_wall_flipped"] is True
    assert img.meta["spacing"] == pytest.approx([0.07, 0.07], rel=0.01)
    # breast (chest wall) now on the left after the flip: crop starts at the left edge
    assert float(img[0, :, :3].mean()) > 0.5
    np.testing.assert_allclose(points_to_original(out["points"], img.meta), d0["points"], atol=1e-6)
    np.testing.assert_allclose(boxes_to_original(out["boxes"], mask.meta), d0["boxes"], atol=1e-6)
    # the transformed mask's bounding box maps back onto the original mask's box (to a pixel)
    ys, xs = np.nonzero(mask[0].numpy())
    back = boxes_to_original([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], mask.meta)[0]
    np.testing.assert_allclose(back, [60, 40, 71, 52], atol=1.0)
    # the lesion box drawn in the transformed image holds the transformed lesion mask
    x0, y0, x1, y1 = np.round(out["boxes"][0]).astype(int)
    assert mask[0, y0:y1, x0:x1].sum() == mask.sum()


def test_round_trip_via_inverse():
    d0 = _case(lat="")  # laterality missing: intensity decides (breast mass on the right)
    pipe = _pipeline()
    out = pipe(dict(d0))
    assert out["image"].meta["chest_wall_flipped"] is True
    back = pipe.inverse(out)
    assert back["image"].shape == d0["image"].shape and back["mask"].shape == d0["mask"].shape
    np.testing.assert_allclose(back["points"], d0["points"], atol=1e-5)
    np.testing.assert_allclose(back["boxes"], d0["boxes"], atol=1e-5)
    inter = float((back["mask"] * d0["mask"]).sum())
    union = float(((back["mask"] + d0["mask"]) > 0).sum())
    assert inter / union > 0.9
    np.testing.assert_allclose(get_pixel_to_original(back["image"].meta), np.eye(3), atol=1e-9)
    assert back["image"].meta["spacing"] == [0.085, 0.1]
    assert back["image"].applied_operations == []
