"""Tests for monai_mammo.networks.dabnet (DAB-Net encoder split, decoders, classifier)."""

from __future__ import annotations

import pytest
import torch

from monai_mammo.losses.disentangle import DisentangleLoss
from monai_mammo.checkpoints import build_network, load_network, network_spec, save_network
from monai_mammo.multitask import DictTargetPrepareBatch
from monai_mammo.networks.dabnet import DECODER_MODES, DABNet

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


@pytest.mark.parametrize("decoders", ["both", "none"])
def test_classifier_reads_only_the_mass_half(decoders, monkeypatch):
    """Through the real forward: the hidden map is replaced by a chosen one; changing its glands
    half (channels 256..511) leaves the logit and x̂_m alone and changes x̂_g; changing the mass
    half changes the logit. Without decoders (ERM) the classifier reads the whole map."""
    torch.manual_seed(0)
    net = DABNet(decoders=decoders, decoder_channels=SMALL).eval()
    hidden = torch.randn(2, 512, 2, 2)
    new_glands = hidden.clone()
    new_glands[:, 256:] = torch.randn(2, 256, 2, 2)
    new_mass = hidden.clone()
    new_mass[:, :256] = torch.randn(2, 256, 2, 2)
    x = torch.rand(2, 1, 64, 64)

    def run(h):
        monkeypatch.setattr(net, "encode", lambda _: h)
        with torch.no_grad():
            return net(x, return_reconstructions=True)

    base, glands_changed, mass_changed = run(hidden), run(new_glands), run(new_mass)
    assert not torch.allclose(base["logit"], mass_changed["logit"])
    if decoders == "none":
        assert not torch.allclose(base["logit"], glands_changed["logit"])
        return
    torch.testing.assert_close(base["logit"], glands_changed["logit"], rtol=0, atol=0)
    torch.testing.assert_close(base["rec_mass"], glands_changed["rec_mass"], rtol=0, atol=0)
    assert not torch.allclose(base["rec_glands"], glands_changed["rec_glands"])
    # and the glands half gets no gradient from the classification term
    net.train()
    monkeypatch.undo()
    encoded = net.encode(x).detach().requires_grad_(True)
    monkeypatch.setattr(net, "encode", lambda _: encoded)
    net(x).sum().backward()
    assert encoded.grad[:, 256:].abs().sum() == 0 and encoded.grad[:, :256].abs().sum() > 0


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
        prepare_batch=DictTargetPrepareBatch(
            target_keys={"label": "label", "mass": "x_m", "glands": "x_g", "is_composite": "is_composite"},
            optional_keys=["mass", "glands", "is_composite"],
            network_kwargs={"return_reconstructions": True},
        ),
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


def test_checkpoint_records_the_network_and_rebuilds_it(tmp_path):
    """@records_init_args: the spec holds the constructor arguments given (not `pretrained`), and a
    checkpoint rebuilds the same network with the same outputs."""
    torch.manual_seed(0)
    encoder = tmp_path / "enc.pt"
    torch.save(DABNet(decoder_channels=SMALL).state_dict(), encoder)
    net = DABNet(decoders="mass_only", decoder_channels=SMALL, conv1_stride=1, pretrained=encoder).eval()
    spec = network_spec(net)
    assert spec["_target_"] == "monai_mammo.networks.dabnet.DABNet" and "pretrained" not in spec
    assert (spec["decoders"], spec["decoder_channels"], spec["conv1_stride"]) == ("mass_only", list(SMALL), 1)
    assert spec == network_spec(DABNet(in_channels=1, decoders="mass_only", decoder_channels=SMALL, conv1_stride=1))
    rebuilt = build_network(spec)
    assert rebuilt.decoders == "mass_only" and rebuilt.glands_decoder is None
    path = save_network(net, tmp_path / "model.pt")
    loaded = load_network(path)
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))
