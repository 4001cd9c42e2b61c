"""LatentCADx losses (An et al., Front. Big Data 2021, Sec. 4.1, 4.3): every term against hand-computed
values (a prediction fully inside the outline, fully outside, an empty outline, an all-ones outline),
the weights, the per-sample skipping, gradients from all three terms, and the RPN pretraining loss."""

from __future__ import annotations

import math

import pytest
import torch

from monai_mammo.losses.latentcadx import (
    LatentCADxLoss,
    RegionProposalPretrainLoss,
    in_bounds_loss,
    out_of_bounds_loss,
    rpn_cell_targets,
)


def _outline() -> torch.Tensor:
    """A 4 x 4 outline covering the left half (8 pixels in, 8 out)."""
    coarse = torch.zeros(1, 1, 4, 4)
    coarse[..., :, :2] = 1
    return coarse


def test_prediction_fully_inside_the_outline():
    coarse = _outline()
    pred = coarse * 0.6  # 0.6 on the 8 inside pixels, 0 outside
    assert out_of_bounds_loss(pred, coarse)[0].item() == 0.0
    # inside: (0.6 - 1)^2 = 0.16 on each of the 8 inside pixels, / 8
    assert in_bounds_loss(pred, coarse)[0].item() == pytest.approx(0.16)
    assert [n.item() for n in (in_bounds_loss(pred, coarse)[1], out_of_bounds_loss(pred, coarse)[1])] == [8.0, 8.0]


def test_prediction_fully_outside_the_outline():
    coarse = _outline()
    pred = (1 - coarse) * 0.5  # 0.5 on the 8 outside pixels
    assert out_of_bounds_loss(pred, coarse)[0].item() == pytest.approx(0.25)  # 8 * 0.25 / 8
    assert in_bounds_loss(pred, coarse)[0].item() == pytest.approx(1.0)  # (0 - 1)^2 inside


def test_empty_outline_skips_the_in_bounds_term():
    coarse = torch.zeros(1, 1, 4, 4)
    pred = torch.full((1, 1, 4, 4), 0.5)
    loss, n_inb = in_bounds_loss(pred, coarse)
    assert n_inb.item() == 0 and loss.item() == 0.0
    assert out_of_bounds_loss(pred, coarse)[0].item() == pytest.approx(0.25)  # a negative: all pixels out of bounds
    combined = LatentCADxLoss(cls_weight=0.0, inb_weight=10.0, oob_weight=1.0)
    value = combined({"logit": torch.zeros(1, 1), "mask": pred}, {"label": torch.zeros(1), "coarse_mask": coarse})
    assert value.item() == pytest.approx(0.25)  # no in-bounds contribution whatever its weight


def test_all_ones_outline_skips_the_out_of_bounds_term():
    coarse = torch.ones(1, 1, 4, 4)
    pred = torch.full((1, 1, 4, 4), 0.75)
    loss, n_oob = out_of_bounds_loss(pred, coarse)
    assert n_oob.item() == 0 and loss.item() == 0.0
    combined = LatentCADxLoss(cls_weight=0.0, inb_weight=1.0, oob_weight=10.0)
    value = combined({"logit": torch.zeros(1, 1), "mask": pred}, {"label": torch.ones(1), "coarse_mask": coarse})
    assert value.item() == pytest.approx(0.0625)  # (0.75 - 1)^2


def test_weights_default_and_literal():
    coarse = torch.stack([_outline()[0], torch.zeros(1, 4, 4)])  # a positive and a negative
    pred = {"logit": torch.tensor([[0.0], [0.0]]), "mask": torch.full((2, 1, 4, 4), 0.5)}
    target = {"label": torch.tensor([1.0, 0.0]), "coarse_mask": coarse}
    ce, inb, oob = math.log(2), 0.25, 0.25  # CE of logit 0; inb on sample 0 only; oob on both (0.25 each)
    assert LatentCADxLoss()(pred, target).item() == pytest.approx(2 * ce + 0.5 * inb + 1.0 * oob)
    literal = LatentCADxLoss(cls_weight=2.0, inb_weight=1.0, oob_weight=0.5)
    assert literal(pred, target).item() == pytest.approx(2 * ce + 1.0 * inb + 0.5 * oob)
    terms = LatentCADxLoss().terms(pred, target)
    assert terms == pytest.approx({"cls": 2 * ce, "inb": 0.5 * inb, "oob": oob})


