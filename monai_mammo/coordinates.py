"""The project's pixel and coordinate convention, written once; every module links here.

* **Arrays are rows first.** A 2D image is a tensor or array ``(C, H, W)`` (batched
  ``(B, C, H, W)``): axis -2 is the row (y), axis -1 the column (x). Masks and maps share the
  image's grid.
* **Points are** ``[x, y]`` in pixels, x the column and y the row, in *centre coordinates*: pixel
  ``(row r, column c)`` has its centre at ``x = c, y = r``.
* **Boxes are** ``[x0, y0, x1, y1]`` in pixels, in *edge coordinates*: ``x1`` and ``y1`` are
  exclusive, so a box covers the pixel columns ``x0 <= c < x1`` and rows ``y0 <= r < y1``,
  ``x1 - x0`` is its width in pixels, and the box of the single pixel ``(row 3, column 5)`` is
  ``[5, 3, 6, 4]``. In centre coordinates its edges lie at ``x0 - 0.5`` and ``x1 - 0.5``
  (:mod:`monai_mammo.transforms.geometry` converts between the two).
* **Stored pixels.** Datalists, JSON outputs, DICOM SR/SEG and MONAI Label results give
  coordinates in the pixels of the *stored* image (as read from the file, before any resampling,
  flipping or cropping). Transforms that move the grid record the map back in
  ``meta["pixel_to_original"]`` (a 3x3 homogeneous matrix on ``[x, y, 1]``, see
  :mod:`monai_mammo.transforms.geometry`), and outputs are mapped through it.
* **Spacing** is ``meta["spacing"] = [sx, sy]`` in mm per pixel (x first, like points), read by
  :func:`monai_mammo.transforms.io.spacing_of` (None when unknown). Converting between pixels and mm
  always goes through it; :func:`spacing_xy` falls back to a stated default only where a caller
  asks for one.
* Every radiograph is read through :class:`monai_mammo.transforms.io.RadiographReader`
  (``LoadRadiographd``), which sets these meta keys.

Example::

    >>> import numpy as np
    >>> mask = np.zeros((5, 8), bool)   # (H, W): 5 rows, 8 columns
    >>> mask[3, 5] = True               # the point [x, y] = [5, 3]
    >>> rows, cols = np.nonzero(mask)
    >>> [int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1]   # its box
    [5, 3, 6, 4]
    >>> spacing_xy({"spacing": [0.05, 0.1]})
    (0.05, 0.1)
    >>> spacing_xy({}, fallback=DEFAULT_SPACING_MM)
    (0.07, 0.07)
    >>> spacing_xy({}) is None
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["DEFAULT_SPACING_MM", "spacing_xy", "meta_of"]

#: Full-field digital mammography detector pitch (70 µm), the fallback where a caller accepts one.
DEFAULT_SPACING_MM = 0.07


def spacing_xy(meta: Mapping[str, Any] | None, fallback: float | None = None) -> tuple[float, float] | None:
    """``(sx, sy)`` in mm from ``meta["spacing"]`` (one value: isotropic); when it is unknown (absent,
    None, NaN or not positive), ``(fallback, fallback)`` if a fallback is given, else None.

    Raises:
        ValueError: a fallback that is not a positive number.
    """
    from monai_mammo.transforms.io import spacing_of

    if fallback is not None and not float(fallback) > 0:
        raise ValueError(f"spacing_xy: the fallback spacing must be a positive number of mm, got {fallback!r}")
    spacing = spacing_of(meta)
    if spacing is None:
        return None if fallback is None else (float(fallback), float(fallback))
    return float(spacing[0]), float(spacing[1])


def meta_of(image: Any) -> dict:
    """The meta dict of a ``MetaTensor`` (a copy), ``{}`` for anything else."""
    from monai.data import MetaTensor

    return dict(image.meta) if isinstance(image, MetaTensor) else {}
