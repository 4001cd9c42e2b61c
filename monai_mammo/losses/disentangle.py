"""DAB-Net's disentanglement loss: L1 reconstruction of the clear mass and of the glands on composite
samples, plus binary cross-entropy on every sample.

Paper: Wang et al., "Disentangling Disease-related Representation from Obscure for Disease
Prediction" (DAB-Net), ICML 2022, Sec. 3.3, Eqs. (2)-(4).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from monai.utils import LossReduction
from torch.nn.modules.loss import _Loss

__all__ = ["DisentangleLoss"]


class DisentangleLoss(_Loss):
    """DAB-Net loss (Wang et al., ICML 2022, Eq. 4)::

        L = mass_weight * ||x_m - x̂_m||_1 + glands_weight * ||x_g - x̂_g||_1 + cls_weight * BCE(logit, y)

    - Eqs. (2), (3): the reconstruction terms count only for composite samples (``is_composite``);
      real images have no disentangled targets. Each L1 term is the mean absolute error over a
      sample's pixels (the L1 norm divided by the pixel count, so the weights do not depend on the
      image size), averaged over the composite samples of the batch. A batch with no composite
      contributes exactly 0 through these terms (but stays in the graph).
    - The classification term (BCE on the logit) counts for every sample, composite and real.
    - Ablations: pass ``rec_mass=None`` or ``rec_glands=None`` (no mass / no glands decoder) and the
      matching term is skipped; set a weight to 0 to switch a term off.

    Args:
        mass_weight: weight of the mass reconstruction term, Eq. (2); default 1 (paper).
        glands_weight: weight of the glands reconstruction term, Eq. (3); default 1 (paper).
        cls_weight: weight of the classification term; default 1 (paper).
        pos_weight: optional BCE weight of positive (malignant) samples; default ``None`` (paper: none).
        reduction: ``"mean"`` (default; BCE averaged over all samples, each reconstruction term over
            the composite samples), ``"sum"`` (every term summed over samples) or ``"none"``
            (per-sample total loss, shape ``(B,)``; reconstruction terms are 0 for real samples).

    Example::

        >>> import torch
        >>> loss = DisentangleLoss()
        >>> logit, label = torch.zeros(2, 1), torch.tensor([0.0, 1.0])
        >>> x = torch.zeros(2, 1, 8, 8)
        >>> value = loss(logit, label, rec_mass=x, rec_glands=x, mass=x, glands=x,
        ...              is_composite=torch.tensor([True, False]))
        >>> round(float(value), 4)  # BCE(0 logit) = log 2
        0.6931
    """

    def __init__(
        self,
        mass_weight: float = 1.0,
        glands_weight: float = 1.0,
        cls_weight: float = 1.0,
        pos_weight: float | None = None,
        reduction: LossReduction | str = LossReduction.MEAN,
    ) -> None:
        super().__init__(reduction=LossReduction(reduction).value)
        for name, value in (("mass_weight", mass_weight), ("glands_weight", glands_weight), ("cls_weight", cls_weight)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        self.mass_weight = float(mass_weight)
        self.glands_weight = float(glands_weight)
        self.cls_weight = float(cls_weight)
        self.pos_weight = pos_weight

    def _reconstruction(
        self, name: str, prediction: torch.Tensor | None, target: torch.Tensor | None, batch: int, weight: float
    ) -> torch.Tensor | None:
        """Per-sample mean absolute error, shape (B,), or None when the term is off."""
        if prediction is None or weight == 0:
            return None
        if target is None:
            raise ValueError(f"rec_{name} was given but its target {name!r} is None")
        if prediction.shape != target.shape or prediction.shape[0] != batch:
            raise ValueError(
                f"rec_{name} {tuple(prediction.shape)} and {name} {tuple(target.shape)} must have the same shape "
                f"with batch size {batch}"
            )
        return (prediction - target.to(prediction)).abs().flatten(1).mean(dim=1)

    def forward(
        self,
        logit: torch.Tensor | Mapping,
        label: torch.Tensor | Mapping,
        rec_mass: torch.Tensor | None = None,
        rec_glands: torch.Tensor | None = None,
        mass: torch.Tensor | None = None,
        glands: torch.Tensor | None = None,
        is_composite: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """
        Args:
            logit: classifier logits ``(B,)`` or ``(B, 1)``.
            label: 0/1 labels ``(B,)`` or ``(B, 1)`` (1 = malignant).
            rec_mass, rec_glands: the decoders' reconstructions ``(B, C, H, W)``; ``None`` when the
                network has no such decoder.
            mass, glands: the compositing inputs x_m, x_g ``(B, C, H, W)`` (placeholders for real
                samples: they are ignored there).
            is_composite: ``(B,)`` bool; ``None`` means no sample is composite.

        Engine form (MONAI ``SupervisedTrainer`` with
        :class:`monai_mammo.networks.dabnet.DABNetPrepareBatch`): ``loss(pred, target)`` with
        ``pred = {"logit", "rec_mass", "rec_glands"}`` (DABNet's output) and
        ``target = {"label", "mass", "glands", "is_composite"}``.
        """
        if isinstance(logit, Mapping):  # engine form: network dict output + target dict
            if not isinstance(label, Mapping):
                raise TypeError("with a dict prediction, the target must be a dict with 'label' (DABNetPrepareBatch)")
            rec_mass, rec_glands = logit.get("rec_mass"), logit.get("rec_glands")
            mass, glands, is_composite = label.get("mass"), label.get("glands"), label.get("is_composite")
            logit, label = logit["logit"], label["label"]
        if logit.ndim == 2 and logit.shape[1] == 1:
            logit = logit[:, 0]
        if logit.ndim != 1:
            raise ValueError(f"logit must be (B,) or (B, 1), got {tuple(logit.shape)}")
        batch = logit.shape[0]
        label = torch.as_tensor(label, device=logit.device).reshape(-1).to(logit.dtype)
        if label.shape[0] != batch:
            raise ValueError(f"label must hold one value per sample ({batch}), got shape {tuple(label.shape)}")
        if is_composite is None:
            composite = torch.zeros(batch, dtype=torch.bool, device=logit.device)
        else:
            composite = torch.as_tensor(is_composite, device=logit.device).reshape(-1).bool()
            if composite.shape[0] != batch:
                raise ValueError(f"is_composite must be (B,) with B={batch}, got shape {tuple(composite.shape)}")
        pos_weight = None if self.pos_weight is None else torch.tensor(self.pos_weight, device=logit.device)
        # classification term on every sample, composite and real (paper Sec. 3.3)
        per_sample = self.cls_weight * F.binary_cross_entropy_with_logits(
            logit, label, reduction="none", pos_weight=pos_weight
        )
        n_composite = composite.sum().to(logit.dtype)
        total_rec = logit.new_zeros(())
        for name, prediction, target, weight in (
            ("mass", rec_mass, mass, self.mass_weight),  # Eq. (2)
            ("glands", rec_glands, glands, self.glands_weight),  # Eq. (3)
        ):
            rec = self._reconstruction(name, prediction, target, batch, weight)
            if rec is None:
                continue
            # real samples have no x_m / x_g: drop them (torch.where also blocks NaN placeholders)
            rec = weight * torch.where(composite, rec, torch.zeros_like(rec))
            per_sample = per_sample + rec
            total_rec = total_rec + rec.sum() / n_composite.clamp(min=1)
        if self.reduction == LossReduction.NONE.value:
            return per_sample
        if self.reduction == LossReduction.SUM.value:
            return per_sample.sum()
        # Eq. (4): mean BCE over all samples + mean reconstruction error over the composite samples
        cls_mean = self.cls_weight * F.binary_cross_entropy_with_logits(logit, label, pos_weight=pos_weight)
        return cls_mean + total_rec
