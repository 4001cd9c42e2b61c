"""ASN ablation baselines with the t-test loss's call contract (Zhang et al., CVPR 2019).

Both are registry family ``"pixel_masks"`` like :class:`monai_mammo.losses.ttest.TTestLoss`:
``loss(prediction, {"image", "positive_mask", "valid_mask"})``, so a bundle swaps them by registry
name (``ttest`` | ``mse_reconstruction`` | ``segmentation_ce``) without touching the training step.
Each says what its network outputs in the class attribute ``candidate_map`` (the kind of
:func:`monai_mammo.regions.candidate_map` that inference applies):

======================  =============================  ==============================
loss                    network output                 candidate map
======================  =============================  ==============================
``ttest``               reconstruction f(Θ; I)         residual ``|f − I|`` (Eq. 1)
``mse_reconstruction``  reconstruction f(Θ; I)         residual ``|f − I|`` (Eq. 1)
``segmentation_ce``     µC logit                       probability ``sigmoid(logit)``
======================  =============================  ==============================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from monai.utils import LossReduction
from torch.nn.modules.loss import _Loss

from monai_mammo.losses.ttest import _reduce_dims, pixel_masks, unpack_pixel_masks

__all__ = ["ReconstructionMSELoss", "PixelSegmentationCELoss"]


def _masked_mean(values: torch.Tensor, mask: torch.Tensor, reduction: str) -> torch.Tensor:
    mask = mask.expand_as(values)
    dims = _reduce_dims(reduction, values.ndim)
    total = (values * mask).sum(dim=dims)
    if reduction == LossReduction.SUM.value:
        return total
    return total / mask.sum(dim=dims).clamp(min=1)  # an empty valid mask gives 0, not NaN


class ReconstructionMSELoss(_Loss):
    """Plain MSE reconstruction, the ablation baseline of the t-test loss.

    Zhang et al., CVPR 2019, Sec. 4.5: "a plain reconstruction model with loss function that
    minimize the mean squared error between original image and reconstructed image"; the paper
    finds it collapses to a blur and misses most µCs. Labels are ignored (``positive_mask`` is
    shape-checked when given); ``valid_mask`` (e.g. the breast), when given, restricts the pixels
    averaged. Candidate map at inference: the residual ``|f − I|`` (:attr:`candidate_map`).

    Args:
        reduction: "mean" (default): mean squared error over the valid pixels of the batch;
            "sum": their sum; "none": the mean per image, shape (B,).

    Example::

        >>> import torch
        >>> loss = ReconstructionMSELoss()
        >>> loss(torch.zeros(1, 1, 2, 2), {"image": torch.full((1, 1, 2, 2), 0.5)}).item()
        0.25
    """

    #: the network trained with this loss outputs a reconstruction: candidates from its residual
    candidate_map = "residual"

    def __init__(self, reduction: LossReduction | str = LossReduction.MEAN) -> None:
        super().__init__(reduction=LossReduction(reduction).value)

    def forward(self, reconstruction: torch.Tensor, target: Mapping[str, Any]) -> torch.Tensor:
        """
        Args:
            reconstruction: f(Θ; I), (B, C, H, W).
            target: ``image`` (I, same shape; required), ``positive_mask`` (ignored, shape-checked
                when given), ``valid_mask`` (optional (B, 1 or C, H, W) pixels to average over;
                default all).
        """
        image, positive_mask, valid_mask = unpack_pixel_masks("ReconstructionMSELoss", target)
        if image is None:
            raise ValueError("ReconstructionMSELoss: target['image'] is required")
        _, valid = pixel_masks("ReconstructionMSELoss", reconstruction, image, positive_mask, valid_mask)
        return _masked_mean((reconstruction - image) ** 2, valid, self.reduction)


class PixelSegmentationCELoss(_Loss):
    """The same U-Net trained as a µC segmenter with pixel cross-entropy (the "U-Net" baseline).

    Zhang et al., CVPR 2019, Sec. 4.3: "a segmentation task using the same network structure with
    ASN supervised by cross-entropy loss", with 1:1 positive:negative patches. The ``image``
    target is ignored. With a 1-channel output it is binary cross-entropy on logits against
    ``positive_mask``; with a 2-channel output, softmax cross-entropy with class 1 = µC.
    ``valid_mask`` restricts the pixels averaged. Candidate map at inference: ``sigmoid(logit)``
    (:attr:`candidate_map` = "probability"; for a 2-channel output take ``softmax(·)[:, 1]`` or
    train with 1 channel, the default).

    Args:
        pos_weight: optional weight of positive pixels in the BCE (not in the paper, which
            balances by 1:1 patch sampling). Default None (= 1).
        reduction: "mean" (default): mean over the valid pixels of the batch; "sum": their sum;
            "none": the mean per image, shape (B,).

    Example::

        >>> import torch
        >>> loss = PixelSegmentationCELoss()
        >>> round(loss(torch.zeros(1, 1, 2, 2), {"positive_mask": torch.ones(1, 1, 2, 2)}).item(), 4)  # ln 2
        0.6931
    """

    #: the network trained with this loss outputs a µC logit: candidates from its probability
    candidate_map = "probability"

    def __init__(self, pos_weight: float | None = None, reduction: LossReduction | str = LossReduction.MEAN) -> None:
        super().__init__(reduction=LossReduction(reduction).value)
        if pos_weight is not None and pos_weight <= 0:
            raise ValueError(f"PixelSegmentationCELoss: pos_weight must be > 0, got {pos_weight}")
        self.pos_weight = pos_weight

    def forward(self, logits: torch.Tensor, target: Mapping[str, Any]) -> torch.Tensor:
        """
        Args:
            logits: network output, (B, 1, H, W) (BCE) or (B, 2, H, W) (softmax CE).
            target: ``positive_mask`` (µC pixels, (B, 1, H, W), > 0.5 = positive; required),
                ``valid_mask`` (optional (B, 1, H, W) pixels to average over; default all);
                ``image`` is ignored.
        """
        _, positive_mask, valid_mask = unpack_pixel_masks("PixelSegmentationCELoss", target)
        if positive_mask is None:
            raise ValueError("PixelSegmentationCELoss: positive_mask is required")
        if logits.ndim < 3 or logits.shape[1] not in (1, 2):
            raise ValueError(
                f"PixelSegmentationCELoss: expected logits (B, 1 or 2, *spatial), got shape {tuple(logits.shape)}"
            )
        if logits.shape[1] == 2 and isinstance(positive_mask, torch.Tensor) and positive_mask.shape[1:2] != (1,):
            raise ValueError(
                f"PixelSegmentationCELoss: with 2-channel logits positive_mask must be (B, 1, *spatial), "
                f"got {tuple(positive_mask.shape)}"
            )
        positive, valid = pixel_masks("PixelSegmentationCELoss", logits, None, positive_mask, None)
        _, valid = pixel_masks("PixelSegmentationCELoss", logits, None, None, valid_mask)
        if logits.shape[1] == 1:
            pos_weight = None
            if self.pos_weight is not None:
                pos_weight = torch.tensor(self.pos_weight, dtype=logits.dtype, device=logits.device)
            per_pixel = F.binary_cross_entropy_with_logits(logits, positive, reduction="none", pos_weight=pos_weight)
        else:
            target = positive[:, 0].long()
            per_pixel = F.cross_entropy(logits, target, reduction="none").unsqueeze(1)
            if self.pos_weight is not None:
                per_pixel = per_pixel * (1 + (self.pos_weight - 1) * positive)
        return _masked_mean(per_pixel, valid, self.reduction)
