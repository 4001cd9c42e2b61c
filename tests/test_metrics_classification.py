from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_mammo.metrics.classification import (
    SpecificityAtSensitivityMetric,
    partial_auc_ratio,
    roc_curve,
    specificity_at_sensitivity,
)

SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
LABELS = np.array([1, 0, 1, 1, 0, 0])


def test_roc_curve_by_hand():
    fpr, tpr = roc_curve(SCORES, LABELS)
    np.testing.assert_allclose(tpr, [0, 1 / 3, 1 / 3, 2 / 3, 1, 1, 1])
    np.testing.assert_allclose(fpr, [0, 0, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 1])


def test_ties_form_a_single_operating_point():
    fpr, tpr = roc_curve([0.5, 0.5, 0.1], [1, 0, 0])
    np.testing.assert_allclose(fpr, [0, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 1, 1])


def test_specificity_at_sensitivity_by_hand():
    assert specificity_at_sensitivity(SCORES, LABELS, 0.6) == pytest.approx(2 / 3)
    assert specificity_at_sensitivity(SCORES, LABELS, 1.0) == pytest.approx(2 / 3)
    assert specificity_at_sensitivity(SCORES, LABELS, 0.3) == pytest.approx(1.0)


def test_partial_auc_ratio_extremes_and_by_hand():
    assert partial_auc_ratio([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]) == pytest.approx(1.0)
    assert partial_auc_ratio([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == pytest.approx(0.0)
    # the ROC reaches sensitivity 1 at FPR 1/3 and rises from 2/3 to 1 at that FPR: spec is 2/3 on [0.8, 1]
    assert partial_auc_ratio(SCORES, LABELS, 0.8) == pytest.approx(2 / 3)
    rng = np.random.default_rng(0)
    chance = partial_auc_ratio(rng.random(40000), rng.random(40000) > 0.5, 0.8)
    assert chance == pytest.approx(0.1, abs=0.01)


def test_metric_accumulates_over_iterations():
    metric = SpecificityAtSensitivityMetric(sensitivities=(0.6, 1.0))
    metric(torch.tensor(SCORES[:3]), torch.tensor(LABELS[:3]))
    metric(torch.tensor(SCORES[3:]), torch.tensor(LABELS[3:]))
    result = metric.aggregate()
    assert result["spec@0.6"] == pytest.approx(2 / 3)
    assert result["pauc_ratio"] == pytest.approx(2 / 3)


def test_single_class_is_a_clear_error():
    with pytest.raises(ValueError, match="both classes"):
        roc_curve([0.1, 0.2], [1, 1])
