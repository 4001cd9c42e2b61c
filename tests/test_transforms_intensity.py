"""Tests for monai_mammo.transforms.intensity (hand-computed values)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_mammo.transforms.intensity import DDSM_CALIBRATIONS, ChestXrayNormalized, OpticalDensityd, ScaleToEightBitd


def test_eight_bit_levels_bits_and_minmax():
    img = MetaTensor(torch.tensor([[[0.0, 100.0, 4095.0, 5000.0]]]), meta={"bits_stored": 12})
    out = ScaleToEightBitd(keys="image", input_range="bits")({"image": img})["image"]
    np.testing.assert_allclose(out.numpy(), [[[0.0, 6 / 255, 1.0, 1.0]]], atol=1e-7)  # round(100*255/4095)=6
    levels = torch.unique(ScaleToEightBitd(keys="image")({"image": torch.rand(1, 50, 50)})["image"] * 255)
    assert torch.allclose(levels, torch.round(levels), atol=1e-4) and levels.min() == 0 and levels.max() == 255
    raw = ScaleToEightBitd(keys="image", input_range=(0, 10), quantize=False)({"image": torch.tensor([[[2.5]]])})["image"]
    assert float(raw) == pytest.approx(0.25)
    assert isinstance(out, MetaTensor)
    with pytest.raises(ValueError, match="bits_stored"):
        ScaleToEightBitd(keys="image", input_range="bits")({"image": torch.zeros(1, 2, 2)})


def test_optical_density_clipping_and_calibrations():
    t = OpticalDensityd(keys="image", scanner="HOWTEK_MGH")
    gl = torch.tensor([[[0.0, 1000.0, 3960.0, 4100.0]]])
    od = 3.789 - 0.00094568 * gl
    expected = torch.where(od < 0.05, torch.zeros_like(od), torch.clamp(od, max=3.0)) / 3.0
    np.testing.assert_allclose(t({"image": gl})["image"].numpy(), expected.numpy(), atol=1e-6)
    assert float(t({"image": gl})["image"][0, 0, 3]) == 0.0  # OD < 0.05 -> 0 (not 0.05)
    # DBA log calibration: OD = (log10(GL) - 4.80662) / -1.07553
    dba = OpticalDensityd(keys="image", scanner="DBA")({"image": torch.tensor([[[1000.0]]])})["image"]
    assert float(dba) == pytest.approx(((np.log10(1000) - 4.80662) / -1.07553) / 3.0, rel=1e-5)
    lum = OpticalDensityd(keys="image", coefficients=("linear", 1.0, 0.0), invert=True)({"image": torch.zeros(1, 1, 1)})
    assert float(lum["image"]) == pytest.approx(1 - 1 / 3)
    per_item = OpticalDensityd(keys="image", scanner_key="scanner")({"image": torch.tensor([[[2000.0]]]), "scanner": "LUMISYS"})
    assert float(per_item["image"]) == pytest.approx(((2000 - 4096.99) / -1009.01) / 3.0, rel=1e-5)
    assert set(DDSM_CALIBRATIONS) == {"DBA", "HOWTEK_MGH", "HOWTEK_ISMD", "LUMISYS"}
    with pytest.raises(ValueError, match="unknown scanner"):
        OpticalDensityd(keys="image", scanner="XYZ")


def test_chest_xray_minus_one_to_one():
    img = torch.tensor([[[0.0, 51.0, 255.0]]])
    out = ChestXrayNormalized(keys="image")({"image": img})["image"]
    assert out.shape == (3, 1, 3)
    np.testing.assert_allclose(out[1].numpy(), [[-1.0, -0.6, 1.0]], atol=1e-6)
    mm = ChestXrayNormalized(keys="image", input_range="minmax", channels=1)({"image": torch.tensor([[[2.0, 4.0]]])})["image"]
    assert mm.tolist() == [[[-1.0, 1.0]]]
    with pytest.raises(ValueError, match=r"\(1, H, W\)"):
        ChestXrayNormalized(keys="image")({"image": torch.zeros(2, 3, 3)})
