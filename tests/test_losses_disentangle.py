"""Tests for monai_mammo.losses.disentangle (DAB-Net Eqs. 2-4)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from monai_mammo import registry
from monai_mammo.losses.disentangle import DisentangleLoss


def make_batch(batch=4, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        logit=torch.randn(batch, 1, generator=g),
        label=torch.randint(0, 2, (batch,), generator=g).float(),
        rec_mass=torch.rand(batch, 1, size, size, generator=g),
        rec_glands=torch.rand(batch, 1, size, size, generator=g),
        mass=torch.rand(batch, 1, size, size, generator=g),
        glands=torch.rand(batch, 1, size, size, generator=g),
    )


def test_hand_computed_value_mixed_batch():
    b = make_batch()
    composite = torch.tensor([True, False, True, False])
    value = DisentangleLoss()(**b, is_composite=composite)
    bce = F.binary_cross_entropy_with_logits(b["logit"][:, 0], b["label"])
    l1_m = (b["rec_mass"] - b["mass"]).abs()[composite].mean()
    l1_g = (b["rec_glands"] - b["glands"]).abs()[composite].mean()
    torch.testing.assert_close(value, bce + l1_m + l1_g)
    weighted = DisentangleLoss(mass_weight=2.0, glands_weight=0.5, cls_weight=3.0)(**b, is_composite=composite)
    torch.testing.assert_close(weighted, 3 * bce + 2 * l1_m + 0.5 * l1_g)


def test_reconstruction_ignored_for_real_samples():
    b = make_batch()
    composite = torch.tensor([True, False, False, False])
    base = DisentangleLoss()(**b, is_composite=composite)
    # garbage (even NaN) targets on real samples change nothing
    b2 = {k: v.clone() for k, v in b.items()}
    b2["mass"][1:] = float("nan")
    b2["glands"][1:] = 100.0
    torch.testing.assert_close(DisentangleLoss()(**b2, is_composite=composite), base)
    # no composite at all -> plain BCE, still differentiable through the reconstructions
    rec = b["rec_mass"].clone().requires_grad_(True)
    none = DisentangleLoss()(b["logit"], b["label"], rec, b["rec_glands"], b["mass"], b["glands"], torch.zeros(4, dtype=torch.bool))
    torch.testing.assert_close(none, F.binary_cross_entropy_with_logits(b["logit"][:, 0], b["label"]))
    none.backward()
    assert rec.grad is not None and float(rec.grad.abs().sum()) == 0.0
    per_sample = DisentangleLoss(reduction="none")(**b, is_composite=composite)
    bce = F.binary_cross_entropy_with_logits(b["logit"][:, 0], b["label"], reduction="none")
    torch.testing.assert_close(per_sample[1:], bce[1:])


def test_engine_form_and_ablation_none_decoders():
    b = make_batch()
    composite = torch.tensor([True, True, False, False])
    pred = {"logit": b["logit"], "rec_mass": b["rec_mass"], "rec_glands": None}
    target = {"label": b["label"], "mass": b["mass"], "glands": b["glands"], "is_composite": composite}
    value = DisentangleLoss()(pred, target)
    expected = F.binary_cross_entropy_with_logits(b["logit"][:, 0], b["label"]) + (
        (b["rec_mass"] - b["mass"]).abs()[composite].mean()
    )
    torch.testing.assert_close(value, expected)
    assert math.isclose(float(DisentangleLoss()(torch.zeros(2, 1), torch.tensor([0.0, 1.0]))), math.log(2), rel_tol=1e-6)


def test_bad_shapes_raise():
    b = make_batch()
    with pytest.raises(ValueError, match="same shape"):
        DisentangleLoss()(b["logit"], b["label"], b["rec_mass"][:, :, :4], None, b["mass"], None, torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="logit"):
        DisentangleLoss()(torch.zeros(4, 2), b["label"])
    with pytest.raises(ValueError, match="is_composite"):
        DisentangleLoss()(**b, is_composite=torch.ones(3, dtype=torch.bool))


def test_registered():
    assert isinstance(registry.build_loss("disentangle", mass_weight=0.5), DisentangleLoss)


def test_is_weighted_loss_terms_with_composite_flags():
    """DisentangleLoss is a monai_mammo.multitask.WeightedLossTerms: BCE on every sample, each L1
    term over the composite samples, which terms_of reports per term with its sample count."""
    from monai_mammo.multitask import WeightedLossTerms

    b = make_batch()
    composite = torch.tensor([False, True, True, False])
    loss = DisentangleLoss(mass_weight=2.0)
    assert isinstance(loss, WeightedLossTerms)
    assert registry.component_family("loss", "disentangle") == "multitask"
    pred = {"logit": b["logit"][:, 0], "rec_mass": b["rec_mass"], "rec_glands": b["rec_glands"]}
    target = {"label": b["label"], "mass": b["mass"], "glands": b["glands"], "is_composite": composite}
    parts = loss.terms_of(pred, target)
    assert float(parts["mass/count"]) == 2 and float(parts["cls/count"]) == 4
    l1_m = (b["rec_mass"] - b["mass"]).abs().flatten(1).mean(1)
    torch.testing.assert_close(parts["mass"], 2 * torch.where(composite, l1_m, torch.zeros(4)))


def test_sum_reduction_and_engine_form_without_composite_keys():
    b = make_batch()
    composite = torch.tensor([True, False, True, False])
    bce = F.binary_cross_entropy_with_logits(b["logit"][:, 0], b["label"], reduction="none")
    l1_m = (b["rec_mass"] - b["mass"]).abs().flatten(1).mean(1)[composite]
    l1_g = (b["rec_glands"] - b["glands"]).abs().flatten(1).mean(1)[composite]
    total = DisentangleLoss(reduction="sum")(**b, is_composite=composite)
    torch.testing.assert_close(total, bce.sum() + l1_m.sum() + l1_g.sum())
    # a batch of real ROIs only (DictTargetPrepareBatch leaves the optional targets out): BCE alone
    pred = {"logit": b["logit"], "rec_mass": None, "rec_glands": None}
    torch.testing.assert_close(DisentangleLoss()(pred, {"label": b["label"]}), bce.mean())
    with pytest.raises(ValueError, match="target 'mass' is None"):
        DisentangleLoss()({"logit": b["logit"], "rec_mass": b["rec_mass"]}, {"label": b["label"]})
    with pytest.raises(TypeError, match="target must be a dict"):
        DisentangleLoss()(pred, b["label"])
