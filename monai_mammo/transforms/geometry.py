"""Homogeneous 2D pixel geometry shared by every geometric transform of monai_mammo.

Conventions (HELPERS.md "Data contracts"):

* images are ``(C, H, W)``: rows = y, columns = x;
* points are ``[x, y]`` in *centre coordinates*: the centre of pixel (row=y, col=x) is at (x, y);
* boxes are ``[x0, y0, x1, y1]`` in *edge coordinates*: x1/y1 exclusive, so the box covering the
  single pixel (row=3, col=5) is ``[5, 3, 6, 4]``. In centre coordinates its edges lie at
  ``x0 - 0.5`` and ``x1 - 0.5``;
* ``meta["pixel_to_original"]`` is a 3x3 homogeneous matrix (nested list) that maps ``(x, y, 1)``
  in centre coordinates of the current image to centre coordinates of the originally stored image.

A transform that maps old pixels to new pixels with matrix ``T`` (``p_new = T @ p_old``) updates
``pixel_to_original`` to ``M @ inv(T)`` via :func:`compose_pixel_to_original`. All matrix code of
the package lives here so that resample, flip, crop and pad agree on the half-pixel conventions.

Example::

    >>> import numpy as np
    >>> meta = {"pixel_to_original": identity().tolist()}
    >>> meta = compose_pixel_to_original(meta, scale_matrix(2.0, 2.0))   # image upsampled x2
    >>> points_to_original([[1.5, 1.5]], meta).tolist()
    [[0.5, 0.5]]
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, MutableMapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "PIXEL_TO_ORIGINAL",
    "identity",
    "scale_matrix",
    "translation_matrix",
    "flip_matrix",
    "get_pixel_to_original",
    "compose_pixel_to_original",
    "apply_to_points",
    "apply_to_boxes",
    "points_to_original",
    "boxes_to_original",
    "as_points",
    "as_boxes",
    "like_input",
]

PIXEL_TO_ORIGINAL = "pixel_to_original"


def identity() -> np.ndarray:
    """3x3 float64 identity."""
    return np.eye(3, dtype=np.float64)


def scale_matrix(scale_x: float, scale_y: float) -> np.ndarray:
    """Forward matrix of a resize whose image *edges* stay aligned (``align_corners=False``).

    A resize from width ``W`` to ``W' = W * scale_x`` maps the edge coordinate ``e`` to ``e * scale_x``;
    in centre coordinates that is ``x' = (x + 0.5) * scale_x - 0.5``.
    """
    return np.array(
        [[scale_x, 0.0, 0.5 * scale_x - 0.5], [0.0, scale_y, 0.5 * scale_y - 0.5], [0.0, 0.0, 1.0]],
        dtype=np.float64,
    )


def translation_matrix(tx: float, ty: float) -> np.ndarray:
    """Forward matrix of a shift by (tx, ty) pixels (a crop starting at (x0, y0) is ``(-x0, -y0)``)."""
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]], dtype=np.float64)


def flip_matrix(width: int | None = None, height: int | None = None) -> np.ndarray:
    """Forward matrix of a left-right flip (``width`` given) and/or an up-down flip (``height`` given).

    A left-right flip of an image ``width`` pixels wide maps centre ``x`` to ``width - 1 - x``.
    """
    m = identity()
    if width is not None:
        m[0, 0], m[0, 2] = -1.0, float(width) - 1.0
    if height is not None:
        m[1, 1], m[1, 2] = -1.0, float(height) - 1.0
    return m


def get_pixel_to_original(meta: Mapping[str, Any] | None) -> np.ndarray:
    """Return ``meta["pixel_to_original"]`` as a (3, 3) float64 array (identity when absent).

    Raises:
        ValueError: when the stored value is not a 3x3 matrix.
    """
    if meta is None or meta.get(PIXEL_TO_ORIGINAL) is None:
        return identity()
    value = meta[PIXEL_TO_ORIGINAL]
    m = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    m = m.astype(np.float64)
    if m.shape != (3, 3):
        raise ValueError(
            f"meta['{PIXEL_TO_ORIGINAL}'] must be a 3x3 matrix, got shape {m.shape}; "
            "a batched (collated) meta must be split per sample first (monai.data.decollate_batch)."
        )
    return m


def compose_pixel_to_original(meta: MutableMapping[str, Any], forward: np.ndarray) -> MutableMapping[str, Any]:
    """Record a geometric transform with forward matrix ``forward`` (old pixels -> new pixels).

    Sets ``meta["pixel_to_original"] = M_old @ inv(forward)`` as a *new* nested list (never mutated in
    place, so samples that share a meta copy do not affect each other). Returns ``meta``.
    """
    new = get_pixel_to_original(meta) @ np.linalg.inv(np.asarray(forward, dtype=np.float64))
    meta[PIXEL_TO_ORIGINAL] = new.tolist()
    return meta


def _as_rows(values: Any, width: int, name: str, layout: str) -> np.ndarray:
    """Convert a list, numpy array or tensor of ``width``-long rows to float64 ``(N, width)``."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, width), dtype=np.float64)
    if arr.ndim == 1 and arr.shape[0] == width:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != width:
        raise ValueError(f"{name} must be {layout} with shape (N, {width}), got shape {arr.shape}.")
    return arr


def as_points(points: Any, name: str = "points") -> np.ndarray:
    """Convert ``[[x, y], ...]`` (list, numpy or torch) to a float64 (N, 2) array; ``[]`` gives (0, 2)."""
    return _as_rows(points, 2, name, "[[x, y], ...]")


def as_boxes(boxes: Any, name: str = "boxes") -> np.ndarray:
    """Convert ``[[x0, y0, x1, y1], ...]`` to a float64 (N, 4) array; ``[]`` gives (0, 4)."""
    return _as_rows(boxes, 4, name, "[[x0, y0, x1, y1], ...]")


