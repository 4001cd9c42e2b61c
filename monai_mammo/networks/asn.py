"""ASN networks: the reconstruction U-Net and the false-positive-reduction (FPR) classifier.

Zhang et al., "Cascaded Generative and Discriminative Learning for Microcalcification Detection in
Breast Mammograms", CVPR 2019 (seed ``003_d8ab11915d521395.txt``), Sec. 3.1.1 (reconstruction
network) and Sec. 3.2 (FPR). Both record their constructor arguments
(:func:`monai_mammo.checkpoints.records_init_args`), so a checkpoint rebuilds them. How an output
becomes the map that candidates are taken from is :func:`monai_mammo.regions.candidate_map`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution, UpSample
from monai.networks.layers.factories import Pool
from monai.networks.nets import resnet50
from torch import nn

from monai_mammo.checkpoints import load_checkpoint, records_init_args, unwrap_state_dict

__all__ = [
    "AnomalySeparationUNet",
    "FalsePositiveReductionClassifier",
    "load_pretrained_resnet_weights",
    "fpr_probability",
    "CROP_NORMALIZATIONS",
    "PAPER_SCALE_CHANNELS",
]

#: Per-crop intensity normalisations of :class:`FalsePositiveReductionClassifier`.
CROP_NORMALIZATIONS: tuple[str, ...] = ("none", "mean")

#: Widths for a paper-scale run (GPU). The paper gives none; these are the classic U-Net widths
#: one level shallower (3 down-sampling stages), ~11.6 M parameters.
PAPER_SCALE_CHANNELS: tuple[int, int, int, int] = (64, 128, 256, 512)


def _conv_stage(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    num_convs: int,
    act: str | tuple,
    norm: str | tuple | None,
    dropout: float,
) -> nn.Sequential:
    """``num_convs`` 3x3 conv-norm-act layers (Zhang et al. Sec. 3.1.1: "each stage includes 3
    convolution layers")."""
    layers = []
    for i in range(num_convs):
        layers.append(
            Convolution(
                spatial_dims,
                in_channels if i == 0 else out_channels,
                out_channels,
                kernel_size=3,
                act=act,
                norm=norm,
                dropout=dropout,
                # a bias before a normalisation layer is redundant
                bias=norm is None,
            )
        )
    return nn.Sequential(*layers)


@records_init_args()
class AnomalySeparationUNet(nn.Module):
    """Reconstruction U-Net f(Θ; ·) of the Anomaly Separation Network (ASN).

    Zhang et al., CVPR 2019, Sec. 3.1.1: a U-Net with 3 down-sampling and 3 up-sampling stages and
    skip connections, 3 convolution layers per stage, He (Kaiming) initialisation [9], trained from
    scratch. The total down-sampling factor is 8 so that µCs of ≤ 14 px survive the bottleneck.

    Layout (``channels = (c0, c1, c2, c3)``)::

        stem   : 3 conv  in -> c0                  (full resolution)
        down i : maxpool 2, 3 conv c(i-1) -> c(i)  (i = 1, 2, 3; the 3rd is the bottleneck, /8)
        up i   : UpSample x2 c(i+1) -> c(i), concat skip, 3 conv 2c(i) -> c(i)   (i = 2, 1, 0)
        head   : 1x1 conv c0 -> out  (linear)

    The output is the reconstruction ``f(Θ; I)`` of the input (same shape). The last layer is
    **linear** by default (``output_act=None``): the t-test loss (Eq. 6) asks positive residuals
    ``|f − I|`` to exceed β = 0.8 on [0, 1] images, and a µC pixel of intensity 0.6 can only reach a
    residual of 0.8 if ``f`` may leave [0, 1] (≤ −0.2); a sigmoid would cap it. The same linear head
    serves the U-Net+CE ablation, whose output is then a logit. See
    :func:`monai_mammo.regions.candidate_map` for how each output becomes a candidate map.

    Default widths ``(16, 32, 64, 128)`` (~0.73 M parameters) keep the 2-core CPU demo within budget;
    the paper gives no widths, and :data:`PAPER_SCALE_CHANNELS` ``(64, 128, 256, 512)`` is the
    suggested paper-scale choice on a GPU.

    Args:
        spatial_dims: number of spatial dimensions. Default 2 (radiographs).
        in_channels: input channels. Default 1 (grey-level mammogram).
        out_channels: output channels. Default 1 (reconstruction, or one logit for U-Net+CE).
        channels: widths of the 4 levels (stem, down 1, down 2, bottleneck). Default (16, 32, 64, 128).
        convs_per_stage: convolution layers per stage. Default 3 (paper).
        act: activation (MONAI name or (name, args)). Default "relu" (what Kaiming init assumes).
        norm: normalisation (MONAI name or (name, args)) or None. Default "batch" (not stated in
            the paper; batch norm is the usual choice for a 2019 U-Net).
        dropout: dropout rate inside the conv layers. Default 0.0.
        upsample: MONAI ``UpSample`` mode: "deconv" (transposed conv, default), "nontrainable"
            (bilinear interpolation + conv) or "pixelshuffle".
        output_act: None (linear head, default) or "sigmoid" (reconstruction kept in [0, 1]).
        input_skip: if True the head predicts a correction added to the input, ``f = I + head``,
            so the network starts near the identity (faster on a CPU budget; not in the paper).
            Do not zero the head: at residual exactly 0 the L1 residual's subgradient is 0 and
            training would not start. Default False.
        pad_mode: what to do when H or W is not a multiple of 8 (= 2**3): None (default) raises a
            ValueError naming the shape; "reflect" / "replicate" / "constant" pads bottom/right
            and crops the output back, so any size works.
        head_init_scale: multiply the initial weights of the head (the last, linear layer) by this
            after the Kaiming initialisation. With ``input_skip`` a small head (the bundle's 0.05)
            makes the network start close to the identity, so the negative residuals of the t-test
            loss (Eq. 6) start near 0 instead of O(1), and a CPU budget is spent on separating µCs.
            Not in the paper (Kaiming everywhere). The weights stay non-zero, so the L1 residual
            keeps a gradient. Default None (no scaling).

    Example::

        >>> import torch
        >>> from monai_mammo.networks.asn import AnomalySeparationUNet
        >>> net = AnomalySeparationUNet(channels=(8, 16, 32, 64))
        >>> net(torch.rand(2, 1, 112, 112)).shape
        torch.Size([2, 1, 112, 112])
    """

    num_downsamplings: int = 3

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        channels: Sequence[int] = (16, 32, 64, 128),
        convs_per_stage: int = 3,
        act: str | tuple = "relu",
        norm: str | tuple | None = "batch",
        dropout: float = 0.0,
        upsample: str = "deconv",
        output_act: str | None = None,
        input_skip: bool = False,
        pad_mode: str | None = None,
        head_init_scale: float | None = None,
    ) -> None:
        super().__init__()
        channels = tuple(int(c) for c in channels)
        # a network rebuilt from a checkpoint's spec gets lists where the config gave tuples
        act = tuple(act) if isinstance(act, list) else act
        norm = tuple(norm) if isinstance(norm, list) else norm
        if len(channels) != self.num_downsamplings + 1:
            raise ValueError(
                f"AnomalySeparationUNet: channels must have {self.num_downsamplings + 1} widths "
                f"(stem + 3 down-sampling stages), got {channels}"
            )
        if output_act not in (None, "sigmoid"):
            raise ValueError(f"AnomalySeparationUNet: output_act must be None or 'sigmoid', got {output_act!r}")
        if pad_mode not in (None, "reflect", "replicate", "constant"):
            raise ValueError(
                f"AnomalySeparationUNet: pad_mode must be None, 'reflect', 'replicate' or 'constant', got {pad_mode!r}"
            )
        if input_skip and in_channels != out_channels:
            raise ValueError(
                f"AnomalySeparationUNet: input_skip needs in_channels == out_channels, got {in_channels}, {out_channels}"
            )
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.channels = channels
        self.output_act = output_act
        self.input_skip = input_skip
        self.pad_mode = pad_mode

        def stage(cin: int, cout: int) -> nn.Sequential:
            return _conv_stage(spatial_dims, cin, cout, convs_per_stage, act, norm, dropout)

        pool = Pool[Pool.MAX, spatial_dims]
        self.stem = stage(in_channels, channels[0])
        self.down = nn.ModuleList(
            nn.Sequential(pool(kernel_size=2), stage(channels[i - 1], channels[i]))
            for i in range(1, len(channels))
        )
        self.up = nn.ModuleList()
        self.decode = nn.ModuleList()
        for i in reversed(range(len(channels) - 1)):
            self.up.append(UpSample(spatial_dims, channels[i + 1], channels[i], scale_factor=2, mode=upsample))
            self.decode.append(stage(2 * channels[i], channels[i]))
        self.head = Convolution(spatial_dims, channels[0], out_channels, kernel_size=1, conv_only=True, bias=True)
        self._negative_slope = self._act_negative_slope(act)
        self.head_init_scale = None if head_init_scale is None else float(head_init_scale)
        self.reset_parameters()
        if self.head_init_scale is not None and self.head_init_scale != 1.0:
            with torch.no_grad():
                for name, param in self.head.named_parameters():
                    if name.endswith("weight"):
                        param.mul_(self.head_init_scale)

    @staticmethod
    def _act_negative_slope(act: str | tuple) -> float | None:
        name = act[0] if isinstance(act, tuple) else act
        if str(name).lower() == "relu":
            return 0.0
        if str(name).lower() == "leakyrelu":
            args = act[1] if isinstance(act, tuple) and len(act) > 1 else {}
            return float(args.get("negative_slope", 0.01))
        return None

    def reset_parameters(self) -> None:
        """He (Kaiming) normal initialisation of every conv (Zhang et al. Sec. 4.1, ref. [9]).

        Biases start at 0 and normalisation layers at the identity.
        """
        slope = self._negative_slope
        nonlinearity = "leaky_relu" if slope is not None else "relu"
        for module in self.modules():
            if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
                nn.init.kaiming_normal_(module.weight, a=slope or 0.0, mode="fan_in", nonlinearity=nonlinearity)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)):
                if getattr(module, "weight", None) is not None:
                    nn.init.ones_(module.weight)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)

    @property
    def size_divisor(self) -> int:
        """Spatial sizes must be multiples of this (8) unless ``pad_mode`` is set."""
        return 2**self.num_downsamplings

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"AnomalySeparationUNet: expected input (B, {self.in_channels}, *{self.spatial_dims} spatial dims), "
                f"got shape {tuple(x.shape)}"
            )
        spatial = tuple(x.shape[2:])
        divisor = self.size_divisor
        pads = [(-s) % divisor for s in spatial]
        if any(pads):
            if self.pad_mode is None:
                raise ValueError(
                    f"AnomalySeparationUNet: spatial size {spatial} of input {tuple(x.shape)} must be a multiple of "
                    f"{divisor} (3 down-samplings by 2); pad the input or construct with pad_mode='reflect'"
                )
            # F.pad lists (last dim start, end, previous dim start, end, ...): pad end only
            pad_arg: list[int] = []
            for p in reversed(pads):
                pad_arg += [0, p]
            x_in = F.pad(x, pad_arg, mode=self.pad_mode)
        else:
            x_in = x

        skips = [self.stem(x_in)]
        for down in self.down:
            skips.append(down(skips[-1]))
        h = skips.pop()
        for up, decode in zip(self.up, self.decode):
            h = decode(torch.cat([up(h), skips.pop()], dim=1))
        out = self.head(h)

        if any(pads):
            out = out[(slice(None), slice(None)) + tuple(slice(0, s) for s in spatial)]
        if self.input_skip:
            out = out + x
        if self.output_act == "sigmoid":
            out = torch.sigmoid(out)
        return out