def test_gradients_flow_from_all_three_terms():
    coarse = _outline()
    logit = torch.zeros(1, 1, requires_grad=True)
    mask = torch.full((1, 1, 4, 4), 0.5, requires_grad=True)
    target = {"label": torch.ones(1), "coarse_mask": coarse}
    for weights, expect in (((1, 0, 0), "logit"), ((0, 1, 0), "inside"), ((0, 0, 1), "outside")):
        logit.grad, mask.grad = None, None
        LatentCADxLoss(*weights)({"logit": logit, "mask": mask}, target).backward()
        logit_grad = 0.0 if logit.grad is None else logit.grad.abs().sum().item()
        inside = mask.grad[coarse > 0].abs().sum().item() if mask.grad is not None else 0.0
        outside = mask.grad[coarse == 0].abs().sum().item() if mask.grad is not None else 0.0
        got = {"logit": logit_grad, "inside": inside, "outside": outside}
        assert got[expect] > 0 and all(v == 0 for k, v in got.items() if k != expect), (weights, got)
    # the in-bounds term pulls inside pixels up, the out-of-bounds term pushes outside pixels down
    mask.grad = None
    LatentCADxLoss(0, 1, 1)({"logit": logit, "mask": mask}, target).backward()
    assert (mask.grad[coarse > 0] < 0).all() and (mask.grad[coarse == 0] > 0).all()


def test_shape_mismatch_and_wrong_family_raise():
    with pytest.raises(ValueError, match="same shape"):
        out_of_bounds_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))
    with pytest.raises(TypeError, match="multitask"):
        LatentCADxLoss()(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4))


def test_registered_by_name_and_rejected_where_a_tensor_loss_is_needed():
    from monai_mammo.registry import IncompatibleComponentError, build_loss

    loss = build_loss("latent_cadx", accept_families=["multitask"], inb_weight=1.0, oob_weight=0.5)
    assert isinstance(loss, LatentCADxLoss) and loss.combined.weights == {"cls": 2.0, "inb": 1.0, "oob": 0.5}
    assert isinstance(build_loss("latent_cadx_rpn", accept_families=["multitask"]), RegionProposalPretrainLoss)
    with pytest.raises(IncompatibleComponentError, match="latent_cadx"):
        build_loss("latent_cadx", accept_families=["tensor"])


def test_rpn_cell_targets_and_loss_by_hand():
    coarse = torch.zeros(1, 1, 8, 8)
    coarse[..., :4, :4] = 1  # the top-left cell fully, nothing else
    coarse[..., 4:5, 4:6] = 1  # 2 of 16 pixels of the bottom-right cell: under the 0.25 threshold
    assert rpn_cell_targets(coarse, (2, 2)).tolist() == [[[1, 0], [0, 0]]]
    rpn = torch.zeros(1, 2, 2, 2)
    rpn[0, 1, 0, 0] = 2.0  # confident and right on the covered cell
    loss = RegionProposalPretrainLoss(rpn_weight=1.0, cls_weight=0.5)
    value = loss({"rpn": rpn, "logit": torch.zeros(1, 1)}, {"label": torch.ones(1), "coarse_mask": coarse})
    cell_ce = (math.log(1 + math.exp(-2.0)) + 3 * math.log(2)) / 4
    assert value.item() == pytest.approx(cell_ce + 0.5 * math.log(2))
