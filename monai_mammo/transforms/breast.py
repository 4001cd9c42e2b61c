"""Breast segmentation (Otsu + largest connected component) and cropping to the breast."""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import InvertibleTransform, MapTransform, SpatialCrop
from monai.utils import ensure_tuple
from scipy import ndimage
from skimage.filters import threshold_otsu

from monai_mammo.transforms.geometry import (
    map_keys_geometry,
    peek_forward,
    pop_forward,
    record_forward,
    translation_matrix,
    undo_forward,
)
from monai_mammo.transforms.io import spacing_of

__all__ = ["breast_mask", "BreastMaskd", "CropToBreastd", "mask_bbox"]


def breast_mask(
    image: np.ndarray | torch.Tensor,
    spacing: float | None = None,
    working_size: int = 512,
    opening_mm: float = 2.0,
    fallback_spacing_mm: float = 0.1,
    refine: bool = True,
) -> np.ndarray:
    """Binary breast mask of a tissue-bright 2D radiograph: Otsu threshold + largest connected component.

    Steps (ASN preprocessing, Zhang et al. CVPR 2019 "segment the breast with Otsu's threshold"):

    1. block-average the image so its long side is about ``working_size`` px (speed: a full-field
       3328x4096 mammogram becomes ~416x512);
    2. Otsu threshold (``skimage.filters.threshold_otsu``);
    3. binary opening with a disk of ``opening_mm``: removes film-edge strips, scanner lines and thin
       bridges narrower than the disk that would otherwise connect markers to the breast;
    4. largest connected component (``scipy.ndimage.label``): burned-in text markers ("LCC") and
       labels are separate components and drop out; holes are filled;
    5. back at full resolution (``refine``): pixels inside the eroded low-resolution mask are breast;
       in the one-block band around its edge the full-resolution Otsu test decides, so the skin
       line is exact to a pixel rather than to a block.

    Args:
        image: (H, W) or (1, H, W) array, tissue bright.
        spacing: mm per pixel (isotropic approximation) for ``opening_mm``; None uses ``fallback_spacing_mm``.
        working_size: long side of the low-resolution working image. Default 512.
        opening_mm: opening disk diameter in mm. Default 2.0.
        fallback_spacing_mm: assumed spacing when ``spacing`` is None. Default 0.1.
        refine: refine the boundary at full resolution. Default True.

    Returns:
        (H, W) bool mask (all False for a constant image).
    """
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if arr.ndim == 3:
        if arr.shape[0] != 1:
            raise ValueError(f"breast_mask expects a (H, W) or (1, H, W) image, got shape {arr.shape}.")
        arr = arr[0]
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"breast_mask expects a non-empty (H, W) or (1, H, W) image, got shape {arr.shape}.")
    arr = arr.astype(np.float32, copy=False)
    h, w = arr.shape
    factor = max(1, int(np.ceil(max(h, w) / float(working_size))))
    # Block average via torch's area pooling (one pass, float32, no large temporaries).
    small = F.avg_pool2d(torch.from_numpy(arr)[None, None], factor, ceil_mode=True).numpy()[0, 0] if factor > 1 else arr
    if float(small.max()) <= float(small.min()):
        return np.zeros((h, w), dtype=bool)
    thr = float(threshold_otsu(small))
    fg = small > thr
    px_mm = (spacing if spacing and spacing > 0 else fallback_spacing_mm) * factor
    radius = int(round(opening_mm / px_mm / 2.0))
    if radius >= 1:
        yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
        disk = (xx**2 + yy**2) <= radius**2
        opened = ndimage.binary_opening(fg, structure=disk)
        if opened.any():
            fg = opened
    labels, n = ndimage.label(fg)
    if n == 0:
        return np.zeros((h, w), dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    small_mask = ndimage.binary_fill_holes(labels == int(sizes.argmax()))
    if factor == 1:
        return small_mask
    if not refine:
        return _upsample_mask(small_mask, factor, h, w)
    inner = _upsample_mask(ndimage.binary_erosion(small_mask, iterations=1), factor, h, w)
    band = _upsample_mask(ndimage.binary_dilation(small_mask, iterations=1), factor, h, w)
    band &= ~inner
    band &= arr > thr
    inner |= band
    return inner


def _upsample_mask(mask: np.ndarray, factor: int, h: int, w: int) -> np.ndarray:
    # Each low-resolution cell covers a factor x factor block (ceil_mode pooling), so repeat and trim.
    return np.repeat(np.repeat(mask, factor, axis=0), factor, axis=1)[:h, :w]


def mask_bbox(mask: np.ndarray | torch.Tensor) -> list[int] | None:
    """[x0, y0, x1, y1] (x1, y1 exclusive) of the nonzero pixels of a (H, W) or (1, H, W) mask; None if empty."""
    m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    m = m.reshape(m.shape[-2], m.shape[-1]) if m.ndim == 3 else m
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    if rows.size == 0:
        return None
    return [int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1]


class BreastMaskd(MapTransform):
    """Add a breast mask (Otsu + largest connected component, see :func:`breast_mask`) for an image key.

    ASN (Zhang et al., CVPR 2019) segments the breast with Otsu's threshold and zeroes the background;
    the mask also restricts patch sampling and region tiling to the breast. The mask is a
    ``(1, H, W)`` float32 MetaTensor {0, 1} with a copy of the image's meta (same geometry, so later
    geometric transforms list it among their keys); ``meta["breast_box"]`` holds its [x0, y0, x1, y1].

    Example::

        >>> import torch
        >>> from monai.data import MetaTensor
        >>> img = torch.zeros(1, 64, 64); img[:, 10:50, :30] = 1.0
        >>> d = BreastMaskd(keys="image")({"image": MetaTensor(img)})
        >>> d["breast_mask"].meta["breast_box"]
        [0, 10, 30, 50]

    Args:
        keys: image key(s); one mask per key.
        mask_key: output key (or one per image key; a "{key}" placeholder is filled in). Default "breast_mask".
        zero_background: multiply the image by the mask (ASN). Default False.
        working_size: see :func:`breast_mask`. Default 512.
        opening_mm: see :func:`breast_mask`. Default 2.0.
        fallback_spacing_mm: spacing assumed when the meta has none. Default 0.1.
        allow_missing_keys: skip absent keys. Default False.
    """

    def __init__(
        self,
        keys: KeysCollection,
        mask_key: str | tuple[str, ...] = "breast_mask",
        zero_background: bool = False,
        working_size: int = 512,
        opening_mm: float = 2.0,
        fallback_spacing_mm: float = 0.1,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        mk = ensure_tuple(mask_key)
        if len(mk) == 1 and len(self.keys) > 1:
            mk = tuple(mk[0].format(key=k) if "{key}" in mk[0] else f"{k}_{mk[0]}" for k in self.keys)
        if len(mk) != len(self.keys):
            raise ValueError(f"mask_key: need one per key ({len(self.keys)}), got {mask_key!r}.")
        self.mask_keys = mk
        self.zero_background = bool(zero_background)
        self.kwargs = {"working_size": int(working_size), "opening_mm": float(opening_mm),
                       "fallback_spacing_mm": float(fallback_spacing_mm)}

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, mkey in self.key_iterator(d, self.mask_keys):
            img = d[key]
            if img.ndim != 3 or img.shape[0] != 1:
                raise ValueError(f"BreastMaskd: {key!r} must be (1, H, W), got shape {tuple(img.shape)}.")
            meta = dict(img.meta) if isinstance(img, MetaTensor) else {}
            sp = spacing_of(meta)
            mask = breast_mask(img, spacing=float(np.mean(sp)) if sp else None, **self.kwargs)
            box = mask_bbox(mask)
            if box is None:
                warnings.warn(f"BreastMaskd: no breast found in {meta.get('filename_or_obj', key)}.", stacklevel=2)
            mask_t = torch.from_numpy(mask[None].astype(np.float32))
            if isinstance(img, MetaTensor):
                out = MetaTensor(mask_t, meta=img.meta)  # copies meta (affine, pixel_to_original, spacing)
                out.meta["breast_box"] = box if box is not None else [0, 0, 0, 0]
                img.meta["breast_box"] = out.meta["breast_box"]
                d[mkey] = out
            else:
                d[mkey] = mask_t.to(img.device) if isinstance(img, torch.Tensor) else mask_t.numpy()
            if self.zero_background:
                d[key] = img * d[mkey].to(img.dtype) if isinstance(img, torch.Tensor) else img * mask[None]
        return d


class CropToBreastd(MapTransform, InvertibleTransform):
    """Crop images and masks to the bounding box of a breast mask (plus a margin); points and boxes shift.

    Uses MONAI ``SpatialCrop`` (affine updated) and composes the shift onto ``meta["pixel_to_original"]``;
    ``meta["crop_box"]`` holds the [x0, y0, x1, y1] used, in the pixels of the input. Points and boxes
    are translated, not dropped, so a round trip is exact. :meth:`inverse` pads back with zeros.
    An empty mask leaves the images uncropped (a warning says so).

    Example::

        >>> import torch
        >>> from monai.data import MetaTensor
        >>> m = torch.zeros(1, 20, 30); m[:, 5:15, 0:12] = 1
        >>> d = CropToBreastd(keys=["image", "breast_mask"], point_keys="points")(
        ...     {"image": MetaTensor(torch.rand(1, 20, 30)), "breast_mask": MetaTensor(m), "points": [[3.0, 6.0]]})
        >>> tuple(d["image"].shape), d["points"].tolist()
        ((1, 10, 12), [[3.0, 1.0]])

    Args:
        keys: image/mask keys cropped together (the mask key may be among them).
        mask_key: key of the breast mask defining the box. Default "breast_mask".
        margin: pixels added on every side (clipped to the image). Default 0.
        point_keys: keys with points; skipped when absent. Default ().
        box_keys: keys with boxes; skipped when absent. Default ().
        allow_missing_keys: skip absent ``keys``. Default False.
    """

    def __init__(
        self,
        keys: KeysCollection,
        mask_key: Hashable = "breast_mask",
        margin: int = 0,
        point_keys: KeysCollection = (),
        box_keys: KeysCollection = (),
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mask_key = mask_key
        self.margin = int(margin)
        self.point_keys = ensure_tuple(point_keys)
        self.box_keys = ensure_tuple(box_keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.mask_key not in d:
            raise KeyError(f"CropToBreastd: mask key {self.mask_key!r} not in data (keys: {list(d)}); run BreastMaskd first.")
        mask = d[self.mask_key]
        h, w = (int(s) for s in mask.shape[-2:])
        box = mask_bbox(mask)
        if box is None:
            warnings.warn("CropToBreastd: empty breast mask, image left uncropped.", stacklevel=2)
            box = [0, 0, w, h]
        m = self.margin
        x0, y0, x1, y1 = max(0, box[0] - m), max(0, box[1] - m), min(w, box[2] + m), min(h, box[3] + m)
        forward = translation_matrix(-x0, -y0)
        cropper = SpatialCrop(roi_start=(y0, x0), roi_end=(y1, x1))  # rows first
        for key in self.key_iterator(d):
            img = d[key]
            if tuple(int(s) for s in img.shape[-2:]) != (h, w):
                raise ValueError(f"CropToBreastd: {key!r} has spatial shape {tuple(img.shape[-2:])}, mask has {(h, w)}.")
            with cropper.trace_transform(False):
                out = cropper(img)
            if isinstance(out, MetaTensor):
                out.meta["crop_box"] = [x0, y0, x1, y1]
            d[key] = record_forward(self, out, forward, crop_box=[x0, y0, x1, y1], orig_size=[h, w])
        map_keys_geometry(d, forward, self.point_keys, self.box_keys)
        return d

    def inverse(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        ref = next((k for k in self.keys if k in d and isinstance(d[k], MetaTensor)), None)
        if ref is None:
            return d
        forward, _ = peek_forward(self, d[ref])
        map_keys_geometry(d, np.linalg.inv(forward), self.point_keys, self.box_keys)
        for key in self.key_iterator(d):
            if not isinstance(d[key], MetaTensor):
                continue
            fwd, info = pop_forward(self, d[key])
            x0, y0, x1, y1 = info["crop_box"]
            h, w = info["orig_size"]
            img = d[key]
            pad = (x0, w - x1, y0, h - y1)  # F.pad order: last dim (x) first
            out = F.pad(img.as_tensor(), pad)
            out = MetaTensor(out, meta=img.meta, applied_operations=img.applied_operations)
            out.meta.pop("crop_box", None)
            out.affine = _shift_affine(out.affine, -y0, -x0)
            d[key] = undo_forward(out, fwd)
        return d


def _shift_affine(affine: torch.Tensor, d_row: float, d_col: float) -> torch.Tensor:
    """Affine of an image whose index origin moved by (d_row, d_col) pixels."""
    a = affine.clone()
    shift = torch.zeros(a.shape[0], dtype=a.dtype)
    shift[0], shift[1] = d_row, d_col
    shift[-1] = 1.0
    a[:, -1] = a @ shift
    return a
