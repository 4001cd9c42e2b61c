"""Networks of Kim, Jung, Lee, "Weakly supervised thoracic disease localization via disease masks".

* :class:`AlignmentRegressor`: a MONAI ResNet (ResNet-18 layout by default) regressing the five
  parameters ``(s_x, s_y, t_x, t_y, θ)`` of Eq. 5. Ours, not the paper's: it starts at the
  identity (zero-initialised last layer) and its outputs are bounded (``1 + max_scale tanh``,
  ``max_shift tanh``, ``max_rotation tanh``), so an untrained regressor leaves an image unchanged.
* :class:`ResNetCAMClassifier`: a MONAI ResNet trunk, a linear CAM head
  ``S_c = Σ_k w_k^c f_k`` (1x1 convolution), ``P_c = sigmoid(GAP(Ŝ_c) + b_c)`` and the disease-mask
  spatial attention ``Ŝ_c = (1 + ψ_c) ⊙ S_c`` (Kim et al. Sec. 3.3; ψ a buffer, zeros = no
  attention). ``attention="max"`` uses ``ψ = max_c ψ_c`` for every class (the paper's
  ``f' = ψ · f + f`` with one shared map: with a linear head ``Σ_k w_k^c (1 + ψ) f_k = (1 + ψ) S_c``).
* :class:`DiseaseMaskNet`: the two together, the bundle's ``model.pt``: ``x -> T·x -> logits``,
  with :meth:`DiseaseMaskNet.predict` returning probabilities, CAMs, the aligned image and ``T``.

Example:
    >>> import torch
    >>> net = DiseaseMaskNet(num_classes=3, classifier_layers=(1, 1, 1, 1), classifier_inplanes=(8, 8, 8, 8),
    ...                      aligner_layers=(1, 1, 1, 1), aligner_inplanes=(4, 4, 4, 4), aligner_input_size=32)
    >>> net(torch.rand(2, 1, 64, 64)).shape
    torch.Size([2, 3])
    >>> out = net.predict(torch.rand(1, 1, 64, 64))
    >>> out["cam"].shape, out["theta"].shape
    (torch.Size([1, 3, 2, 2]), torch.Size([1, 2, 3]))
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.nets.resnet import ResNet
from torch import nn

from monai_mammo.alignment import affine_matrix, warp
from monai_mammo.checkpoints import records_init_args

__all__ = ["AlignmentRegressor", "ResNetCAMClassifier", "DiseaseMaskNet", "ATTENTION_MODES"]

#: spatial attention modes: class-wise ψ_c (default), one ψ = max_c ψ_c, or none
ATTENTION_MODES = ("classwise", "max", "none")


def _resnet(block: str, layers: Sequence[int], inplanes: Sequence[int], in_channels: int, **kwargs) -> ResNet:
    return ResNet(block=block, layers=list(layers), block_inplanes=list(inplanes), spatial_dims=2, n_input_channels=in_channels, **kwargs)


@records_init_args()
class AlignmentRegressor(nn.Module):
    """ResNet regressor of Kim et al.'s five alignment parameters, starting at the identity.

    Example:
        >>> import torch
        >>> reg = AlignmentRegressor(layers=(1, 1, 1, 1), block_inplanes=(4, 4, 4, 4), input_size=32)
        >>> reg(torch.rand(2, 1, 64, 64)).tolist()[0]
        [1.0, 1.0, 0.0, 0.0, 0.0]

    Args:
        in_channels: image channels. Default 1.
        layers: blocks per ResNet stage. Default (2, 2, 2, 2) (ResNet-18, the paper's).
        block_inplanes: stage widths. Default (64, 128, 256, 512).
        input_size: the image is resized (area) to ``input_size`` x ``input_size`` before the
            regressor (the parameters do not depend on the resolution). Default 128.
        max_scale: ``s = 1 + max_scale tanh(·)``. Default 0.3.
        max_shift: ``t = max_shift tanh(·)`` in normalised units (1 = half the image). Default 0.4.
        max_rotation_deg: ``θ = max_rotation tanh(·)``. Default 30.
    """

    def __init__(
        self,
        in_channels: int = 1,
        layers: Sequence[int] = (2, 2, 2, 2),
        block_inplanes: Sequence[int] = (64, 128, 256, 512),
        input_size: int = 128,
        max_scale: float = 0.3,
        max_shift: float = 0.4,
        max_rotation_deg: float = 30.0,
    ) -> None:
        super().__init__()
        self.input_size = int(input_size)
        self.resnet = _resnet("basic", layers, block_inplanes, in_channels, num_classes=5)
        nn.init.zeros_(self.resnet.fc.weight)  # identity at the start (ours)
        nn.init.zeros_(self.resnet.fc.bias)
        self.register_buffer("bounds", torch.tensor([max_scale, max_scale, max_shift, max_shift, math.radians(max_rotation_deg)]))
        self.register_buffer("offset", torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, 5)`` parameters ``(s_x, s_y, t_x, t_y, θ)``."""
        if x.ndim != 4:
            raise ValueError(f"AlignmentRegressor: expected (B, C, H, W), got {tuple(x.shape)}")
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="area")
        return self.offset + self.bounds * torch.tanh(self.resnet(x))

    def theta(self, x: torch.Tensor) -> torch.Tensor:
        """The ``(B, 2, 3)`` matrix of Eq. 5 for ``x``."""
        return affine_matrix(self(x))


