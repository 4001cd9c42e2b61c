"""Tests for monai_mammo.losses.ttest (Zhang et al., CVPR 2019, Eq. 6)."""

from __future__ import annotations

import pytest
import torch

from monai_mammo import registry
from monai_mammo.losses.ttest import TTestLoss
from monai_mammo.networks.asn import AnomalySeparationUNet


# d = f - I = [[0.1, -0.5, 0.0], [-0.3, 0.2, 0.0]]; positives at (0, 1) and (1, 0)
IMAGE = torch.tensor([[0.0, 1.0, 0.2], [0.4, 0.0, 0.5]])[None, None]
RECON = torch.tensor([[0.1, 0.5, 0.2], [0.1, 0.2, 0.5]])[None, None]
POSITIVE = torch.tensor([[0, 1, 0], [1, 0, 0]], dtype=torch.bool)[None, None]


def masks(image=None, positive=None, valid=None) -> dict:
    """The "pixel_masks" target dict (absent entries left out)."""
    target = {"image": image, "positive_mask": positive, "valid_mask": valid}
    return {k: v for k, v in target.items() if v is not None}


@pytest.mark.parametrize(
    "residual, kwargs, expected",
    [
        # r_p = {.5, .3}: mean .4, var .01; r_n = {.1, 0, .2, 0}: mean .075, var .006875
        # .4 + .075 + 1 * .01 + .1 * .006875
        ("l1", {}, 0.4856875),
        # r_p = {.25, .09}: mean .17, var .0064; r_n = {.01, 0, .04, 0}: mean .0125, var .00026875
        ("l2", {}, 0.63 + 0.0125 + 0.0064 + 0.000026875),
        # 0.5 d^2: r_p = {.125, .045}: mean .085, var .0016; r_n = {.005, 0, .02, 0}: mean .00625, var 6.71875e-5
        ("smooth_l1", {}, 0.715 + 0.00625 + 0.0016 + 0.00000671875),
        # beta .25: r_p = {.375, .175}: mean .275, var .01; r_n = {.02, 0, .08, 0}: mean .025, var .001075
        ("smooth_l1", {"smooth_l1_beta": 0.25}, 0.525 + 0.025 + 0.01 + 0.0001075),
    ],
)
def test_hand_computed_values(residual: str, kwargs: dict, expected: float) -> None:
    loss = TTestLoss(beta=0.8, lambda_p=1.0, lambda_n=0.1, residual=residual, **kwargs)
    assert loss(RECON, masks(IMAGE, POSITIVE)).item() == pytest.approx(expected, abs=1e-6)


def test_terms_sum_to_loss_and_lambda_zero_is_eq10() -> None:
    loss = TTestLoss()
    terms = loss.terms(RECON, masks(IMAGE, POSITIVE))
    assert terms["num_positive"].item() == 2 and terms["num_negative"].item() == 4
    assert terms["mean_p"].item() == pytest.approx(0.4)
    total = terms["hinge"] + terms["mean_term_n"] + terms["var_term_p"] + terms["var_term_n"]
    assert total.item() == pytest.approx(loss(RECON, masks(IMAGE, POSITIVE)).item())
    # Eq. 10: max(β − r̄p, 0) + r̄n
    assert TTestLoss(lambda_p=0, lambda_n=0)(RECON, masks(IMAGE, POSITIVE)).item() == pytest.approx(0.4 + 0.075)


def test_unbiased_variance() -> None:
    # var_p = .02 (N-1 = 1), var_n = .006875 * 4/3
    expected = 0.4 + 0.075 + 0.02 + 0.1 * 0.006875 * 4 / 3
    assert TTestLoss(unbiased=True)(RECON, masks(IMAGE, POSITIVE)).item() == pytest.approx(expected, abs=1e-6)


def test_no_positive_pixel() -> None:
    # positive terms vanish: mean and .1 * var of all six residuals {.1, .5, 0, .3, .2, 0}
    mean = 1.1 / 6
    var = 0.39 / 6 - mean**2
    value = TTestLoss()(RECON, masks(IMAGE, torch.zeros_like(POSITIVE)))
    assert torch.isfinite(value)
    assert value.item() == pytest.approx(mean + 0.1 * var, abs=1e-6)


