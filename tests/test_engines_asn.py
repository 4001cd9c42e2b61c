"""Glue of the ASN bundle that is not exercised by the bundle smoke runs."""

from __future__ import annotations

import pytest
import torch

from monai_mammo.engines.asn import build_fpr_optimizer


def test_fpr_optimizer_choices_carry_the_learning_rate():
    params = [torch.nn.Parameter(torch.zeros(3))]
    sgd = build_fpr_optimizer("SGD", params, lr=1e-3, momentum=0.5)
    adam = build_fpr_optimizer("adam", params, lr=2e-4)
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["lr"] == 1e-3
    assert sgd.param_groups[0]["momentum"] == 0.5
    assert isinstance(adam, torch.optim.Adam) and adam.param_groups[0]["lr"] == 2e-4


def test_fpr_optimizer_steps_reduce_a_loss():
    weight = torch.nn.Parameter(torch.tensor([2.0]))
    opt = build_fpr_optimizer("adam", [weight], lr=0.1)
    losses = []
    for _ in range(10):
        opt.zero_grad()
        loss = (weight**2).sum()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0]


def test_fpr_optimizer_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="sgd, adam"):
        build_fpr_optimizer("rmsprop", [torch.nn.Parameter(torch.zeros(1))])


def test_prepare_fpr_batch_views_and_labels() -> None:
    from monai_mammo.engines.asn import prepare_fpr_batch
    from monai_mammo.transforms.dihedral import dihedral_view

    crops = torch.arange(9.0).reshape(1, 1, 3, 3).repeat(16, 1, 1, 1)
    batch = {"image": crops, "label": torch.ones(16, 1)}
    x, y = prepare_fpr_batch(batch, torch.device("cpu"), augment=False)
    assert torch.equal(x, crops) and y.shape == (16, 1) and y.dtype == torch.float32
    torch.manual_seed(1)
    x, _ = prepare_fpr_batch(batch, torch.device("cpu"))
    views = [dihedral_view(crops[:1], i) for i in range(8)]
    assert all(any(torch.equal(c[None], v) for v in views) for c in x)
    assert not all(torch.equal(c, crops[0]) for c in x)  # augmented
