"""DAB-Net's disentanglement loss: L1 reconstruction of the clear mass and of the glands on composite
samples, plus binary cross-entropy on every sample.

Paper: Wang et al., "Disentangling Disease-related Representation from Obscure for Disease
Prediction" (DAB-Net), ICML 2022, Sec. 3.3, Eqs. (2)-(4).

It is a :class:`monai_mammo.multitask.WeightedLossTerms` (loss family ``"multitask"``): three named
per-sample terms, the two reconstruction terms switched per sample by the ``is_composite`` flag.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from monai.utils import LossReduction

from monai_mammo.multitask import WeightedLossTerms

__all__ = ["DisentangleLoss"]


def _classification(prediction: Mapping[str, Any], target: Mapping[str, Any], pos_weight: float | None) -> torch.Tensor:
    """Per-sample BCE of the (B,) logit against the (B,) 0/1 label (every sample, composite or real)."""
    logit, label = prediction["logit"], target["label"]
    weight = None if pos_weight is None else torch.tensor(pos_weight, device=logit.device)
    return F.binary_cross_entropy_with_logits(logit, label, reduction="none", pos_weight=weight)


def _reconstruction(
    prediction: Mapping[str, Any], target: Mapping[str, Any], prediction_key: str, target_key: str
) -> torch.Tensor | None:
    """Per-sample mean absolute error (B,) of a decoder's reconstruction, or None without that decoder."""
    reconstruction = prediction.get(prediction_key)
    if reconstruction is None:
        return None
    return (reconstruction - target[target_key].to(reconstruction)).abs().flatten(1).mean(dim=1)


