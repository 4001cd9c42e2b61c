"""Tests for monai_mammo.inferers.breast_sliding_window (breast-only sliding window)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.inferers import SlidingWindowInferer

from monai_mammo.inferers.breast_sliding_window import MaskedSlidingWindowInferer, nonzero_mask, resolve_amp_dtype


def _conv_net(out_channels: int = 1) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(4, out_channels, 3, padding=1),
    ).eval()


class _CountingNet(torch.nn.Module):
    """Identity that records every tile it sees (as its top-left-corner-free content sum)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.tiles = 0
        self.tile_inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.tiles += x.shape[0]
        self.tile_inputs.extend(list(x))
        return x.clone()


def _blob_mask(h: int, w: int) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    # a half-ellipse on the left edge, like a breast silhouette
    return (((yy - h / 2) / (0.4 * h)) ** 2 + (xx / (0.45 * w)) ** 2 <= 1)[None, None]


def test_identity_network_inside_and_fill_outside() -> None:
    img = torch.rand(1, 1, 150, 110)
    mask = _blob_mask(150, 110)
    inf = MaskedSlidingWindowInferer(roi_size=32, sw_batch_size=4, overlap=0.25, mode="gaussian")
    with torch.no_grad():
        out = inf(img, torch.nn.Identity(), mask=mask)
    assert out.shape == img.shape
    torch.testing.assert_close(out[mask], img[mask], atol=1e-6, rtol=0)
    assert torch.all(out[~mask] == 0)


def test_fill_value_and_mask_shapes() -> None:
    img = torch.rand(1, 1, 64, 64)
    mask2d = np.zeros((64, 64), dtype=np.uint8)
    mask2d[10:20, 10:20] = 1
    inf = MaskedSlidingWindowInferer(roi_size=16, fill_value=-1.0)
    with torch.no_grad():
        out = inf(img, torch.nn.Identity(), mask=mask2d)
    m = torch.from_numpy(mask2d).bool()
    assert torch.all(out[0, 0][~m] == -1.0)
    torch.testing.assert_close(out[0, 0][m], img[0, 0][m])
    with pytest.raises(ValueError, match="mask shape"):
        inf(img, torch.nn.Identity(), mask=torch.ones(1, 1, 63, 64))
    with pytest.raises(ValueError, match="selects no tile"):
        inf(img, torch.nn.Identity(), mask=torch.zeros(64, 64))


@pytest.mark.parametrize("overlap", [0.0, 0.25])
@pytest.mark.parametrize("mode", ["gaussian", "constant"])
@pytest.mark.parametrize("sw_batch_size", [1, 3])
def test_equal_to_monai_inside_mask(overlap: float, mode: str, sw_batch_size: int) -> None:
    net = _conv_net(out_channels=2)
    torch.manual_seed(1)
    img = torch.rand(2, 1, 133, 97)
    mask = torch.cat([_blob_mask(133, 97), _blob_mask(133, 97).flip(-1)])  # per-image masks
    ours = MaskedSlidingWindowInferer(roi_size=(32, 24), sw_batch_size=sw_batch_size, overlap=overlap, mode=mode)
    ref = SlidingWindowInferer(roi_size=(32, 24), sw_batch_size=4, overlap=overlap, mode=mode)
    with torch.no_grad():
        a = ours(img, net, mask=mask)
        b = ref(img, net)
    inside = mask.expand_as(a)
    assert (a - b).abs()[inside].max().item() <= 1e-5
    assert torch.all(a[~inside] == 0)
    assert ours.last_stats["tiles_computed"] < ours.last_stats["tiles_total"]


def test_tiles_outside_mask_are_never_computed() -> None:
    # 4 x 4 grid of 16 px tiles without overlap; mask touches exactly the tiles (0,0) and (2,3).
    img = torch.arange(64 * 64, dtype=torch.float32).reshape(1, 1, 64, 64)
    mask = torch.zeros(1, 1, 64, 64, dtype=torch.bool)
    mask[..., 5, 5] = True
    mask[..., 40:44, 60] = True
    net = _CountingNet()
    inf = MaskedSlidingWindowInferer(roi_size=16, sw_batch_size=8, overlap=0.0)
    with torch.no_grad():
        inf(img, net, mask=mask)
    assert net.tiles == 2 and net.calls == 1
    assert inf.last_stats == {"tiles_total": 16, "tiles_computed": 2, "network_calls": 1, "mask_fraction": 5 / 4096}
    seen = sorted(float(t[0, 0, 0]) for t in net.tile_inputs)  # first pixel of each tile
    assert seen == [0.0, float(32 * 64 + 48)]