def test_single_positive_pixel() -> None:
    positive = torch.zeros_like(POSITIVE)
    positive[0, 0, 0, 1] = True  # r_p = {.5}: hinge .3, variance 0
    # r_n = {.1, 0, .3, .2, 0}: mean .12, var .0136
    assert TTestLoss()(RECON, masks(IMAGE, positive)).item() == pytest.approx(0.3 + 0.12 + 0.1 * 0.0136, abs=1e-6)
    # unbiased: a single pixel's variance is guarded to 0, the negatives' is .0136 * 5/4
    assert TTestLoss(unbiased=True)(RECON, masks(IMAGE, positive)).item() == pytest.approx(0.3 + 0.12 + 0.1 * 0.017, abs=1e-6)


def test_valid_mask_restricts_both_sets() -> None:
    valid = torch.tensor([[1, 1, 0], [1, 1, 0]])[None, None]
    positive = POSITIVE.clone()
    positive[0, 0, 0, 2] = True  # outside the valid mask: dropped
    # r_p = {.5, .3}; r_n = {.1, .2}: mean .15, var .0025
    assert TTestLoss()(RECON, masks(IMAGE, positive, valid)).item() == pytest.approx(0.4 + 0.15 + 0.01 + 0.00025, abs=1e-6)
    # nothing valid: 0, finite, and backward still works
    recon = RECON.clone().requires_grad_(True)
    value = TTestLoss()(recon, masks(IMAGE, positive, torch.zeros_like(valid)))
    value.backward()
    assert value.item() == 0.0 and torch.isfinite(recon.grad).all()


def test_batch_pooling_and_reduction_none() -> None:
    image2 = torch.full_like(IMAGE, 0.5)
    recon2 = torch.full_like(IMAGE, 0.6)
    images = torch.cat([IMAGE, image2])
    recons = torch.cat([RECON, recon2])
    positives = torch.cat([POSITIVE, torch.zeros_like(POSITIVE)])
    per_image = TTestLoss(reduction="none")(recons, masks(images, positives))
    assert per_image.shape == (2,)
    assert per_image[0].item() == pytest.approx(0.4856875, abs=1e-6)
    assert per_image[1].item() == pytest.approx(0.1, abs=1e-6)  # no positives: mean .1, variance 0
    # "mean" pools the pixels: same as one image made of both side by side
    pooled = TTestLoss()(recons, masks(images, positives))
    side_by_side = TTestLoss()(torch.cat([RECON, recon2], -1), masks(torch.cat([IMAGE, image2], -1), torch.cat([POSITIVE, torch.zeros_like(POSITIVE)], -1)))
    assert pooled.ndim == 0 and pooled.item() == pytest.approx(side_by_side.item(), abs=1e-6)
    assert TTestLoss(reduction="sum")(recons, masks(images, positives)).item() == pytest.approx(pooled.item())


def test_shape_errors() -> None:
    loss = TTestLoss()
    with pytest.raises(ValueError, match=r"reconstruction shape \(1, 1, 2, 3\) differs from image shape \(1, 1, 2, 2\)"):
        loss(RECON, masks(IMAGE[..., :2], POSITIVE))
    with pytest.raises(ValueError, match=r"positive_mask must have shape.*got \(1, 1, 3, 2\)"):
        loss(RECON, masks(IMAGE, POSITIVE.transpose(-1, -2)))
    with pytest.raises(ValueError, match="valid_mask"):
        loss(RECON, masks(IMAGE, POSITIVE, torch.ones(2, 1, 2, 3)))
    with pytest.raises(ValueError, match="unknown residual"):
        TTestLoss(residual="l3")


def test_registry_builds_ttest() -> None:
    loss = registry.build_loss("ttest", beta=0.8, lambda_p=1.0, lambda_n=0.1, residual="l1")
    assert isinstance(loss, TTestLoss)
    assert loss(RECON, masks(IMAGE, POSITIVE)).item() == pytest.approx(0.4856875, abs=1e-6)


