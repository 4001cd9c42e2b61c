"""Dual-branch region network of Cls-Det-RS (Bakalo, Goldberger and Ben-Ari, Neurocomputing 421, 2021).

"Weakly and semi supervised detection in medical imaging via deep dual branch net." A mammogram is
tiled into m regions (:mod:`monai_mammo.tiling`); each region r_i gets a code φ(r_i) (a region
encoder, then the shared FC φ, "FC3"); two branches read it:

* classification (FC4, Eq. 1): p_cls(c | r_i) = softmax_c(w_cᵀ φ(r_i)), c ∈ {N, B, M};
* detection (FC5, Eq. 2): for c ∈ {B, M}, p_det^c(i | x) = softmax over the regions of u_cᵀ φ(r_i);
* region selection (RS, Eq. 4 and Table 1): the detection softmax of class c runs over the k regions
  with the highest p_cls(c | r_i) only (a masked softmax; :func:`top_k_mask`, :func:`masked_softmax`);
* image level (Eq. 3): p(y_c = 1 | x) = Σ_i p_det^c(i | x) · p_cls(c | r_i);
* region score (Eq. 13): d_c(r_i) = p_cls(c | r_i) · p_det^c(i | x).

One class, four ``mode`` s, serves the paper's method and its baselines (Table 2):
``"cls_det_rs"`` (the method), ``"cls_det"`` (no RS), ``"db_baseline"`` (Bilen and Vedaldi's WSDDN:
no N class, classification softmax over {B, M}, unmasked detection) and ``"max_region"``
(Choukroun et al.: region classifier, p(y_c) = max_i p_cls(c | r_i), no detection branch).

Two-vector outputs follow the datalist's label order ``(y_M, y_B)``: index 0 is M, index 1 is B;
``p_cls`` keeps the paper's order N, B, M.

Region encoders (``encoder``): ``"conv"`` (default, end-to-end; the paper's "future work", and the
only choice with no pretrained weights to download): a MONAI ``Classifier`` CNN from one-channel
region crops to ``feature_dim`` codes, trained with the rest. ``"none"``: the input already holds
``feature_dim`` codes per region, computed once by a frozen backbone (the paper's two-stage mode:
a frozen ImageNet VGG's 128-D codes); :class:`FrozenRegionBackbone` loads a local TorchScript
backbone for that and the bundle caches its codes.

Example:
    >>> import torch
    >>> net = ClsDetNet(window=16, channels=(4, 8), strides=(2, 2), k=3)
    >>> out = net(torch.rand(2, 5, 1, 16, 16), region_valid=torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]).bool())
    >>> tuple(out["image_prob"].shape), tuple(out["p_cls"].shape), tuple(out["region_scores"].shape)
    ((2, 2), (2, 5, 3), (2, 5, 2))
    >>> bool(out["p_det"][1, 2:].sum() == 0), bool(torch.allclose(out["p_det"].sum(1), torch.ones(2, 2)))
    (True, True)
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from monai.networks.nets import Classifier
from torch import nn

from monai_mammo.checkpoints import records_init_args

__all__ = ["MODES", "top_k_mask", "masked_softmax", "ClsDetNet", "FrozenRegionBackbone"]

#: the network's modes: the paper's method and the baselines of its Table 2
MODES = ("cls_det_rs", "cls_det", "db_baseline", "max_region")

#: index of each class in ``p_cls`` (paper order N, B, M)
CLS_N, CLS_B, CLS_M = 0, 1, 2


def top_k_mask(scores: torch.Tensor, k: int, valid: torch.Tensor | None = None, dim: int = 1) -> torch.Tensor:
    """h(i) of region selection (Bakalo et al. 2021, Eq. 4 and Table 1): True for the ``k`` valid
    regions with the highest ``scores`` along ``dim``.

    With ``k`` at least the number of valid regions every valid region is selected. Ties at the k-th
    score are broken by position (the lower index first: a stable sort), so exactly ``min(k, #valid)``
    regions are selected.

    >>> top_k_mask(torch.tensor([[0.2, 0.9, 0.9, 0.1]]), k=2).tolist()
    [[False, True, True, False]]
    >>> top_k_mask(torch.tensor([[0.5, 0.5, 0.5]]), k=2).tolist()          # ties: the first two
    [[True, True, False]]
    >>> top_k_mask(torch.tensor([[0.3, 0.2, 0.1]]), k=10, valid=torch.tensor([[True, True, False]])).tolist()
    [[True, True, False]]
    """
    if k < 1:
        raise ValueError(f"top_k_mask: k must be >= 1, got {k}")
    scores = scores.detach()
    if valid is not None:
        scores = scores.masked_fill(~valid.bool(), float("-inf"))
    order = torch.sort(scores, dim=dim, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(dim, order, torch.arange(scores.shape[dim], device=scores.device).expand_as(order).contiguous())
    selected = ranks < k
    if valid is not None:
        selected = selected & valid.bool()
    return selected


def masked_softmax(logits: torch.Tensor, mask: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Softmax over the positions where ``mask`` is True (Bakalo et al. 2021, Eq. 4); 0 elsewhere.

    p(i) = h(i) exp(z_i) / Σ_j h(j) exp(z_j). A slice whose mask is all False gives zeros (no NaN).

    >>> masked_softmax(torch.log(torch.tensor([[1.0, 2.0, 3.0]])), torch.tensor([[True, False, True]])).round(decimals=4).tolist()
    [[0.25, 0.0, 0.75]]
    """
    if logits.shape != mask.shape:
        raise ValueError(f"masked_softmax: logits {tuple(logits.shape)} and mask {tuple(mask.shape)} differ")
    mask = mask.bool()
    filled = logits.masked_fill(~mask, float("-inf"))
    peak = filled.amax(dim=dim, keepdim=True).detach()
    peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
    weights = torch.exp(filled - peak) * mask
    total = weights.sum(dim=dim, keepdim=True)
    return weights / total.clamp_min(torch.finfo(weights.dtype).tiny)


@records_init_args()
class ClsDetNet(nn.Module):
    """Cls-Det-RS dual-branch region network (Bakalo, Goldberger and Ben-Ari, Neurocomputing 2021).

    ``forward(regions, region_valid=None)`` takes a batch of images as their regions,
    ``(B, M, C, h, w)`` crops (``encoder="conv"``) or ``(B, M, D)`` codes (``encoder="none"``),
    with ``region_valid`` ``(B, M)`` marking the real regions of images padded to M regions (None: all
    real). It returns a dict of tensors:

    * ``p_cls`` ``(B, M, 3)`` (N, B, M; Eq. 1; ``db_baseline``: N is 0);
    * ``p_det`` ``(B, M, 2)`` (M, B): the detection distribution the image decision uses (masked
      under RS, Eq. 4; Eq. 2 otherwise; ``max_region``: one-hot on the arg-max region);
    * ``p_det_unmasked`` ``(B, M, 2)``: Eq. 2 over all valid regions;
    * ``image_prob`` ``(B, 2)``: p(y_M = 1 | x), p(y_B = 1 | x) (Eq. 3; ``max_region``: max over regions);
    * ``region_scores`` ``(B, M, 2)``: d_M, d_B (Eq. 13);
    * ``region_valid`` ``(B, M)``.

    Args:
        mode: one of :data:`MODES`; default ``"cls_det_rs"``.
        k: regions selected per class by RS (paper: 10).
        encoder: ``"conv"`` (end-to-end CNN on crops) or ``"none"`` (inputs are codes).
        in_channels: crop channels (1 for mammograms).
        window: crop size in pixels (square); the CNN's input size.
        channels: CNN channels per stage (``monai.networks.nets.Classifier``).
        strides: CNN strides per stage.
        norm: the CNN's normalisation (MONAI name). Default ``"batch"``: instance normalisation would
            erase each crop's absolute brightness, which tells a dense mass from fat.
        feature_dim: the region code size D (paper: 128, the VGG's last hidden layer).
        hidden_dim: units of the shared FC φ (FC3; paper: not given, 128 here).
        dropout: dropout after φ (paper: 0.5).
        branch_init_std: std of the normal init of the branch FCs (paper: 1e-4; bias 0).
    """

    def __init__(
        self,
        mode: str = "cls_det_rs",
        k: int = 10,
        encoder: str = "conv",
        in_channels: int = 1,
        window: int = 28,
        channels: Sequence[int] = (16, 32, 64),
        strides: Sequence[int] = (2, 2, 2),
        norm: str = "batch",
        feature_dim: int = 128,
        hidden_dim: int = 128,
        dropout: float = 0.5,
        branch_init_std: float = 1e-4,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"ClsDetNet: mode must be one of {MODES}, got {mode!r}")
        if encoder not in ("conv", "none"):
            raise ValueError(f"ClsDetNet: encoder must be 'conv' or 'none', got {encoder!r}")
        if k < 1:
            raise ValueError(f"ClsDetNet: k must be >= 1, got {k}")
        self.mode, self.k, self.encoder_kind = mode, int(k), encoder
        self.in_channels, self.window, self.feature_dim = int(in_channels), int(window), int(feature_dim)
        if encoder == "conv":
            self.encoder: nn.Module = Classifier(
                in_shape=(in_channels, window, window), classes=feature_dim, channels=tuple(channels), strides=tuple(strides), num_res_units=0, norm=norm
            )
        else:
            self.encoder = nn.Identity()
        self.shared = nn.Sequential(nn.Linear(feature_dim, hidden_dim), nn.ReLU(inplace=True), nn.Dropout(dropout))
        nn.init.normal_(self.shared[0].weight, std=(2.0 / feature_dim) ** 0.5)  # "normal" init (He) of FC3
        nn.init.zeros_(self.shared[0].bias)
        self.classification = nn.Linear(hidden_dim, 3)  # FC4: N, B, M
        self.detection = nn.Linear(hidden_dim, 2)  # FC5: M, B
        for layer in (self.classification, self.detection):
            nn.init.normal_(layer.weight, std=branch_init_std)
            nn.init.zeros_(layer.bias)

    def encode(self, regions: torch.Tensor) -> torch.Tensor:
        """φ(r) for ``(N, C, h, w)`` crops (or ``(N, D)`` codes): ``(N, hidden_dim)``."""
        return self.shared(self.encoder(regions))

    def heads(self, phi: torch.Tensor, region_valid: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The two branches, RS and the image decision from ``phi`` ``(B, M, hidden_dim)``."""
        batch, n_regions = phi.shape[:2]
        valid = torch.ones(batch, n_regions, dtype=torch.bool, device=phi.device) if region_valid is None else region_valid.bool()
        cls_logits = self.classification(phi)
        if self.mode == "db_baseline":
            # WSDDN: the region classes are the image classes, no N (Bilen and Vedaldi 2016)
            p_bm = torch.softmax(cls_logits[..., CLS_B:], dim=-1)
            p_cls = torch.cat([torch.zeros_like(p_bm[..., :1]), p_bm], dim=-1)
        else:
            p_cls = torch.softmax(cls_logits, dim=-1)  # Eq. 1
        p_cls = p_cls * valid[..., None]
        cls_mb = torch.stack([p_cls[..., CLS_M], p_cls[..., CLS_B]], dim=-1)  # (B, M, 2) in label order M, B
        det_logits = self.detection(phi)
        p_det_unmasked = torch.stack([masked_softmax(det_logits[..., c], valid) for c in range(2)], dim=-1)  # Eq. 2
        if self.mode == "max_region":
            # Choukroun et al.: the image is its most probable region
            image_prob, index = cls_mb.masked_fill(~valid[..., None], -1.0).max(dim=1)
            image_prob = image_prob.clamp_min(0.0)
            p_det = torch.zeros_like(cls_mb).scatter_(1, index[:, None, :], 1.0)
        else:
            if self.mode == "cls_det_rs":
                selected = [top_k_mask(cls_mb[..., c], self.k, valid) for c in range(2)]  # h_c(i), Eq. 4
                p_det = torch.stack([masked_softmax(det_logits[..., c], selected[c]) for c in range(2)], dim=-1)
            else:
                p_det = p_det_unmasked
            image_prob = (p_det * cls_mb).sum(dim=1)  # Eq. 3
        return {
            "p_cls": p_cls,
            "p_det": p_det,
            "p_det_unmasked": p_det_unmasked,
            "image_prob": image_prob.clamp(0.0, 1.0),
            "region_scores": cls_mb * p_det,  # Eq. 13
            "region_valid": valid,
        }

    def forward(self, regions: torch.Tensor, region_valid: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        expected = 5 if self.encoder_kind == "conv" else 3
        if regions.ndim != expected:
            shape = "(B, M, C, h, w) crops" if expected == 5 else "(B, M, D) region codes"
            raise ValueError(f"ClsDetNet(encoder={self.encoder_kind!r}) expects {shape}, got shape {tuple(regions.shape)}")
        if self.encoder_kind == "conv" and tuple(regions.shape[2:]) != (self.in_channels, self.window, self.window):
            raise ValueError(f"ClsDetNet: crops must be (C, h, w) = {(self.in_channels, self.window, self.window)}, got {tuple(regions.shape[2:])}")
        if region_valid is not None and tuple(region_valid.shape) != tuple(regions.shape[:2]):
            raise ValueError(f"ClsDetNet: region_valid {tuple(region_valid.shape)} must be (B, M) = {tuple(regions.shape[:2])}")
        batch, n_regions = regions.shape[:2]
        phi = self.encode(regions.reshape(batch * n_regions, *regions.shape[2:])).reshape(batch, n_regions, -1)
        return self.heads(phi, region_valid)

    @torch.no_grad()
    def predict_image(self, image: torch.Tensor, boxes: np.ndarray, chunk_size: int = 64) -> dict[str, torch.Tensor]:
        """One whole image, ``(C, H, W)``, with its region ``boxes`` ``(M, 4)`` (window-sized): the
        crops go through the encoder ``chunk_size`` at a time (:func:`monai_mammo.tiling.iter_crops`),
        so memory stays bounded at full resolution; returns :meth:`heads`' dict for a batch of one.

        >>> net = ClsDetNet(window=8, channels=(4,), strides=(2,)).eval()
        >>> out = net.predict_image(torch.rand(1, 16, 16), np.array([[0, 0, 8, 8], [8, 0, 16, 8], [0, 8, 8, 16]]), chunk_size=2)
        >>> tuple(out["region_scores"].shape)
        (1, 3, 2)
        """
        from monai_mammo.tiling import iter_crops

        if self.encoder_kind != "conv":
            raise ValueError("ClsDetNet.predict_image needs encoder='conv' (with encoder='none' pass the cached codes to forward)")
        codes = [self.encode(crops) for _, crops in iter_crops(image, boxes, chunk_size=chunk_size)]
        if not codes:
            phi = torch.zeros(1, 0, self.shared[0].out_features, device=image.device)
        else:
            phi = torch.cat(codes, dim=0)[None]
        return self.heads(phi)


class FrozenRegionBackbone(nn.Module):
    """A frozen, local, pretrained region backbone (Bakalo et al.'s two-stage mode: ImageNet VGG codes).

    Loads a TorchScript module (``torch.jit.load``, no code execution beyond the graph) that maps
    ``(N, C, h, w)`` crops to ``(N, D)`` codes, puts it in eval mode and freezes it. The bundle runs
    it once per image in its cached preprocessing and trains :class:`ClsDetNet` with ``encoder="none"``.

    Args:
        path: the TorchScript file.
        device: where it runs.
    """

    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu") -> None:
        super().__init__()
        if not os.path.isfile(path):
            raise FileNotFoundError(f"FrozenRegionBackbone: no backbone file at {path}")
        self.backbone = torch.jit.load(str(path), map_location=device).eval()
        for parameter in self.backbone.parameters():
            parameter.requires_grad_(False)

    def train(self, mode: bool = True) -> FrozenRegionBackbone:
        return super().train(False)  # frozen: batch-norm statistics and dropout stay in eval mode

    @torch.no_grad()
    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        codes = self.backbone(crops)
        return codes.reshape(codes.shape[0], -1)
