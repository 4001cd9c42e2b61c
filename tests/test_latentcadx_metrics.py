"""Segmentation metrics of LatentCADx (An et al., Front. Big Data 2021, Sec. 5.1-5.2) on hand-made
masks: IoU / IoP / IoA / confused pixels, Dice against a true mask, classification AP and F1,
segmentation AP with predictions on negatives as false positives, and the registered metric classes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_mammo.metrics.classification import average_precision, f1_score
from monai_mammo.metrics.segmentation import (
    MaskOverlapMetric,
    SegmentationAPMetric,
    dice_iou,
    overlap_measures,
    segmentation_average_precision,
)


def _masks():
    """An 8 x 8 outline of 6 x 6 = 36 pixels and a 2 x 2 = 4 pixel prediction inside it, plus one
    pixel outside; one confused value (0.4) and one 0.65 (confused, and above 0.5)."""
    annotation = torch.zeros(1, 1, 8, 8)
    annotation[..., 1:7, 1:7] = 1
    pred = torch.zeros(1, 1, 8, 8)
    pred[..., 3:5, 3:5] = 0.9
    pred[..., 0, 0] = 0.65  # predicted (> 0.5) and outside the outline
    pred[..., 7, 7] = 0.4  # confused, not predicted
    return pred, annotation


def test_iop_ioa_iou_and_confused_pixels_by_hand():
    pred, annotation = _masks()
    m = {k: float(v[0]) for k, v in overlap_measures(pred, annotation).items()}
    # P = 5 pixels, A = 36, P ∩ A = 4, P ∪ A = 37
    assert m["iop"] == pytest.approx(4 / 5)
    assert m["ioa"] == pytest.approx(4 / 36)
    assert m["iou"] == pytest.approx(4 / 37)
    assert m["confused_pixels"] == 2.0  # 0.65 and 0.4 lie in (0.3, 0.7); 0.9 and 0 do not


def test_undefined_overlaps_are_nan():
    empty = torch.zeros(1, 1, 4, 4)
    m = overlap_measures(empty, empty)
    assert all(torch.isnan(m[k]).all() for k in ("iou", "iop", "ioa")) and m["confused_pixels"].item() == 0


def test_dice_against_the_true_lesion():
    pred, _ = _masks()
    truth = torch.zeros(1, 1, 8, 8)
    truth[..., 3:5, 3:6] = 1  # 6 pixels, 4 of them predicted
    d = dice_iou(pred, truth)
    assert float(d["dice"][0]) == pytest.approx(2 * 4 / (5 + 6))
    assert float(d["iou"][0]) == pytest.approx(4 / 7)


def test_classification_ap_and_f1_by_hand():
    # ranked: 1, 0, 1, 0, 1 -> precision at the hits 1, 2/3, 3/5; AP = (1 + 2/3 + 3/5) / 3
    scores, labels = [0.9, 0.8, 0.7, 0.6, 0.5], [1, 0, 1, 0, 1]
    assert average_precision(scores, labels) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    # ties form one threshold: both at 0.5 give precision 1/2 at recall 1
    assert average_precision([0.5, 0.5], [1, 0]) == pytest.approx(0.5)
    assert np.isnan(average_precision([0.1], [0]))
    assert f1_score(scores, labels, 0.65) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))  # tp 2, fp 1, fn 1


def test_segmentation_ap_counts_predictions_on_negatives_as_false_positives():
    scores = [0.95, 0.9, 0.8, 0.3]
    ious = [0.6, 0.0, 0.4, 0.9]
    positive = [True, False, True, True]
    instance = [True, True, True, False]  # the last positive predicted nothing: a miss
    # IoU 0.5: ranked TP, FP (negative), FP (IoU 0.4); 3 ground truths -> precision envelope 1 at recall 1/3
    assert segmentation_average_precision(scores, ious, positive, instance, 0.5) == pytest.approx(1 / 3)
    # IoU 0.3: TP, FP, TP -> recall 1/3 at precision 1, 2/3 at 2/3
    assert segmentation_average_precision(scores, ious, positive, instance, 0.3) == pytest.approx(1 / 3 + 1 / 3 * 2 / 3)
    # without the negative's prediction the second hit is at precision 1
    assert segmentation_average_precision(scores, ious, positive, [True, False, True, False], 0.3) == pytest.approx(2 / 3)


def test_metric_classes_accumulate_over_batches():
    pred, annotation = _masks()
    metric = MaskOverlapMetric("iop")
    metric(pred, annotation)
    metric(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))  # a negative: left out (positives only)
    assert float(metric.aggregate()) == pytest.approx(0.8)
    ap = SegmentationAPMetric(iou_threshold=0.1)
    score = torch.full_like(pred, 0.7)
    ap(torch.cat([pred, score], 1), annotation)  # IoU 4/37 ≈ 0.108 > 0.1: a hit
    negative = torch.zeros(1, 1, 8, 8)
    negative[..., 0, 0] = 0.9
    ap(torch.cat([negative, torch.full_like(negative, 0.9)], 1), torch.zeros(1, 1, 8, 8))  # ranked first: FP
    assert ap.aggregate() == pytest.approx(0.5)


def test_registered_metrics_build_by_name():
    from monai_mammo.registry import build_metric

    assert isinstance(build_metric("mask_overlap", measure="ioa"), MaskOverlapMetric)
    ap = build_metric("average_precision")
    ap(torch.tensor([0.9, 0.8, 0.7]), torch.tensor([1, 0, 1]))
    assert ap.aggregate() == pytest.approx((1 + 2 / 3) / 2)
    f1 = build_metric("f1", threshold=0.75)
    f1(torch.tensor([0.9, 0.8, 0.7]), torch.tensor([1, 0, 1]))
    assert f1.aggregate() == pytest.approx(0.5)
    assert isinstance(build_metric("segmentation_ap", iou_threshold=0.7), SegmentationAPMetric)
    with pytest.raises(ValueError, match="measure"):
        MaskOverlapMetric("volume")
