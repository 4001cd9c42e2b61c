"""Resampling of radiographs to a target pixel spacing, keeping points, boxes and masks consistent."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import InvertibleTransform, MapTransform, Resize
from monai.utils import ensure_tuple, ensure_tuple_rep

from monai_mammo.transforms.geometry import (
    map_keys_geometry,
    peek_forward,
    pop_forward,
    record_forward,
    reference_key,
    scale_matrix,
    undo_forward,
)
from monai_mammo.transforms.io import MissingSpacingError, spacing_of

__all__ = ["ResampleToSpacingd"]


class ResampleToSpacingd(MapTransform, InvertibleTransform):
    """Resample images (bilinear) and masks (nearest) to a target pixel spacing, moving points and boxes.

    ASN (Zhang et al., CVPR 2019) resamples every mammogram to a common 70 µm pixel. The output size is
    ``round(H * sy / ty) x round(W * sx / tx)``; the scale actually applied is ``out / in`` per axis
    (image edges stay aligned, MONAI ``Resize`` with ``align_corners=False``), so ``meta["spacing"]``
    becomes ``[sx * W / W', sy * H / H']`` (the target up to rounding) and
    ``meta["pixel_to_original"]`` composes the exact scale. Masks use ``nearest-exact`` (pixel-centre
    aligned, unlike torch's ``nearest``). Downsampling smooths first (MONAI anti-aliasing). Inverse
    (``monai.transforms.Invertd`` or :meth:`inverse`) restores sizes, spacing and coordinates.

    Example::

        >>> import torch
        >>> from monai.data import MetaTensor
        >>> img = MetaTensor(torch.rand(1, 100, 80), meta={"spacing": [0.1, 0.1]})
        >>> d = ResampleToSpacingd(keys="image", target_spacing=0.05, point_keys="points")(
        ...     {"image": img, "points": [[10.0, 20.0]]})
        >>> tuple(d["image"].shape), d["points"].tolist()
        ((1, 200, 160), [[20.5, 40.5]])

    Args:
        keys: image keys resampled with ``mode``; the first present one is the reference unless ``ref_key``.
        target_spacing: mm per pixel, a number or [tx, ty]. Default 0.07 (ASN).
        mode: interpolation for ``keys`` (one or one per key). Default "bilinear".
        mask_keys: keys resampled with ``nearest-exact``; skipped when absent. Default ().
        point_keys: keys with [[x, y], ...] points; skipped when absent. Default ().
        box_keys: keys with [[x0, y0, x1, y1], ...] boxes; skipped when absent. Default ().
        ref_key: key whose ``meta["spacing"]`` defines the source spacing. Default None (first of keys).
        spacing_key: data key read when the reference meta has no spacing. Default "spacing".
        anti_aliasing: Gaussian pre-smoothing when downsampling images (never masks). Default True.
        allow_missing_keys: skip absent ``keys``. Default False.
    """

    def __init__(
        self,
        keys: KeysCollection,
        target_spacing: float | Sequence[float] = 0.07,
        mode: str | Sequence[str] = "bilinear",
        mask_keys: KeysCollection = (),
        point_keys: KeysCollection = (),
        box_keys: KeysCollection = (),
        ref_key: Hashable | None = None,
        spacing_key: Hashable | None = "spacing",
        anti_aliasing: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        ts = ensure_tuple_rep(target_spacing, 2) if np.isscalar(target_spacing) else tuple(target_spacing)
        if len(ts) != 2 or not all(float(t) > 0 for t in ts):
            raise ValueError(f"target_spacing must be a positive number or [tx, ty] in mm, got {target_spacing!r}.")
        self.target_spacing = (float(ts[0]), float(ts[1]))
        self.mode = ensure_tuple_rep(mode, len(self.keys))
        self.mask_keys = ensure_tuple(mask_keys)
        self.point_keys = ensure_tuple(point_keys)
        self.box_keys = ensure_tuple(box_keys)
        self.ref_key = ref_key
        self.spacing_key = spacing_key
        self.anti_aliasing = bool(anti_aliasing)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        ref_key = reference_key(d, self.keys, self.ref_key, "ResampleToSpacingd")
        ref = d[ref_key]
        meta = ref.meta if isinstance(ref, MetaTensor) else {}
        spacing = spacing_of(meta)
        if spacing is None and self.spacing_key is not None and d.get(self.spacing_key) is not None:
            spacing = spacing_of({"spacing": d[self.spacing_key]})
        if spacing is None:
            raise MissingSpacingError.for_app(meta.get("filename_or_obj", ref_key), "ResampleToSpacingd")
        h, w = (int(s) for s in ref.shape[-2:])
        (sx, sy), (tx, ty) = spacing, self.target_spacing
        out_h, out_w = max(1, int(round(h * sy / ty))), max(1, int(round(w * sx / tx)))
        fx, fy = out_w / w, out_h / h
        forward = scale_matrix(fx, fy)
        new_spacing = [sx / fx, sy / fy]
        jobs = [(k, m, self.anti_aliasing) for k, m in zip(self.keys, self.mode)]
        jobs += [(k, "nearest-exact", False) for k in self.mask_keys]
        for key, mode, aa in jobs:
            if key not in d:
                if key in self.keys and not self.allow_missing_keys:
                    raise KeyError(f"ResampleToSpacingd: key {key!r} missing (keys present: {list(d)}).")
                continue
            img = d[key]
            if tuple(img.shape[-2:]) != (h, w):
                raise ValueError(
                    f"ResampleToSpacingd: {key!r} has spatial shape {tuple(img.shape[-2:])}, "
                    f"reference {ref_key!r} has {(h, w)}."
                )
            out = Resize(spatial_size=(out_h, out_w), mode=mode, anti_aliasing=aa)(img)
            if isinstance(out, MetaTensor):
                out.meta["spacing"] = list(new_spacing)
            d[key] = record_forward(self, out, forward, spacing=[float(sx), float(sy)], mode=mode, orig_size=[h, w])
        map_keys_geometry(d, forward, self.point_keys, self.box_keys)
        return d

    def inverse(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        ref_key = reference_key(d, self.keys, self.ref_key, "ResampleToSpacingd")
        forward, _ = peek_forward(self, d[ref_key])
        map_keys_geometry(d, np.linalg.inv(forward), self.point_keys, self.box_keys)
        for key in list(self.keys) + list(self.mask_keys):
            if key not in d or not isinstance(d[key], MetaTensor):
                continue
            fwd, info = pop_forward(self, d[key])
            img = d[key]
            _pop_record(img, "Resize")
            resizer = Resize(spatial_size=tuple(info["orig_size"]), mode=info["mode"], anti_aliasing=False)
            with resizer.trace_transform(False):
                img = resizer(img)
            img.meta["spacing"] = list(info["spacing"])
            d[key] = undo_forward(img, fwd)
        return d


def _pop_record(img: MetaTensor, class_name: str) -> None:
    """Drop the trace entry the wrapped MONAI array transform pushed (we invert it ourselves)."""
    from monai.utils import TraceKeys

    ops = img.applied_operations
    if not ops or ops[-1].get(TraceKeys.CLASS_NAME) != class_name:
        got = ops[-1].get(TraceKeys.CLASS_NAME) if ops else None
        raise RuntimeError(f"expected a {class_name} record on top of applied_operations to invert, got {got}.")
    ops.pop()
