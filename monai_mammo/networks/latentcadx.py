"""LatentCADx (An et al., "LatentCADx: joint classification and segmentation of mammogram lesions
from imprecise hand-drawn annotations", Front. Big Data 2021, Sec. 4.1-4.2 and Fig. 3) and the
FCN-style baseline built on the same encoder.

* The **encoder** is MONAI's ``ResNet`` (the paper's "ResNet-54", read as ResNet-50: bottleneck
  blocks ``[3, 4, 6, 3]``, 8 x 8 x 2048 features for a 256 x 256 input). Its stem and four stages
  are called one by one so the decoder can take skips from the early stages.
* The **RPN head** (Sec. 4.1, "an output of 8 x 8 x 2") is a 1 x 1 convolution on the deepest
  features: two classes per cell (the annotation covers the cell or not). It is used for
  pretraining only; "the region-proposal output was discarded" afterwards (Sec. 4.2.1).
* The **decoder** (Sec. 4.2.2) has five up-sampling blocks, each doubling the size and reducing the
  channels, with skips from the early encoder layers, ending in a full-size one-channel sigmoid mask.
* The **classification head** is global average pooling and a linear layer on the deepest features.

The CPU default is much smaller than the paper's (basic blocks, one per stage, narrow widths);
``block="bottleneck", layers=(3, 4, 6, 3), block_inplanes=(64, 128, 256, 512)`` is the paper's encoder.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution, UpSample
from monai.networks.nets import ResNet
from torch import nn

from monai_mammo.checkpoints import records_init_args

__all__ = ["LatentCADxNet", "LatentFCN", "CoarseMaskUNet", "LATENTCADX_OUTPUTS"]

#: the outputs a ``LatentCADxNet`` call can return (``output=``)
LATENTCADX_OUTPUTS = ("dict", "map", "mask", "logit")


class _Encoder(nn.Module):
    """MONAI ResNet stem + four stages; returns the features at strides 2, 4, 8, 16 and 32."""

    def __init__(self, in_channels: int, block: str, layers: Sequence[int], block_inplanes: Sequence[int]) -> None:
        super().__init__()
        self.resnet = ResNet(
            block=block,
            layers=list(layers),
            block_inplanes=list(block_inplanes),
            spatial_dims=2,
            n_input_channels=in_channels,
            conv1_t_size=7,
            conv1_t_stride=2,
            num_classes=1,
            feed_forward=False,  # our own heads; MONAI's fc is not built
        )
        expansion = 4 if block == "bottleneck" else 1
        self.channels = [int(block_inplanes[0])] + [int(w) * expansion for w in block_inplanes]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        r = self.resnet
        stem = r.act(r.bn1(r.conv1(x)))  # stride 2
        x1 = r.layer1(r.maxpool(stem))  # stride 4
        x2 = r.layer2(x1)  # 8
        x3 = r.layer3(x2)  # 16
        x4 = r.layer4(x3)  # 32
        return [stem, x1, x2, x3, x4]


class _UpBlock(nn.Module):
    """x2 up-sampling (transposed convolution), concatenation with a skip, then a 3 x 3 convolution."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = UpSample(2, in_channels, out_channels, scale_factor=2, mode="deconv")
        self.conv = Convolution(2, out_channels + skip_channels, out_channels, kernel_size=3, act="RELU", norm="BATCH")

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = self.up(x)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv(x)


