"""Tests for monai_mammo.transforms.breast: Otsu + largest component rejects markers and film edges."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from PIL import Image, ImageDraw, ImageFont

from monai_mammo.transforms.breast import BreastMaskd, CropToBreastd, breast_mask, mask_bbox
from monai_mammo.transforms.geometry import points_to_original


def _phantom(h=600, w=450, seed=0, top_touch=False):
    """Half-ellipse breast at the left edge, a burned-in "LCC" marker and a bright film-edge strip."""
    yy, xx = np.mgrid[0:h, 0:w]
    cy = 0.3 * h if top_touch else 0.5 * h
    r = np.sqrt(((yy - cy) / (0.4 * h)) ** 2 + (xx / (0.6 * w)) ** 2)
    truth = r < 1
    img = np.where(truth, 0.45 + 0.3 * np.sqrt(np.clip(1 - r, 0, 1)), 0.03).astype(np.float32)
    img += np.random.default_rng(seed).normal(0, 0.01, img.shape).astype(np.float32)
    pil = Image.new("L", (w, h), 0)
    ImageDraw.Draw(pil).text((int(0.7 * w), int(0.8 * h)), "LCC", fill=255, font=ImageFont.load_default(size=max(12, h // 15)))
    marker = np.asarray(pil) > 0
    img[marker] = 1.0
    edge = np.zeros_like(truth)
    edge[:5, :] = True  # film edge along the top, touching the breast when top_touch
    edge[:, w - 5 :] = True
    img[edge] = 0.95
    return img, truth, marker, edge


@pytest.mark.parametrize("top_touch", [False, True])
def test_marker_and_film_edge_rejected(top_touch):
    img, truth, marker, edge = _phantom(top_touch=top_touch)
    m = breast_mask(img, spacing=0.4, working_size=200)  # factor 3: exercises the full-resolution refinement
    assert marker.sum() > 100 and (m & marker).sum() == 0
    far_edge = edge & ~np.pad(truth, 0)  # film edge away from the breast
    far_edge[:, : int(0.6 * img.shape[1]) + 10] = False
    assert (m & far_edge).sum() == 0
    iou = (m & truth).sum() / (m | truth).sum()
    assert iou > 0.97, iou


def test_constant_and_bad_shapes():
    assert not breast_mask(np.zeros((10, 10))).any()
    with pytest.raises(ValueError, match=r"\(2, 4, 4\)"):
        breast_mask(np.zeros((2, 4, 4)))
    assert mask_bbox(np.zeros((3, 3))) is None
    assert mask_bbox(np.pad(np.ones((2, 3)), ((1, 0), (4, 0)))) == [4, 1, 7, 3]


def test_breastmaskd_zero_background_and_crop_round_trip():
    img, truth, marker, _ = _phantom(h=300, w=220)
    meta = {"spacing": [0.2, 0.2], "pixel_to_original": np.eye(3).tolist(), "filename_or_obj": "x.dcm"}
    d = BreastMaskd(keys="image", zero_background=True)({"image": MetaTensor(torch.from_numpy(img)[None], meta=meta)})
    bm = d["breast_mask"]
    assert bm.shape == (1, 300, 220) and bm.dtype == torch.float32 and bm.meta["filename_or_obj"] == "x.dcm"
    assert float(d["image"][0][marker].max()) == 0.0  # marker zeroed with the background
    box = bm.meta["breast_box"]
    assert box == mask_bbox(bm) and box[0] == 0
    c = CropToBreastd(keys=["image", "breast_mask"], margin=2, point_keys="p")
    out = c({**d, "p": [[50.0, 150.0]]})
    x0, y0, x1, y1 = out["image"].meta["crop_box"]
    assert out["image"].shape == (1, y1 - y0, x1 - x0) and (x0, y0) == (0, max(0, box[1] - 2))
    np.testing.assert_allclose(points_to_original(out["p"], out["image"].meta), [[50.0, 150.0]])
    back = c.inverse(out)
    assert torch.equal(back["breast_mask"].as_tensor(), bm.as_tensor())
    np.testing.assert_allclose(back["p"], [[50.0, 150.0]])


def test_crop_empty_mask_warns_and_keeps_image():
    d = {"image": MetaTensor(torch.rand(1, 8, 8)), "breast_mask": MetaTensor(torch.zeros(1, 8, 8))}
    with pytest.warns(UserWarning, match="empty breast mask"):
        out = CropToBreastd(keys=["image", "breast_mask"])(d)
    assert out["image"].shape == (1, 8, 8)
    with pytest.raises(KeyError, match="run BreastMaskd first"):
        CropToBreastd(keys="image")({"image": torch.rand(1, 8, 8)})
