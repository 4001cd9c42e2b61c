"""Tests for monai_mammo.transforms.spacing.ResampleToSpacingd."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_mammo.transforms.geometry import points_to_original
from monai_mammo.transforms.spacing import ResampleToSpacingd


def _img(h, w, spacing):
    return MetaTensor(torch.rand(1, h, w), meta={"spacing": spacing, "pixel_to_original": np.eye(3).tolist()})


def test_output_size_spacing_and_points():
    d = ResampleToSpacingd(keys="image", target_spacing=0.07, point_keys="p", box_keys="b")(
        {"image": _img(100, 200, [0.085, 0.1]), "p": [[0.0, 0.0]], "b": [[0, 0, 200, 100]]}
    )
    assert tuple(d["image"].shape) == (1, 143, 243)  # round(100 * 0.1 / 0.07), round(200 * 0.085 / 0.07)
    assert d["image"].meta["spacing"] == pytest.approx([0.085 * 200 / 243, 0.1 * 100 / 143])
    np.testing.assert_allclose(d["b"], [[0, 0, 243, 143]], atol=1e-4)  # edges map onto edges
    np.testing.assert_allclose(d["p"], [[0.5 * 243 / 200 - 0.5, 0.5 * 143 / 100 - 0.5]], atol=1e-5)
    np.testing.assert_allclose(points_to_original(d["p"], d["image"].meta), [[0.0, 0.0]], atol=1e-6)
    assert isinstance(d["p"], np.ndarray) and d["p"].dtype == np.float32


def test_mask_nearest_and_binary_and_downsample_antialias():
    m = torch.zeros(1, 40, 40)
    m[:, 10:20, 10:30] = 1
    d = ResampleToSpacingd(keys="image", target_spacing=0.2, mask_keys="mask")(
        {"image": _img(40, 40, [0.1, 0.1]), "mask": MetaTensor(m, meta={"pixel_to_original": np.eye(3).tolist()})}
    )
    assert tuple(d["mask"].shape) == (1, 20, 20)
    assert set(torch.unique(d["mask"]).tolist()) == {0.0, 1.0}
    ys, xs = torch.nonzero(d["mask"][0], as_tuple=True)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (5, 9, 5, 14)


def test_torch_points_stay_torch_and_identity_spacing():
    d = ResampleToSpacingd(keys="image", target_spacing=[0.1, 0.1], point_keys="p")(
        {"image": _img(10, 12, [0.1, 0.1]), "p": torch.tensor([[3.0, 4.0]])}
    )
    assert isinstance(d["p"], torch.Tensor) and d["p"].tolist() == [[3.0, 4.0]] and d["image"].shape == (1, 10, 12)


def test_errors_missing_spacing_and_shape_mismatch():
    img = MetaTensor(torch.rand(1, 10, 10), meta={"spacing": [float("nan")] * 2, "filename_or_obj": "a.png"})
    with pytest.raises(ValueError, match="a.png: no pixel spacing"):
        ResampleToSpacingd(keys="image")({"image": img})
    # datalist spacing fills in
    assert ResampleToSpacingd(keys="image", target_spacing=0.05)({"image": img, "spacing": [0.1, 0.1]})["image"].shape == (1, 20, 20)
    with pytest.raises(ValueError, match=r"spatial shape \(5, 5\)"):
        ResampleToSpacingd(keys="image", mask_keys="m")({"image": _img(10, 10, [0.1, 0.1]), "m": torch.zeros(1, 5, 5)})
    with pytest.raises(ValueError, match="target_spacing"):
        ResampleToSpacingd(keys="image", target_spacing=-1)
