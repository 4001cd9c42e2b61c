"""Image-level classification figures of merit beyond AUC: ROC operating points and partial AUC.

Bakalo et al. (Neurocomputing 2021) report AUROC, the partial-AUC ratio (pAUCR) over the
high-sensitivity range [0.8, 1], and specificity at sensitivity 0.85 and 0.90; these functions and
the metric below compute them from scores and binary labels.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from monai.metrics import CumulativeIterationMetric


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
        >>> metric(torch.tensor([0.9, 0.8, 0.3, 0.1]), torch.tensor([1, 1, 0, 0]))
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
