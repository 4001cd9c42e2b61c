"""Intersection over Minimum (Bakalo et al. 2021, Eq. 6) and the region labels of Eq. 7 (ignore band)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_mammo.engines.clsdet import RegionLabelsd, annotated
from monai_mammo.region_labels import BENIGN, IGNORE, MALIGNANT, NORMAL, box_iom, mask_iom, region_labels, region_labels_from_mask

REGIONS = np.array([[0, 0, 10, 10], [10, 0, 20, 10], [20, 0, 30, 10], [30, 0, 40, 10]])


def test_box_iom_hand_computed():
    lesions = np.array(
        [
            [2, 2, 4, 4],  # 2x2 inside region 0: 4 / min(100, 4) = 1
            [5, 0, 25, 10],  # 20x10 across regions 0-2: region 0: 50 / 100, region 1: 100 / 100, region 2: 50 / 100
            [28, 0, 33, 2],  # 5x2 = 10: region 2 gets 2x2 = 4 -> 0.4, region 3 gets 3x2 = 6 -> 0.6
        ]
    )
    expected = np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.5, 0.4], [0.0, 0.0, 0.6]])
    np.testing.assert_allclose(box_iom(REGIONS, lesions), expected)
    # a region inside a large lesion has IoM 1 (where IoU would be small)
    assert box_iom(np.array([[0, 0, 10, 10]]), np.array([[-50, -50, 50, 50]]))[0, 0] == 1.0


def test_region_labels_ignore_band_and_malignant_only():
    lesions = np.array([[28, 0, 33, 2], [12, 2, 14, 4]])  # malignant across regions 2/3, benign inside region 1
    labels = region_labels(REGIONS, lesions, [MALIGNANT, BENIGN], alpha=0.5)
    # region 0 touches nothing: BN; region 1 holds only a benign lesion: BN (paper: M images
    # annotated for their malignant findings only); region 2: IoM 0.4 < 0.5 -> ignored; region 3: 0.6 -> M
    assert labels.tolist() == [NORMAL, NORMAL, IGNORE, MALIGNANT]
    # at alpha 0.4 region 2 becomes M; at 0.7 region 3 falls into the ignore band
    assert region_labels(REGIONS, lesions, [MALIGNANT, BENIGN], alpha=0.4).tolist() == [NORMAL, NORMAL, MALIGNANT, MALIGNANT]
    assert region_labels(REGIONS, lesions, [MALIGNANT, BENIGN], alpha=0.7).tolist() == [NORMAL, NORMAL, IGNORE, IGNORE]
    # every finding (the fully supervised reference): region 1 is B
    assert region_labels(REGIONS, lesions, [MALIGNANT, BENIGN], classes="nbm").tolist() == [NORMAL, BENIGN, IGNORE, MALIGNANT]
    assert region_labels(REGIONS, np.zeros((0, 4)), []).tolist() == [NORMAL] * 4


def test_mask_iom_matches_box_iom_for_rectangles_and_splits_lesions():
    mask = np.zeros((10, 40), bool)
    mask[0:2, 28:33] = True
    mask[2:4, 2:4] = True
    iom = mask_iom(REGIONS, mask)  # components in scan order: the one at rows 0-2 first
    np.testing.assert_allclose(iom, box_iom(REGIONS, np.array([[28, 0, 33, 2], [2, 2, 4, 4]])))
    label_mask = np.zeros((10, 40), np.uint8)
    label_mask[0:2, 28:33] = 2
    label_mask[2:4, 12:14] = 1
    assert region_labels_from_mask(REGIONS, label_mask).tolist() == [NORMAL, NORMAL, IGNORE, MALIGNANT]


def test_boxes_are_checked():
    with pytest.raises(ValueError, match="x1 >= x0"):
        box_iom(np.array([[5, 0, 1, 1]]), REGIONS)
    with pytest.raises(ValueError, match="lesion labels"):
        region_labels(REGIONS, np.array([[0, 0, 1, 1]]), [])


def test_region_labels_transform_only_for_annotated_malignant_images():
    item = {"region_boxes": torch.as_tensor(REGIONS), "boxes": [[28, 0, 33, 2]], "box_labels": [2], "label": [1, 0], "fully_labelled": True, "patient_id": "P1"}
    d = RegionLabelsd(annotated_share=1.0)(item)
    assert d["region_labels"].tolist() == [NORMAL, NORMAL, IGNORE, MALIGNANT] and d["in_f"] is True
    assert RegionLabelsd(annotated_share=0.0)(item)["region_labels"].tolist() == [IGNORE] * 4
    assert RegionLabelsd(annotated_share=1.0)({**item, "fully_labelled": False})["in_f"] is False
    benign_image = {**item, "label": [0, 1], "box_labels": [1]}
    assert RegionLabelsd(annotated_share=1.0)(benign_image)["in_f"] is False  # paper: F holds M images only
    assert RegionLabelsd(annotated_share=1.0, malignant_only=False, classes="nbm")(benign_image)["region_labels"].tolist() == [NORMAL, NORMAL, IGNORE, BENIGN]


def test_annotated_shares_are_nested_and_near_their_value():
    ids = [f"P{i:05d}" for i in range(2000)]
    quarter = {i for i in ids if annotated(i, 0.25)}
    half = {i for i in ids if annotated(i, 0.5)}
    assert quarter <= half
    assert abs(len(half) / len(ids) - 0.5) < 0.05 and abs(len(quarter) / len(ids) - 0.25) < 0.05
