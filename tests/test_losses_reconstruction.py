"""Tests for monai_mammo.losses.reconstruction: the ASN ablation baselines."""

from __future__ import annotations

import math

import pytest
import torch

from monai_mammo import registry
from monai_mammo.losses.reconstruction import PixelSegmentationCELoss, ReconstructionMSELoss
from monai_mammo.losses.ttest import TTestLoss
from monai_mammo.networks.asn import AnomalySeparationUNet
from monai_mammo.regions import candidate_map


IMAGE = torch.tensor([[0.0, 1.0, 0.2], [0.4, 0.0, 0.5]])[None, None]
RECON = torch.tensor([[0.1, 0.5, 0.2], [0.1, 0.2, 0.5]])[None, None]
POSITIVE = torch.tensor([[0, 1, 0], [1, 0, 0]])[None, None]
VALID = torch.tensor([[1, 1, 0], [1, 1, 0]])[None, None]


def masks(image=None, positive=None, valid=None) -> dict:
    """The "pixel_masks" target dict (absent entries left out)."""
    target = {"image": image, "positive_mask": positive, "valid_mask": valid}
    return {k: v for k, v in target.items() if v is not None}


def test_mse_hand_computed() -> None:
    # d^2 = {.01, .25, 0, .09, .04, 0}
    loss = ReconstructionMSELoss()
    assert loss(RECON, masks(IMAGE, POSITIVE)).item() == pytest.approx(0.39 / 6, abs=1e-7)
    assert loss(RECON, masks(IMAGE, None)).item() == pytest.approx(0.39 / 6, abs=1e-7)  # labels ignored
    assert loss(RECON, masks(IMAGE, POSITIVE, VALID)).item() == pytest.approx(0.39 / 4, abs=1e-7)
    assert ReconstructionMSELoss(reduction="sum")(RECON, masks(IMAGE, POSITIVE)).item() == pytest.approx(0.39, abs=1e-7)
    per_image = ReconstructionMSELoss(reduction="none")(torch.cat([RECON, IMAGE]), masks(torch.cat([IMAGE, IMAGE])))
    assert per_image.shape == (2,) and per_image[1].item() == 0
    with pytest.raises(ValueError, match="differs from image shape"):
        loss(RECON, masks(IMAGE[..., :2], None))
    # nothing valid: 0, not NaN
    assert loss(RECON, masks(IMAGE, None, torch.zeros_like(VALID))).item() == 0


def test_segmentation_ce_hand_computed() -> None:
    logits = torch.tensor([[0.0, 2.0, -1.0], [0.0, 0.0, 3.0]])[None, None]
    # BCE: positive (0,1) logit 2 -> ln(1+e^-2); positive (1,0) logit 0 -> ln 2;
    # negatives: logit 0 -> ln 2 (x2), -1 -> ln(1+e^-1), 3 -> ln(1+e^3)
    terms = [math.log(2), math.log1p(math.exp(-2)), math.log1p(math.exp(-1)), math.log(2), math.log(2), math.log1p(math.exp(3))]
    loss = PixelSegmentationCELoss()
    assert loss(logits, masks(IMAGE, POSITIVE)).item() == pytest.approx(sum(terms) / 6, abs=1e-6)
    assert loss(logits, masks(None, POSITIVE)).item() == pytest.approx(sum(terms) / 6, abs=1e-6)  # image ignored
    # valid mask drops column 2 (logits -1 and 3)
    valid_terms = [math.log(2), math.log1p(math.exp(-2)), math.log(2), math.log(2)]
    assert loss(logits, masks(None, POSITIVE, VALID)).item() == pytest.approx(sum(valid_terms) / 4, abs=1e-6)
    # pos_weight multiplies the positive terms
    weighted = PixelSegmentationCELoss(pos_weight=3.0)(logits, masks(None, POSITIVE)).item()
    expected = (3 * (math.log1p(math.exp(-2)) + math.log(2)) + 2 * math.log(2) + math.log1p(math.exp(-1)) + math.log1p(math.exp(3))) / 6
    assert weighted == pytest.approx(expected, abs=1e-6)


def test_segmentation_ce_two_channels_matches_bce() -> None:
    # softmax over (0, z) == sigmoid(z): the 2-channel CE equals the 1-channel BCE
    z = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    positive = (torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(1)) > 0.7).float()
    one = PixelSegmentationCELoss()(z, masks(None, positive))
    two = PixelSegmentationCELoss()(torch.cat([torch.zeros_like(z), z], 1), masks(None, positive))
    assert two.item() == pytest.approx(one.item(), abs=1e-6)
    with pytest.raises(ValueError, match=r"expected logits \(B, 1 or 2"):
        PixelSegmentationCELoss()(torch.zeros(1, 3, 4, 4), masks(None, positive[:1]))
    with pytest.raises(ValueError, match="positive_mask is required"):
        PixelSegmentationCELoss()(z, masks(None, None))


@pytest.mark.parametrize("name", ["ttest", "mse_reconstruction", "segmentation_ce"])
def test_swappable_by_name(name: str) -> None:
    loss = registry.build_loss(name)
    net = AnomalySeparationUNet(channels=(4, 8, 8, 16))
    image = torch.rand(2, 1, 16, 16)
    positive = torch.zeros_like(image)
    positive[0, 0, 3:5, 3:5] = 1
    value = loss(net(image), masks(image, positive, torch.ones_like(image)))
    value.backward()
    assert value.ndim == 0 and torch.isfinite(value)
    assert net.stem[0].conv.weight.grad.abs().sum() > 0
    kind = type(loss).candidate_map  # what the loss says its network outputs
    assert kind == {"segmentation_ce": "probability"}.get(name, "residual")
    cmap = candidate_map(net(image).detach(), image, kind)
    assert cmap.shape == image.shape and (cmap >= 0).all()


def test_mse_collapses_where_ttest_separates() -> None:
    """Zhang et al. Sec. 4.5: plain MSE reconstructs the µC too (small residual), the t-test does not."""
    generator = torch.Generator().manual_seed(0)
    images = 0.3 + 0.05 * torch.rand(4, 1, 16, 16, generator=generator)
    positive = torch.zeros_like(images)
    for b, (y, x) in enumerate([(4, 4), (8, 10), (12, 3), (6, 12)]):
        images[b, 0, y : y + 2, x : x + 2] = 0.95
        positive[b, 0, y : y + 2, x : x + 2] = 1
    dots = {}
    for name, loss in (("mse", ReconstructionMSELoss()), ("ttest", TTestLoss())):
        torch.manual_seed(0)
        net = AnomalySeparationUNet(channels=(4, 8, 8, 16), norm=None)
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
        for _ in range(30):
            optimizer.zero_grad()
            loss(net(images), masks(images, positive)).backward()
            optimizer.step()
        with torch.no_grad():
            residual = candidate_map(net(images), images, "residual")
        dots[name] = residual[positive > 0].mean().item() / residual[positive == 0].mean().item()
    assert dots["ttest"] > 3 * dots["mse"]


def test_pixel_masks_contract_errors() -> None:
    with pytest.raises(TypeError, match="must be a dict with keys"):
        ReconstructionMSELoss()(RECON, IMAGE)  # MONAI's tensor contract is not this family's
    with pytest.raises(KeyError, match="unknown target keys"):
        PixelSegmentationCELoss()(RECON, {"positive_mask": POSITIVE, "label": POSITIVE})
    with pytest.raises(ValueError, match="image'\\] is required"):
        ReconstructionMSELoss()(RECON, masks(None, POSITIVE))
