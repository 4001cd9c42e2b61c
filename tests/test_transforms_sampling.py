"""Tests for monai_mammo.transforms.sampling: ratio, determinism, geometry, breast restriction, tiling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose

from monai_mammo.transforms.geometry import boxes_to_original, points_to_original
from monai_mammo.transforms.sampling import BreastRegionTilerd, PositiveNegativePatchSamplerd, tile_boxes


def _data(h=96, w=128):
    img = MetaTensor(torch.arange(h * w, dtype=torch.float32).reshape(1, h, w), meta={"pixel_to_original": np.eye(3).tolist()})
    breast = torch.zeros(1, h, w)
    breast[:, :, : w // 2] = 1
    lesion = torch.zeros(1, h, w)
    lesion[:, 60:66, 20:26] = 1
    return {
        "image": img,
        "breast": MetaTensor(breast, meta={"pixel_to_original": np.eye(3).tolist()}),
        "lesion": lesion,
        "points": [[10.0, 12.0], [40.5, 30.25]],
        "boxes": [[20, 60, 26, 66]],
        "box_labels": [2],
    }


def _sampler(**kw):
    args = dict(keys="image", patch_size=(16, 16), num_samples=8, point_keys="points", box_keys="boxes",
                box_label_keys="box_labels", label_keys="lesion", breast_key="breast", pos_jitter=0.5)
    args.update(kw)
    return PositiveNegativePatchSamplerd(**args)


def test_ratio_labels_and_geometry_are_consistent():
    s = _sampler()
    s.set_random_state(3)
    n_pos = 0
    d = _data()
    for _ in range(5):
        for o in s(d):
            x0, y0, x1, y1 = o["patch_box"].tolist()
            assert (x1 - x0, y1 - y0) == (16, 16) and o["image"].shape == (1, 16, 16)
            # the patch pixels are the source pixels at patch_box
            assert torch.equal(o["image"][0].as_tensor(), d["image"][0, y0:y1, x0:x1].as_tensor())
            pos = o["patch_label"] == 1
            n_pos += pos
            assert pos == (len(o["points"]) > 0 or len(o["boxes"]) > 0 or bool(o["lesion"].sum() > 0))
            if len(o["points"]):
                np.testing.assert_allclose(points_to_original(o["points"], o["image"].meta),
                                           [p for p in d["points"] if x0 - 0.5 <= p[0] < x1 - 0.5 and y0 - 0.5 <= p[1] < y1 - 0.5])
            if len(o["boxes"]):
                assert o["box_labels"] == [2]
                b = boxes_to_original(o["boxes"], o["image"].meta)[0]
                assert b[0] >= x0 and b[2] <= x1 and b[0] < 26 and b[2] > 20
            if not pos:  # negatives have their centre in the breast
                assert d["breast"][0, (y0 + y1) // 2, (x0 + x1) // 2] == 1
    assert n_pos == 20  # 8 * 1/2 per call, exact when the expectation is an integer


def test_ratio_1_to_3_and_fractional():
    s = _sampler(num_samples=4, pos=1, neg=3)
    s.set_random_state(0)
    assert all(sum(o["patch_label"] for o in s(_data())) == 1 for _ in range(5))
    s = _sampler(num_samples=1)
    s.set_random_state(0)
    labels = [s(_data())[0]["patch_label"] for _ in range(120)]
    assert 0.4 < np.mean(labels) < 0.6


def test_deterministic_with_seed_and_through_compose():
    a, b = _sampler(), _sampler()
    a.set_random_state(7)
    b.set_random_state(7)
    boxes_a = [o["patch_box"].tolist() for o in a(_data())]
    assert boxes_a == [o["patch_box"].tolist() for o in b(_data())]
    b.set_random_state(8)
    assert boxes_a != [o["patch_box"].tolist() for o in b(_data())]
    c1, c2 = Compose([_sampler()]).set_random_state(7), Compose([_sampler()]).set_random_state(7)
    assert [o["patch_box"].tolist() for o in c1(_data())] == [o["patch_box"].tolist() for o in c2(_data())]


def test_no_positive_sources_and_samples_do_not_share_meta():
    d = _data()
    d.update(points=[], boxes=[], lesion=torch.zeros(1, 96, 128))
    s = _sampler()
    s.set_random_state(0)
    out = s(d)
    assert all(o["patch_label"] == 0 for o in out)
    out[0]["image"].meta["pixel_to_original"][0][2] = 999.0
    assert out[1]["image"].meta["pixel_to_original"][0][2] != 999.0
    assert d["image"].meta["pixel_to_original"] == np.eye(3).tolist()


def test_small_image_padded():
    s = PositiveNegativePatchSamplerd(keys="image", patch_size=(16, 16), num_samples=1, neg=1, pos=0)
    s.set_random_state(0)
    o = s({"image": torch.ones(1, 10, 12)})[0]
    assert o["image"].shape == (1, 16, 16) and o["patch_box"].tolist() == [0, 0, 16, 16]


def test_tile_boxes_cover_the_image():
    t = tile_boxes(50, 70, (20, 30), (20, 30))
    assert t[:, 2].max() == 70 and t[:, 3].max() == 50 and len(t) == 3 * 3
    covered = np.zeros((50, 70), bool)
    for x0, y0, x1, y1 in t:
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    assert tile_boxes(5, 5, (8, 8), (4, 4)).tolist() == [[0, 0, 8, 8]]


def test_region_tiler_restricted_to_breast_and_returns_geometry():
    d = _data()
    t = BreastRegionTilerd(keys="image", tile_size=32, stride=32, breast_key="breast", min_coverage=0.5, crop=False)
    out = t(d)
    assert out["tile_boxes"].tolist() == [[0, 0, 32, 32], [32, 0, 64, 32], [0, 32, 32, 64], [32, 32, 64, 64], [0, 64, 32, 96], [32, 64, 64, 96]]
    np.testing.assert_allclose(out["tile_coverage"], 1.0)
    tiles = BreastRegionTilerd(keys="image", tile_size=32, stride=16, breast_key="breast", min_coverage=0.25,
                               point_keys="points", box_keys="boxes", label_keys="lesion")(d)
    assert {tuple(s["patch_box"].tolist()) for s in tiles} == {tuple(b) for b in tile_boxes(96, 128, (32, 32), (16, 16))
                                                               if b[0] < 64 - 8}
    for s in tiles:
        x0, y0, x1, y1 = s["patch_box"].tolist()
        assert torch.equal(s["image"][0].as_tensor(), d["image"][0, y0:y1, x0:x1].as_tensor())
        assert s["patch_label"] == int(len(s["points"]) > 0 or len(s["boxes"]) > 0)
    with pytest.raises(ValueError, match="min_coverage"):
        BreastRegionTilerd(keys="image", min_coverage=2)
