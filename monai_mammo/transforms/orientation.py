"""Canonical orientation of mammograms: flip left-right so the chest wall is on a fixed side."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import Flip, InvertibleTransform, MapTransform
from monai.utils import ensure_tuple

from monai_mammo.transforms.geometry import (
    flip_matrix,
    identity,
    map_keys_geometry,
    peek_forward,
    pop_forward,
    record_forward,
    reference_key,
    undo_forward,
)

__all__ = ["CanonicalOrientationd", "chest_wall_side"]

ORIENTATION_METHODS = ("auto", "laterality", "intensity")


def chest_wall_side(image: Any, laterality: str = "", method: str = "auto") -> str:
    """Return "left" or "right": the side of the image (column 0 = left) where the chest wall lies.

    Laterality follows the standard mammography display (DICOM MG, "back to back" hanging): a left
    breast (``L``) is stored with its chest wall at the left edge (nipple pointing right), a right
    breast with its chest wall at the right edge. Without laterality (or ``method="intensity"``) the
    side holding more intensity mass wins: the breast is widest, and densest, at the chest wall, while
    the nipple side tapers to background. Needs tissue-bright images (the reader inverts MONOCHROME1).
    """
    if method not in ORIENTATION_METHODS:
        raise ValueError(f"method must be one of {ORIENTATION_METHODS}, got {method!r}.")
    lat = (laterality or "").strip().upper()[:1]
    if method in ("auto", "laterality") and lat in ("L", "R"):
        return "left" if lat == "L" else "right"
    if method == "laterality":
        raise ValueError(f"laterality {laterality!r} is neither 'L' nor 'R' and method='laterality' has no fallback.")
    arr = image.detach() if isinstance(image, torch.Tensor) else torch.as_tensor(np.asarray(image))
    arr = arr.float()
    columns = arr.reshape(-1, arr.shape[-2], arr.shape[-1]).sum(dim=(0, 1))  # intensity per column
    columns = columns - columns.min()  # a constant offset (background level) must not decide
    half = columns.shape[0] // 2
    left, right = float(columns[:half].sum()), float(columns[columns.shape[0] - half :].sum())
    return "left" if left >= right else "right"


class CanonicalOrientationd(MapTransform, InvertibleTransform):
    """Flip mammograms left-right so the chest wall is always on ``chest_wall`` side; points, boxes, masks follow.

    Models see one orientation (as in ASN and most mammography CAD pipelines, which mirror right
    breasts onto left ones). The flip uses MONAI ``Flip`` (affine updated), composes onto
    ``meta["pixel_to_original"]``, and is recorded for :meth:`inverse` (also when no flip was needed).
    ``meta["chest_wall_flipped"]`` says whether this image was flipped.

    Example::

        >>> import torch
        >>> from monai.data import MetaTensor
        >>> img = MetaTensor(torch.zeros(1, 4, 6), meta={"laterality": "R"})
        >>> d = CanonicalOrientationd(keys="image", point_keys="points")({"image": img, "points": [[0.0, 1.0]]})
        >>> d["points"].tolist(), d["image"].meta["chest_wall_flipped"]
        ([[5.0, 1.0]], True)

    Args:
        keys: image/mask keys flipped together; the first present is the reference unless ``ref_key``.
        chest_wall: "left" (default, column 0) or "right": where the chest wall should end up.
        method: "auto" (laterality when known, else intensity mass; default), "laterality", "intensity".
        point_keys: keys with [[x, y], ...] points; skipped when absent. Default ().
        box_keys: keys with [[x0, y0, x1, y1], ...] boxes; skipped when absent. Default ().
        ref_key: key whose meta laterality / intensity decides. Default None (first of keys).
        laterality_key: data key read when meta has no laterality. Default "laterality".
        allow_missing_keys: skip absent ``keys``. Default False.
    """

    def __init__(
        self,
        keys: KeysCollection,
        chest_wall: str = "left",
        method: str = "auto",
        point_keys: KeysCollection = (),
        box_keys: KeysCollection = (),
        ref_key: Hashable | None = None,
        laterality_key: Hashable | None = "laterality",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if chest_wall not in ("left", "right"):
            raise ValueError(f"chest_wall must be 'left' or 'right', got {chest_wall!r}.")
        if method not in ORIENTATION_METHODS:
            raise ValueError(f"method must be one of {ORIENTATION_METHODS}, got {method!r}.")
        self.chest_wall = chest_wall
        self.method = method
        self.point_keys = ensure_tuple(point_keys)
        self.box_keys = ensure_tuple(box_keys)
        self.ref_key = ref_key
        self.laterality_key = laterality_key
        self.flipper = Flip(spatial_axis=1)  # spatial axes are (rows, columns): 1 = x

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        ref_key = reference_key(d, self.keys, self.ref_key, "CanonicalOrientationd")
        ref = d[ref_key]
        lat = ref.meta.get("laterality", "") if isinstance(ref, MetaTensor) else ""
        if not lat and self.laterality_key is not None and isinstance(d.get(self.laterality_key), str):
            lat = d[self.laterality_key]
        flip = chest_wall_side(ref, lat, self.method) != self.chest_wall
        w = int(ref.shape[-1])
        forward = flip_matrix(width=w) if flip else identity()
        for key in self.key_iterator(d):
            img = d[key]
            if int(img.shape[-1]) != w:
                raise ValueError(f"CanonicalOrientationd: {key!r} has width {img.shape[-1]}, reference {ref_key!r} {w}.")
            out = self.flipper(img) if flip else img
            if isinstance(out, MetaTensor):
                out.meta["chest_wall_flipped"] = bool(flip)
            d[key] = record_forward(self, out, forward, flipped=bool(flip))
        map_keys_geometry(d, forward, self.point_keys, self.box_keys)
        return d

    def inverse(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        forward, _ = peek_forward(self, d[reference_key(d, self.keys, self.ref_key, "CanonicalOrientationd")])
        map_keys_geometry(d, np.linalg.inv(forward), self.point_keys, self.box_keys)
        for key in self.key_iterator(d):
            if not isinstance(d[key], MetaTensor):
                continue
            fwd, info = pop_forward(self, d[key])
            img = self.flipper.inverse(d[key]) if info.get("flipped") else d[key]
            img.meta["chest_wall_flipped"] = False
            d[key] = undo_forward(img, fwd)
        return d
