"""Tests for monai_mammo.networks.dabnet (DAB-Net encoder split, decoders, classifier)."""

from __future__ import annotations

import pytest
import torch

from monai_mammo.losses.disentangle import DisentangleLoss
from monai_mammo.networks.dabnet import DECODER_MODES, DABNet, DABNetPrepareBatch

SMALL = (8, 8, 8, 8, 8)


@pytest.mark.parametrize("decoders", DECODER_MODES)
def test_shapes_for_every_decoder_mode(decoders):
    net = DABNet(decoders=decoders, decoder_channels=SMALL)
    x = torch.rand(2, 1, 64, 64)
    assert net(x).shape == (2, 1)
    out = net(x, return_reconstructions=True)
    has_mass = decoders in ("both", "mass_only", "shared")
    has_glands = decoders in ("both", "glands_only", "shared")
    assert (out["rec_mass"] is not None) == has_mass
    assert (out["rec_glands"] is not None) == has_glands
    for rec in (out["rec_mass"], out["rec_glands"]):
        if rec is not None:
            assert rec.shape == x.shape
    # input size not a multiple of 32 still reconstructs at input size
    if decoders == "both":
        out = net(torch.rand(1, 1, 70, 50), return_reconstructions=True)
        assert out["rec_mass"].shape == (1, 1, 70, 50)


def test_classifier_reads_only_the_mass_half():
    torch.manual_seed(0)
    net = DABNet(decoder_channels=SMALL).eval()
    hidden = torch.randn(2, 512, 2, 2)
    h_mass, h_glands = net.split(hidden)
    assert h_mass.shape == h_glands.shape == (2, 256, 2, 2)
    changed = hidden.clone()
    changed[:, 256:] = torch.randn(2, 256, 2, 2)
    torch.testing.assert_close(net.classifier(net.split(hidden)[0]), net.classifier(net.split(changed)[0]))
    # the glands half gets no gradient from the classification term
    x = torch.rand(2, 1, 64, 64)
    hidden = net.encode(x).detach().requires_grad_(True)
    net.classifier(net.split(hidden)[0]).sum().backward()
    assert hidden.grad[:, 256:].abs().sum() == 0 and hidden.grad[:, :256].abs().sum() > 0


def test_gradients_reach_encoder_from_all_three_terms():
    torch.manual_seed(0)
    net = DABNet(decoder_channels=SMALL)
    x = torch.rand(3, 1, 32, 32)
    label = torch.tensor([0.0, 1.0, 1.0])
    composite = torch.tensor([True, True, False])
    target_m, target_g = torch.rand_like(x), torch.rand_like(x)
    stem = net.encoder.conv1.weight
    out = net(x, return_reconstructions=True)
    for weights in ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)):
        net.zero_grad()
        loss = DisentangleLoss(mass_weight=weights[0], glands_weight=weights[1], cls_weight=weights[2])
        value = loss(out["logit"], label, out["rec_mass"], out["rec_glands"], target_m, target_g, composite)
        value.backward(retain_graph=True)
        assert stem.grad is not None and stem.grad.abs().sum() > 0, weights


def test_supervised_trainer_few_steps_loss_falls():
    from ignite.engine import Events
    from monai.engines import SupervisedTrainer

    torch.manual_seed(0)
    net = DABNet(decoder_channels=SMALL)
    x = torch.rand(4, 1, 32, 32)
    batch = {
        "image": x,
        "label": torch.tensor([0.0, 1.0, 0.0, 1.0]),
        "x_m": x * 0.5,
        "x_g": 1 - x,
        "is_composite": torch.tensor([True, True, False, False]),
    }
    losses = []
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=4,
        train_data_loader=[batch],
        network=net,
        optimizer=torch.optim.Adam(net.parameters(), 1e-3),
        loss_function=DisentangleLoss(),
        prepare_batch=DABNetPrepareBatch(),
        decollate=False,
    )
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(e.state.output["loss"].item()))
    trainer.run()
    assert losses[-1] < losses[0]


def test_bad_input_and_pretrained(tmp_path):
    net = DABNet(decoder_channels=SMALL, spatial_size=(64, 64))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        net(torch.rand(2, 3, 64, 64))
    with pytest.raises(ValueError, match="spatial_size"):
        net(torch.rand(2, 1, 96, 96))
    with pytest.raises(ValueError, match="decoders"):
        DABNet(decoders="three")
    path = tmp_path / "enc.pt"
    torch.save(net.state_dict(), path)
    other = DABNet(decoder_channels=SMALL, pretrained=path)
    torch.testing.assert_close(other.encoder.conv1.weight, net.encoder.conv1.weight)
