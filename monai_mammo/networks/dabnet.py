"""DAB-Net: a ResNet-34 encoder whose hidden features are split into a mass half and a glands half,
two decoders reconstructing the clear mass and the glands, and a classifier on the mass half.

Paper: Wang et al., "Disentangling Disease-related Representation from Obscure for Disease
Prediction" (DAB-Net), ICML 2022, Sec. 3.3 (encoder f_E, decoders f_Dm / f_Dg, classifier f_C).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai.networks.nets import resnet34
from torch import nn

from monai_mammo.checkpoints import load_checkpoint, records_init_args, unwrap_state_dict

__all__ = ["DECODER_MODES", "DABNet"]

#: the decoder layouts (paper Table 2): both decoders (DAB-Net), ablations without one of them,
#: one shared decoder with doubled channels ("One branch") and no decoder at all (ERM / AD).
DECODER_MODES = ("both", "mass_only", "glands_only", "shared", "none")


class _Decoder(nn.Sequential):
    """Upsampling decoder: per stage x2 bilinear upsampling + 3x3 conv-BN-ReLU, then a 1x1 conv."""

    def __init__(self, in_channels: int, channels: Sequence[int], out_channels: int) -> None:
        layers: list[nn.Module] = []
        previous = in_channels
        for width in channels:
            layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            layers.append(Convolution(2, previous, width, kernel_size=3, act="relu", norm="batch"))
            previous = width
        layers.append(Convolution(2, previous, out_channels, kernel_size=1, conv_only=True))
        super().__init__(*layers)


@records_init_args("pretrained")
class DABNet(nn.Module):
    """DAB-Net (Wang et al., "Disentangling Disease-related Representation from Obscure for Disease
    Prediction", ICML 2022, Sec. 3.3).

    - Encoder f_E: MONAI ResNet-34 (2D, ``in_channels`` input channels, 7x7 stride-2 stem as in
      He et al., so the feature map is the input downsampled 32x) up to ``layer4``.
    - The hidden feature map h_c (512 channels) is split along the channel axis into two equal
      halves: h_m = channels [0, 256) (mass) and h_g = channels [256, 512) (glands).
    - Decoders f_Dm(h_m) -> x̂_m and f_Dg(h_g) -> x̂_g reconstruct the clear mass and the glands at
      the input size (bilinear upsampling stages; a final resize if the input size is not a
      multiple of 32).
    - Classifier f_C(h_m): global average pooling + linear layer -> one logit (malignant).

    Ablations (paper Table 2) through ``decoders``: ``"both"`` (DAB-Net), ``"mass_only"`` (no
    glands decoder), ``"glands_only"`` (no mass decoder), ``"shared"`` ("One branch": one decoder
    with doubled channels that reads the whole h_c and outputs both reconstructions) and
    ``"none"`` (ERM / AD: plain ResNet-34, the classifier then reads the whole h_c).

    ``forward(x)`` returns the logit ``(B, 1)``; ``forward(x, return_reconstructions=True)``
    returns ``{"logit", "rec_mass", "rec_glands"}`` (``None`` for an absent decoder). Inference
    needs only f_E -> h_m -> f_C, which is what the plain call runs. Training calls it through
    ``monai_mammo.multitask.DictTargetPrepareBatch(network_kwargs={"return_reconstructions": True})``.

    The network records its constructor arguments (``init_args``, without ``pretrained``), so a
    checkpoint saved with :class:`monai_mammo.checkpoints.NetworkSpec` rebuilds it
    (:func:`monai_mammo.checkpoints.load_network`).

    Args:
        in_channels: image channels; default 1 (mammograms).
        spatial_size: nominal input size, only checked in :meth:`forward` when given; default
            ``None`` (any size >= 32). The paper uses 224.
        decoders: decoder layout, one of :data:`DECODER_MODES`; default ``"both"``.
        decoder_channels: widths of the upsampling stages of each decoder (5 stages undo the 32x
            downsampling); default ``(128, 64, 32, 16, 16)``; doubled for ``"shared"``.
        dropout: dropout before the classifier's linear layer; default 0.0.
        conv1_stride: stride of the 7x7 stem convolution; default 2 (He et al., the feature map is
            1/32 of the input). 1 keeps fine margin detail of small ROIs (e.g. 64 x 64) at 4x the
            encoder compute (map 1/16 of the input; the decoders' output is resized to the input).
        pretrained: path of a local checkpoint for the encoder (a state dict of MONAI's 2D
            ``resnet34`` or of a DABNet, possibly nested as
            :func:`monai_mammo.checkpoints.unwrap_state_dict` reads it, loaded with
            ``weights_only=True``); default ``None`` (random init). Nothing is downloaded.

    Example::

        >>> import torch
        >>> net = DABNet(decoders="both")
        >>> out = net(torch.rand(2, 1, 64, 64), return_reconstructions=True)
        >>> out["logit"].shape, out["rec_mass"].shape
        (torch.Size([2, 1]), torch.Size([2, 1, 64, 64]))
    """

    hidden_channels = 512

    def __init__(
        self,
        in_channels: int = 1,
        spatial_size: Sequence[int] | None = None,
        decoders: str = "both",
        decoder_channels: Sequence[int] = (128, 64, 32, 16, 16),
        dropout: float = 0.0,
        pretrained: str | os.PathLike | None = None,
        conv1_stride: int = 2,
    ) -> None:
        super().__init__()
        if decoders not in DECODER_MODES:
            raise ValueError(f"decoders must be one of {DECODER_MODES}, got {decoders!r}")
        if not decoder_channels:
            raise ValueError("decoder_channels must name at least one stage width")
        if conv1_stride not in (1, 2):
            raise ValueError(f"conv1_stride must be 1 or 2, got {conv1_stride}")
        self.in_channels = in_channels
        self.spatial_size = tuple(spatial_size) if spatial_size is not None else None
        self.decoders = decoders
        # He et al.'s stem (7x7, stride 2) so the map is 1/32 of the input and torchvision-like
        # checkpoints fit; MONAI's default stride 1 would cost 4x the compute.
        self.encoder = resnet34(
            spatial_dims=2, n_input_channels=in_channels, conv1_t_size=7, conv1_t_stride=conv1_stride, feed_forward=False
        )
        self.encoder.fc = None
        half = self.hidden_channels // 2
        self.mass_decoder: nn.Module | None = None
        self.glands_decoder: nn.Module | None = None
        self.shared_decoder: nn.Module | None = None
        if decoders in ("both", "mass_only"):
            self.mass_decoder = _Decoder(half, decoder_channels, in_channels)
        if decoders in ("both", "glands_only"):
            self.glands_decoder = _Decoder(half, decoder_channels, in_channels)
        if decoders == "shared":
            # paper Sec. 4.3: "Channels of decoders in One Branch are doubled"
            self.shared_decoder = _Decoder(self.hidden_channels, [2 * c for c in decoder_channels], 2 * in_channels)
        classifier_in = self.hidden_channels if decoders == "none" else half
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(classifier_in, 1)
        )
        if pretrained:
            self.load_encoder(pretrained)

    def load_encoder(self, path: str | os.PathLike) -> None:
        """Load encoder weights from a local checkpoint (``weights_only=True``)."""
        state = unwrap_state_dict(load_checkpoint(path), str(path))
        if any(key.startswith("encoder.") for key in state):
            state = {key[len("encoder.") :]: value for key, value in state.items() if key.startswith("encoder.")}
        state = {key: value for key, value in state.items() if not key.startswith("fc.")}
        result = self.encoder.load_state_dict(state, strict=False)
        if result.missing_keys:
            raise ValueError(f"{path}: encoder checkpoint lacks {len(result.missing_keys)} keys, e.g. {result.missing_keys[:3]}")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """f_E: the hidden feature map h_c, ``(B, 512, H/32, W/32)``."""
        enc = self.encoder
        x = enc.act(enc.bn1(enc.conv1(x)))
        if not enc.no_max_pool:
            x = enc.maxpool(x)
        return enc.layer4(enc.layer3(enc.layer2(enc.layer1(x))))

    def split(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h_c -> (h_m, h_g), the equal channel halves (paper Sec. 3.3, "Encoder")."""
        half = self.hidden_channels // 2
        return hidden[:, :half], hidden[:, half:]

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"DABNet expects (B, {self.in_channels}, H, W) input, got {tuple(x.shape)}")
        if x.shape[-1] < 32 or x.shape[-2] < 32:
            raise ValueError(f"DABNet needs H, W >= 32 (32x downsampling), got {tuple(x.shape)}")
        if self.spatial_size is not None and tuple(x.shape[-2:]) != self.spatial_size:
            raise ValueError(f"DABNet was configured for spatial_size {self.spatial_size}, got input {tuple(x.shape)}")

    def _to_input_size(self, image: torch.Tensor, size: torch.Size) -> torch.Tensor:
        if image.shape[-2:] != size:
            image = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
        return image

    def forward(self, x: torch.Tensor, return_reconstructions: bool = False) -> torch.Tensor | dict[str, Any]:
        self._check_input(x)
        hidden = self.encode(x)
        if self.decoders == "none":
            logit = self.classifier(hidden)
            if not return_reconstructions:
                return logit
            return {"logit": logit, "rec_mass": None, "rec_glands": None}
        h_mass, h_glands = self.split(hidden)
        logit = self.classifier(h_mass)  # f_C reads the mass half only
        if not return_reconstructions:
            return logit
        size = x.shape[-2:]
        rec_mass = rec_glands = None
        if self.mass_decoder is not None:
            rec_mass = self._to_input_size(self.mass_decoder(h_mass), size)
        if self.glands_decoder is not None:
            rec_glands = self._to_input_size(self.glands_decoder(h_glands), size)
        if self.shared_decoder is not None:
            both = self._to_input_size(self.shared_decoder(hidden), size)
            rec_mass, rec_glands = both[:, : self.in_channels], both[:, self.in_channels :]
        return {"logit": logit, "rec_mass": rec_mass, "rec_glands": rec_glands}