def like_input(result: np.ndarray, original: Any) -> Any:
    """Return ``result`` as float32 torch tensor when ``original`` was a tensor, else float32 numpy."""
    out = result.astype(np.float32)
    if isinstance(original, torch.Tensor):
        return torch.as_tensor(out, device=original.device)
    return out


def apply_to_points(points: Any, matrix: np.ndarray) -> np.ndarray:
    """Map (N, 2) centre-coordinate points with a 3x3 homogeneous matrix; returns float64 (N, 2)."""
    p = as_points(points)
    m = np.asarray(matrix, dtype=np.float64)
    return p @ m[:2, :2].T + m[:2, 2]


def apply_to_boxes(boxes: Any, matrix: np.ndarray) -> np.ndarray:
    """Map (N, 4) edge-coordinate boxes with a 3x3 matrix; returns the axis-aligned hull, float64 (N, 4).

    The four corners are moved to centre coordinates (-0.5), mapped, moved back (+0.5) and the
    min/max taken, so flips (which swap x0 and x1) give valid boxes.
    """
    b = as_boxes(boxes)
    if len(b) == 0:
        return b
    corners = np.stack(
        [b[:, [0, 1]], b[:, [2, 1]], b[:, [0, 3]], b[:, [2, 3]]], axis=1
    ) - 0.5  # (N, 4 corners, 2)
    m = np.asarray(matrix, dtype=np.float64)
    mapped = corners @ m[:2, :2].T + m[:2, 2] + 0.5
    return np.concatenate([mapped.min(axis=1), mapped.max(axis=1)], axis=1)


def points_to_original(points: Any, meta: Mapping[str, Any] | None) -> np.ndarray:
    """Map points ``[[x, y], ...]`` in the current image to the originally stored image's pixels.

    Args:
        points: (N, 2) points in pixels of the transformed image (list, numpy or torch).
        meta: the image's meta dict (``MetaTensor.meta``) holding ``pixel_to_original``.
    """
    return apply_to_points(points, get_pixel_to_original(meta))


def boxes_to_original(boxes: Any, meta: Mapping[str, Any] | None) -> np.ndarray:
    """Map boxes ``[[x0, y0, x1, y1], ...]`` in the current image to the originally stored image's pixels."""
    return apply_to_boxes(boxes, get_pixel_to_original(meta))


def map_keys_geometry(
    data: MutableMapping[Any, Any],
    forward: np.ndarray,
    point_keys: Sequence[Any] = (),
    box_keys: Sequence[Any] = (),
) -> None:
    """Apply ``forward`` in place to the point and box entries of a data dict (missing keys skipped).

    Results keep the input's container kind (torch stays torch, anything else becomes float32 numpy).
    """
    for k in point_keys:
        if k in data and data[k] is not None:
            data[k] = like_input(apply_to_points(data[k], forward), data[k])
    for k in box_keys:
        if k in data and data[k] is not None:
            data[k] = like_input(apply_to_boxes(data[k], forward), data[k])


__all__ += ["map_keys_geometry"]


# --------------------------------------------------------------------------- transform bookkeeping
FORWARD_KEY = "forward"


def record_forward(transform: Any, img: Any, forward: np.ndarray, **extra: Any) -> Any:
    """Compose ``forward`` onto a MetaTensor's ``pixel_to_original`` and push an inverse record.

    ``transform`` is the calling :class:`monai.transforms.InvertibleTransform`; the record (found
    again by :func:`pop_forward`) holds the forward matrix and ``extra``. Non-MetaTensors pass through.
    """
    from monai.data import MetaTensor

    if not isinstance(img, MetaTensor):
        return img
    compose_pixel_to_original(img.meta, forward)
    return transform.push_transform(img, extra_info={FORWARD_KEY: np.asarray(forward).tolist(), **extra})


def pop_forward(transform: Any, img: Any) -> tuple[np.ndarray, dict]:
    """Pop the record pushed by :func:`record_forward`; returns (forward matrix, extra_info)."""
    from monai.utils import TraceKeys

    xform = transform.pop_transform(img)
    info = dict(xform.get(TraceKeys.EXTRA_INFO, {}))
    return np.asarray(info.pop(FORWARD_KEY), dtype=np.float64), info


def peek_forward(transform: Any, img: Any) -> tuple[np.ndarray, dict]:
    """Like :func:`pop_forward` without removing the record."""
    from monai.utils import TraceKeys

    xform = transform.get_most_recent_transform(img)
    info = dict(xform.get(TraceKeys.EXTRA_INFO, {}))
    return np.asarray(info.pop(FORWARD_KEY), dtype=np.float64), info


def undo_forward(img: Any, forward: np.ndarray) -> Any:
    """Compose the inverse of ``forward`` onto a MetaTensor's ``pixel_to_original`` (inverse pass)."""
    from monai.data import MetaTensor

    if isinstance(img, MetaTensor):
        compose_pixel_to_original(img.meta, np.linalg.inv(np.asarray(forward, dtype=np.float64)))
    return img


__all__ += ["record_forward", "pop_forward", "peek_forward", "undo_forward"]


def reference_key(data: Mapping, keys: Sequence[Hashable], ref_key: Hashable | None, owner: str) -> Hashable:
    """The key whose image carries the geometry for a transform: ``ref_key`` when given, else the
    first of ``keys`` present in ``data``.

    Raises:
        KeyError: naming ``owner`` (the transform) when none of ``keys`` is in ``data``.
    """
    if ref_key is not None:
        return ref_key
    for key in keys:
        if key in data:
            return key
    raise KeyError(f"{owner}: none of the keys {tuple(keys)} is in the data (keys: {list(data)}).")
