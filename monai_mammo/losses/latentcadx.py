"""LatentCADx losses (An et al., Front. Big Data 2021, Sec. 4.1 and 4.3): the joint
classification + in/out-of-bounds segmentation objective, and the RPN-style pretraining loss.

The paper's equations did not survive in its text (the displayed equations are missing); what is
stated and what is reconstructed (``shared/METHODS.md`` §5):

* stated: "L_oob is an MSE loss over M̄" (the inverted hand-drawn mask), normalised by
  ``N_oob = sum_i (1 - M̂_i)``; ``N_inb = sum_i M̂_i``; the full objective weighs CE, L_inb and
  L_oob with α, β, γ and "β < γ < α"; the values "α = 2, β = 1 and γ = 0.5" (which contradict that
  order); β and γ are the "inb and oob weights"; the first 15 epochs use β = γ = 1 and no CE;
* reconstructed: L_inb's form, a weak squared pull of the prediction towards the mask inside it:

      L_oob = (1 / N_oob) Σ_i (1 − M̂_i) · M_i²         (An et al. Sec. 4.3, stated)
      L_inb = (1 / N_inb) Σ_i M̂_i · (M_i − M̂_i)²        (METHODS.md §5, reconstruction)
      L     = α · CE(y, ŷ) + β · L_inb + γ · L_oob          (Sec. 4.3, full objective)

  with the weights of METHODS.md by default (α 2, β 0.5, γ 1: the stated order β < γ < α) and the
  paper's literal numbers (2, 1, 0.5) as an ablation. L_inb is skipped for a sample whose mask is
  empty (a negative: all its pixels are out of bounds), L_oob for a sample whose mask is all ones.
  CE is the two-class cross-entropy, written as a binary cross-entropy on one logit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from monai.utils import LossReduction
from torch.nn.modules.loss import _Loss

from monai_mammo.multitask import WeightedLossTerms

__all__ = ["LatentCADxLoss", "RegionProposalPretrainLoss", "in_bounds_loss", "out_of_bounds_loss", "rpn_cell_targets"]


def _check_masks(mask: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
    if mask.shape != coarse.shape:
        raise ValueError(f"predicted mask {tuple(mask.shape)} and coarse mask {tuple(coarse.shape)} must have the same shape")
    return coarse.to(mask.dtype)


def out_of_bounds_loss(mask: torch.Tensor, coarse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample ``L_oob = Σ (1 − M̂) M² / N_oob`` (An et al. Sec. 4.3) and ``N_oob``.

    >>> m = torch.full((1, 1, 2, 2), 0.5); c = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    >>> [v.tolist() for v in out_of_bounds_loss(m, c)]   # three outside pixels of 0.25 each
    [[0.25], [3.0]]
    """
    coarse = _check_masks(mask, coarse)
    outside = (1 - coarse).flatten(1)
    n_oob = outside.sum(1)
    return (outside * mask.flatten(1) ** 2).sum(1) / n_oob.clamp(min=1), n_oob