class DisentangleLoss(WeightedLossTerms):
    """DAB-Net loss (Wang et al., ICML 2022, Eq. 4)::

        L = mass_weight * ||x_m - x̂_m||_1 + glands_weight * ||x_g - x̂_g||_1 + cls_weight * BCE(logit, y)

    - Eqs. (2), (3): the reconstruction terms count only for composite samples (``is_composite``);
      real images have no disentangled targets. Each L1 term is the mean absolute error over a
      sample's pixels (the L1 norm divided by the pixel count, so the weights do not depend on the
      image size), averaged over the composite samples of the batch. A batch with no composite
      contributes exactly 0 through these terms (but stays in the graph); placeholder targets of
      real samples, even NaN, never reach the loss.
    - The classification term (BCE on the logit) counts for every sample, composite and real.
    - Ablations: a network without the mass / glands decoder gives ``rec_mass=None`` /
      ``rec_glands=None`` and the matching term is skipped; a weight of 0 switches a term off.

    Two call forms:

    - engine form (MONAI ``SupervisedTrainer`` with
      ``monai_mammo.multitask.DictTargetPrepareBatch``, see the dabnet bundle's ``prepare_batch``):
      ``loss(prediction, target)`` with ``prediction = {"logit", "rec_mass", "rec_glands"}`` (DABNet's
      output with ``return_reconstructions=True``) and ``target = {"label", "mass", "glands",
      "is_composite"}`` (``mass``, ``glands``, ``is_composite`` optional: absent means no composite);
    - direct form: ``loss(logit, label, rec_mass, rec_glands, mass, glands, is_composite)``.

    Numerics against the implementation before it was a :class:`~monai_mammo.multitask.WeightedLossTerms`
    (one fused BCE with ``reduction="mean"``): with ``cls_weight=1`` (the bundle's default) the
    ``"mean"`` value is bit-identical; a BCE summed per sample and divided by B differs from the
    fused mean in the last bit of its gradient (about 4e-9 on a logit), and other weights, ``"sum"``
    and ``"none"`` (terms added in the order mass, glands, classification) differ only by float
    summation order.

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
        >>> prediction = {"logit": logit, "rec_mass": x + 0.5, "rec_glands": None}
        >>> target = {"label": label, "mass": x, "is_composite": torch.tensor([True, False])}
        >>> round(float(loss(prediction, target)), 4)  # log 2 + |0.5 - 0| on the one composite
        1.1931
    """

    def __init__(
        self,
        mass_weight: float = 1.0,
        glands_weight: float = 1.0,
        cls_weight: float = 1.0,
        pos_weight: float | None = None,
        reduction: LossReduction | str = LossReduction.MEAN,
    ) -> None:
        reduction = LossReduction(reduction).value
        for name, value in (("mass_weight", mass_weight), ("glands_weight", glands_weight), ("cls_weight", cls_weight)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        # terms in this order: the mean is (L1_mass + L1_glands) + BCE, the same float sum as before
        super().__init__(
            terms={
                "mass": partial(_reconstruction, prediction_key="rec_mass", target_key="mass"),  # Eq. (2)
                "glands": partial(_reconstruction, prediction_key="rec_glands", target_key="glands"),  # Eq. (3)
                "cls": partial(_classification, pos_weight=pos_weight),
            },
            weights={"mass": mass_weight, "glands": glands_weight, "cls": cls_weight},
            flags={"mass": "is_composite", "glands": "is_composite"},
            reduction=LossReduction.MEAN if reduction == LossReduction.SUM.value else reduction,
        )
        self.reduction = reduction
        self.mass_weight = float(mass_weight)
        self.glands_weight = float(glands_weight)
        self.cls_weight = float(cls_weight)
        self.pos_weight = pos_weight

    @staticmethod
    def _checked(prediction: Mapping[str, Any], target: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Prediction and target with a (B,) logit and a (B,) float label; shapes checked."""
        logit = prediction["logit"]
        if logit.ndim == 2 and logit.shape[1] == 1:
            logit = logit[:, 0]
        if logit.ndim != 1:
            raise ValueError(f"logit must be (B,) or (B, 1), got {tuple(logit.shape)}")
        batch = logit.shape[0]
        if "label" not in target:
            raise KeyError(f"DisentangleLoss: the target has no 'label'; keys: {sorted(target)}")
        label = torch.as_tensor(target["label"], device=logit.device).reshape(-1).to(logit.dtype)
        if label.shape[0] != batch:
            raise ValueError(f"label must hold one value per sample ({batch}), got shape {tuple(label.shape)}")
        for name in ("mass", "glands"):
            reconstruction = prediction.get(f"rec_{name}")
            if reconstruction is None:
                continue
            reference = target.get(name)
            if reference is None:
                raise ValueError(f"rec_{name} was given but its target {name!r} is None")
            if reconstruction.shape != reference.shape or reconstruction.shape[0] != batch:
                raise ValueError(
                    f"rec_{name} {tuple(reconstruction.shape)} and {name} {tuple(reference.shape)} must have the "
                    f"same shape with batch size {batch}"
                )
        return {**prediction, "logit": logit}, {**target, "label": label}

    def forward(  # type: ignore[override]
        self,
        logit: torch.Tensor | Mapping[str, Any],
        label: torch.Tensor | Mapping[str, Any],
        rec_mass: torch.Tensor | None = None,
        rec_glands: torch.Tensor | None = None,
        mass: torch.Tensor | None = None,
        glands: torch.Tensor | None = None,
        is_composite: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """
        Args:
            logit: classifier logits ``(B,)`` or ``(B, 1)``; or, engine form, DABNet's output dict.
            label: 0/1 labels ``(B,)`` or ``(B, 1)`` (1 = malignant); or, engine form, the target dict.
            rec_mass, rec_glands: the decoders' reconstructions ``(B, C, H, W)``; ``None`` when the
                network has no such decoder.
            mass, glands: the compositing inputs x_m, x_g ``(B, C, H, W)`` (placeholders for real
                samples: they are ignored there).
            is_composite: ``(B,)`` bool; ``None`` means no sample is composite.
        """
        if isinstance(logit, Mapping):
            if not isinstance(label, Mapping):
                raise TypeError("with a dict prediction, the target must be a dict with 'label' (DictTargetPrepareBatch)")
            prediction, target = logit, label
        else:
            prediction = {"logit": logit, "rec_mass": rec_mass, "rec_glands": rec_glands}
            target = {"label": label, "mass": mass, "glands": glands, "is_composite": is_composite}
            target = {k: v for k, v in target.items() if v is not None}
        prediction, target = self._checked(prediction, target)
        if self.reduction == LossReduction.SUM.value:
            parts = self.terms_of(prediction, target)
            return torch.stack([value for name, value in parts.items() if not name.endswith("/count")]).sum()
        return super().forward(prediction, target)