@records_init_args()
class LatentCADxNet(nn.Module):
    """LatentCADx: a ResNet encoder with an RPN pretraining head, a five-block skip decoder to a
    full-size sigmoid mask and a classification head (An et al., Front. Big Data 2021, Fig. 3).

    Example::

        >>> net = LatentCADxNet(block_inplanes=(8, 8, 16, 16), decoder_channels=(16, 8, 8, 8, 8))
        >>> out = net(torch.zeros(2, 1, 64, 64))
        >>> tuple(out["mask"].shape), tuple(out["logit"].shape), tuple(out["rpn"].shape)
        ((2, 1, 64, 64), (2, 1), (2, 2, 2, 2))
        >>> tuple(net(torch.zeros(1, 1, 64, 64), output="map").shape)   # mask x classification probability
        (1, 1, 64, 64)

    Args:
        in_channels: image channels. Default 1.
        block: ``"basic"`` or ``"bottleneck"`` ResNet blocks. Default ``"basic"`` (paper: bottleneck).
        layers: blocks per stage. Default ``(1, 1, 1, 1)`` (paper: ResNet-50, ``(3, 4, 6, 3)``).
        block_inplanes: stage widths. Default ``(16, 32, 64, 128)`` (paper: ``(64, 128, 256, 512)``).
        decoder_channels: output channels of the five up-sampling blocks, deepest first. Default
            ``(64, 32, 16, 16, 8)`` (paper: decreasing from 2048, ending near 8; widths not given).
        skips: use the encoder's skips (stride 16, 8, 4 and 2 features). Default True (paper: yes).
        dropout: dropout before the classification layer. Default 0.0.
        input_norm: standardise each input patch (instance norm without affine terms) before the
            encoder, so a patch and a sliding-window tile see the same contrast whatever the
            image's density and window. Default False (the paper feeds [0, 1] optical density).

    Input height and width must be multiples of 32. ``forward(x, output=...)`` returns:
    ``"dict"`` (default) ``{"logit": (B, 1), "mask": (B, 1, H, W) sigmoid, "rpn": (B, 2, H/32, W/32)}``;
    ``"map"``: ``mask * sigmoid(logit)`` (the whole-image probability map's tiles); ``"mask"`` or
    ``"logit"`` alone.
    """

    def __init__(
        self,
        in_channels: int = 1,
        block: str = "basic",
        layers: Sequence[int] = (1, 1, 1, 1),
        block_inplanes: Sequence[int] = (16, 32, 64, 128),
        decoder_channels: Sequence[int] = (64, 32, 16, 16, 8),
        skips: bool = True,
        dropout: float = 0.0,
        input_norm: bool = False,
    ) -> None:
        super().__init__()
        self.input_norm = nn.InstanceNorm2d(in_channels, affine=False) if input_norm else nn.Identity()
        if block not in ("basic", "bottleneck"):
            raise ValueError(f"LatentCADxNet: block must be 'basic' or 'bottleneck', got {block!r}")
        if len(layers) != 4 or len(block_inplanes) != 4:
            raise ValueError(f"LatentCADxNet: layers and block_inplanes need 4 values, got {layers}, {block_inplanes}")
        if len(decoder_channels) != 5:
            raise ValueError(f"LatentCADxNet: decoder_channels needs 5 values (five x2 blocks), got {decoder_channels}")
        self.encoder = _Encoder(in_channels, block, layers, block_inplanes)
        enc = self.encoder.channels  # stem, s4, s8, s16, s32
        skip_channels = [enc[3], enc[2], enc[1], enc[0], 0] if skips else [0] * 5
        self.skips = bool(skips)
        blocks, previous = [], enc[4]
        for out_ch, skip_ch in zip(decoder_channels, skip_channels):
            blocks.append(_UpBlock(previous, skip_ch, int(out_ch)))
            previous = int(out_ch)
        self.decoder = nn.ModuleList(blocks)
        self.mask_head = nn.Conv2d(previous, 1, kernel_size=1)
        self.rpn_head = nn.Conv2d(enc[4], 2, kernel_size=1)  # Sec. 4.1: 8 x 8 x 2 for a 256 input
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(enc[4], 1))
        self._encoder_frozen = False

    # --- schedule (Sec. 4.2.1): the encoder locked while only the decoder learns -----------------
    def encoder_parameters(self) -> list[nn.Parameter]:
        """Encoder and RPN head parameters (pretraining)."""
        return list(self.encoder.parameters()) + list(self.rpn_head.parameters())

    def pretraining_parameters(self) -> list[nn.Parameter]:
        """What the RPN pretraining trains: encoder, RPN head and classification head (Sec. 4.1:
        the RPN models "classify the tissue images in addition to predicting the coarse location")."""
        return self.encoder_parameters() + list(self.classifier.parameters())

    def decoder_parameters(self) -> list[nn.Parameter]:
        """The output head leading to the segmentation (Sec. 4.2.1's "only the output head")."""
        return list(self.decoder.parameters()) + list(self.mask_head.parameters())

    def set_encoder_frozen(self, frozen: bool = True) -> LatentCADxNet:
        """Lock (or unlock) the encoder: no gradients, and batch norm statistics kept (eval mode)."""
        self._encoder_frozen = bool(frozen)
        for p in self.encoder.parameters():
            p.requires_grad_(not frozen)
        self.train(self.training)
        return self

    def train(self, mode: bool = True) -> LatentCADxNet:
        super().train(mode)
        if self._encoder_frozen:
            self.encoder.eval()
        return self

    def forward(self, x: torch.Tensor, output: str = "dict") -> dict[str, torch.Tensor] | torch.Tensor:
        if x.ndim != 4 or x.shape[-1] % 32 or x.shape[-2] % 32:
            raise ValueError(f"LatentCADxNet: input must be (B, C, H, W) with H and W multiples of 32, got {tuple(x.shape)}")
        if output not in LATENTCADX_OUTPUTS:
            raise ValueError(f"LatentCADxNet: output must be one of {LATENTCADX_OUTPUTS}, got {output!r}")
        features = self.encoder(self.input_norm(x))
        logit = self.classifier(features[4])
        if output == "logit":
            return logit
        y = features[4]
        skips = [features[3], features[2], features[1], features[0], None]
        for block, skip in zip(self.decoder, skips):
            y = block(y, skip if self.skips else None)
        mask = torch.sigmoid(self.mask_head(y))
        if output == "mask":
            return mask
        if output == "map":
            return mask * torch.sigmoid(logit)[:, :, None, None]
        return {"logit": logit, "mask": mask, "rpn": self.rpn_head(features[4])}


