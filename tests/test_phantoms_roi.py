"""DAB-Net ROI phantoms: layout, determinism, and that obscuring hides the mass margin."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from monai_mammo.data.phantoms import synthesize
from monai_mammo.data.phantoms.roi import RoiOptions, render_roi


def _margin_visibility(roi: dict) -> float:
    """Mean gradient on the true mass margin / mean gradient around it (1 = margin not visible)."""
    image = roi["image"].astype(float)
    mass = roi["mask"] > 0
    margin = ndimage.binary_dilation(mass, iterations=2) & ~ndimage.binary_erosion(mass, iterations=2)
    around = ndimage.binary_dilation(mass, iterations=20) & ~margin
    gradient = ndimage.gaussian_gradient_magnitude(image, 1.5)
    return float(gradient[margin].mean() / gradient[around].mean())


def test_obscured_masses_have_less_visible_margins() -> None:
    opts = RoiOptions(size=128)
    clear = [_margin_visibility(render_roi(np.random.default_rng([1, i]), "clear", i % 2 == 1, opts)) for i in range(8)]
    obscured = [_margin_visibility(render_roi(np.random.default_rng([1, i]), "obscured", i % 2 == 1, opts)) for i in range(8)]
    assert np.mean(clear) > 1.5 * np.mean(obscured), (clear, obscured)


def _mass_cnr(roi: dict) -> float:
    """(mean over the mass core - mean of a ring around it) / std of the ring."""
    image = roi["image"].astype(float)
    mass = roi["mask"] > 0
    core = ndimage.binary_erosion(mass, iterations=3)
    ring = ndimage.binary_dilation(mass, iterations=12) & ~ndimage.binary_dilation(mass, iterations=4)
    return float((image[core].mean() - image[ring].mean()) / image[ring].std())


def test_obscured_masses_keep_reduced_but_nonzero_contrast() -> None:
    # dense glands lower the contrast but must not erase the mass (revision 1 did: mean CNR ~0.76)
    opts = RoiOptions(size=96)
    clear = [_mass_cnr(render_roi(np.random.default_rng([3, i]), "clear", i % 2 == 1, opts)) for i in range(10)]
    obscured = [_mass_cnr(render_roi(np.random.default_rng([3, i]), "obscured", i % 2 == 1, opts)) for i in range(10)]
    assert 1.0 < np.mean(obscured) < 0.8 * np.mean(clear), (clear, obscured)
    # displacing pure gland (the revision-1 model) makes the obscured masses fade further
    pure = RoiOptions(size=96, displaced_glandularity=(1.0, 1.0))
    faded = [_mass_cnr(render_roi(np.random.default_rng([3, i]), "obscured", i % 2 == 1, pure)) for i in range(10)]
    assert np.mean(faded) < np.mean(obscured) - 0.3, (faded, obscured)


def test_options_validate_glandularity_and_revision() -> None:
    with pytest.raises(ValueError, match="displaced_glandularity"):
        RoiOptions(displaced_glandularity=(0.8, 0.5))
    with pytest.raises(ValueError, match="revision"):
        RoiOptions(revision=1)


def test_obscured_flag_and_density() -> None:
    opts = RoiOptions(size=96)
    clear = render_roi(np.random.default_rng(0), "clear", False, opts)
    obscured = render_roi(np.random.default_rng(0), "obscured", False, opts)
    gland = render_roi(np.random.default_rng(0), "gland", False, opts)
    assert not clear["obscured"] and obscured["obscured"]
    assert clear["obscuring_density"] < 0.3 < 0.6 < obscured["obscuring_density"]
    assert gland["box"] is None and gland["label"] is None and gland["mask"].max() == 0


def test_malignant_masses_are_less_compact() -> None:
    # the class lives in shape/margin: benign round (compact), malignant irregular
    def compactness(roi: dict) -> float:
        mass = roi["mask"] > 0
        perimeter = (mass & ~ndimage.binary_erosion(mass)).sum()
        return float(4 * np.pi * mass.sum() / perimeter**2)

    opts = RoiOptions(size=160, mass_diameter_mm=(15.0, 20.0))
    benign = [compactness(render_roi(np.random.default_rng([2, i]), "clear", False, opts)) for i in range(6)]
    malignant = [compactness(render_roi(np.random.default_rng([2, i]), "clear", True, opts)) for i in range(6)]
    assert np.mean(benign) > np.mean(malignant) + 0.1, (benign, malignant)


def test_dataset_layout_and_determinism(tmp_path: Path) -> None:
    path = synthesize("roi", tmp_path / "a", n=10, seed=4, size=64, n_masses=3, n_glands=2, obscured_fraction=0.5)
    again = synthesize("roi", tmp_path / "b", n=10, seed=4, size=64, n_masses=3, n_glands=2, obscured_fraction=0.5)
    for file in path.parent.rglob("*"):
        if file.is_file():
            assert file.read_bytes() == (again.parent / file.relative_to(path.parent)).read_bytes()
    content = json.loads(path.read_text())
    real = content["training"] + content["validation"] + content["test"]
    assert len(real) == 10 and len(content["masses"]) == 3 and len(content["glands"]) == 2
    assert sum(e["obscured"] for e in real) == 5
    assert not any(e["obscured"] for e in content["masses"])
    for e in real + content["masses"]:
        image = np.asarray(Image.open(path.parent / e["image"]))
        assert image.shape == (64, 64) and image.dtype == np.uint8
        x0, y0, x1, y1 = e["box"]
        assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64 and e["label"] in (0, 1)
        mask = np.asarray(Image.open(path.parent / e["mask"]))
        assert (mask[y0:y1, x0:x1] == e["label"] + 1).any()
    for e in content["glands"]:
        assert "label" not in e and (path.parent / e["image"]).is_file()


def test_sixteen_bit_option(tmp_path: Path) -> None:
    path = synthesize("roi", tmp_path, n=1, seed=0, size=48, bit_depth=16, n_masses=1, n_glands=1)
    entry = json.loads(path.read_text())["training"][0]
    image = np.asarray(Image.open(path.parent / entry["image"]))
    assert image.dtype == np.uint16 and image.max() > 255
    with pytest.raises(ValueError, match="bit_depth"):
        RoiOptions(bit_depth=12)
