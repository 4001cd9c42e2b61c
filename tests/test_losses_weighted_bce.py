from __future__ import annotations

import math

import pytest
import torch

from monai_mammo.losses.weighted_bce import BatchWeightedBCELoss


def test_matches_eq10_by_hand():
    # one class, batch of 4: one positive (p=0.8), three negatives (p=0.1, 0.2, 0.3)
    probabilities = torch.tensor([0.8, 0.1, 0.2, 0.3])
    target = torch.tensor([1.0, 0.0, 0.0, 0.0])
    omega_p, omega_n = 4 / 1, 4 / 3
    expected = omega_p * -math.log(0.8) + omega_n * -(math.log(0.9) + math.log(0.8) + math.log(0.7))
    loss = BatchWeightedBCELoss(logits=False, reduction="sum")(probabilities, target)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    logits = torch.logit(probabilities)
    assert BatchWeightedBCELoss(reduction="sum")(logits, target).item() == pytest.approx(expected, rel=1e-5)
    assert BatchWeightedBCELoss(reduction="mean")(logits, target).item() == pytest.approx(expected / 4, rel=1e-5)


def test_weights_are_per_class_and_guard_empty_sets():
    logits = torch.zeros(3, 2)
    target = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])  # class 0 all positive, class 1 all negative
    per_element = BatchWeightedBCELoss(reduction="none")(logits, target)
    # each class has one populated set of size 3 -> weight 3/3 = 1, so terms equal plain BCE (ln 2)
    assert torch.allclose(per_element, torch.full((3, 2), math.log(2.0)))
    assert torch.isfinite(per_element).all()


def test_gradients_and_shape_errors():
    logits = torch.randn(5, 3, requires_grad=True)
    target = (torch.rand(5, 3) > 0.5).float()
    BatchWeightedBCELoss()(logits, target).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    with pytest.raises(ValueError, match=r"\(5, 3\).*\(5, 2\)"):
        BatchWeightedBCELoss()(logits, target[:, :2])