@pytest.mark.parametrize("residual", ["l1", "l2", "smooth_l1"])
def test_nan_free_gradients_random_masks(residual: str) -> None:
    generator = torch.Generator().manual_seed(1)
    loss = TTestLoss(residual=residual, unbiased=True)
    for num_positive in (0, 1, 2, 50):
        image = torch.rand(2, 1, 8, 8, generator=generator)
        recon = image.clone().requires_grad_(True)  # exact reconstruction: |d| = 0, kink of L1
        positive = torch.zeros(2, 1, 8, 8)
        positive.view(-1)[torch.randperm(128, generator=generator)[:num_positive]] = 1
        value = loss(recon, masks(image, positive))
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(recon.grad).all()


def test_gradients_flow_to_network() -> None:
    torch.manual_seed(0)
    net = AnomalySeparationUNet(channels=(4, 8, 8, 16))
    image = torch.rand(2, 1, 16, 16)
    positive = torch.zeros_like(image)
    positive[0, 0, 4:6, 4:6] = 1
    TTestLoss()(net(image), masks(image, positive)).backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert net.stem[0].conv.weight.grad.abs().sum() > 0 and net.head.conv.weight.grad.abs().sum() > 0


def _toy_batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    images = 0.3 + 0.05 * torch.rand(4, 1, 16, 16, generator=generator)
    positive = torch.zeros_like(images)
    for b, (y, x) in enumerate([(4, 4), (8, 10), (12, 3), (6, 12)]):
        images[b, 0, y : y + 2, x : x + 2] = 0.95  # a bright 2x2 "µC"
        positive[b, 0, y : y + 2, x : x + 2] = 1
    return images, positive


def _residuals(net: torch.nn.Module, images: torch.Tensor, positive: torch.Tensor) -> tuple[float, float]:
    with torch.no_grad():
        r = (net(images) - images).abs()
    return r[positive > 0].mean().item(), r[positive == 0].mean().item()


def _train(net: torch.nn.Module, loss: torch.nn.Module, images: torch.Tensor, positive: torch.Tensor, steps: int) -> None:
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        loss(net(images), masks(images, positive)).backward()
        optimizer.step()


def test_training_separates_dot_from_background() -> None:
    images, positive = _toy_batch()
    loss = TTestLoss()

    # from Kaiming init: the background residual shrinks, the dot's reaches the margin
    torch.manual_seed(0)
    net = AnomalySeparationUNet(channels=(4, 8, 8, 16), norm=None)
    dot0, background0 = _residuals(net, images, positive)
    _train(net, loss, images, positive, 30)
    dot, background = _residuals(net, images, positive)
    assert background < 0.3 * background0
    assert dot > 0.7 and dot - background > dot0 - background0

    # from near the identity (every residual ~0; exactly 0 would sit on the L1 kink, whose
    # subgradient torch takes as 0): the dot's residual grows, the background stays small
    torch.manual_seed(0)
    net = AnomalySeparationUNet(channels=(4, 8, 8, 16), norm=None, input_skip=True)
    with torch.no_grad():
        net.head.conv.weight.mul_(1e-3)
    dot0, background0 = _residuals(net, images, positive)
    assert dot0 < 0.01 and background0 < 0.01
    _train(net, loss, images, positive, 30)
    dot, background = _residuals(net, images, positive)
    assert dot > 0.6 and background < 0.1


def test_target_is_the_pixel_masks_dict() -> None:
    assert TTestLoss.candidate_map == "residual"
    assert registry.component_family("loss", "ttest") == "pixel_masks"
    with pytest.raises(TypeError, match="must be a dict"):
        TTestLoss()(RECON, IMAGE)
    with pytest.raises(ValueError, match="image'\\] is required"):
        TTestLoss()(RECON, masks(None, POSITIVE))
    with pytest.raises(ValueError, match="positive_mask is required"):
        TTestLoss()(RECON, masks(IMAGE))
