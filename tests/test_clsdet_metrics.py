"""Cls-Det figures: pAUCR and spec@sens on a hand-worked ROC, and the localization FROC protocol of
Bakalo et al. 2021 (Sec. 5.3) on a hand-worked three-image example."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monai_mammo import registry
from monai_mammo.metrics.classification import partial_auc_ratio, specificity_at_sensitivity
from monai_mammo.metrics.localization_froc import LocalizationFROCMetric, localization_froc, operating_threshold


def test_pauc_ratio_and_specificity_hand_worked():
    # positives 0.9, 0.7; negatives 0.8, 0.1. ROC: (0,0) (0,.5) (.5,.5) (.5,1) (1,1).
    # Sensitivity >= 0.8 lies on the vertical segment at FPR 0.5: area 0.2 x (1 - 0.5) = 0.1, / 0.2 = 0.5
    scores, labels = np.array([0.9, 0.8, 0.7, 0.1]), np.array([1, 0, 1, 0])
    assert math.isclose(partial_auc_ratio(scores, labels, 0.8), 0.5)
    assert specificity_at_sensitivity(scores, labels, 0.85) == 0.5
    assert specificity_at_sensitivity(scores, labels, 0.5) == 1.0
    # a perfect classifier scores 1, the reversed one 0
    assert partial_auc_ratio(np.array([0.9, 0.1]), np.array([1, 0])) == 1.0
    assert partial_auc_ratio(np.array([0.1, 0.9]), np.array([1, 0])) == 0.0


def test_operating_threshold():
    # 2 positives at sensitivity 0.85: ceil(1.7) = 2 -> the second-highest positive score
    assert operating_threshold([0.9, 0.8, 0.7], [1, 0, 1], 0.85) == 0.7
    assert operating_threshold([0.9, 0.8, 0.7], [1, 0, 1], 0.5) == 0.9
    with pytest.raises(ValueError, match="no positive"):
        operating_threshold([0.5], [0])


# A (malignant, p = 0.9): lesion [0,0,10,10]; regions: on it d 0.8 (correct), two elsewhere d 0.6 and 0.3.
# B (malignant, p = 0.7): a small lesion [50,50,54,54] inside region [40,40,60,60] d 0.5 (IoM 1:
#   correct), a region elsewhere d 0.7.
# C (benign / normal, p = 0.8): regions d 0.4 and 0.9 (all false: no malignant lesion).
# Operating point: sensitivity 0.85 of 2 positives -> tau = 0.7: A, B and C are classified M (3 images),
# A and B are the true-positive images.
# False-positive scores: 0.6, 0.3 (A), 0.7 (B), 0.4, 0.9 (C); best correct: A 0.8, B 0.5.
#   t:        inf  0.9  0.8  0.7  0.6  0.5  0.4  0.3
#   FPs:        0    1    1    2    3    3    4    5     (/ 3 images classified)
#   TP images:  0    0    1    1    1    2    2    2     (/ 2 true-positive images)
EXAMPLE = dict(
    image_scores=[0.9, 0.7, 0.8],
    image_labels=[1, 1, 0],
    region_boxes=[
        [[0, 0, 10, 10], [20, 0, 30, 10], [10, 0, 20, 10]],
        [[40, 40, 60, 60], [0, 0, 20, 20]],
        [[0, 0, 10, 10], [30, 30, 40, 40]],
    ],
    region_scores=[[0.8, 0.6, 0.3], [0.5, 0.7], [0.4, 0.9]],
    lesion_boxes=[[[0, 0, 10, 10]], [[50, 50, 54, 54]], []],
)


def test_localization_froc_hand_worked_three_images():
    result = localization_froc(**EXAMPLE, operating_sensitivity=0.85)
    assert result["threshold"] == 0.7 and result["num_classified"] == 3 and result["num_true_positive_images"] == 2
    curve = result["curve"]
    assert curve["thresholds"][1:] == [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]
    np.testing.assert_allclose(curve["fps_per_image"], np.array([0, 1, 1, 2, 3, 3, 4, 5]) / 3)
    np.testing.assert_allclose(curve["sensitivity"], np.array([0, 0, 1, 1, 1, 2, 2, 2]) / 2)
    assert result["sensitivity_at"]["1"] == 1.0 and result["sensitivity_at"]["0.5"] == 0.5 and result["sensitivity_at"]["0.25"] == 0.0


def test_localization_froc_protocol_details():
    # a stricter operating point (sensitivity 0.5: tau = 0.9) keeps image A alone: 3 regions, 1 image
    result = localization_froc(**EXAMPLE, operating_sensitivity=0.5)
    assert result["num_classified"] == 1 and result["num_true_positive_images"] == 1
    np.testing.assert_allclose(result["curve"]["fps_per_image"], [0, 0, 1, 2])
    # a region half on the lesion (IoM 0.5) is correct; at IoM threshold 0.6 it is a false positive
    half = dict(EXAMPLE, region_boxes=[[[5, 0, 15, 10], [20, 0, 30, 10], [10, 0, 20, 10]], *EXAMPLE["region_boxes"][1:]])
    assert localization_froc(**half)["num_true_positive_images"] == 2
    assert localization_froc(**half)["curve"]["sensitivity"][2] == 0.5
    assert localization_froc(**half, iom_threshold=0.6)["curve"]["sensitivity"][2] == 0.0
    # two regions on the same lesion: both correct, neither counts as a false positive
    double = dict(EXAMPLE, region_boxes=[[[0, 0, 10, 10], [0, 0, 10, 10], [10, 0, 20, 10]], *EXAMPLE["region_boxes"][1:]])
    assert localization_froc(**double)["curve"]["fps_per_image"][-1] == 4 / 3


def test_localization_froc_metric_accumulates_batches_and_is_registered():
    metric = registry.build_metric("localization_froc", operating_sensitivity=0.85)
    assert isinstance(metric, LocalizationFROCMetric)
    for i in range(3):
        metric(
            [{"score": EXAMPLE["image_scores"][i], "boxes": EXAMPLE["region_boxes"][i], "region_scores": EXAMPLE["region_scores"][i]}],
            [{"label": EXAMPLE["image_labels"][i], "boxes": EXAMPLE["lesion_boxes"][i]}],
        )
    assert float(metric.aggregate()) == 1.0
    metric.reset()
    with pytest.raises(ValueError, match="no image"):
        metric.aggregate()
    assert "partial_auc_ratio" in registry.list_components()["metric"]