@records_init_args()
class LatentFCN(nn.Module):
    """FCN-style baseline (Long et al., CVPR 2015, FCN-32s) on LatentCADx's encoder: a 1 x 1
    convolution on the deepest features and one x32 bilinear up-sampling to a full-size mask logit.
    An et al. (Front. Big Data 2021, Tables 1, 3, 4) compare against FCN trained on the coarse masks.

    Example::

        >>> net = LatentFCN(block_inplanes=(8, 8, 16, 16))
        >>> tuple(net(torch.zeros(2, 1, 64, 64)).shape)
        (2, 1, 64, 64)

    Args:
        in_channels, block, layers, block_inplanes, input_norm: as in :class:`LatentCADxNet`.

    Returns mask logits ``(B, 1, H, W)`` (a ``"tensor"``-family loss such as Dice + BCE trains it).
    """

    def __init__(
        self,
        in_channels: int = 1,
        block: str = "basic",
        layers: Sequence[int] = (1, 1, 1, 1),
        block_inplanes: Sequence[int] = (16, 32, 64, 128),
        input_norm: bool = False,
    ) -> None:
        super().__init__()
        self.input_norm = nn.InstanceNorm2d(in_channels, affine=False) if input_norm else nn.Identity()
        self.encoder = _Encoder(in_channels, block, layers, block_inplanes)
        self.score = nn.Conv2d(self.encoder.channels[4], 1, kernel_size=1)
        self.up = UpSample(2, 1, 1, scale_factor=32, mode="nontrainable", interp_mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[-1] % 32 or x.shape[-2] % 32:
            raise ValueError(f"LatentFCN: input must be (B, C, H, W) with H and W multiples of 32, got {tuple(x.shape)}")
        return self.up(self.score(self.encoder(self.input_norm(x))[4]))


@records_init_args()
class CoarseMaskUNet(nn.Module):
    """The U-Net baseline of An et al. (Front. Big Data 2021, Tables 1, 3, 4; Ronneberger et al. 2015):
    MONAI's 2D ``UNet`` to one mask-logit channel, trained directly on the coarse masks (Dice + BCE).
    A thin wrapper so its checkpoint carries its constructor arguments.

    Example::

        >>> tuple(CoarseMaskUNet(channels=(4, 8, 16))(torch.zeros(1, 1, 32, 32)).shape)
        (1, 1, 32, 32)

    Args:
        in_channels: image channels. Default 1.
        channels: widths per level. Default ``(16, 32, 64, 128)``.
        strides: down-sampling per level. Default: 2 between every level.
        num_res_units: residual units per block. Default 1.
        input_norm: as in :class:`LatentCADxNet`. Default False.
        norm: the U-Net's normalisation. Default ``"batch"``, as Buda et al.'s U-Net (the paper's
            baseline); MONAI's default instance norm barely trained in this bundle's short schedule.
    """

    def __init__(self, in_channels: int = 1, channels: Sequence[int] = (16, 32, 64, 128), strides: Sequence[int] | None = None,
                 num_res_units: int = 1, input_norm: bool = False, norm: str = "batch") -> None:  # fmt: skip
        super().__init__()
        from monai.networks.nets import UNet

        self.input_norm = nn.InstanceNorm2d(in_channels, affine=False) if input_norm else nn.Identity()
        strides = tuple(strides) if strides is not None else (2,) * (len(channels) - 1)
        self.unet = UNet(spatial_dims=2, in_channels=in_channels, out_channels=1, channels=tuple(channels), strides=strides,
                         num_res_units=num_res_units, norm=norm)  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unet(self.input_norm(x))
