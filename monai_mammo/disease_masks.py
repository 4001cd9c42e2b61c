"""Disease masks: where each disease occurs in the aligned frame (Kim, Jung, Lee, Eq. 3), and pseudo masks.

Kim et al. Eq. 3::

    ψ_c = T( (1 / N_c) Σ_d N( L̄_c^d ) ),   L̄_c^d = H(L_c^d) + L_c^d  (symmetric diseases)
                                              L̄_c^d = L_c^d            (cardiomegaly)

over the CAMs ``L_c^d = S_c(x̄_d)`` of the training images with ``y_c = 1`` and ``P_c ≥ 0.8``
(:data:`CONFIDENT_PROBABILITY`), H the horizontal flip, N a min-max normalisation of each
flip-sum **as a whole** to [0, 1], T a threshold. The paper gives no value for T; ours: 0.5,
values below set to zero and values above kept (``mode="soft"``; the paper stresses that its
*pseudo* masks are binary, implying these are not), or 0 / 1 (``mode="binary"``). The CAMs are
average-pooled to the mask grid (the classifier's feature grid).

:class:`DiseaseMaskAccumulator` collects the confident CAMs batch by batch; :func:`pseudo_disease_masks`
builds the PDM baseline from anatomy masks (lungs, heart) of the anchor frame; :func:`save_masks` /
:func:`load_masks` store them as ``.pt`` (``weights_only=True``) with the class names.

Example:
    >>> import torch
    >>> acc = DiseaseMaskAccumulator(num_classes=1, grid=(2, 4), symmetric=[True])
    >>> cam = torch.tensor([[[[0.0, 0.0, 0.0, 4.0], [0.0, 0.0, 0.0, 0.0]]]])
    >>> acc.update(cam, labels=torch.tensor([[1]]), probabilities=torch.tensor([[0.9]]))
    >>> acc.compute().tolist()   # flip-sum mirrors the right apex onto the left one
    [[[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]]]
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from monai_mammo.atomic_io import atomic_path

__all__ = [
    "CONFIDENT_PROBABILITY",
    "ASYMMETRIC_CLASSES",
    "symmetric_flags",
    "normalize_map",
    "threshold_mask",
    "DiseaseMaskAccumulator",
    "pseudo_disease_masks",
    "PSEUDO_MASK_REGIONS",
    "save_masks",
    "load_masks",
]

#: Kim et al.: "we collect x̄ by dropping images x where P_c(x) < 0.8"
CONFIDENT_PROBABILITY = 0.8
#: the paper: cardiomegaly (left ventricle) is the asymmetric one of its eight; Hernia (ours:
#: retrocardiac, on the midline) is not mirrored either
ASYMMETRIC_CLASSES = ("Cardiomegaly", "Hernia")
#: pseudo disease masks (Kim et al. Sec. 4.4, Fig. 7): the anatomical region each class occupies
PSEUDO_MASK_REGIONS: dict[str, str] = {"Cardiomegaly": "heart", "Hernia": "heart"}


def symmetric_flags(class_names: Sequence[str], asymmetric: Sequence[str] = ASYMMETRIC_CLASSES) -> list[bool]:
    """True for each class whose CAMs are mirrored (H(L) + L), False for the asymmetric ones.

    Example:
        >>> symmetric_flags(["Atelectasis", "Cardiomegaly"])
        [True, False]
    """
    return [name not in set(asymmetric) for name in class_names]


def normalize_map(value: torch.Tensor) -> torch.Tensor:
    """N(·): min-max to [0, 1] over the last two dimensions (a constant map gives zeros).

    Example:
        >>> normalize_map(torch.tensor([[1.0, 3.0], [2.0, 5.0]])).tolist()
        [[0.0, 0.5], [0.25, 1.0]]
    """
    low = value.amin(dim=(-2, -1), keepdim=True)
    span = value.amax(dim=(-2, -1), keepdim=True) - low
    return torch.where(span > 0, (value - low) / span.clamp_min(torch.finfo(value.dtype).tiny), torch.zeros_like(value))


def threshold_mask(mean_map: torch.Tensor, threshold: float = 0.5, mode: str = "soft") -> torch.Tensor:
    """T(·) of Eq. 3: values below ``threshold`` set to 0; above kept ("soft") or set to 1 ("binary").

    Example:
        >>> m = torch.tensor([0.2, 0.5, 0.8])
        >>> threshold_mask(m).tolist(), threshold_mask(m, mode="binary").tolist()
        ([0.0, 0.5, 0.800000011920929], [0.0, 1.0, 1.0])
    """
    if mode not in ("soft", "binary"):
        raise ValueError(f"threshold_mask: mode must be 'soft' or 'binary', got {mode!r}")
    keep = mean_map >= threshold
    return torch.where(keep, mean_map if mode == "soft" else torch.ones_like(mean_map), torch.zeros_like(mean_map))


class DiseaseMaskAccumulator:
    """Eq. 3 over a stream of batches: confident positive CAMs, flip-sum, normalise, average, threshold.

    Args:
        num_classes: K.
        grid: ``(h, w)`` of the masks (the classifier's feature grid); CAMs of another size are
            average-pooled (adaptive) or bilinearly resampled to it.
        symmetric: per class, True to use H(L) + L (default: all True).
        min_probability: the confidence filter on ``P_c``. Default 0.8 (paper).
        threshold: T's threshold. Default 0.5 (ours: the paper gives none).
        mode: "soft" (default) or "binary".
    """

    def __init__(
        self,
        num_classes: int,
        grid: Sequence[int],
        symmetric: Sequence[bool] | None = None,
        min_probability: float = CONFIDENT_PROBABILITY,
        threshold: float = 0.5,
        mode: str = "soft",
    ) -> None:
        self.num_classes = int(num_classes)
        self.grid = tuple(int(g) for g in grid)
        self.symmetric = torch.tensor(list(symmetric) if symmetric is not None else [True] * self.num_classes, dtype=torch.bool)
        if self.symmetric.numel() != self.num_classes:
            raise ValueError(f"DiseaseMaskAccumulator: {self.symmetric.numel()} symmetric flags for {self.num_classes} classes")
        threshold_mask(torch.zeros(1), threshold, mode)  # validates the mode
        self.min_probability, self.threshold, self.mode = float(min_probability), float(threshold), mode
        self.total = torch.zeros(self.num_classes, *self.grid, dtype=torch.float64)
        self.count = torch.zeros(self.num_classes, dtype=torch.long)

    def _to_grid(self, cams: torch.Tensor) -> torch.Tensor:
        if tuple(cams.shape[-2:]) == self.grid:
            return cams
        if cams.shape[-2] >= self.grid[0] and cams.shape[-1] >= self.grid[1]:
            return F.adaptive_avg_pool2d(cams, self.grid)
        return F.interpolate(cams, size=self.grid, mode="bilinear", align_corners=False)

    def update(self, cams: torch.Tensor, labels: torch.Tensor, probabilities: torch.Tensor) -> None:
        """Add the confident positives of a batch: ``cams`` (B, K, h, w), ``labels`` and
        ``probabilities`` (B, K)."""
        if cams.ndim != 4 or cams.shape[:2] != labels.shape or labels.shape != probabilities.shape or cams.shape[1] != self.num_classes:
            raise ValueError(
                f"DiseaseMaskAccumulator.update: expected cams (B, {self.num_classes}, h, w) and labels / probabilities (B, {self.num_classes}), "
                f"got {tuple(cams.shape)}, {tuple(labels.shape)}, {tuple(probabilities.shape)}"
            )
        cams = self._to_grid(cams.detach().to(torch.float64).cpu())
        mirrored = torch.where(self.symmetric[None, :, None, None], cams.flip(-1) + cams, cams)  # Eq. 3: H(L) + L
        normalized = normalize_map(mirrored)  # N(·) of each flip-sum as a whole
        confident = (labels.cpu() > 0) & (probabilities.detach().cpu() >= self.min_probability)
        self.total += (normalized * confident[..., None, None]).sum(dim=0)
        self.count += confident.sum(dim=0)

    def compute(self) -> torch.Tensor:
        """ψ, ``(K, h, w)`` float32; a class without a confident positive gets zeros (no attention)."""
        mean = self.total / self.count.clamp_min(1)[:, None, None]  # (1 / N_c) Σ_d N(L̄_c^d)
        return threshold_mask(mean, self.threshold, self.mode).to(torch.float32)


def pseudo_disease_masks(
    anatomy: Mapping[str, Any],
    class_names: Sequence[str],
    grid: Sequence[int],
    regions: Mapping[str, str] | None = None,
    default_region: str = "lungs",
) -> torch.Tensor:
    """Binary pseudo disease masks (Kim et al. Sec. 4.4): each class's anatomical region of the anchor
    frame (``anatomy``: name -> (H, W) mask), area-resampled to ``grid`` and binarised at 0.5.

    ``regions`` maps a class to a region (default :data:`PSEUDO_MASK_REGIONS`: the heart for
    cardiomegaly; every other class ``default_region``, the lungs, as the paper marks "all the lung
    areas" for infiltrate, mass, nodule and pneumonia).

    Example:
        >>> lungs = torch.zeros(4, 4); lungs[:, :2] = 1
        >>> heart = torch.zeros(4, 4); heart[2:, 2:] = 1
        >>> pseudo_disease_masks({"lungs": lungs, "heart": heart}, ["Nodule", "Cardiomegaly"], (2, 2)).tolist()
        [[[1.0, 0.0], [1.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]]]
    """
    regions = dict(PSEUDO_MASK_REGIONS if regions is None else regions)
    masks = []
    for name in class_names:
        region = regions.get(name, default_region)
        if region not in anatomy:
            raise KeyError(f"pseudo_disease_masks: no anatomy mask {region!r} for class {name!r}; have {sorted(anatomy)}")
        mask = torch.as_tensor(np.asarray(anatomy[region], dtype=np.float32))
        mask = (mask > 0).to(torch.float32)[None, None]
        pooled = F.adaptive_avg_pool2d(mask, tuple(int(g) for g in grid))[0, 0]
        masks.append((pooled >= 0.5).to(torch.float32))
    return torch.stack(masks)


def save_masks(masks: torch.Tensor, path: str | os.PathLike, class_names: Sequence[str] = (), **extra: Any) -> str:
    """Write ``{"masks": (K, h, w), "class_names": [...], **extra}`` atomically (a torch file)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save({"masks": masks.detach().cpu().to(torch.float32), "class_names": list(class_names), **extra}, tmp)
    return str(path)


def load_masks(path: str | os.PathLike) -> torch.Tensor:
    """The ``(K, h, w)`` masks of a :func:`save_masks` file (``weights_only=True``)."""
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"disease masks: no file {path} (the training run's stage 4 writes it)") from None
    if not isinstance(content, Mapping) or "masks" not in content:
        raise ValueError(f"disease masks: {path} has no 'masks' entry")
    return content["masks"]
