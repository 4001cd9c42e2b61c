"""Tests for monai_mammo.transforms.compositing (DAB-Net on-the-fly composites)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset, MetaTensor
from PIL import Image

from monai_mammo.compositors.alpha_blend import GaussianAlphaBlend
from monai_mammo.transforms.compositing import RandMassCompositingd


def pools(n=4, size=32):
    g = torch.Generator().manual_seed(0)
    masses = [
        {"image": torch.rand(1, size, size, generator=g), "label": i % 2, "box": [8, 6, 20 + i, 24]} for i in range(n)
    ]
    glands = [{"image": torch.rand(1, size, size, generator=g)} for _ in range(n)]
    return masses, glands


def test_composite_fields_match_compositor_and_mass_label():
    masses, glands = pools()
    t = RandMassCompositingd("image", masses, glands, ratio=2.0, pool_loader=lambda item: item["image"])
    t.set_random_state(0)
    real = {"image": torch.rand(1, 32, 32), "label": torch.tensor(0.0), "obscured": False}
    out = t(real)
    assert len(out) == 3
    assert not bool(out[0]["is_composite"]) and float(out[0]["x_m"].abs().sum()) == 0
    torch.testing.assert_close(out[0]["image"], real["image"])
    for sample, m_index, g_index in zip(out[1:], t._mass_index, t._gland_index):
        assert bool(sample["is_composite"]) and sample["obscured"] is True
        torch.testing.assert_close(sample["x_m"], masses[m_index]["image"])
        torch.testing.assert_close(sample["x_g"], glands[g_index]["image"])
        expected, _ = GaussianAlphaBlend()(masses[m_index]["image"], glands[g_index]["image"], masses[m_index]["box"])
        torch.testing.assert_close(sample["image"], expected)
        assert sample["label"].dtype == torch.float32 and float(sample["label"]) == masses[m_index]["label"]


def test_ratio_keep_real_and_determinism():
    masses, glands = pools()
    t = RandMassCompositingd("image", masses, glands, ratio=0.3)
    t.set_random_state(123)
    counts = [len(t({"image": torch.rand(1, 32, 32), "label": 1})) - 1 for _ in range(2000)]
    assert abs(np.mean(counts) - 0.3) < 0.04
    # same seed -> same composites
    a = RandMassCompositingd("image", masses, glands, ratio=1.0).set_random_state(7)
    b = RandMassCompositingd("image", masses, glands, ratio=1.0).set_random_state(7)
    x = {"image": torch.zeros(1, 32, 32), "label": 0}
    for _ in range(5):
        torch.testing.assert_close(a(x)[1]["image"], b(x)[1]["image"])
    stage1 = RandMassCompositingd("image", masses, glands, ratio=1.0, keep_real=False)
    out = stage1(x)
    assert len(out) == 1 and bool(out[0]["is_composite"])
    with pytest.raises(ValueError, match="ratio >= 1"):
        RandMassCompositingd("image", masses, glands, ratio=0.3, keep_real=False)


def test_collates_mixed_batches_with_meta_tensors():
    masses, glands = pools()
    t = RandMassCompositingd("image", masses, glands, ratio=0.5).set_random_state(1)
    data = [{"image": MetaTensor(torch.rand(1, 32, 32), meta={"filename_or_obj": f"r{i}"}), "label": i % 2} for i in range(8)]
    loader = DataLoader(Dataset(data, transform=t), batch_size=4, num_workers=0)
    total = 0
    for batch in loader:
        n = batch["image"].shape[0]
        total += n
        assert batch["x_m"].shape == (n, 1, 32, 32) and batch["is_composite"].shape == (n,)
        assert batch["label"].shape == (n,)
    assert total > 8


def test_pool_from_png_files_resized_with_boxes(tmp_path):
    arr = np.zeros((40, 80), np.uint8)
    arr[10:20, 20:40] = 255  # the "mass" block: x 20..40, y 10..20
    Image.fromarray(arr).save(tmp_path / "mass.png")
    Image.fromarray(np.full((40, 80), 128, np.uint8)).save(tmp_path / "gland.png")
    t = RandMassCompositingd(
        "image",
        [{"image": "mass.png", "label": 1, "box": [20, 10, 40, 20]}],
        ["gland.png"],
        ratio=1.0,
        base_dir=tmp_path,
        spatial_size=(20, 40),
    ).preload()
    assert t._mass_images.shape == (1, 1, 20, 40)  # rows stay y (no reverse indexing)
    torch.testing.assert_close(t._mass_boxes[0], torch.tensor([10.0, 5.0, 20.0, 10.0], dtype=torch.float64))
    assert float(t._mass_images[0, 0, 7, 15]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="pool images are"):
        t({"image": torch.zeros(1, 32, 32), "label": 0})


def test_pool_images_are_resized_like_the_real_rois(tmp_path):
    """Pool masses and glands go through the same reader, scaling and resize (MONAI's Resized,
    "area") as the real ROIs of the bundle's preprocessing, so composites match real samples."""
    from monai.transforms import Compose, Resized, ScaleIntensityd

    from monai_mammo.transforms.io import LoadRadiographd

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 72), dtype=np.uint8)).save(tmp_path / "mass.png")
    Image.fromarray(rng.integers(0, 256, (48, 72), dtype=np.uint8)).save(tmp_path / "gland.png")
    t = RandMassCompositingd(
        "image", [{"image": str(tmp_path / "mass.png"), "label": 1, "box": [10, 10, 40, 30]}],
        [str(tmp_path / "gland.png")], ratio=1.0, spatial_size=(32, 32),
    ).preload()
    real_chain = Compose([LoadRadiographd(keys="image"), ScaleIntensityd(keys="image"), Resized(keys="image", spatial_size=(32, 32))])
    for pool, name in ((t._mass_images, "mass.png"), (t._gland_images, "gland.png")):
        expected = real_chain({"image": str(tmp_path / name)})["image"].as_tensor()
        torch.testing.assert_close(pool[0], expected, rtol=0, atol=1e-6)
    bilinear = RandMassCompositingd(
        "image", [{"image": str(tmp_path / "mass.png"), "label": 1, "box": [10, 10, 40, 30]}],
        [str(tmp_path / "gland.png")], spatial_size=(32, 32), resize_mode="bilinear",
    ).preload()
    assert not torch.allclose(bilinear._mass_images, t._mass_images)


def test_bad_pools_raise():
    masses, glands = pools()
    with pytest.raises(ValueError, match="empty"):
        RandMassCompositingd("image", [], glands)
    with pytest.raises(KeyError, match="box"):
        RandMassCompositingd("image", [{"image": torch.rand(1, 8, 8), "label": 0}], glands).preload()
