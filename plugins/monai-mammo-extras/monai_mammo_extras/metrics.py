"""Expected calibration error (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017)."""

from __future__ import annotations

import torch
from monai.metrics import CumulativeIterationMetric


class ExpectedCalibrationErrorMetric(CumulativeIterationMetric):
    """Expected calibration error of binary probabilities.

        ECE = Σ_b (|B_b| / n) · |mean label in B_b − mean probability in B_b|

    over ``num_bins`` equal-width probability bins. A hospital deploying a malignancy score needs
    the score to mean what it says; AUC alone does not show that.

    Example::

        >>> metric = ExpectedCalibrationErrorMetric(num_bins=10)
        >>> _ = metric(torch.tensor([0.9, 0.1]), torch.tensor([1, 0]))  # each bin is off by 0.1
        >>> round(metric.aggregate(), 3)
        0.1

    Args:
        num_bins: number of equal-width bins over [0, 1] (default 15, as Guo et al.).
    """

    def __init__(self, num_bins: int = 15) -> None:
        super().__init__()
        if num_bins < 1:
            raise ValueError(f"num_bins must be positive, got {num_bins}")
        self.num_bins = num_bins

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        if y_pred.numel() != y.numel():
            raise ValueError(f"y_pred and y must hold one probability per case, got {tuple(y_pred.shape)} and {tuple(y.shape)}")
        if ((y_pred < 0) | (y_pred > 1)).any():
            raise ValueError("y_pred must hold probabilities in [0, 1]; apply a sigmoid to logits first")
        return y_pred.reshape(-1, 1).float(), y.reshape(-1, 1).float()

    def aggregate(self) -> float:  # type: ignore[override]
        probabilities, labels = (t.reshape(-1) for t in self.get_buffer())
        bins = torch.clamp((probabilities * self.num_bins).long(), max=self.num_bins - 1)
        count = torch.bincount(bins, minlength=self.num_bins).float()
        probability_sum = torch.bincount(bins, weights=probabilities, minlength=self.num_bins)
        label_sum = torch.bincount(bins, weights=labels, minlength=self.num_bins)
        occupied = count > 0
        gap = (label_sum[occupied] - probability_sum[occupied]).abs()  # = count · |mean label − mean prob|
        return float(gap.sum() / count.sum())
