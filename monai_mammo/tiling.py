"""Region tiling of a whole image: fixed-size windows on a stride grid, kept where they lie in a mask.

Bakalo, Goldberger and Ben-Ari ("Weakly and semi supervised detection in medical imaging via deep
dual branch net", Neurocomputing 421, 2021, Sec. 4.1) split each mammogram into "overlapping
regions of size 224x224 with a stride of 112" and keep the regions that lie in the breast; An et
al. (LatentCADx, Front. Big Data 2021) sample negative patches from lesion-free breast tissue the
same way. This module is that step, network-agnostic:

* :func:`tile_boxes`: the windows of an ``(H, W)`` image as boxes ``[x0, y0, x1, y1]`` (exclusive
  ``x1, y1``; :mod:`monai_mammo.coordinates`), the last row and column flush with the image edge so
  the whole image is covered, kept when at least ``min_fraction`` of the window lies in ``mask``;
* :func:`mask_fraction`: the share of each box inside a mask (an integral image: O(1) per box, so
  tiling a 4096 x 3328 mammogram costs a few milliseconds);
* :func:`iter_crops`: the windows' pixels in chunks of ``chunk_size`` (a network never sees more
  than one chunk at a time, which bounds memory at full resolution); windows larger than the image
  are zero-padded (``pad_value``) so every crop has the window's size.

Boxes are in the pixels of the array that was tiled; :meth:`monai_mammo.regions.Regions.to_original`
maps them back to the stored image when the array was resampled.

Example:
    >>> import numpy as np
    >>> mask = np.zeros((8, 12), bool); mask[:, :6] = True            # breast on the left half
    >>> tile_boxes((8, 12), window=4, stride=4).tolist()
    [[0, 0, 4, 4], [4, 0, 8, 4], [8, 0, 12, 4], [0, 4, 4, 8], [4, 4, 8, 8], [8, 4, 12, 8]]
    >>> tile_boxes((8, 12), window=4, stride=4, mask=mask, min_fraction=0.5).tolist()
    [[0, 0, 4, 4], [4, 0, 8, 4], [0, 4, 4, 8], [4, 4, 8, 8]]
    >>> image = np.arange(96, dtype=np.float32).reshape(1, 8, 12)
    >>> [(b.tolist(), tuple(c.shape)) for b, c in iter_crops(image, tile_boxes((8, 12), 4, 4), chunk_size=4)]
    [([[0, 0, 4, 4], [4, 0, 8, 4], [8, 0, 12, 4], [0, 4, 4, 8]], (4, 1, 4, 4)), ([[4, 4, 8, 8], [8, 4, 12, 8]], (2, 1, 4, 4))]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

__all__ = ["tile_boxes", "mask_fraction", "iter_crops", "window_starts"]


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    """``(rows, cols)`` from an int or a pair; positive integers only."""
    pair = (int(value), int(value)) if np.isscalar(value) else tuple(int(v) for v in value)  # type: ignore[arg-type]
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"{name} must be a positive int or a (rows, cols) pair of positive ints, got {value!r}")
    return pair  # type: ignore[return-value]


def window_starts(length: int, window: int, stride: int) -> np.ndarray:
    """Start offsets of windows along one axis: ``0, stride, 2 stride, ...`` and one flush with the end.

    A window longer than the axis gives the single start 0 (the crop is padded by :func:`iter_crops`).

    >>> window_starts(10, 4, 3).tolist(), window_starts(8, 4, 4).tolist(), window_starts(3, 4, 2).tolist()
    ([0, 3, 6], [0, 4], [0])
    """
    if length <= window:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, length - window + 1, stride, dtype=np.int64)
    if starts[-1] != length - window:
        starts = np.append(starts, length - window)
    return starts


def mask_fraction(mask: np.ndarray | torch.Tensor, boxes: np.ndarray) -> np.ndarray:
    """Share of each box's area that lies inside ``mask`` (``(H, W)``, nonzero = inside).

    The area counts the box's pixels inside the image, so a window padded past the image edge is
    judged on the part of it that exists.

    >>> m = np.zeros((4, 4), bool); m[:2, :2] = True
    >>> mask_fraction(m, np.array([[0, 0, 2, 2], [0, 0, 4, 4], [2, 2, 4, 4], [0, 0, 8, 8]])).tolist()
    [1.0, 0.25, 0.0, 0.25]
    """
    mask_np = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    mask_np = np.squeeze(mask_np)
    if mask_np.ndim != 2:
        raise ValueError(f"mask must be 2D (H, W) after squeezing, got shape {tuple(np.shape(mask))}")
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    height, width = mask_np.shape
    # integral image with a zero first row and column: sum over [y0, y1) x [x0, x1) in four lookups
    integral = np.zeros((height + 1, width + 1), dtype=np.int64)
    integral[1:, 1:] = (mask_np != 0).cumsum(0).cumsum(1)
    x0 = np.clip(boxes[:, 0], 0, width)
    x1 = np.clip(boxes[:, 2], 0, width)
    y0 = np.clip(boxes[:, 1], 0, height)
    y1 = np.clip(boxes[:, 3], 0, height)
    inside = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    area = (x1 - x0) * (y1 - y0)
    return np.where(area > 0, inside / np.maximum(area, 1), 0.0)


def tile_boxes(
    image_size: Sequence[int],
    window: int | Sequence[int] = 224,
    stride: int | Sequence[int] = 112,
    mask: np.ndarray | torch.Tensor | None = None,
    min_fraction: float = 0.5,
) -> np.ndarray:
    """Windows of an image as integer boxes ``[x0, y0, x1, y1]`` (``(N, 4)``, row-major order).

    Args:
        image_size: ``(H, W)`` of the array to tile (extra leading dims are ignored).
        window: window size in pixels, an int or ``(rows, cols)``. Default 224 (Bakalo et al. Sec. 4.1).
        stride: step between windows, an int or ``(rows, cols)``. Default 112 (half-overlapping windows).
        mask: optional ``(H, W)`` mask (the breast); windows with less than ``min_fraction`` of
            their in-image area inside it are dropped. ``None`` keeps every window.
        min_fraction: share of a window that must lie inside ``mask`` (default 0.5).

    Returns:
        int64 array ``(N, 4)``; ``N`` may be 0 when no window lies in the mask.
    """
    height, width = (int(v) for v in tuple(image_size)[-2:])
    if height < 1 or width < 1:
        raise ValueError(f"image_size must be positive, got {tuple(image_size)}")
    win_r, win_c = _pair(window, "window")
    str_r, str_c = _pair(stride, "stride")
    if not 0.0 <= min_fraction <= 1.0:
        raise ValueError(f"min_fraction must be in [0, 1], got {min_fraction}")
    ys = window_starts(height, win_r, str_r)
    xs = window_starts(width, win_c, str_c)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    boxes = np.stack([xx.ravel(), yy.ravel(), xx.ravel() + win_c, yy.ravel() + win_r], axis=1).astype(np.int64)
    if mask is not None:
        mask_shape = tuple(np.squeeze(np.asarray(mask.shape if isinstance(mask, torch.Tensor) else np.shape(mask))).tolist())
        if tuple(int(v) for v in mask_shape[-2:]) != (height, width):
            raise ValueError(f"mask shape {mask_shape} does not match image_size {(height, width)}")
        boxes = boxes[mask_fraction(mask, boxes) >= min_fraction - 1e-12]
    return boxes


def iter_crops(
    image: np.ndarray | torch.Tensor,
    boxes: np.ndarray,
    chunk_size: int = 64,
    pad_value: float = 0.0,
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """Yield ``(boxes_chunk, crops)`` with ``crops`` a ``(n, C, h, w)`` tensor, ``n <= chunk_size``.

    Args:
        image: ``(C, H, W)`` or ``(H, W)`` array or tensor (a tensor stays on its device).
        boxes: ``(N, 4)`` integer boxes, all of the same size (as :func:`tile_boxes` gives them);
            the parts of a box outside the image are filled with ``pad_value``.
        chunk_size: windows per chunk (the network's batch). Default 64.
        pad_value: value of pixels outside the image. Default 0.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    tensor = image if isinstance(image, torch.Tensor) else torch.as_tensor(np.asarray(image))
    if tensor.ndim == 2:
        tensor = tensor[None]
    if tensor.ndim != 3:
        raise ValueError(f"image must be (C, H, W) or (H, W), got shape {tuple(tensor.shape)}")
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    if len(boxes) == 0:
        return
    sizes = np.unique(boxes[:, 2:] - boxes[:, :2], axis=0)
    if len(sizes) != 1 or (sizes <= 0).any():
        raise ValueError(f"boxes must all have the same positive size, got sizes {sizes.tolist()}")
    box_w, box_h = (int(v) for v in sizes[0])
    channels, height, width = tensor.shape
    for start in range(0, len(boxes), chunk_size):
        chunk = boxes[start : start + chunk_size]
        crops = tensor.new_full((len(chunk), channels, box_h, box_w), pad_value)
        for i, (x0, y0, x1, y1) in enumerate(chunk.tolist()):
            sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
            if sx1 > sx0 and sy1 > sy0:
                crops[i, :, sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = tensor[:, sy0:sy1, sx0:sx1]
        yield chunk, crops

