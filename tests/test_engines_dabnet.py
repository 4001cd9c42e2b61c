"""Unit tests of monai_mammo.engines.dabnet: MalignancyToLabeld (MONAI Label output) and the
inference / metric helpers the dabnet bundle calls."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor

from monai_mammo.engines.dabnet import MalignancyToLabeld, roc_auc
from monai_mammo.transforms.label_app import ToLabelAppLayoutd


@pytest.mark.parametrize("prob, value, name", [(0.8, 2, "malignant"), (0.2, 1, "benign"), (0.5, 2, "malignant")])
@pytest.mark.parametrize("shape", [(1,), (1, 1)])
def test_malignancy_to_label_original_size(prob, value, name, shape):
    image = MetaTensor(torch.zeros(1, 64, 64), meta={"spatial_shape": (40, 30)})  # PILReader order: W=40, H=30
    d = MalignancyToLabeld(keys="pred", ref_key="image")({"image": image, "pred": torch.full(shape, prob)})
    assert d["pred"].shape == (1, 30, 40) and d["pred"].dtype == torch.uint8
    assert torch.all(d["pred"] == value)
    assert d["result"] == {"malignancy_probability": pytest.approx(prob), "label": name}


def test_malignancy_to_label_rows_first_spatial_shape():
    image = MetaTensor(torch.zeros(1, 8, 8), meta={"spatial_shape": (30, 40)})
    d = MalignancyToLabeld(keys="pred", spatial_shape_order="hw")({"image": image, "pred": torch.tensor([0.1])})
    assert d["pred"].shape == (1, 30, 40)


def test_malignancy_to_label_matches_pil_reader(tmp_path):
    """MONAI's PILReader(reverse_indexing=False) gives a (1, H, W) array but spatial_shape (W, H)."""
    import numpy as np
    from monai.data import PILReader
    from monai.transforms import LoadImage
    from PIL import Image

    Image.fromarray(np.zeros((30, 20), dtype=np.uint8)).save(tmp_path / "roi.png")  # H=30, W=20
    image = LoadImage(reader=PILReader(reverse_indexing=False), image_only=True, ensure_channel_first=True)(str(tmp_path / "roi.png"))
    assert image.shape == (1, 30, 20)
    d = MalignancyToLabeld(keys="pred")({"image": image, "pred": torch.tensor([0.9])})
    assert d["pred"].shape == (1, 30, 20)


def test_malignancy_to_label_threshold_and_fallback_size():
    # no spatial_shape in meta (or a plain tensor): the current image size is used
    d = MalignancyToLabeld(keys="pred", threshold=0.9)({"image": torch.zeros(1, 7, 5), "pred": torch.tensor([0.8])})
    assert d["pred"].shape == (1, 7, 5) and torch.all(d["pred"] == 1) and d["result"]["label"] == "benign"


def test_malignancy_to_label_then_label_app_layout():
    image = MetaTensor(torch.zeros(1, 16, 16), meta={"spatial_shape": (9, 12)})  # W=9, H=12
    d = MalignancyToLabeld(keys="pred")({"image": image, "pred": torch.tensor([[0.7]])})
    d = ToLabelAppLayoutd(keys="pred")(d)
    assert d["pred"].shape == (9, 12) and tuple(d["image"].meta["spatial_shape"]) == (9, 12)


def test_malignancy_to_label_rejects_bad_input():
    with pytest.raises(ValueError, match=r"pred: expected one malignancy probability.*\(2,\)"):
        MalignancyToLabeld(keys="pred")({"image": torch.zeros(1, 4, 4), "pred": torch.tensor([0.1, 0.9])})
    with pytest.raises(KeyError, match="reference key 'image'"):
        MalignancyToLabeld(keys="pred")({"pred": torch.tensor([0.1])})


def test_roc_auc_hand_computed():
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
