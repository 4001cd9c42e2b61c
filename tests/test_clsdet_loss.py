"""Dual-branch losses of Cls-Det-RS (Bakalo et al. 2021): weak (Eq. 5) and semi-supervised (Eqs. 8-12)."""

from __future__ import annotations

import math

import pytest
import torch

from monai_mammo.losses.dual_branch import DualBranchLoss
from monai_mammo.region_labels import IGNORE, MALIGNANT, NORMAL


def _prediction(image_prob, p_cls_m, p_det_m):
    """A prediction dict with p_cls = (N, B, M) = ((1 - m) / 2, (1 - m) / 2, m) and p_det over (M, B)."""
    p_cls_m = torch.tensor(p_cls_m)
    rest = (1 - p_cls_m) / 2
    p_cls = torch.stack([rest, rest, p_cls_m], dim=-1)
    p_det_m = torch.tensor(p_det_m)
    p_det = torch.stack([p_det_m, torch.full_like(p_det_m, 1.0 / p_det_m.shape[1])], dim=-1)
    return {"image_prob": torch.tensor(image_prob), "p_cls": p_cls, "p_det": p_det, "p_det_unmasked": p_det}


def test_weak_loss_hand_computed():
    pred = {"image_prob": torch.tensor([[0.8, 0.3], [0.1, 0.6]])}
    target = {"label": torch.tensor([[1.0, 0.0], [0.0, 1.0]])}
    # Eq. 5: mean over images of -log p(y_M) - log p(y_B)
    expected = (-math.log(0.8) - math.log(0.7) - math.log(0.9) - math.log(0.6)) / 2
    assert math.isclose(float(DualBranchLoss()(pred, target)), expected, rel_tol=1e-6)
    # region labels are ignored without semi_supervised
    target["region_labels"] = torch.tensor([[MALIGNANT, NORMAL], [IGNORE, IGNORE]])
    assert math.isclose(float(DualBranchLoss()(pred, target)), expected, rel_tol=1e-6)


def test_semi_supervised_loss_hand_computed_and_ignoring_unlabelled_regions():
    # image 0 in F (regions: M, BN, ignored), image 1 weak
    pred = _prediction([[0.7, 0.2], [0.3, 0.9]], [[0.6, 0.1, 0.99], [0.2, 0.3, 0.4]], [[0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])
    target = {
        "label": torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
        "region_labels": torch.tensor([[MALIGNANT, NORMAL, IGNORE], [IGNORE, IGNORE, IGNORE]]),
        "fully_labelled": torch.tensor([True, False]),
    }
    loss = DualBranchLoss(semi_supervised=True, lambda2=1.0, beta=1.0)
    terms = loss.terms(pred, target)
    weak_m = -math.log(1 - 0.3)  # Eq. 11: the M term over W only (image 1)
    weak_b = (-math.log(1 - 0.2) - math.log(0.9)) / 2  # the B term over all n images
    cls_f = (-math.log(0.6) - math.log(1 - 0.1)) / 2  # Eq. 8 over the 2 labelled regions (mean: lambda1 = beta / m_f)
    det_f = -math.log(0.5)  # Eq. 9: sum of p_det^M over the M regions of the one F image
    for name, value in (("weak_m", weak_m), ("weak_b", weak_b), ("cls_f", cls_f), ("det_f", det_f)):
        assert math.isclose(float(terms[name]), value, rel_tol=1e-5), name
    # the ignored region's prediction does not enter: changing it changes nothing
    pred2 = _prediction([[0.7, 0.2], [0.3, 0.9]], [[0.6, 0.1, 0.01], [0.2, 0.3, 0.4]], [[0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])
    assert math.isclose(float(loss(pred, target)), float(loss(pred2, target)), rel_tol=1e-6)
    # lambda2 scales both region terms (Eq. 12); det_loss False drops Eq. 9 (SS-Baseline-RS)
    half = DualBranchLoss(semi_supervised=True, lambda2=0.5).terms(pred, target)
    assert math.isclose(float(half["cls_f"]), cls_f / 2, rel_tol=1e-5) and math.isclose(float(half["det_f"]), det_f / 2, rel_tol=1e-5)
    assert float(DualBranchLoss(semi_supervised=True, det_loss=False).terms(pred, target)["det_f"]) == 0.0


def test_no_nan_when_an_f_image_has_no_malignant_region():
    pred = _prediction([[0.7, 0.2]], [[0.6, 0.1, 0.5]], [[0.5, 0.3, 0.2]])
    pred = {k: v.requires_grad_(True) if v.is_floating_point() else v for k, v in pred.items()}
    target = {"label": torch.tensor([[1.0, 0.0]]), "region_labels": torch.tensor([[NORMAL, IGNORE, NORMAL]]), "fully_labelled": torch.tensor([True])}
    loss = DualBranchLoss(semi_supervised=True)
    terms = loss.terms(pred, target)
    assert float(terms["det_f"]) == 0.0 and float(terms["weak_m"]) == 0.0  # no W image for the M term
    value = loss(pred, target)
    value.backward()
    assert torch.isfinite(value) and all(torch.isfinite(v.grad).all() for v in pred.values() if v.grad is not None)
    # nothing labelled at all: still finite
    target["region_labels"] = torch.full((1, 3), IGNORE)
    assert torch.isfinite(loss(pred, target))


def test_masked_distribution_option_and_probabilities_at_the_bounds():
    pred = _prediction([[1.0, 0.0]], [[0.6, 0.1]], [[0.0, 1.0]])
    pred["p_det_unmasked"] = torch.tensor([[[0.4, 0.5], [0.6, 0.5]]])
    target = {"label": torch.tensor([[1.0, 0.0]]), "region_labels": torch.tensor([[MALIGNANT, NORMAL]]), "fully_labelled": torch.tensor([True])}
    unmasked = DualBranchLoss(semi_supervised=True).terms(pred, target)["det_f"]
    masked = DualBranchLoss(semi_supervised=True, det_distribution="masked").terms(pred, target)["det_f"]
    assert math.isclose(float(unmasked), -math.log(0.4), rel_tol=1e-5)
    assert torch.isfinite(masked) and float(masked) > 10  # log of the clamped 0: large, not inf
    with pytest.raises(ValueError, match="det_distribution"):
        DualBranchLoss(det_distribution="soft")


def test_registered_as_a_multitask_loss():
    from monai_mammo import registry

    assert registry.component_family("loss", "dual_branch") == "multitask"
    assert isinstance(registry.build_loss("dual_branch", accept_families=["multitask"], semi_supervised=True), DualBranchLoss)
