from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from monai_mammo.metrics.classification import (
    SpecificityAtSensitivityMetric,
    bootstrap_auc,
    partial_auc_ratio,
    roc_auc,
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


def _pairwise_auc(scores, labels):
    """Mann-Whitney AUC by counting pairs (ties 1/2): an independent check of roc_auc."""
    pos = [s for s, y in zip(scores, labels) if y == 1]
    neg = [s for s, y in zip(scores, labels) if y == 0]
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))


def test_bootstrap_auc_hand_made_scores():
    scores = [0.1, 0.4, 0.35, 0.8, 0.7, 0.2]
    labels = [0, 0, 1, 1, 1, 0]  # positives 0.35, 0.8, 0.7 beat 2, 3, 3 of the 3 negatives: 8/9
    result = bootstrap_auc(scores, labels, n_bootstrap=300, seed=7)
    assert result["auc"] == pytest.approx(8 / 9)
    assert (result["n"], result["n_positive"], result["ci_level"]) == (6, 3, 0.95)
    assert 0.0 <= result["ci_low"] <= result["auc"] <= result["ci_high"] <= 1.0
    # the same resamples drawn independently: one-class ones are skipped, the others give the CI
    rng = np.random.default_rng(7)
    values, skipped = [], 0
    for _ in range(300):
        index = rng.integers(0, 6, 6)
        drawn = np.asarray(labels)[index]
        if drawn.min() == drawn.max():
            skipped += 1
            continue
        values.append(_pairwise_auc(np.asarray(scores)[index], drawn))
    assert skipped > 0 and result["n_bootstrap"] == 300 - skipped
    assert result["ci_low"] == pytest.approx(np.percentile(values, 2.5))
    assert result["ci_high"] == pytest.approx(np.percentile(values, 97.5))
    narrow = bootstrap_auc(scores, labels, n_bootstrap=300, seed=7, level=0.5)
    assert result["ci_low"] <= narrow["ci_low"] <= narrow["ci_high"] <= result["ci_high"]


def test_bootstrap_auc_separable_ties_and_one_class():
    separable = bootstrap_auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1], n_bootstrap=50)
    assert (separable["auc"], separable["ci_low"], separable["ci_high"]) == (1.0, 1.0, 1.0)
    assert roc_auc([0.5, 0.5], [0, 1]) == pytest.approx(0.5)
    one_class = bootstrap_auc([0.1, 0.7, 0.3], [1, 1, 1], n_bootstrap=50)
    assert math.isnan(one_class["auc"]) and math.isnan(one_class["ci_low"]) and one_class["n_bootstrap"] == 0
    assert bootstrap_auc([], [], n_bootstrap=50)["n"] == 0