@records_init_args("pretrained_path")
class FalsePositiveReductionClassifier(nn.Module):
    """False positive reduction (FPR) classifier: MONAI's 2D ResNet-50 on candidate crops.

    Zhang et al., CVPR 2019, Sec. 3.2: a 56×56 patch around each ASN candidate is resized to
    224×224 and classified by ResNet-50 (ImageNet-pretrained in the paper; weights optional here).
    The final score is the product ASN score × FPR probability (Sec. 3.2, no equation number).

    The resize happens inside :meth:`forward` (bilinear, ``align_corners=False``), so callers pass
    raw ``crop_size`` crops; inputs already at ``input_size`` pass through unchanged. The stem is
    the ImageNet one (7×7 conv, stride 2, max pool) with one input channel.

    Args:
        num_classes: 1 (one logit, sigmoid probability; default) or 2 (softmax, class 1 = µC).
        crop_size: side of the square crop around a candidate, in pixels. Default 56 (paper).
        input_size: side the crop is resized to before the ResNet. Default 224 (paper).
        pretrained_path: optional local checkpoint (state dict, e.g. torchvision's ImageNet
            ResNet-50) loaded through :func:`load_pretrained_resnet_weights`. Default None. Left
            out of the recorded constructor arguments: a trained checkpoint supersedes it.
        resize_mode: interpolation mode for the resize. Default "bilinear".
        norm: ResNet normalisation. Default "batch".
        crop_normalization: what happens to each crop before the resize: "none" (default, the
            paper: the crop's grey levels as they are) or "mean" (subtract the crop's own mean, so
            the classifier sees local contrast whatever the tissue background; not in the paper,
            measured better from scratch, see the ASN bundle docs).

    Example::

        >>> import torch
        >>> from monai_mammo.networks.asn import FalsePositiveReductionClassifier
        >>> clf = FalsePositiveReductionClassifier().eval()
        >>> clf(torch.rand(2, 1, 56, 56)).shape
        torch.Size([2, 1])
    """

    def __init__(
        self,
        num_classes: int = 1,
        crop_size: int = 56,
        input_size: int = 224,
        pretrained_path: str | Path | None = None,
        resize_mode: str = "bilinear",
        norm: str | tuple = "batch",
        crop_normalization: str = "none",
    ) -> None:
        super().__init__()
        norm = tuple(norm) if isinstance(norm, list) else norm
        if num_classes not in (1, 2):
            raise ValueError(f"FalsePositiveReductionClassifier: num_classes must be 1 or 2, got {num_classes}")
        if crop_normalization not in CROP_NORMALIZATIONS:
            raise ValueError(
                f"FalsePositiveReductionClassifier: crop_normalization must be one of {CROP_NORMALIZATIONS}, "
                f"got {crop_normalization!r}"
            )
        self.crop_normalization = crop_normalization
        self.num_classes = num_classes
        self.crop_size = int(crop_size)
        self.input_size = int(input_size)
        self.resize_mode = resize_mode
        # conv1 stride 2 and bias-free downsample convs: the ImageNet ResNet-50 layout, so that
        # torchvision-style checkpoints load key for key
        self.backbone = resnet50(
            spatial_dims=2,
            n_input_channels=1,
            num_classes=num_classes,
            conv1_t_stride=2,
            bias_downsample=False,
            norm=norm,
        )
        if pretrained_path is not None:
            load_pretrained_resnet_weights(self.backbone, pretrained_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) for crops (B, 1, crop_size, crop_size) or (B, 1, input_size, input_size)."""
        allowed = {(self.crop_size, self.crop_size), (self.input_size, self.input_size)}
        spatial = tuple(int(s) for s in x.shape[2:])  # ints also under torch.jit.trace (shapes are tensors there)
        if x.ndim != 4 or x.shape[1] != 1 or spatial not in allowed:
            raise ValueError(
                f"FalsePositiveReductionClassifier: expected (B, 1, {self.crop_size}, {self.crop_size}) crops "
                f"(or already resized to {self.input_size}), got shape {tuple(x.shape)}"
            )
        if self.crop_normalization == "mean":
            x = x - x.mean(dim=(-2, -1), keepdim=True)
        if spatial != (self.input_size, self.input_size):
            align = False if self.resize_mode in ("bilinear", "bicubic") else None
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode=self.resize_mode, align_corners=align)
        return self.backbone(x)

    def probability(self, logits: torch.Tensor) -> torch.Tensor:
        """µC probability per crop, shape (B,)."""
        return fpr_probability(logits)


def fpr_probability(logits: torch.Tensor) -> torch.Tensor:
    """µC probability (B,) from FPR logits (B, 1) (sigmoid) or (B, 2) (softmax, class 1)."""
    if logits.ndim != 2 or logits.shape[1] not in (1, 2):
        raise ValueError(f"fpr_probability: expected logits (B, 1) or (B, 2), got shape {tuple(logits.shape)}")
    if logits.shape[1] == 1:
        return torch.sigmoid(logits[:, 0])
    return torch.softmax(logits, dim=1)[:, 1]


def load_pretrained_resnet_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a local ResNet-50 checkpoint into MONAI's 2D ResNet-50 ``model`` (in place).

    Loaded with ``torch.load(weights_only=True)``. Accepts a plain state dict or one nested under
    "state_dict" / "model" / "network", with optional "module." / "backbone." prefixes. A 3-channel
    first conv (ImageNet) is summed over its input channels, which is exact for a grey image
    replicated to RGB. The classifier head ``fc`` is kept only if its shape matches ``num_classes``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a state dict, or backbone weights are missing / mismatched.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"FPR pretrained weights: no file at {path}")
    state = unwrap_state_dict(load_checkpoint(path), str(path))
    state = unwrap_state_dict(state, str(path), strip_prefix="backbone.")
    own = model.state_dict()
    conv1 = state.get("conv1.weight")
    if conv1 is not None and conv1.ndim == 4 and "conv1.weight" in own:
        want = own["conv1.weight"].shape[1]
        if conv1.shape[1] != want:
            if want != 1:
                raise ValueError(f"{path}: conv1.weight has {conv1.shape[1]} input channels, the model {want}")
            state["conv1.weight"] = conv1.sum(dim=1, keepdim=True)
    for key in ("fc.weight", "fc.bias"):
        if key in state and key in own and state[key].shape != own[key].shape:
            del state[key]  # a 1000-class ImageNet head does not fit; keep the fresh head
    mismatched = [k for k in state if k in own and state[k].shape != own[k].shape]
    if mismatched:
        raise ValueError(
            f"{path}: shape mismatch for {', '.join(f'{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}' for k in mismatched[:5])}"
        )
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("fc.") and not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(f"{path}: checkpoint lacks backbone weights {', '.join(missing[:8])} ({len(missing)} in all)")
    if result.unexpected_keys:
        raise ValueError(f"{path}: unexpected keys {', '.join(result.unexpected_keys[:8])}; is this a ResNet-50?")
    return model
