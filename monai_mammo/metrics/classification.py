"""Image-level classification figures of merit: AUC with a bootstrap confidence interval, ROC
operating points and partial AUC.

* :func:`roc_auc`, :func:`bootstrap_auc`: the AUC (MONAI's ``compute_roc_auc``) and its percentile
  bootstrap CI over cases, as the DAB-Net bundle reports its held-out figures;
* Bakalo et al. (Neurocomputing 2021) report AUROC, the partial-AUC ratio (pAUCR) over the
  high-sensitivity range [0.8, 1], and specificity at sensitivity 0.85 and 0.90; the functions and
  the metric below compute them from scores and binary labels;
* An et al. (LatentCADx, Front. Big Data 2021) report classification AP and F1
  (:func:`average_precision`, :func:`f1_score` and their metrics).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from monai.metrics import CumulativeIterationMetric, compute_roc_auc

__all__ = [
    "roc_auc",
    "bootstrap_auc",
    "roc_curve",
    "specificity_at_sensitivity",
    "partial_auc_ratio",
    "SpecificityAtSensitivityMetric",
    "average_precision",
    "f1_score",
    "AveragePrecisionMetric",
    "F1ScoreMetric",
]


def roc_auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve (MONAI's ``compute_roc_auc``); NaN, silently, with one class only
    (bootstrap resamples of a small subset hit that case often).

    Example::

        >>> roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
        0.75
    """
    labels_t = torch.as_tensor(np.asarray(labels).astype(np.int64))
    if labels_t.numel() == 0 or labels_t.min() == labels_t.max():
        return float("nan")
    return float(compute_roc_auc(torch.as_tensor(np.asarray(scores, dtype=np.float64)), labels_t))


