"""Lesion patch sampling (An et al., Front. Big Data 2021, Sec. 3) and the phantom outlines it is
trained on: positives centred on each outline's centre of mass with its lesion type, negatives from
lesion-free breast tiles, the imbalance bound, MONAI Label's label image as the outline, and the
outline area options (defaults leave the cached asn / dabnet sets unchanged)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from monai_mammo.transforms.lesion_patches import LesionPatchesd, patch_dataset


def _image_item():
    image = torch.rand(1, 160, 128)
    coarse = torch.zeros(1, 160, 128)
    coarse[0, 30:50, 20:44] = 1  # a mass outline, centre of mass (39.5, 31.5) -> (40, 32), half to even
    coarse[0, 100:130, 70:100] = 1  # a µC cluster outline
    labels = coarse.clone()
    labels[0, 100:130, 70:100] = 3
    truth = torch.zeros(1, 160, 128)
    truth[0, 35:45, 26:38] = 1
    breast = torch.zeros(1, 160, 128)
    breast[:, :, :112] = 1
    return {"image": image, "coarse_mask": coarse, "coarse_label": labels, "mask": truth, "breast_mask": breast, "patient_id": "P7", "spacing": [0.25, 0.25]}


def test_positives_are_centred_with_their_lesion_type():
    d = _image_item()
    patches = LesionPatchesd(keys=["image", "coarse_mask", "mask"], patch_size=32)(d)
    positives = [p for p in patches if p["label"] == 1]
    assert [(p["lesion_type"], p["box"]) for p in positives] == [("mass", [16, 24, 48, 56]), ("calcification", [68, 98, 100, 130])]  # round half to even
    first = positives[0]
    assert first["patient_id"] == "P7" and first["spacing"] == [0.25, 0.25]
    torch.testing.assert_close(first["image"], d["image"][:, 24:56, 16:48])
    cy, cx = ndimage.center_of_mass(first["coarse_mask"][0].numpy())
    assert abs(cy - 15.5) <= 0.5 and abs(cx - 15.5) <= 0.5  # the outline sits in the middle of its patch
    assert float(first["mask"].sum()) == 120.0  # the true lesion travels with it


def test_negatives_are_lesion_free_breast_tiles_and_bounded():
    d = _image_item()
    sampler = LesionPatchesd(keys=["image", "coarse_mask"], patch_size=32, min_breast_fraction=1.0)
    negatives = [p for p in sampler(d) if p["label"] == 0]
    assert negatives and all(p["lesion_type"] == "none" for p in negatives)
    lesion = (d["coarse_mask"][0] > 0) | (d["mask"][0] > 0)
    for p in negatives:
        x0, y0, x1, y1 = p["box"]
        assert not lesion[y0:y1, x0:x1].any() and bool(d["breast_mask"][0, y0:y1, x0:x1].all())
        assert float(p["coarse_mask"].sum()) == 0
    bounded = LesionPatchesd(keys=["image", "coarse_mask"], patch_size=32, min_breast_fraction=1.0, max_negatives=2)(d)
    assert sum(p["label"] == 0 for p in bounded) == 2 and sum(p["label"] == 1 for p in bounded) == 2


def test_context_margin_for_the_random_crop():
    patches = LesionPatchesd(keys=["image"], patch_size=32, context=4)(_image_item())
    assert tuple(patches[0]["image"].shape) == (1, 40, 40) and patches[0]["box"] == [16, 24, 48, 56]


def test_monai_label_label_image_is_the_outline(tmp_path):
    """MONAI Label's datastore gives {"image", "label"}: the label image is used as the coarse mask."""
    from monai_mammo.transforms.io import LoadRadiographd

    image = (np.random.default_rng(0).random((96, 96)) * 255).astype(np.uint8)
    label = np.zeros((96, 96), np.uint8)
    label[20:40, 30:50] = 1
    Image.fromarray(image).save(tmp_path / "img.png")
    Image.fromarray(label).save(tmp_path / "lab.png")
    loading = LoadRadiographd(keys=["image", "coarse_mask"], mask_keys=["coarse_mask"], spacing_key=None)
    patches = patch_dataset([{"image": str(tmp_path / "img.png"), "label": str(tmp_path / "lab.png")}], loading,
                            LesionPatchesd(keys=["image", "coarse_mask"], patch_size=32, max_negatives=1))  # fmt: skip
    assert [p["label"] for p in patches] == [1, 0] and patches[0]["box"] == [24, 14, 56, 46]
    with pytest.raises(ValueError, match="missing.png"):
        patch_dataset([{"image": str(tmp_path / "missing.png"), "coarse_mask": str(tmp_path / "lab.png")}], loading, LesionPatchesd(keys=["image"]))


def test_outline_options_default_to_todays_sets_and_overstate_the_lesion(tmp_path):
    from monai_mammo.data.phantoms import ensure_phantoms, phantom_cache_key
    from monai_mammo.data.phantoms.mammogram import MammogramOptions

    # at their default the new options stay out of the cache key: the asn / dabnet sets keep theirs
    assert phantom_cache_key("mammogram", 4, 0) == phantom_cache_key("mammogram", 4, 0, coarse_area_ratio_mass=None)
    assert phantom_cache_key("mammogram", 4, 0) != phantom_cache_key("mammogram", 4, 0, coarse_area_ratio_mass=(1.5, 2.5))
    assert MammogramOptions().coarse_area_ratio_calc is None
    spec = dict(image_size=(256, 208), spacing_mm=0.25, p_mass=1.0, p_calc_cluster=0.0, mass_diameter_mm=(5.0, 8.0),
                under_drawn_fraction=0.0, coarse_area_ratio_mass=(1.5, 2.5), syntax_probs=(1, 0, 0))  # fmt: skip
    datalist = ensure_phantoms("mammogram", tmp_path, 6, 0, **spec)
    ratios = []
    for record in json.loads(datalist.read_text())["training"] + json.loads(datalist.read_text())["validation"] + json.loads(datalist.read_text())["test"]:
        truth = np.array(Image.open(datalist.parent / record["mask"])) > 0
        coarse = np.array(Image.open(datalist.parent / record["coarse_mask"]))
        components, n = ndimage.label(coarse > 0)
        for k in range(1, n + 1):
            region = components == k
            ratios.append(region.sum() / max((truth & region).sum(), 1))
            assert (truth & ~region)[ndimage.binary_dilation(region, iterations=3)].sum() == 0  # no under-drawn outline here
    assert ratios and all(1.3 <= r <= 4.0 for r in ratios), ratios
