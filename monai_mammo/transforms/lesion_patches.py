"""Lesion-centred positive patches and lesion-free negative patches from whole mammograms.

An et al. (LatentCADx, Front. Big Data 2021, Sec. 3): "for positive images, we obtained the
center-of-mass for region of interest in CBIS annotations, from which we sampled 256 x 256
resolution patches of tissue. For negative images, we used a sliding window to generate patches of
the same size", keeping the imbalance (2,835 positives, 36,052 negatives). Here:

* one positive per connected component of the annotation (the coarse, hand-drawn mask), centred
  on its centre of mass;
* negatives from the region tiler (:func:`monai_mammo.tiling.tile_boxes`) over the breast, kept
  when the window holds no annotated (nor, where known, true lesion) pixel; ``max_negatives``
  bounds them per image (evenly spread over the tiles, deterministic), which sets the imbalance;
* each patch may carry a ``context`` margin on every side so that a random crop (the paper's
  augmentation) can later cut the final ``patch_size`` out of it.

:class:`LesionPatchesd` returns a list of patch dicts for one whole image, like MONAI's
``RandCropByPosNegLabeld``; :func:`patch_dataset` runs a loading chain and the sampler over a
datalist and flattens the patches (deterministic, so a ``CacheDataset`` of them caches once).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import CacheDataset, MetaTensor
from monai.transforms import MapTransform
from scipy import ndimage

from monai_mammo.tiling import mask_fraction, tile_boxes

__all__ = ["LesionPatchesd", "patch_dataset", "LesionPatchDataset", "LESION_TYPES", "lesion_type_of_label"]

logger = logging.getLogger(__name__)

#: lesion types of a patch; "none" for negatives
LESION_TYPES = ("mass", "calcification", "none")


def lesion_type_of_label(value: int) -> str:
    """Lesion type of a phantom label value (1 benign mass, 2 malignant mass, 3 µC cluster).

    >>> lesion_type_of_label(2), lesion_type_of_label(3)
    ('mass', 'calcification')
    """
    return "calcification" if int(value) == 3 else "mass"


def _plain(x: Any) -> np.ndarray:
    if isinstance(x, MetaTensor):
        x = x.as_tensor()
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _crop(array: np.ndarray, box: Sequence[int]) -> np.ndarray:
    """``array`` (C, H, W) cropped to ``box`` [x0, y0, x1, y1], zero-padded outside the image."""
    x0, y0, x1, y1 = (int(v) for v in box)
    c, h, w = array.shape
    out = np.zeros((c, y1 - y0, x1 - x0), dtype=array.dtype)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if sx1 > sx0 and sy1 > sy0:
        out[:, sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = array[:, sy0:sy1, sx0:sx1]
    return out


class LesionPatchesd(MapTransform):
    """Positive (centred on each annotated lesion's centre of mass) and negative (lesion-free breast
    tiles) patches of one whole image (An et al., Front. Big Data 2021, Sec. 3).

    Example::

        >>> image = torch.rand(1, 128, 128)
        >>> coarse = torch.zeros(1, 128, 128); coarse[0, 20:40, 30:50] = 1
        >>> breast = torch.ones(1, 128, 128)
        >>> t = LesionPatchesd(keys=["image", "coarse_mask"], patch_size=32, max_negatives=3)
        >>> patches = t({"image": image, "coarse_mask": coarse, "breast_mask": breast, "patient_id": "P1"})
        >>> [(p["label"], p["lesion_type"], p["box"]) for p in patches][:2]
        [(1, 'mass', [24, 14, 56, 46]), (0, 'none', [64, 0, 96, 32])]
        >>> tuple(patches[0]["image"].shape), float(patches[0]["coarse_mask"].sum())
        ((1, 32, 32), 400.0)

    Args:
        keys: array keys cropped into each patch (``(1, H, W)``), e.g. image, coarse mask, true mask.
        coarse_key: the annotation mask (binary, or labelled by lesion type). Default ``"coarse_mask"``.
        breast_key: the breast mask restricting negatives; absent: the whole image. Default ``"breast_mask"``.
        truth_key: the true lesion mask, where the data has one; negatives avoid it too. Default ``"mask"``.
        type_map_key: a label map whose values give each component's lesion type
            (:func:`lesion_type_of_label`); else the item's ``lesion_type`` field; else ``"mass"``.
            Default ``"coarse_label"``.
        patch_size: patch side in pixels. Default 64 (paper: 256 at a quarter of the scan's resolution).
        context: extra pixels on every side (for a later random crop). Default 0.
        negative_stride: stride of the negative tiles. Default ``patch_size`` (METHODS.md: stride 256).
        min_breast_fraction: share of a negative tile inside the breast. Default 0.75.
        max_negatives: at most this many negatives per image (None: all). Default None.
        min_component_pixels: smaller annotation components are ignored. Default 4.
        copy_keys: item fields copied into every patch. Default patient id, spacing, image path.
    """

    def __init__(
        self,
        keys: KeysCollection,
        coarse_key: str = "coarse_mask",
        breast_key: str = "breast_mask",
        truth_key: str = "mask",
        type_map_key: str = "coarse_label",
        patch_size: int = 64,
        context: int = 0,
        negative_stride: int | None = None,
        min_breast_fraction: float = 0.75,
        max_negatives: int | None = None,
        min_component_pixels: int = 4,
        copy_keys: Sequence[str] = ("patient_id", "spacing", "image_path"),
        allow_missing_keys: bool = True,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.coarse_key, self.breast_key, self.truth_key, self.type_map_key = coarse_key, breast_key, truth_key, type_map_key
        self.patch_size, self.context = int(patch_size), int(context)
        self.negative_stride = int(negative_stride or patch_size)
        self.min_breast_fraction = float(min_breast_fraction)
        self.max_negatives = None if max_negatives is None else int(max_negatives)
        self.min_component_pixels = int(min_component_pixels)
        self.copy_keys = tuple(copy_keys)

    def _patch(self, d: Mapping[Hashable, Any], arrays: dict, box: list[int], label: int, lesion_type: str) -> dict[str, Any]:
        c = self.context
        outer = [box[0] - c, box[1] - c, box[2] + c, box[3] + c]
        patch: dict[str, Any] = {k: torch.from_numpy(_crop(a, outer)) for k, a in arrays.items()}
        patch.update({"label": int(label), "lesion_type": lesion_type, "box": box})
        for key in self.copy_keys:
            if key in d:
                patch[key] = d[key]
        return patch

    def __call__(self, data: Mapping[Hashable, Any]) -> list[dict[str, Any]]:  # type: ignore[override]
        d = dict(data)
        if self.coarse_key not in d:
            raise KeyError(f"LesionPatchesd: the item has no {self.coarse_key!r} (the annotation mask); keys: {sorted(map(str, d))}")
        arrays = {k: _plain(d[k]).astype(np.float32) for k in self.key_iterator(d)}
        coarse_raw = _plain(d[self.coarse_key])
        coarse_raw = coarse_raw.reshape(coarse_raw.shape[-2:])
        coarse = coarse_raw > 0
        height, width = coarse.shape
        type_map = _plain(d[self.type_map_key]).reshape(height, width) if self.type_map_key in d else None
        half, size = self.patch_size // 2, self.patch_size
        patches = []
        components, n = ndimage.label(coarse)
        for index in range(1, n + 1):
            region = components == index
            if region.sum() < self.min_component_pixels:
                continue
            cy, cx = ndimage.center_of_mass(region)
            x0, y0 = int(round(cx)) - half, int(round(cy)) - half
            if type_map is not None and (type_map[region] > 0).any():
                lesion_type = lesion_type_of_label(int(np.bincount(type_map[region].astype(np.int64)).argmax()))
            else:
                lesion_type = str(d.get("lesion_type") or "mass")
            patches.append(self._patch(d, arrays, [x0, y0, x0 + size, y0 + size], 1, lesion_type))
        lesion = coarse.copy()
        if self.truth_key in d:
            lesion |= _plain(d[self.truth_key]).reshape(height, width) > 0
        breast = _plain(d[self.breast_key]).reshape(height, width) > 0 if self.breast_key in d else None
        boxes = tile_boxes((height, width), size, self.negative_stride, mask=breast, min_fraction=self.min_breast_fraction)
        boxes = boxes[mask_fraction(lesion, boxes) == 0] if len(boxes) else boxes
        if self.max_negatives is not None and len(boxes) > self.max_negatives:
            boxes = boxes[np.linspace(0, len(boxes) - 1, self.max_negatives).round().astype(int)] if self.max_negatives > 0 else boxes[:0]
        patches += [self._patch(d, arrays, [int(v) for v in box], 0, "none") for box in boxes]
        return patches


def patch_dataset(items: Sequence[Mapping[str, Any]], loading: Callable[[dict], dict], sampler: Callable[[dict], list[dict]]) -> list[dict[str, Any]]:
    """Load each whole image with ``loading``, cut it into patches with ``sampler`` (e.g.
    :class:`LesionPatchesd`) and return all patches, in datalist order. An item that cannot be
    read is an error naming it (training data is never silently dropped)."""
    patches: list[dict[str, Any]] = []
    for item in items:
        item = dict(item)
        if "coarse_mask" not in item and isinstance(item.get("label"), (str, os.PathLike)):
            item["coarse_mask"] = item.pop("label")  # MONAI Label's datastore: the label image is the outline
        try:
            loaded = loading({**item, "image_path": str(item.get("image"))})
        except Exception as exc:
            raise ValueError(f"{item.get('image')}: cannot be loaded for patch sampling: {exc}") from exc
        patches += sampler(loaded)
    n_pos = sum(p["label"] for p in patches)
    logger.info("patches: %d positive, %d negative from %d image(s)", n_pos, len(patches) - n_pos, len(items))
    return patches


class LesionPatchDataset(CacheDataset):
    """A ``CacheDataset`` of the patches of whole images: ``data`` are whole-image items (what a
    bundle's ``train#dataset#data`` holds, and what MONAI Label overrides), cut by
    :func:`patch_dataset` with ``loading`` and ``sampler`` when the dataset is built; ``transform``
    (augmentation, cropping) then runs on the patches, its deterministic head cached.

    Args:
        data: whole-image datalist items.
        loading: the whole-image loading chain.
        sampler: e.g. :class:`LesionPatchesd`.
        transform, cache_rate, num_workers: as ``CacheDataset``.
    """

    def __init__(self, data: Sequence[Mapping[str, Any]], loading: Callable[[dict], dict], sampler: Callable[[dict], list[dict]],
                 transform: Any = None, cache_rate: float = 1.0, num_workers: int | None = 0) -> None:  # fmt: skip
        self.images = list(data)
        super().__init__(data=patch_dataset(self.images, loading, sampler), transform=transform, cache_rate=cache_rate, num_workers=num_workers, progress=False)