def test_min_coverage_skips_sparse_tiles() -> None:
    img = torch.rand(1, 1, 32, 32)
    mask = torch.zeros(1, 1, 32, 32, dtype=torch.bool)
    mask[..., :16, :16] = True  # tile (0,0) full
    mask[..., 20, 20] = True  # tile (1,1): a single pixel
    net = _CountingNet()
    inf = MaskedSlidingWindowInferer(roi_size=16, overlap=0.0, min_coverage=0.5, sw_batch_size=4)
    with torch.no_grad():
        out = inf(img, net, mask=mask)
    assert net.tiles == 1
    assert out[0, 0, 20, 20] == 0  # a mask pixel no computed tile covers gets fill_value


def test_mask_output_false_keeps_computed_values() -> None:
    img = torch.rand(1, 1, 32, 32)
    mask = torch.zeros(1, 1, 32, 32, dtype=torch.bool)
    mask[..., 3, 3] = True
    inf = MaskedSlidingWindowInferer(roi_size=16, overlap=0.0, mask_output=False)
    with torch.no_grad():
        out = inf(img, torch.nn.Identity(), mask=mask)
    torch.testing.assert_close(out[..., :16, :16], img[..., :16, :16])
    assert torch.all(out[..., 16:, :] == 0) and torch.all(out[..., :, 16:] == 0)


def test_no_mask_is_plain_monai_and_mask_fn() -> None:
    net = _conv_net()
    img = torch.rand(1, 1, 70, 50)
    with torch.no_grad():
        plain = MaskedSlidingWindowInferer(roi_size=32)(img, net)
        ref = SlidingWindowInferer(roi_size=32)(img, net)
    torch.testing.assert_close(plain, ref)
    zeroed = img.clone()
    zeroed[..., :, 25:] = 0  # background zeroed in preprocessing
    inf = MaskedSlidingWindowInferer(roi_size=16, overlap=0.0, mask_fn=nonzero_mask)
    counter = _CountingNet()
    with torch.no_grad():
        inf(zeroed, counter)
    assert counter.tiles == 5 * 2  # 5 tile rows (last one aligned to the end) x 2 tile columns


def test_image_smaller_than_roi_and_metatensor() -> None:
    net = _conv_net()
    img = MetaTensor(torch.rand(1, 1, 20, 30), meta={"spacing": [0.07, 0.07]})
    mask = torch.ones(1, 1, 20, 30)
    mask[..., :5, :] = 0
    with torch.no_grad():
        out = MaskedSlidingWindowInferer(roi_size=32, padding_mode="reflect")(img, net, mask=mask)
        ref = SlidingWindowInferer(roi_size=32, padding_mode="reflect")(img, net)
    assert isinstance(out, MetaTensor) and out.meta["spacing"] == [0.07, 0.07]
    assert out.shape == img.shape
    assert (out - ref).abs()[mask.bool()].max() <= 1e-6


def test_bad_network_output_raises() -> None:
    inf = MaskedSlidingWindowInferer(roi_size=16)
    with pytest.raises(ValueError, match="network output shape"):
        inf(torch.rand(1, 1, 32, 32), torch.nn.MaxPool2d(2), mask=torch.ones(32, 32))


def test_amp_bf16_close() -> None:
    net = _conv_net()
    img = torch.rand(1, 1, 48, 48)
    mask = _blob_mask(48, 48)
    with torch.no_grad():
        a = MaskedSlidingWindowInferer(roi_size=16, amp="bf16")(img, net, mask=mask)
        b = MaskedSlidingWindowInferer(roi_size=16)(img, net, mask=mask)
    assert a.dtype == torch.float32
    assert (a - b).abs().max() < 0.05
    assert resolve_amp_dtype("none") is None and resolve_amp_dtype("fp16") is torch.float16
    with pytest.raises(ValueError):
        resolve_amp_dtype("int8")


@pytest.mark.gpu
def test_cuda_matches_cpu() -> None:
    net = _conv_net()
    img = torch.rand(1, 1, 96, 80)
    mask = _blob_mask(96, 80)
    with torch.no_grad():
        cpu = MaskedSlidingWindowInferer(roi_size=32, mode="gaussian")(img, net, mask=mask)
        gpu = MaskedSlidingWindowInferer(roi_size=32, mode="gaussian")(img.cuda(), net.cuda(), mask=mask)
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=1e-5)
