"""Tests for monai_mammo.networks.asn: reconstruction U-Net and FPR classifier, and their checkpoints."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from monai_mammo.networks.asn import (
    PAPER_SCALE_CHANNELS,
    AnomalySeparationUNet,
    FalsePositiveReductionClassifier,
    fpr_probability,
    load_pretrained_resnet_weights,
)

TINY = (4, 8, 8, 16)


def test_unet_output_shape_and_structure() -> None:
    net = AnomalySeparationUNet(channels=TINY)
    x = torch.rand(2, 1, 32, 48)
    assert net(x).shape == x.shape
    # 3 down-sampling + 3 up-sampling stages, 3 convs per stage
    assert len(net.down) == 3 and len(net.up) == 3 and len(net.decode) == 3
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    # stem 3 + down 3x3 + decode 3x3 + head 1 (+ nothing else: UpSample deconv is ConvTranspose2d)
    assert len(convs) == 3 + 9 + 9 + 1
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in net.modules()) == 3


def test_unet_default_and_paper_widths() -> None:
    small = sum(p.numel() for p in AnomalySeparationUNet().parameters())
    paper = sum(p.numel() for p in AnomalySeparationUNet(channels=PAPER_SCALE_CHANNELS).parameters())
    assert small < 1_000_000 < paper


def test_unet_rejects_sizes_not_multiple_of_8() -> None:
    net = AnomalySeparationUNet(channels=TINY)
    with pytest.raises(ValueError, match=r"\(1, 1, 30, 32\) must be a multiple of 8"):
        net(torch.rand(1, 1, 30, 32))
    with pytest.raises(ValueError, match="expected input"):
        net(torch.rand(1, 2, 32, 32))
    with pytest.raises(ValueError, match="channels must have 4"):
        AnomalySeparationUNet(channels=(4, 8, 16))


def test_unet_pad_mode_handles_odd_sizes() -> None:
    net = AnomalySeparationUNet(channels=TINY, pad_mode="reflect").eval()
    x = torch.rand(1, 1, 37, 29)
    assert net(x).shape == x.shape


def test_unet_input_skip_and_sigmoid() -> None:
    net = AnomalySeparationUNet(channels=TINY, input_skip=True).eval()
    with torch.no_grad():
        net.head.conv.weight.zero_()
        net.head.conv.bias.zero_()
    x = torch.rand(1, 1, 16, 16)
    assert torch.allclose(net(x), x)  # head = 0 -> identity
    sig = AnomalySeparationUNet(channels=TINY, output_act="sigmoid")
    y = sig(x)
    assert y.min() > 0 and y.max() < 1


def test_unet_kaiming_init() -> None:
    net = AnomalySeparationUNet(channels=(16, 32, 64, 128))
    conv = net.down[2][1][1].conv  # a 3x3 conv 128 -> 128 in the bottleneck
    assert isinstance(conv, nn.Conv2d)
    fan_in = conv.weight.shape[1] * conv.weight.shape[2] * conv.weight.shape[3]
    expected_std = math.sqrt(2.0 / fan_in)  # He et al.: std = sqrt(2 / fan_in) for ReLU
    assert conv.weight.std().item() == pytest.approx(expected_std, rel=0.05)
    assert conv.weight.mean().abs().item() < 0.1 * expected_std
    # the default PyTorch init (kaiming_uniform with a=sqrt(5)) gives std sqrt(1/(3 fan_in)): far off
    assert abs(conv.weight.std().item() - math.sqrt(1.0 / (3 * fan_in))) > 0.3 * expected_std
    assert torch.count_nonzero(net.head.conv.bias) == 0


def test_unet_gradients_flow() -> None:
    net = AnomalySeparationUNet(channels=TINY)
    x = torch.rand(2, 1, 16, 16)
    net(x).abs().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    assert net.stem[0].conv.weight.grad.abs().sum() > 0


def test_verify_net_in_out(tmp_path) -> None:
    from monai.bundle import verify_net_in_out

    config = {
        "network_def": {
            "_target_": "monai_mammo.networks.asn.AnomalySeparationUNet",
            "channels": list(TINY),
        },
        "network": "$@network_def.to('cpu')",
    }
    meta = {
        "network_data_format": {
            "inputs": {
                "image": {"type": "image", "format": "magnitude", "num_channels": 1,
                          "spatial_shape": ["8*n", "8*n"], "dtype": "float32",
                          "value_range": [0, 1], "is_patch_data": True, "channel_def": {"0": "image"}}
            },
            "outputs": {
                "pred": {"type": "image", "format": "magnitude", "num_channels": 1,
                         "spatial_shape": ["8*n", "8*n"], "dtype": "float32",
                         "value_range": [], "is_patch_data": True, "channel_def": {"0": "reconstruction"}}
            },
        }
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    verify_net_in_out(
        net_id="network", meta_file=str(tmp_path / "metadata.json"),
        config_file=str(tmp_path / "config.json"), device="cpu", n=3,
    )


def test_head_init_scale_multiplies_the_kaiming_head_and_keeps_the_rng_order() -> None:
    torch.manual_seed(3)
    plain = AnomalySeparationUNet(channels=TINY, input_skip=True)
    after_plain = torch.rand(1)
    torch.manual_seed(3)
    scaled = AnomalySeparationUNet(channels=TINY, input_skip=True, head_init_scale=0.05)
    after_scaled = torch.rand(1)
    assert torch.equal(after_plain, after_scaled)  # no extra random draws: training is unchanged
    torch.testing.assert_close(scaled.head.conv.weight, plain.head.conv.weight * 0.05)
    torch.testing.assert_close(scaled.head.conv.bias, plain.head.conv.bias)
    torch.testing.assert_close(scaled.stem[0].conv.weight, plain.stem[0].conv.weight)
    given = {k: scaled.init_args[k] for k in ("channels", "input_skip", "head_init_scale")}
    assert given == {"channels": list(TINY), "input_skip": True, "head_init_scale": 0.05}


def test_networks_rebuild_from_their_checkpoint(tmp_path) -> None:
    from monai_mammo.checkpoints import load_network, network_spec, save_network

    unet = AnomalySeparationUNet(channels=TINY, act=("leakyrelu", {"negative_slope": 0.1}), pad_mode="reflect", head_init_scale=0.5)
    spec = network_spec(unet)
    assert spec["_target_"] == "monai_mammo.networks.asn.AnomalySeparationUNet"
    assert spec["act"] == ["leakyrelu", {"negative_slope": 0.1}]  # plain lists: weights_only loads them
    loaded = load_network(save_network(unet, tmp_path / "model.pt"), "cpu")
    x = torch.rand(1, 1, 20, 20)
    unet.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), unet(x))
    clf = FalsePositiveReductionClassifier(crop_size=16, input_size=32, crop_normalization="mean")
    assert "pretrained_path" not in network_spec(clf)
    loaded_clf = load_network(save_network(clf, tmp_path / "fpr.pt"), "cpu")
    assert loaded_clf.crop_size == 16 and loaded_clf.input_size == 32 and loaded_clf.crop_normalization == "mean"


def test_fpr_classifier_on_56_crop() -> None:
    clf = FalsePositiveReductionClassifier().eval()
    assert isinstance(clf, FalsePositiveReductionClassifier)
    with torch.no_grad():
        logits = clf(torch.rand(1, 1, 56, 56))
    assert logits.shape == (1, 1)
    prob = clf.probability(logits)
    assert prob.shape == (1,) and 0 < prob.item() < 1
    with pytest.raises(ValueError, match=r"got shape \(1, 1, 40, 40\)"):
        clf(torch.rand(1, 1, 40, 40))


def test_fpr_classifier_small_sizes_and_two_classes() -> None:
    clf = FalsePositiveReductionClassifier(num_classes=2, crop_size=16, input_size=32).eval()
    with torch.no_grad():
        logits = clf(torch.rand(3, 1, 16, 16))
    assert logits.shape == (3, 2)
    assert torch.allclose(fpr_probability(logits), torch.softmax(logits, 1)[:, 1])


def test_fpr_crop_normalization_mean_ignores_the_background_level(tmp_path) -> None:
    from monai_mammo.checkpoints import load_network, save_network

    torch.manual_seed(0)
    clf = FalsePositiveReductionClassifier(crop_size=16, input_size=32, crop_normalization="mean").eval()
    crops = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        # the same local contrast on a brighter tissue background gives the same logits
        assert torch.allclose(clf(crops), clf(crops + 0.3), atol=1e-5)
        plain = FalsePositiveReductionClassifier(crop_size=16, input_size=32).eval()
        plain.load_state_dict(clf.state_dict())
        assert not torch.allclose(plain(crops), plain(crops + 0.3), atol=1e-3)
    # the option travels with the checkpoint
    path = save_network(clf, tmp_path / "fpr.pt")
    loaded = load_network(path)
    assert loaded.crop_normalization == "mean"
    with torch.no_grad():
        assert torch.allclose(loaded(crops), clf(crops), atol=1e-6)
    with pytest.raises(ValueError, match="crop_normalization must be one of"):
        FalsePositiveReductionClassifier(crop_normalization="std")


def test_fpr_pretrained_3_channel_checkpoint(tmp_path) -> None:
    from monai.networks.nets import resnet50

    rgb = resnet50(spatial_dims=2, n_input_channels=3, num_classes=1000, conv1_t_stride=2, bias_downsample=False)
    path = tmp_path / "imagenet.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in rgb.state_dict().items()}}, path)
    clf = FalsePositiveReductionClassifier(crop_size=16, input_size=32, pretrained_path=path)
    # grey input replicated to RGB == summed first-conv kernel
    assert torch.allclose(clf.backbone.conv1.weight, rgb.conv1.weight.sum(1, keepdim=True))
    assert torch.equal(clf.backbone.layer4[2].conv3.weight, rgb.layer4[2].conv3.weight)
    assert clf.backbone.fc.weight.shape == (1, 2048)  # 1000-class head dropped

    bad = tmp_path / "bad.pt"
    torch.save({"conv1.weight": torch.zeros(3)}, bad)
    with pytest.raises(ValueError, match="bad.pt"):
        load_pretrained_resnet_weights(clf.backbone, bad)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_pretrained_resnet_weights(clf.backbone, tmp_path / "missing.pt")
