"""Batch-weighted binary cross-entropy (Kim, Jung, Lee: thoracic disease localization via disease masks)."""

from __future__ import annotations

import math  # noqa: F401  (docstring example)

import torch
import torch.nn.functional as F
from monai.utils import LossReduction
from torch.nn.modules.loss import _Loss


class BatchWeightedBCELoss(_Loss):
    """Binary cross-entropy whose positive and negative terms are re-weighted by their counts in the batch.

    Kim et al., Eq. 10:

        L_WCE = ω_P Σ_{y∈P} −ln M(x) + ω_N Σ_{y∈N} −ln(1 − M(x)),
        ω_P = (|P| + |N|) / |P|,  ω_N = (|P| + |N|) / |N|

    With ``weighting="class"`` (default) |P| and |N| are counted per class (column) of a multi-label
    target in the batch; a class with no positive (or no negative) sample in the batch has no such
    terms, so its weight is never used and no division by zero occurs. With ``weighting="image"``
    (Kim et al.'s reading: "whether a X-ray image contains diseases or not") |P| counts the images
    with any positive label and |N| the images with none, and every positive label term takes ω_P,
    every negative one ω_N; when a batch has no image without disease (|N| = 0) its negative terms
    still exist, and ω_N is taken at |N| = 1, i.e. (|P| + |N|), the value it has with one normal
    image (the ratio grows without bound as |N| shrinks; this caps it).

    Example::

        >>> loss = BatchWeightedBCELoss()
        >>> logits = torch.zeros(4, 2, requires_grad=True)
        >>> loss(logits, torch.tensor([[1., 0.], [0., 0.], [0., 1.], [0., 0.]])).backward()
        >>> image_level = BatchWeightedBCELoss(weighting="image", reduction="none")
        >>> image_level(torch.zeros(2, 2), torch.tensor([[1., 1.], [0., 0.]])).div(math.log(2)).tolist()
        [[2.0, 2.0], [2.0, 2.0]]

    Args:
        logits: ``True`` (default) when ``input`` holds logits, ``False`` when it holds probabilities.
        reduction: ``"mean"`` (default) divides the weighted sum of Eq. 10 by the number of elements,
            ``"sum"`` returns Eq. 10 summed over classes exactly, ``"none"`` returns the weighted
            per-element terms with the shape of ``input``.
        weighting: ``"class"`` (default: |P|, |N| per class) or ``"image"`` (|P|, |N| images with
            any / no positive label, the paper's).
    """

    def __init__(self, logits: bool = True, reduction: LossReduction | str = LossReduction.MEAN, weighting: str = "class") -> None:
        super().__init__(reduction=LossReduction(reduction).value)
        if weighting not in ("class", "image"):
            raise ValueError(f"BatchWeightedBCELoss: weighting must be 'class' or 'image', got {weighting!r}")
        self.logits = logits
        self.weighting = weighting

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """
        Args:
            input: ``(B,)`` or ``(B, C)`` logits (or probabilities with ``logits=False``).
            target: binary labels of the same shape.
        """
        if input.shape != target.shape:
            raise ValueError(f"input and target must have the same shape, got {tuple(input.shape)} and {tuple(target.shape)}")
        if input.ndim not in (1, 2):
            raise ValueError(f"expected (B,) or (B, C) inputs, got shape {tuple(input.shape)}")
        target = target.to(input.dtype)
        if self.logits:
            per_element = F.binary_cross_entropy_with_logits(input, target, reduction="none")
        else:
            per_element = F.binary_cross_entropy(input, target, reduction="none")
        batch_size = target.shape[0]
        if self.weighting == "image" and target.ndim == 2:
            num_positive = (target.amax(dim=1) > 0).sum().to(input.dtype)  # images with any disease
        else:
            num_positive = target.sum(dim=0)
        num_negative = batch_size - num_positive
        # Eq. 10 weights; clamp only guards classes whose positive/negative set is empty (no such terms).
        positive_weight = batch_size / num_positive.clamp(min=1)
        negative_weight = batch_size / num_negative.clamp(min=1)
        weights = target * positive_weight + (1 - target) * negative_weight
        weighted = weights * per_element
        if self.reduction == LossReduction.SUM.value:
            return weighted.sum()
        if self.reduction == LossReduction.MEAN.value:
            return weighted.mean()
        return weighted