def bootstrap_auc(
    scores: Sequence[float], labels: Sequence[int], n_bootstrap: int = 1000, seed: int = 0, level: float = 0.95
) -> dict[str, Any]:
    """AUC with a percentile bootstrap confidence interval: cases resampled with replacement
    ``n_bootstrap`` times (``numpy.random.default_rng(seed)``); resamples holding one class only
    have no AUC and are skipped (``n_bootstrap`` in the result counts the ones used).

    Returns ``{"auc", "n", "n_positive", "ci_low", "ci_high", "ci_level", "n_bootstrap"}``; with one
    class only (or ``n_bootstrap=0``) the AUC or the CI is NaN and ``n_bootstrap`` is 0.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(int)
    auc = roc_auc(scores, labels)
    result: dict[str, Any] = {"auc": auc, "n": int(len(labels)), "n_positive": int(labels.sum())}
    if math.isnan(auc) or n_bootstrap <= 0:
        result.update({"ci_low": float("nan"), "ci_high": float("nan"), "n_bootstrap": 0})
        return result
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(int(n_bootstrap)):
        index = rng.integers(0, len(labels), len(labels))
        value = roc_auc(scores[index], labels[index])
        if not math.isnan(value):
            values.append(value)
    tail = (1 - level) / 2 * 100
    result.update(
        {
            "ci_low": float(np.percentile(values, tail)),
            "ci_high": float(np.percentile(values, 100 - tail)),
            "ci_level": level,
            "n_bootstrap": len(values),
        }
    )
    return result


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every distinct score threshold, from (0, 0) to (1, 1).

    Raises:
        ValueError: when the labels hold no positive or no negative case (the ROC is undefined).
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    if scores.shape != labels.shape:
        raise ValueError(f"scores and labels differ in length: {scores.shape} vs {labels.shape}")
    num_positive, num_negative = labels.sum(), (~labels).sum()
    if num_positive == 0 or num_negative == 0:
        raise ValueError(f"ROC needs both classes, got {num_positive} positive and {num_negative} negative cases")
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    # one operating point per distinct threshold: the last index of each run of equal scores
    last_of_run = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    true_positives = np.cumsum(labels)[last_of_run]
    false_positives = (last_of_run + 1) - true_positives
    fpr = np.r_[0.0, false_positives / num_negative]
    tpr = np.r_[0.0, true_positives / num_positive]
    return fpr, tpr


def specificity_at_sensitivity(scores: np.ndarray, labels: np.ndarray, sensitivity: float) -> float:
    """The best specificity among operating points whose sensitivity is at least ``sensitivity``."""
    fpr, tpr = roc_curve(scores, labels)
    return float(1.0 - fpr[tpr >= sensitivity].min())


def partial_auc_ratio(scores: np.ndarray, labels: np.ndarray, min_sensitivity: float = 0.8) -> float:
    """Area under the ROC for sensitivities in ``[min_sensitivity, 1]``, divided by its maximum.

    The area is integrated along the sensitivity axis, ∫ specificity d(sensitivity), with the ROC
    interpolated linearly between operating points; its maximum is ``1 − min_sensitivity``, so a
    perfect classifier scores 1 and a chance one ``(1 − min_sensitivity) / 2``.
    """
    if not 0.0 <= min_sensitivity < 1.0:
        raise ValueError(f"min_sensitivity must be in [0, 1), got {min_sensitivity}")
    fpr, tpr = roc_curve(scores, labels)
    # Integrate 1 − FPR over each rising segment of the ROC polyline, clipped to t ≥ min_sensitivity;
    # horizontal segments (equal sensitivity) add no area.
    fpr_start, fpr_end, tpr_start, tpr_end = fpr[:-1], fpr[1:], tpr[:-1], tpr[1:]
    rising = (tpr_end > tpr_start) & (tpr_end > min_sensitivity)
    fpr_start, fpr_end, tpr_start, tpr_end = fpr_start[rising], fpr_end[rising], tpr_start[rising], tpr_end[rising]
    clipped_tpr_start = np.maximum(tpr_start, min_sensitivity)
    fraction = (clipped_tpr_start - tpr_start) / (tpr_end - tpr_start)
    clipped_fpr_start = fpr_start + fraction * (fpr_end - fpr_start)
    area = np.sum((tpr_end - clipped_tpr_start) * (1.0 - 0.5 * (clipped_fpr_start + fpr_end)))
    return float(area / (1.0 - min_sensitivity))


class SpecificityAtSensitivityMetric(CumulativeIterationMetric):
    """Specificity at fixed sensitivities, with the partial-AUC ratio (Bakalo et al., Neurocomputing 2021).

    Accumulates ``(score, label)`` pairs over iterations like MONAI's ``ROCAUCMetric`` and, on
    ``aggregate()``, returns ``{"spec@0.85": ..., "spec@0.9": ..., "pauc_ratio": ...}``.

    Example::

        >>> metric = SpecificityAtSensitivityMetric(sensitivities=(0.85, 0.9))
        >>> _ = metric(torch.tensor([0.9, 0.8, 0.3, 0.1]), torch.tensor([1, 1, 0, 0]))
        >>> metric.aggregate()["spec@0.9"]
        1.0

    Args:
        sensitivities: the sensitivities at which specificity is read off (default 0.85 and 0.90,
            the paper's operating points).
        min_sensitivity: lower bound of the partial-AUC range (default 0.8, as the paper).
    """

    def __init__(self, sensitivities: Sequence[float] = (0.85, 0.9), min_sensitivity: float = 0.8) -> None:
        super().__init__()
        self.sensitivities = tuple(float(s) for s in sensitivities)
        self.min_sensitivity = min_sensitivity

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        if y_pred.numel() != y.numel():
            raise ValueError(f"y_pred and y must hold one score per case, got shapes {tuple(y_pred.shape)} and {tuple(y.shape)}")
        return y_pred.reshape(-1, 1).float(), y.reshape(-1, 1).float()

    def aggregate(self) -> dict[str, Any]:  # type: ignore[override]
        scores, labels = self.get_buffer()
        scores_np = scores.detach().cpu().numpy().ravel()
        labels_np = labels.detach().cpu().numpy().ravel()
        result = {f"spec@{s:g}": specificity_at_sensitivity(scores_np, labels_np, s) for s in self.sensitivities}
        result["pauc_ratio"] = partial_auc_ratio(scores_np, labels_np, self.min_sensitivity)
        return result


def average_precision(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Classification AP: ``Σ_k (R_k − R_{k−1}) P_k`` over the distinct score thresholds (the
    non-interpolated step area, as scikit-learn's ``average_precision_score``). NaN without positives.

    >>> average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0])   # 1/2 * 1 + 1/2 * 2/3
    0.8333333333333333
    """
    s, y = np.asarray(scores, np.float64).reshape(-1), np.asarray(labels).reshape(-1).astype(bool)
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last index of each distinct threshold
    tp = np.cumsum(y)[last]
    precision = tp / (last + 1)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def f1_score(scores: Sequence[float], labels: Sequence[int], threshold: float = 0.5) -> float:
    """F1 of the predictions ``score >= threshold``; 0 when there is no true positive.

    >>> f1_score([0.9, 0.8, 0.2, 0.6], [1, 0, 1, 0])   # tp 1, fp 2, fn 1
    0.4
    """
    s, y = np.asarray(scores, np.float64).reshape(-1), np.asarray(labels).reshape(-1).astype(bool)
    pred = s >= threshold
    tp, fp, fn = int((pred & y).sum()), int((pred & ~y).sum()), int((~pred & y).sum())
    return 0.0 if tp == 0 else float(2 * tp / (2 * tp + fp + fn))


class _ScoreLabelMetric(CumulativeIterationMetric):
    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        return torch.stack([torch.as_tensor(y_pred).reshape(-1).double(), torch.as_tensor(y).reshape(-1).double()], 1)

    def _scores_labels(self) -> tuple[np.ndarray, np.ndarray]:
        data = torch.as_tensor(self.get_buffer()).reshape(-1, 2).cpu().numpy()
        return data[:, 0], data[:, 1].astype(int)


class AveragePrecisionMetric(_ScoreLabelMetric):
    """Classification AP (:func:`average_precision`); ``y_pred`` scores, ``y`` 0/1 labels."""

    def aggregate(self) -> float:  # type: ignore[override]
        return average_precision(*self._scores_labels())


class F1ScoreMetric(_ScoreLabelMetric):
    """F1 at a probability threshold (:func:`f1_score`); ``y_pred`` probabilities, ``y`` 0/1 labels."""

    def __init__(self, threshold: float = 0.5) -> None:
        super().__init__()
        self.threshold = float(threshold)

    def aggregate(self) -> float:  # type: ignore[override]
        scores, labels = self._scores_labels()
        return f1_score(scores, labels, self.threshold)
