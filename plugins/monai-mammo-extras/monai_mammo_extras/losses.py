"""Asymmetric focal loss (Ridnik et al., "Asymmetric Loss for Multi-Label Classification", ICCV 2021)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.utils import LossReduction
from torch.nn.modules.loss import _Loss


class AsymmetricFocalLoss(_Loss):
    """Binary / multi-label focal loss with separate focusing for positives and negatives.

    Ridnik et al. 2021, Eq. 7: with p = sigmoid(logit) and the shifted negative probability
    p_m = max(p − m, 0),

        L+ = (1 − p)^γ+ · log(p),    L− = p_m^γ− · log(1 − p_m),    loss = −y L+ − (1 − y) L−

    Easy negatives (p < m) are discarded entirely and the rest are down-weighted, which suits lesion
    tasks where negatives vastly outnumber positives.

    Example::

        >>> loss = AsymmetricFocalLoss(gamma_positive=0.0, gamma_negative=4.0, margin=0.05)
        >>> # p = 0.5 everywhere: positives cost log 2, negatives 0.45^4 * -log(0.55); mean of 2 and 4
        >>> round(loss(torch.zeros(2, 3), torch.tensor([[1., 0., 0.], [0., 1., 0.]])).item(), 4)
        0.2474

    Args:
        gamma_positive: focusing exponent γ+ for positive targets (default 0: plain log-loss).
        gamma_negative: focusing exponent γ− for negative targets (default 4).
        margin: probability shift m for negatives (default 0.05; 0 disables it).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
    """

    def __init__(
        self,
        gamma_positive: float = 0.0,
        gamma_negative: float = 4.0,
        margin: float = 0.05,
        reduction: LossReduction | str = LossReduction.MEAN,
    ) -> None:
        super().__init__(reduction=LossReduction(reduction).value)
        if not 0.0 <= margin < 1.0:
            raise ValueError(f"margin must be in [0, 1), got {margin}")
        self.gamma_positive = gamma_positive
        self.gamma_negative = gamma_negative
        self.margin = margin

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """
        Args:
            input: logits of any shape.
            target: binary labels of the same shape.
        """
        if input.shape != target.shape:
            raise ValueError(f"input and target must have the same shape, got {tuple(input.shape)} and {tuple(target.shape)}")
        target = target.to(input.dtype)
        probability = torch.sigmoid(input)
        shifted = (probability - self.margin).clamp(min=0.0)
        # log-probabilities through logsigmoid for stability; the shifted one needs an explicit clamp
        log_positive = F.logsigmoid(input)
        log_negative = torch.log((1.0 - shifted).clamp(min=1e-8))
        positive_term = (1.0 - probability).pow(self.gamma_positive) * log_positive
        negative_term = shifted.pow(self.gamma_negative) * log_negative
        loss = -(target * positive_term + (1.0 - target) * negative_term)
        if self.reduction == LossReduction.SUM.value:
            return loss.sum()
        if self.reduction == LossReduction.MEAN.value:
            return loss.mean()
        return loss