def in_bounds_loss(mask: torch.Tensor, coarse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample ``L_inb = Σ M̂ (M − M̂)² / N_inb`` (METHODS.md §5 reconstruction) and ``N_inb``.

    >>> m = torch.full((1, 1, 2, 2), 0.5); c = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    >>> [v.tolist() for v in in_bounds_loss(m, c)]
    [[0.25], [1.0]]
    """
    coarse = _check_masks(mask, coarse)
    inside = coarse.flatten(1)
    n_inb = inside.sum(1)
    return (inside * (mask.flatten(1) - inside) ** 2).sum(1) / n_inb.clamp(min=1), n_inb


class LatentCADxLoss(_Loss):
    """``L = α·CE(y, ŷ) + β·L_inb + γ·L_oob`` (An et al., Front. Big Data 2021, Sec. 4.3).

    Each term is averaged over the samples it applies to (:class:`monai_mammo.multitask.WeightedLossTerms`):
    CE over all, L_inb over samples with a non-empty coarse mask, L_oob over samples whose mask is
    not all ones; a batch without any such sample contributes an exact 0 for that term.

    Example::

        >>> loss = LatentCADxLoss()   # α 2, β 0.5, γ 1
        >>> pred = {"logit": torch.zeros(2, 1), "mask": torch.full((2, 1, 2, 2), 0.5)}
        >>> coarse = torch.zeros(2, 1, 2, 2); coarse[0, 0, 0, 0] = 1   # sample 1 is a negative
        >>> target = {"label": torch.tensor([1.0, 0.0]), "coarse_mask": coarse}
        >>> round(float(loss(pred, target)), 4)    # 2 ln 2 + 0.5 * 0.25 + 1 * 0.25
        1.7613

    Args:
        cls_weight: α. Default 2.0.
        inb_weight: β. Default 0.5 (paper's literal value: 1.0).
        oob_weight: γ. Default 1.0 (paper's literal value: 0.5).
        mask_key / logit_key: prediction keys. Defaults ``"mask"`` (sigmoid probabilities) and ``"logit"``.
        label_key / coarse_key: target keys. Defaults ``"label"`` and ``"coarse_mask"``.
        reduction: ``"mean"`` (default) or ``"none"`` (per-sample weighted sums).
    """

    def __init__(
        self,
        cls_weight: float = 2.0,
        inb_weight: float = 0.5,
        oob_weight: float = 1.0,
        mask_key: str = "mask",
        logit_key: str = "logit",
        label_key: str = "label",
        coarse_key: str = "coarse_mask",
        reduction: LossReduction | str = LossReduction.MEAN,
    ) -> None:
        super().__init__(reduction=LossReduction(reduction).value)
        self.mask_key, self.logit_key, self.label_key, self.coarse_key = mask_key, logit_key, label_key, coarse_key
        self.combined = WeightedLossTerms(
            {"cls": self._cls, "inb": self._inb, "oob": self._oob},
            weights={"cls": cls_weight, "inb": inb_weight, "oob": oob_weight},
            flags={"inb": "_has_inb", "oob": "_has_oob"},
            reduction=self.reduction,
        )

    def _cls(self, prediction: Mapping[str, Any], target: Mapping[str, Any]) -> torch.Tensor:
        logit = prediction[self.logit_key].reshape(-1)
        label = torch.as_tensor(target[self.label_key], device=logit.device).reshape(-1).to(logit.dtype)
        if label.shape != logit.shape:
            raise ValueError(f"LatentCADxLoss: {label.numel()} labels for {logit.numel()} logits")
        return F.binary_cross_entropy_with_logits(logit, label, reduction="none")

    def _inb(self, prediction: Mapping[str, Any], target: Mapping[str, Any]) -> torch.Tensor:
        return in_bounds_loss(prediction[self.mask_key], target[self.coarse_key])[0]

    def _oob(self, prediction: Mapping[str, Any], target: Mapping[str, Any]) -> torch.Tensor:
        return out_of_bounds_loss(prediction[self.mask_key], target[self.coarse_key])[0]

    def _with_flags(self, prediction: Mapping[str, Any], target: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(prediction, Mapping) or not isinstance(target, Mapping):
            raise TypeError("LatentCADxLoss: prediction and target must be dicts (loss family 'multitask')")
        mask = prediction[self.mask_key]
        coarse = torch.as_tensor(target[self.coarse_key], device=mask.device)
        if coarse.ndim == mask.ndim - 1:
            coarse = coarse[:, None]
        coarse = (coarse > 0.5).to(mask.dtype)
        total = coarse.flatten(1).sum(1)
        n = coarse[0].numel()
        return {**target, self.coarse_key: coarse, "_has_inb": total > 0, "_has_oob": total < n}

    def terms(self, prediction: Mapping[str, Any], target: Mapping[str, Any]) -> dict[str, float]:
        """The weighted value of each term (averaged as in the loss), for logging."""
        parts = self.combined.terms_of(prediction, self._with_flags(prediction, target))
        return {n: float(parts[n].sum() / parts[f"{n}/count"].clamp(min=1)) for n in parts if not n.endswith("/count")}

    def forward(self, prediction: Mapping[str, Any], target: Mapping[str, Any]) -> torch.Tensor:
        return self.combined(prediction, self._with_flags(prediction, target))


def rpn_cell_targets(coarse: torch.Tensor, grid: tuple[int, int], cover_threshold: float = 0.25) -> torch.Tensor:
    """The RPN's per-cell class (An et al. Sec. 4.1: an 8 x 8 x 2 output): 1 where the hand-drawn
    mask covers at least ``cover_threshold`` of the cell (the threshold is ours; the paper gives none).

    >>> c = torch.zeros(1, 1, 4, 4); c[..., :2, :1] = 1
    >>> rpn_cell_targets(c, (2, 2)).tolist()     # half of the top-left cell is covered
    [[[1, 0], [0, 0]]]
    """
    fraction = F.adaptive_avg_pool2d((coarse > 0.5).float(), grid)[:, 0]
    return (fraction >= cover_threshold - 1e-9).long()


class RegionProposalPretrainLoss(_Loss):
    """Pretraining of the encoder as an RPN-style joint predictor (An et al. Sec. 4.1): per-cell
    two-class cross-entropy of the RPN head against :func:`rpn_cell_targets` plus the patch
    classification cross-entropy ("the RPN was therefore capable of classifying the tissue images in
    addition to predicting the coarse location of lesions").

    Example::

        >>> loss = RegionProposalPretrainLoss()
        >>> pred = {"rpn": torch.zeros(1, 2, 2, 2), "logit": torch.zeros(1, 1)}
        >>> target = {"label": torch.tensor([1.0]), "coarse_mask": torch.ones(1, 1, 64, 64)}
        >>> round(float(loss(pred, target)), 4)   # ln 2 + ln 2
        1.3863

    Args:
        rpn_weight: weight of the per-cell term. Default 1.
        cls_weight: weight of the patch classification term. Default 1.
        cover_threshold: see :func:`rpn_cell_targets`. Default 0.25.
    """

    def __init__(self, rpn_weight: float = 1.0, cls_weight: float = 1.0, cover_threshold: float = 0.25,
                 label_key: str = "label", coarse_key: str = "coarse_mask") -> None:  # fmt: skip
        super().__init__()
        self.rpn_weight, self.cls_weight, self.cover_threshold = float(rpn_weight), float(cls_weight), float(cover_threshold)
        self.label_key, self.coarse_key = label_key, coarse_key

    def forward(self, prediction: Mapping[str, Any], target: Mapping[str, Any]) -> torch.Tensor:
        rpn, logit = prediction["rpn"], prediction["logit"].reshape(-1)
        coarse = torch.as_tensor(target[self.coarse_key], device=rpn.device)
        coarse = coarse[:, None] if coarse.ndim == 3 else coarse
        cells = rpn_cell_targets(coarse, tuple(rpn.shape[-2:]), self.cover_threshold)
        label = torch.as_tensor(target[self.label_key], device=logit.device).reshape(-1).to(logit.dtype)
        return self.rpn_weight * F.cross_entropy(rpn, cells) + self.cls_weight * F.binary_cross_entropy_with_logits(logit, label)