@records_init_args()
class ResNetCAMClassifier(nn.Module):
    """Multi-label ResNet with a linear CAM head and disease-mask spatial attention (Kim et al.).

    Kim et al. Eq. 1-2: ``S_c(x) = Σ_k w_k^c f_k(x)``, ``P_c(x) = sigmoid(GAP(S_c(x)))`` (GAP the
    mean; the class bias ``b_c`` is added after GAP so that the CAM itself has none). Sec. 3.3:
    ``Ŝ_c = (1 + ψ_c) ⊙ S_c`` with the disease masks ψ (buffer ``disease_masks``, ``(K, m, m)``,
    resampled to the feature grid when its size differs; zeros: the plain classifier).

    Example:
        >>> import torch
        >>> net = ResNetCAMClassifier(num_classes=2, layers=(1, 1, 1, 1), block_inplanes=(4, 4, 4, 4), mask_size=2)
        >>> x = torch.rand(1, 1, 64, 64)
        >>> _ = net.eval()
        >>> plain = net.forward_cam(x)[1]
        >>> _ = net.disease_masks.fill_(1.0)  # ψ = 1 everywhere doubles every CAM
        >>> cams = net.forward_cam(x)[1]
        >>> cams.shape, torch.allclose(cams, 2 * plain)
        (torch.Size([1, 2, 2, 2]), True)

    Args:
        num_classes: K. Default 14 (ChestX-ray14).
        in_channels: image channels. Default 1 (the paper feeds 3 copies of the grey image).
        block: "basic" or "bottleneck". Default "bottleneck" (ResNet-50, the paper's).
        layers: blocks per stage. Default (3, 4, 6, 3).
        block_inplanes: stage widths. Default (64, 128, 256, 512).
        conv1_stride: stride of the stem convolution. Default 2 (He et al.).
        no_max_pool: skip the stem's max pooling (a finer CAM grid on small CPU images). Default False.
        attention: "classwise" (default), "max" or "none" (ψ ignored).
        mask_size: side of the stored disease masks (the paper's feature grid: 16 at 512 px). Default 16.
    """

    def __init__(
        self,
        num_classes: int = 14,
        in_channels: int = 1,
        block: str = "bottleneck",
        layers: Sequence[int] = (3, 4, 6, 3),
        block_inplanes: Sequence[int] = (64, 128, 256, 512),
        conv1_stride: int = 2,
        no_max_pool: bool = False,
        attention: str = "classwise",
        mask_size: int = 16,
    ) -> None:
        super().__init__()
        if attention not in ATTENTION_MODES:
            raise ValueError(f"ResNetCAMClassifier: attention must be one of {ATTENTION_MODES}, got {attention!r}")
        self.attention = attention
        self.num_classes = int(num_classes)
        trunk = _resnet(block, layers, block_inplanes, in_channels, conv1_t_stride=conv1_stride, no_max_pool=no_max_pool, feed_forward=False)
        self.stem = nn.Sequential(trunk.conv1, trunk.bn1, trunk.act, *([] if no_max_pool else [trunk.maxpool]))
        self.stages = nn.ModuleList([trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4])
        channels = trunk.in_planes  # the last stage's output channels (expansion included)
        self.cam_head = nn.Conv2d(channels, self.num_classes, kernel_size=1, bias=False)
        self.bias = nn.Parameter(torch.zeros(self.num_classes))
        self.register_buffer("disease_masks", torch.zeros(self.num_classes, int(mask_size), int(mask_size)))

    def stage_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The outputs of the four stages (conv2_x .. conv5_x): the perceptual loss's features."""
        if x.ndim != 4:
            raise ValueError(f"ResNetCAMClassifier: expected (B, C, H, W), got {tuple(x.shape)}")
        features, out = [], self.stem(x)
        for stage in self.stages:
            out = stage(out)
            features.append(out)
        return features

    def attention_map(self, grid: Sequence[int]) -> torch.Tensor:
        """``1 + ψ`` on the feature grid, ``(K, h, w)`` ("max": the same map for every class)."""
        psi = self.disease_masks
        if tuple(psi.shape[-2:]) != tuple(grid):
            psi = F.interpolate(psi[None], size=tuple(grid), mode="area" if psi.shape[-1] > grid[-1] else "bilinear")[0]
        if self.attention == "max":
            psi = psi.amax(dim=0, keepdim=True).expand_as(psi)
        return 1.0 + psi

    def forward_cam(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits (B, K), Ŝ (B, K, h, w))``."""
        features = self.stage_features(x)[-1]
        cams = self.cam_head(features)  # Kim et al. Eq. 1: S_c = Σ_k w_k^c f_k
        if self.attention != "none":
            cams = cams * self.attention_map(cams.shape[-2:])  # Sec. 3.3: Ŝ_c = (1 + ψ_c) ⊙ S_c
        logits = cams.mean(dim=(-2, -1)) + self.bias  # Eq. 2 before the sigmoid: GAP(Ŝ_c) + b_c
        return logits, cams

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_cam(x)[0]


@records_init_args()
class DiseaseMaskNet(nn.Module):
    """Alignment regressor + CAM classifier (the bundle's model): ``logits = classifier(T·x)``.

    Which part trains is chosen by :meth:`set_trainable` (the training stages train them
    separately, as the paper does); the other part is frozen and kept in eval mode.

    Args:
        num_classes, in_channels: as :class:`ResNetCAMClassifier`.
        classifier_block, classifier_layers, classifier_inplanes, conv1_stride, no_max_pool,
            attention, mask_size: the classifier's (see :class:`ResNetCAMClassifier`).
        aligner_layers, aligner_inplanes, aligner_input_size, max_scale, max_shift,
            max_rotation_deg: the regressor's (see :class:`AlignmentRegressor`).
        align: False skips the alignment (the plain classifier; the regressor is kept, unused). Default True.
    """

    def __init__(
        self,
        num_classes: int = 14,
        in_channels: int = 1,
        classifier_block: str = "bottleneck",
        classifier_layers: Sequence[int] = (3, 4, 6, 3),
        classifier_inplanes: Sequence[int] = (64, 128, 256, 512),
        conv1_stride: int = 2,
        no_max_pool: bool = False,
        attention: str = "classwise",
        mask_size: int = 16,
        aligner_layers: Sequence[int] = (2, 2, 2, 2),
        aligner_inplanes: Sequence[int] = (64, 128, 256, 512),
        aligner_input_size: int = 128,
        max_scale: float = 0.3,
        max_shift: float = 0.4,
        max_rotation_deg: float = 30.0,
        align: bool = True,
    ) -> None:
        super().__init__()
        self.align = bool(align)
        self.aligner = AlignmentRegressor(in_channels, aligner_layers, aligner_inplanes, aligner_input_size, max_scale, max_shift, max_rotation_deg)
        self.classifier = ResNetCAMClassifier(
            num_classes, in_channels, classifier_block, classifier_layers, classifier_inplanes, conv1_stride, no_max_pool, attention, mask_size
        )
        self.trainable = "classifier"

    def set_trainable(self, part: str) -> DiseaseMaskNet:
        """``"classifier"`` or ``"aligner"``: that part gets gradients and follows ``train()``; the
        other is frozen in eval mode (its batch-norm statistics stay as loaded)."""
        if part not in ("classifier", "aligner"):
            raise ValueError(f"DiseaseMaskNet.set_trainable: 'classifier' or 'aligner', got {part!r}")
        self.trainable = part
        for name, module in (("classifier", self.classifier), ("aligner", self.aligner)):
            module.requires_grad_(name == part)
        return self.train(self.training)

    def train(self, mode: bool = True) -> DiseaseMaskNet:
        super().train(mode)
        frozen = self.aligner if getattr(self, "trainable", "classifier") == "classifier" else self.classifier
        frozen.eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list((self.classifier if self.trainable == "classifier" else self.aligner).parameters())

    def alignment(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(T·x, T)``; ``T`` the identity when ``align`` is False."""
        if not self.align:
            theta = torch.eye(2, 3, dtype=x.dtype, device=x.device).expand(x.shape[0], 2, 3)
            return x, theta
        theta = self.aligner.theta(x)
        return warp(x, theta), theta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.alignment(x)[0])

    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"logits", "probabilities", "cam" (B, K, h, w) in the aligned frame, "aligned", "theta"}``."""
        aligned, theta = self.alignment(x)
        logits, cams = self.classifier.forward_cam(aligned)
        return {"logits": logits, "probabilities": torch.sigmoid(logits), "cam": cams, "aligned": aligned, "theta": theta}
