"""LatentCADx network (An et al., Front. Big Data 2021, Sec. 4.1-4.2): shapes of every head, the
paper-scale encoder's 8 x 8 x 2048 features, the schedule's locked encoder (parameters and batch
norm statistics unchanged while the decoder learns), checkpoints carrying the constructor arguments,
and the baselines."""

from __future__ import annotations

import functools

import pytest
import torch
from monai.engines import SupervisedTrainer

from monai_mammo.checkpoints import load_network, save_network
from monai_mammo.losses.latentcadx import LatentCADxLoss
from monai_mammo.multitask import DictTargetPrepareBatch
from monai_mammo.networks.latentcadx import CoarseMaskUNet, LatentCADxNet, LatentFCN

TINY = {"block_inplanes": (4, 4, 8, 8), "decoder_channels": (8, 4, 4, 4, 4)}


def test_heads_and_outputs():
    net = LatentCADxNet(**TINY).eval()
    x = torch.rand(3, 1, 64, 96)
    out = net(x)
    assert out["mask"].shape == (3, 1, 64, 96) and out["logit"].shape == (3, 1) and out["rpn"].shape == (3, 2, 2, 3)
    assert 0 <= out["mask"].min() and out["mask"].max() <= 1  # a sigmoid mask
    torch.testing.assert_close(net(x, output="map"), out["mask"] * torch.sigmoid(out["logit"])[:, :, None, None])
    torch.testing.assert_close(net(x, output="mask"), out["mask"])
    with pytest.raises(ValueError, match="multiples of 32"):
        net(torch.rand(1, 1, 50, 64))
    with pytest.raises(ValueError, match="output"):
        net(x, output="boxes")


def test_paper_scale_encoder_gives_8x8x2048_for_256():
    net = LatentCADxNet(block="bottleneck", layers=(3, 4, 6, 3), block_inplanes=(64, 128, 256, 512), decoder_channels=(256, 128, 64, 32, 16))
    assert net.encoder.channels[-1] == 2048
    features = net.encoder(torch.zeros(1, 1, 256, 256))
    assert tuple(features[-1].shape) == (1, 2048, 8, 8)
    assert net.rpn_head.out_channels == 2  # Sec. 4.1: 8 x 8 x 2


def _train_decoder_steps(net: LatentCADxNet, steps: int = 3) -> None:
    data = [{"image": torch.rand(1, 64, 64), "label": torch.tensor(float(i % 2)), "coarse_mask": (torch.rand(1, 64, 64) > 0.7).float()} for i in range(8)]
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    optimizer = torch.optim.SGD(net.decoder_parameters(), lr=0.1, momentum=0.9)
    trainer = SupervisedTrainer(
        device="cpu", max_epochs=1, train_data_loader=loader, network=net, optimizer=optimizer,
        loss_function=LatentCADxLoss(cls_weight=0.0, inb_weight=1.0, oob_weight=1.0),
        prepare_batch=DictTargetPrepareBatch(target_keys={"label": "label", "coarse_mask": "coarse_mask"}),
        epoch_length=min(steps, len(loader)),
    )  # fmt: skip
    trainer.run()


def test_schedule_locks_the_encoder_while_the_decoder_learns():
    torch.manual_seed(0)
    net = LatentCADxNet(**TINY)
    encoder_before = {k: v.clone() for k, v in net.encoder.state_dict().items()}  # weights and BN statistics
    decoder_before = {k: v.clone() for k, v in net.decoder.state_dict().items()}
    net.set_encoder_frozen(True)
    net.train()
    assert not net.encoder.training and net.decoder.training  # BN statistics kept while locked
    _train_decoder_steps(net)
    for key, value in net.encoder.state_dict().items():
        assert torch.equal(value, encoder_before[key]), f"encoder {key} changed while locked"
    assert any(not torch.equal(v, decoder_before[k]) for k, v in net.decoder.state_dict().items()), "the decoder did not learn"
    # unlocked (stage 3), the encoder learns again
    net.set_encoder_frozen(False)
    net.train()
    assert net.encoder.training and all(p.requires_grad for p in net.encoder.parameters())
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    out = net(torch.rand(2, 1, 64, 64))
    (out["mask"].mean() + out["logit"].mean()).backward()
    optimizer.step()
    assert any(not torch.equal(v, encoder_before[k]) for k, v in net.encoder.state_dict().items())


def test_parameter_groups_partition_the_network():
    net = LatentCADxNet(**TINY)
    ids = lambda params: {id(p) for p in params}  # noqa: E731
    decoder, pretrain = ids(net.decoder_parameters()), ids(net.pretraining_parameters())
    assert not decoder & pretrain
    assert decoder | pretrain == ids(net.parameters())


def test_checkpoint_round_trip(tmp_path):
    net = LatentCADxNet(**TINY)
    path = save_network(net, tmp_path / "model.pt")
    loaded = load_network(path)
    assert type(loaded) is LatentCADxNet and loaded.init_args == net.init_args
    x = torch.rand(1, 1, 64, 64)
    torch.testing.assert_close(loaded.eval()(x)["mask"], net.eval()(x)["mask"])


@pytest.mark.parametrize("factory", [functools.partial(LatentFCN, block_inplanes=(4, 4, 8, 8)), functools.partial(CoarseMaskUNet, channels=(4, 8, 16))])
def test_baselines_output_mask_logits(factory):
    net = factory()
    assert net(torch.rand(2, 1, 64, 64)).shape == (2, 1, 64, 64)
    assert hasattr(net, "init_args")  # their checkpoints carry the constructor arguments


def test_input_norm_makes_patch_and_tile_contrast_independent_of_the_window():
    torch.manual_seed(0)
    net = LatentCADxNet(**TINY, input_norm=True).eval()
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        a, b = net(x), net(3.0 * x + 0.5)  # another window / density: same standardised patch
    torch.testing.assert_close(a["mask"], b["mask"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(a["logit"], b["logit"], rtol=1e-4, atol=1e-4)
    assert not any(k.startswith("input_norm") for k in net.state_dict())  # no weights: old checkpoints load
