"""Tests for monai_mammo.compositors (DAB-Net Eq. 1 alpha blending and the simple ablation)."""

from __future__ import annotations

import math

import pytest
import torch

import monai_mammo.compositors.alpha_blend as alpha_blend_module
from monai_mammo import registry
from monai_mammo.compositors.alpha_blend import GaussianAlphaBlend, gaussian_alpha_map
from monai_mammo.compositors.simple import FixedWeightBlend


def hand_gaussian(box, height, width, sigma_scale=0.5):
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    sx, sy = sigma_scale * (x1 - x0), sigma_scale * (y1 - y0)
    return torch.tensor(
        [
            [math.exp(-((j + 0.5 - cx) ** 2) / (2 * sx**2) - ((i + 0.5 - cy) ** 2) / (2 * sy**2)) for j in range(width)]
            for i in range(height)
        ]
    )


def test_alpha_map_matches_hand_computed_gaussian():
    box = [3, 5, 13, 9]  # w=10, h=4 -> sigma_x=5, sigma_y=2, centre (8, 7)
    alpha = gaussian_alpha_map(box, 14, 16)
    assert alpha.shape == (14, 16)
    torch.testing.assert_close(alpha, hand_gaussian(box, 14, 16), rtol=1e-6, atol=1e-7)
    # centre pixel (row 6.5 -> pixel 6 has centre 6.5; box centre y is 7 -> between rows 6 and 7)
    assert alpha.max() <= 1.0
    # one sigma along x from the centre: exp(-1/2) in the row through the centre
    alpha_odd = gaussian_alpha_map([2, 2, 7, 7], 9, 9, sigma_scale=0.5)  # centre at pixel (4, 4)
    assert float(alpha_odd[4, 4]) == 1.0
    sigma = 0.5 * 5
    assert float(alpha_odd[4, 4 + 2]) == pytest.approx(math.exp(-(2**2) / (2 * sigma**2)), rel=1e-6)


def test_alpha_map_symmetry_and_sigma_from_box():
    alpha = gaussian_alpha_map([2, 4, 9, 15], 19, 11)  # centre (5.5, 9.5) on pixel (9, 5)
    torch.testing.assert_close(alpha, alpha.flip(0))  # symmetric about the centre row
    torch.testing.assert_close(alpha, alpha.flip(1))  # and the centre column
    # a wider box spreads the map wider along x, not along y
    narrow = gaussian_alpha_map([4, 4, 6, 6], 10, 10)
    wide = gaussian_alpha_map([2, 4, 8, 6], 10, 10)
    assert wide[5, 0] > narrow[5, 0]
    # the y profile (normalised by its value in the centre row) does not depend on the box width
    torch.testing.assert_close(wide[:, 4] / wide[4, 4], narrow[:, 4] / narrow[4, 4])
    # sigma_scale is the parameter: larger sigma -> larger values away from the centre
    assert gaussian_alpha_map([4, 4, 6, 6], 10, 10, sigma_scale=1.0)[0, 0] > narrow[0, 0]


def test_composite_is_mass_where_alpha_one_and_glands_where_alpha_zero():
    torch.manual_seed(0)
    mass, glands = torch.rand(2, 21, 21), torch.rand(2, 21, 21)
    composite, alpha = GaussianAlphaBlend(sigma_scale=0.1)(mass, glands, [8, 8, 13, 13])
    assert alpha.shape == (1, 21, 21)
    assert float(alpha[0, 10, 10]) == 1.0
    torch.testing.assert_close(composite[:, 10, 10], mass[:, 10, 10])
    far = alpha[0] < 1e-12  # corners: alpha underflows to ~0
    assert far.any()
    torch.testing.assert_close(composite[:, far], glands[:, far])
    torch.testing.assert_close(composite, glands * (1 - alpha) + mass * alpha)


def test_batched_equals_looped_in_one_vectorised_call(monkeypatch):
    torch.manual_seed(1)
    batch = 32
    mass, glands = torch.rand(batch, 1, 64, 64), torch.rand(batch, 1, 64, 64)
    x0y0 = torch.randint(0, 30, (batch, 2)).float()
    boxes = torch.cat([x0y0, x0y0 + torch.randint(4, 30, (batch, 2)).float()], dim=1)
    blend = GaussianAlphaBlend()
    # per-sample cost must not exceed a loop's: the whole batch's alpha maps come from one call
    calls = []
    original = alpha_blend_module.gaussian_alpha_map
    monkeypatch.setattr(
        alpha_blend_module, "gaussian_alpha_map", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    composite, alpha = blend(mass, glands, boxes)
    assert len(calls) == 1
    assert composite.shape == (batch, 1, 64, 64) and alpha.shape == (batch, 1, 64, 64)
    for i in range(batch):
        single, single_alpha = blend(mass[i], glands[i], boxes[i])
        torch.testing.assert_close(composite[i], single)
        torch.testing.assert_close(alpha[i], single_alpha)


def test_boxes_clipped_and_bad_boxes_raise():
    # partly outside: same as the clipped box
    torch.testing.assert_close(gaussian_alpha_map([-4, -2, 6, 8], 12, 12), gaussian_alpha_map([0, 0, 6, 8], 12, 12))
    mass = torch.zeros(1, 12, 12)
    with pytest.raises(ValueError, match="empty or inverted"):
        GaussianAlphaBlend()(mass, mass, [5, 5, 5, 9])
    with pytest.raises(ValueError, match="empty or inverted"):
        GaussianAlphaBlend()(mass, mass, [8, 2, 4, 9])
    with pytest.raises(ValueError, match="entirely outside"):
        GaussianAlphaBlend()(mass, mass, [20, 20, 30, 30])
    with pytest.raises(ValueError, match="same shape"):
        GaussianAlphaBlend()(mass, torch.zeros(1, 12, 11), [1, 1, 4, 4])
    with pytest.raises(ValueError, match="boxes of shape"):
        GaussianAlphaBlend()(torch.zeros(3, 1, 12, 12), torch.zeros(3, 1, 12, 12), torch.ones(2, 4))
    with pytest.raises(ValueError, match="empty or inverted"):
        FixedWeightBlend()(mass, mass, [5, 5, 2, 9])


def test_simple_blend_fixed_weights_and_constant_alpha():
    mass, glands = torch.full((1, 6, 6), 2.0), torch.full((1, 6, 6), 4.0)
    composite, alpha = FixedWeightBlend(mass_weight=0.25)(mass, glands, [1, 1, 3, 3])
    torch.testing.assert_close(composite, torch.full((1, 6, 6), 0.25 * 2 + 0.75 * 4))
    torch.testing.assert_close(alpha, torch.full((1, 6, 6), 0.25))
    added, _ = FixedWeightBlend(mass_weight=1.0, glands_weight=1.0)(mass, glands, [1, 1, 3, 3])
    torch.testing.assert_close(added, mass + glands)
    batched, batched_alpha = FixedWeightBlend()(mass[None].repeat(3, 1, 1, 1), glands[None].repeat(3, 1, 1, 1), [1, 1, 3, 3])
    assert batched.shape == (3, 1, 6, 6) and batched_alpha.shape == (3, 1, 6, 6)


def test_registry_builds_both():
    assert isinstance(registry.build_compositor("alpha_blend", sigma_scale=0.3), GaussianAlphaBlend)
    assert isinstance(registry.build_compositor("simple", mass_weight=0.4), FixedWeightBlend)
    assert not list(GaussianAlphaBlend().parameters())  # no learned parameters (paper Table 3)
