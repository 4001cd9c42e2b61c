"""Alignment loss L = L_e + L_p (Kim, Jung, Lee: thoracic disease localization via disease masks, Eq. 7-9)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from monai.utils import LossReduction
from torch import nn
from torch.nn.modules.loss import _Loss

from monai_mammo.alignment import smooth

__all__ = ["AlignmentLoss"]


class AlignmentLoss(_Loss):
    """Distance between the smoothed aligned image φ(T·I) and the anchor A, pixel-wise plus perceptual.

    Kim et al. Eq. 8: ``L_e = Σ_{i,j} ‖A^{ij} − φ(I)^{ij}‖₂``, a sum over pixels of the norm over
    channels; Eq. 9: ``L_p = Σ_s ‖F_s(A) − F_s(φ(I))‖₂ / (C_s H_s W_s)`` over the stages s of a
    frozen feature network F (the paper: conv2_x .. conv5_x of a ResNet-50 trained on the same
    data); Eq. 7: ``L = L_e + L_p``. φ = B(G(·)) (:func:`monai_mammo.alignment.smooth`).

    L_e normalisation (ours): summed over 512² pixels L_e is ~10⁵ times L_p, so by default
    ``edge_normalization="mean"`` divides the sum by the number of pixels (the mean per-pixel
    norm); ``"sum"`` is the paper's literal Eq. 8.

    The call contract is the "tensor" loss family: ``loss(prediction, target)`` with the aligned
    image ``T·I`` as the prediction and the anchor (broadcast to the batch) as the target, both
    ``(B, C, H, W)``.

    Example:
        >>> loss = AlignmentLoss(pool=2)
        >>> anchor = torch.zeros(1, 1, 4, 4)
        >>> float(loss(torch.ones(1, 1, 4, 4), anchor))   # mean per-pixel norm 1, no feature network
        1.0
        >>> float(AlignmentLoss(pool=2, edge_normalization="sum")(torch.ones(1, 1, 4, 4), anchor))
        16.0

    Args:
        feature_network: ``x -> [F_1(x), ..., F_S(x)]`` (e.g. the baseline classifier's
            ``stage_features``), a module, or a callable without arguments returning one (loaded
            when the loss is first called); frozen and in eval mode. None: L_e only. Default None.
        pool: φ's pooling size (paper: 16 at 512 px). Default 16.
        smooth_target: also smooth the anchor (the paper compares A itself, already a blurry
            mean). Default False.
        edge_weight: weight of L_e. Default 1 (paper).
        perceptual_weight: weight of L_p. Default 1 (paper).
        edge_normalization: "mean" (default) or "sum" (the paper's literal Eq. 8).
        reduction: over the batch, "mean" (default), "sum" or "none" (per sample).
    """

    def __init__(
        self,
        feature_network: nn.Module | Callable[[], nn.Module] | None = None,
        pool: int = 16,
        smooth_target: bool = False,
        edge_weight: float = 1.0,
        perceptual_weight: float = 1.0,
        edge_normalization: str = "mean",
        reduction: LossReduction | str = LossReduction.MEAN,
    ) -> None:
        super().__init__(reduction=LossReduction(reduction).value)
        if edge_normalization not in ("mean", "sum"):
            raise ValueError(f"AlignmentLoss: edge_normalization must be 'mean' or 'sum', got {edge_normalization!r}")
        self._feature_source = feature_network
        self._features: nn.Module | None = None
        self.pool = int(pool)
        self.smooth_target = bool(smooth_target)
        self.edge_weight, self.perceptual_weight = float(edge_weight), float(perceptual_weight)
        self.edge_normalization = edge_normalization
        self.last_terms: dict[str, float] = {}

    def _feature_network(self) -> nn.Module | None:
        if self._feature_source is None or self.perceptual_weight == 0:
            return None
        if self._features is None:
            source = self._feature_source
            network = source if isinstance(source, nn.Module) else source()
            network.eval().requires_grad_(False)
            self._features = network
        return self._features

    def terms(self, input: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-sample ``{"edge": L_e, "perceptual": L_p}`` (``(B,)`` each)."""
        if input.ndim != 4 or target.shape != input.shape:
            raise ValueError(f"AlignmentLoss: expected prediction and target of one (B, C, H, W) shape, got {tuple(input.shape)} and {tuple(target.shape)}")
        smoothed = smooth(input, self.pool)
        anchor = smooth(target, self.pool) if self.smooth_target else target
        per_pixel = torch.linalg.vector_norm(anchor - smoothed, dim=1)  # Eq. 8: ‖A^{ij} − φ(I)^{ij}‖₂
        edge = per_pixel.flatten(1).mean(1) if self.edge_normalization == "mean" else per_pixel.flatten(1).sum(1)
        perceptual = torch.zeros_like(edge)
        network = self._feature_network()
        if network is not None:
            network.to(input.device)
            with torch.no_grad():
                anchor_features = network(anchor)
            for a, f in zip(anchor_features, network(smoothed)):
                # Eq. 9: ‖F_s(A) − F_s(φ(I))‖₂ / (C_s H_s W_s)
                perceptual = perceptual + torch.linalg.vector_norm((a - f).flatten(1), dim=1) / a[0].numel()
        return {"edge": edge, "perceptual": perceptual}

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        terms = self.terms(input, target)
        loss = self.edge_weight * terms["edge"] + self.perceptual_weight * terms["perceptual"]  # Eq. 7
        self.last_terms = {k: float(v.detach().mean()) for k, v in terms.items()}
        if self.reduction == LossReduction.SUM.value:
            return loss.sum()
        if self.reduction == LossReduction.MEAN.value:
            return loss.mean()
        return loss

