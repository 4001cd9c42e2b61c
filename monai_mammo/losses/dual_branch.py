"""Weak and semi-supervised losses of the Cls-Det-RS dual-branch network (Bakalo et al. 2021).

Bakalo, Goldberger and Ben-Ari, "Weakly and semi supervised detection in medical imaging via deep
dual branch net", Neurocomputing 421, 2021. The network (:class:`monai_mammo.networks.clsdet.ClsDetNet`)
gives image probabilities p(y_c = 1 | x), c ∈ {M, B} (Eq. 3), region class probabilities
p_cls(c | r_i) (Eq. 1) and detection distributions p_det^c(i | x) (Eqs. 2 and 4). The paper
*maximises* log-likelihoods; the loss here is their negative.

Weak (Eq. 5), as the mean over images (and over the two classes' terms summed):

    L^W = − (1/n) Σ_t Σ_{c∈{M,B}} log p(y_c(t) | x(t))                       (binary likelihood = BCE)

Semi-supervised (Eqs. 8–12). F is the set of fully labelled images (malignant images whose
malignant findings are outlined), W the others; region labels y_i ∈ {M, BN, ignored} come from IoM
(Eq. 7; :func:`monai_mammo.region_labels.region_labels`):

    L_Cls^F = − Σ_{t∈F} Σ_{i labelled} log p_cls(y_i | r_i),   p_cls(BN | r) = 1 − p_cls(M | r)     (Eq. 8)
    L_Det^F = − (1/|F|) Σ_{t∈F} log Σ_{i: y_i = M} p_det^M(i | x)                                   (Eq. 9)
    L^F = λ1 L_Cls^F + L_Det^F,   λ1 = β / m_f                                                      (Eq. 10)
    L^W = − (1/|W|) Σ_{t∈W} log p(y_M | x) − (1/n) Σ_{t=1..n} log p(y_B | x)                        (Eq. 11)
    L = L^W + λ2 L^F                                                                                (Eq. 12)

Implementation choices (METHODS.md; the paper is silent): λ1 L_Cls^F is β times the *mean* over
the labelled regions of the batch (m_f counted per batch, so the term's scale does not depend on
the dataset size); the means over F and W are over the batch's images; images of F with no region
labelled M leave L_Det^F (log 0 otherwise); L_Det^F uses the *unmasked* detection distribution by
default (under RS a masked one is 0 on every M region outside the top k: log 0), ``det_distribution``
switches. As Eq. 11 says, the B term runs over all n images and fully labelled images are left out
of the M term only.

``region_classes="nbm"`` generalises the region terms to every finding (the fully supervised
reference of the bundle, not in the paper): L_Cls^F over N, B, M and an L_Det^F term for each class.

Example:
    >>> import torch
    >>> prediction = {"image_prob": torch.tensor([[0.5, 0.5]])}
    >>> loss = DualBranchLoss()
    >>> round(float(loss(prediction, {"label": torch.tensor([[1.0, 0.0]])})), 4)   # 2 log 2
    1.3863
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from monai.utils import LossReduction
from torch.nn.modules.loss import _Loss

from monai_mammo.region_labels import BENIGN, IGNORE, MALIGNANT, NORMAL

__all__ = ["DualBranchLoss"]

_EPS = 1e-7


def _bce(prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """−log p(y | x) for a probability (no logits exist: Eq. 3 is a sum of products)."""
    prob = prob.clamp(_EPS, 1.0 - _EPS)
    return -(target * torch.log(prob) + (1.0 - target) * torch.log1p(-prob))


class DualBranchLoss(_Loss):
    """Weak (Eq. 5) or semi-supervised (Eqs. 8–12) loss of Cls-Det-RS (Bakalo et al. 2021).

    Called as ``loss(prediction, target)`` (registry family ``"multitask"``): ``prediction`` is the
    network's dict (``image_prob`` ``(B, 2)`` in label order M, B; for the semi-supervised terms also
    ``p_cls`` ``(B, R, 3)``, ``p_det`` and ``p_det_unmasked`` ``(B, R, 2)``); ``target`` holds
    ``label`` ``(B, 2)`` = (y_M, y_B) and, for the semi-supervised terms, ``region_labels``
    ``(B, R)`` (codes of :mod:`monai_mammo.region_labels`: −1 ignored, 0 N/BN, 1 B, 2 M) and
    ``fully_labelled`` ``(B,)`` (the set F). Without region labels or without fully labelled images in
    the batch the loss is the weak one.

    Args:
        semi_supervised: add λ2 L^F (Eqs. 8–12). Default False (weak, Eq. 5).
        lambda2: λ2 (paper: 1; 0.1–1 insensitive).
        beta: β of λ1 = β / m_f (paper: 1).
        det_loss: keep L_Det^F (Eq. 9). False: "SS-Baseline-RS" (paper Table 2, L_Det^F = 0).
        det_distribution: ``"unmasked"`` (default, Eq. 2) or ``"masked"`` (the distribution the
            image decision uses, Eq. 4) in L_Det^F.
        region_classes: ``"m_vs_bn"`` (paper) or ``"nbm"`` (every finding; the fully supervised reference).
        reduction: ``"mean"`` / ``"sum"`` give the scalar L (the batch means are part of the
            equations); ``"none"`` is not supported.
    """

    def __init__(
        self,
        semi_supervised: bool = False,
        lambda2: float = 1.0,
        beta: float = 1.0,
        det_loss: bool = True,
        det_distribution: str = "unmasked",
        region_classes: str = "m_vs_bn",
        reduction: LossReduction | str = LossReduction.MEAN,
    ) -> None:
        super().__init__(reduction=LossReduction(reduction).value)
        if self.reduction == LossReduction.NONE.value:
            raise ValueError("DualBranchLoss: reduction 'none' is not supported (the loss is a sum of batch means)")
        if det_distribution not in ("unmasked", "masked"):
            raise ValueError(f"DualBranchLoss: det_distribution must be 'unmasked' or 'masked', got {det_distribution!r}")
        if region_classes not in ("m_vs_bn", "nbm"):
            raise ValueError(f"DualBranchLoss: region_classes must be 'm_vs_bn' or 'nbm', got {region_classes!r}")
        self.semi_supervised = bool(semi_supervised)
        self.lambda2, self.beta = float(lambda2), float(beta)
        self.det_loss, self.det_distribution, self.region_classes = bool(det_loss), det_distribution, region_classes

    def terms(self, prediction: Mapping[str, Any], target: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """The loss terms (each a scalar, already with its weight): ``weak_m``, ``weak_b``, ``cls_f``, ``det_f``."""
        if not isinstance(prediction, Mapping) or "image_prob" not in prediction:
            raise TypeError("DualBranchLoss: prediction must be the ClsDetNet dict with 'image_prob'")
        image_prob = prediction["image_prob"]
        label = torch.as_tensor(target["label"], device=image_prob.device).float().reshape(image_prob.shape[0], -1)
        if label.shape != image_prob.shape:
            raise ValueError(f"DualBranchLoss: label {tuple(label.shape)} must match image_prob {tuple(image_prob.shape)} (y_M, y_B)")
        zero = image_prob.sum() * 0.0
        fully = torch.zeros(label.shape[0], dtype=torch.bool, device=label.device)
        region_labels = target.get("region_labels")
        use_f = self.semi_supervised and region_labels is not None
        if use_f and target.get("fully_labelled") is not None:
            fully = torch.as_tensor(target["fully_labelled"], device=label.device).reshape(-1).bool()
        elif use_f:
            fully = (torch.as_tensor(region_labels) != IGNORE).any(dim=1).to(label.device)
        in_w = ~fully
        # Eq. 11: the M term over W only, the B term over all n images (Eq. 5 when F is empty)
        weak_m = _bce(image_prob[in_w, 0], label[in_w, 0]).mean() if in_w.any() else zero
        weak_b = _bce(image_prob[:, 1], label[:, 1]).mean()
        terms = {"weak_m": weak_m, "weak_b": weak_b, "cls_f": zero, "det_f": zero}
        if not use_f or not fully.any():
            return terms
        labels = torch.as_tensor(region_labels, device=label.device).long()
        labels = torch.where(fully[:, None], labels, torch.full_like(labels, IGNORE))
        p_cls = prediction["p_cls"]
        if labels.shape != p_cls.shape[:2]:
            raise ValueError(f"DualBranchLoss: region_labels {tuple(labels.shape)} must be (B, R) = {tuple(p_cls.shape[:2])}")
        labelled = labels != IGNORE
        if labelled.any():
            if self.region_classes == "m_vs_bn":
                p_m = p_cls[..., 2][labelled].clamp(_EPS, 1.0 - _EPS)
                is_m = labels[labelled] == MALIGNANT
                log_lik = torch.where(is_m, torch.log(p_m), torch.log1p(-p_m))  # Eq. 8, p(BN) = 1 - p(M)
            else:
                index = labels[labelled].clamp_min(NORMAL)
                log_lik = torch.log(p_cls[labelled].gather(-1, index[:, None]).squeeze(-1).clamp_min(_EPS))
            terms["cls_f"] = self.lambda2 * self.beta * -log_lik.mean()  # λ2 λ1 L_Cls^F, λ1 = β / m_f
        if self.det_loss:
            p_det = prediction["p_det_unmasked" if self.det_distribution == "unmasked" else "p_det"]
            classes = ((MALIGNANT, 0),) if self.region_classes == "m_vs_bn" else ((MALIGNANT, 0), (BENIGN, 1))
            det_terms = []
            for code, column in classes:
                positive = labels == code
                has = positive.any(dim=1)  # images of F without a region of the class: no term (log 0)
                if has.any():
                    mass = (p_det[..., column] * positive).sum(dim=1)[has]
                    det_terms.append(-torch.log(mass.clamp_min(_EPS)).mean())  # Eq. 9
            if det_terms:
                terms["det_f"] = self.lambda2 * torch.stack(det_terms).sum()
        return terms

    def forward(self, prediction: Mapping[str, Any], target: Mapping[str, Any]) -> torch.Tensor:
        return torch.stack(list(self.terms(prediction, target).values())).sum()
