"""Patch sampling with a positive:negative ratio, and regular tiling restricted to the breast.

Both return a list of sample dicts (MONAI's multi-sample convention, as ``RandCropByPosNegLabeld``):
cropped images/masks with ``pixel_to_original`` composed, points/boxes shifted into patch
coordinates, and the geometry used: ``patch_box`` [x0, y0, x1, y1] in the source image's pixels and
``patch_label`` (1 when the patch contains a point, a box or mask foreground).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Randomizable, SpatialCrop, SpatialPad
from monai.utils import ensure_tuple, ensure_tuple_rep

from monai_mammo.transforms.geometry import as_boxes, as_points, compose_pixel_to_original, like_input, translation_matrix

__all__ = ["PositiveNegativePatchSamplerd", "BreastRegionTilerd", "crop_sample", "tile_boxes"]


def _mask2d(value: Any) -> np.ndarray:
    m = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    return (m.reshape(m.shape[-2], m.shape[-1]) if m.ndim == 3 else m) > 0


def crop_sample(
    d: Mapping[Hashable, Any],
    box: Sequence[int],
    keys: Sequence[Hashable],
    point_keys: Sequence[Hashable] = (),
    box_keys: Sequence[Hashable] = (),
    box_label_keys: Sequence[Hashable] = (),
    keep_outside: bool = False,
) -> dict[Hashable, Any]:
    """Crop ``keys`` of ``d`` to ``box`` = [x0, y0, x1, y1] and shift points/boxes into the crop.

    Points outside the crop are dropped (unless ``keep_outside``); boxes are kept when they overlap
    the crop, clipped to it, and ``box_label_keys`` entries (per-box lists, same order as the first box
    key) are filtered alongside. Other entries are shallow-copied. MetaTensors get a fresh meta with
    ``pixel_to_original`` composed (samples never share the matrix list).
    """
    x0, y0, x1, y1 = (int(v) for v in box)
    out = dict(d)
    cropper = SpatialCrop(roi_start=(y0, x0), roi_end=(y1, x1))
    forward = translation_matrix(-x0, -y0)
    for key in keys:
        if key not in d:
            continue
        with cropper.trace_transform(False):
            img = cropper(d[key])
        if isinstance(img, MetaTensor):
            img.meta = dict(img.meta)
            compose_pixel_to_original(img.meta, forward)
        out[key] = img
    w, h = x1 - x0, y1 - y0
    for key in point_keys:
        if key in d and d[key] is not None:
            p = as_points(d[key], str(key)) - [x0, y0]
            if not keep_outside:
                p = p[(p[:, 0] >= -0.5) & (p[:, 0] < w - 0.5) & (p[:, 1] >= -0.5) & (p[:, 1] < h - 0.5)]
            out[key] = like_input(p, d[key])
    keep_idx = None
    for i, key in enumerate(box_keys):
        if key in d and d[key] is not None:
            b = as_boxes(d[key], str(key)) - [x0, y0, x0, y0]
            keep = (b[:, 2] > 0) & (b[:, 0] < w) & (b[:, 3] > 0) & (b[:, 1] < h)
            if not keep_outside:
                b = np.clip(b[keep], 0, [w, h, w, h])
            if i == 0:
                keep_idx = keep
            out[key] = like_input(b, d[key])
    if keep_idx is not None and not keep_outside:
        for key in box_label_keys:
            if key in d and d[key] is not None and len(d[key]) == len(keep_idx):
                labels = d[key]
                out[key] = labels[torch.as_tensor(keep_idx)] if isinstance(labels, torch.Tensor) else [
                    v for v, k in zip(labels, keep_idx) if k
                ]
    return out


def tile_boxes(height: int, width: int, size: Sequence[int], stride: Sequence[int]) -> np.ndarray:
    """Regular grid of [x0, y0, x1, y1] tiles of ``size`` (h, w) every ``stride`` (h, w); the last row and
    column are aligned to the image end so every pixel is covered. Images smaller than a tile give one
    tile at the origin (callers pad)."""
    th, tw = int(size[0]), int(size[1])
    sh, sw = int(stride[0]), int(stride[1])
    if min(th, tw, sh, sw) <= 0:
        raise ValueError(f"tile size and stride must be positive, got size={size}, stride={stride}.")

    def starts(n: int, t: int, s: int) -> np.ndarray:
        if n <= t:
            return np.zeros(1, dtype=np.int64)
        st = np.arange(0, n - t + 1, s)
        return np.unique(np.append(st, n - t))

    ys, xs = starts(height, th, sh), starts(width, tw, sw)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    x0, y0 = xx.ravel(), yy.ravel()
    return np.stack([x0, y0, x0 + tw, y0 + th], axis=1)


def _positive_map(d: Mapping, shape: tuple[int, int], point_keys, box_keys, label_keys) -> tuple[np.ndarray, np.ndarray | None]:
    """Positive sources: (K, 4) boxes in edge coordinates (points become 1-pixel boxes) and a mask."""
    srcs = []
    for key in point_keys:
        if key in d and d[key] is not None:
            p = as_points(d[key], str(key))
            c = np.floor(p + 0.5)  # the pixel holding the point
            srcs.append(np.concatenate([c, c + 1], axis=1))
    for key in box_keys:
        if key in d and d[key] is not None:
            srcs.append(as_boxes(d[key], str(key)))
    mask = None
    for key in label_keys:
        if key in d and d[key] is not None:
            m = _mask2d(d[key])
            if m.shape != shape:
                raise ValueError(f"label mask {key!r} has shape {m.shape}, image has {shape}.")
            mask = m if mask is None else (mask | m)
    boxes = np.concatenate(srcs) if srcs else np.zeros((0, 4))
    return boxes, mask


def _is_positive(patch: Sequence[int], boxes: np.ndarray, mask_integral: np.ndarray | None) -> bool:
    x0, y0, x1, y1 = patch
    if len(boxes) and bool(np.any((boxes[:, 0] < x1) & (boxes[:, 2] > x0) & (boxes[:, 1] < y1) & (boxes[:, 3] > y0))):
        return True
    if mask_integral is not None:
        return _box_sum(mask_integral, patch) > 0
    return False


def _integral(mask: np.ndarray) -> np.ndarray:
    ii = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int64)
    np.cumsum(np.cumsum(mask, axis=0, dtype=np.int64), axis=1, out=ii[1:, 1:])
    return ii


def _box_sum(ii: np.ndarray, box: Sequence[int] | np.ndarray) -> Any:
    """Sum of the mask over [x0, y0, x1, y1] (vectorised over rows of an (N, 4) array)."""
    b = np.asarray(box, dtype=np.int64)
    x0, y0, x1, y1 = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return ii[y1, x1] - ii[y0, x1] - ii[y1, x0] + ii[y0, x0]


class PositiveNegativePatchSamplerd(Randomizable, MapTransform):
    """Sample ``num_samples`` patches with a positive:negative ratio; every sample reports its geometry.

    ASN (Zhang et al., CVPR 2019) trains on 112x112 patches sampled 1:1 positive:negative, a positive
    patch containing at least one µC. A patch is *positive* when it overlaps a point (the pixel holding
    it), a box, or foreground of ``label_keys`` masks; *negative* patches overlap none of them and, when
    ``breast_key`` is given, have their centre pixel in the breast. Per call, ``num_samples * pos / (pos +
    neg)`` samples are positive (the fractional part drawn at random); without positive sources all are
    negative. Positives are placed so a randomly chosen positive source (a point, a box centre or a mask
    pixel) lies at the patch centre, shifted by up to ``pos_jitter`` of half the patch. Negatives are
    found by rejection sampling (``max_tries``); if none is found the last candidate is returned with
    ``patch_label`` set to what it actually contains, so labels are never wrong. Images smaller than
    the patch are end-padded (coordinates unchanged). Seed with ``set_random_state`` (MONAI
    ``Randomizable``) for determinism.

    Example::

        >>> import torch
        >>> from monai.data import MetaTensor
        >>> s = PositiveNegativePatchSamplerd(keys="image", patch_size=(8, 8), num_samples=2, point_keys="points")
        >>> _ = s.set_random_state(0)
        >>> out = s({"image": MetaTensor(torch.rand(1, 32, 32)), "points": [[20.0, 5.0]]})
        >>> sorted(o["patch_label"] for o in out), tuple(out[0]["image"].shape)
        ([0, 1], (1, 8, 8))

    Args:
        keys: image/mask keys to crop.
        patch_size: (h, w) in pixels (rows first). Default (112, 112) (ASN).
        num_samples: patches per call. Default 2.
        pos: positive weight. Default 1.
        neg: negative weight. Default 1.
        point_keys: [[x, y], ...] positive sources, shifted into patch coordinates. Default ().
        box_keys: [[x0, y0, x1, y1], ...] positive sources, clipped into the patch. Default ().
        box_label_keys: per-box lists filtered with the first box key. Default ().
        label_keys: lesion mask keys; foreground > 0 is positive. Default ().
        breast_key: breast mask key restricting negative centres (and positive sources). Default None.
        pos_jitter: fraction of half the patch size by which positive centres are shifted. Default 0.0.
        max_tries: rejection-sampling attempts for one negative. Default 100.
        patch_box_key: output key of [x0, y0, x1, y1]. Default "patch_box".
        patch_label_key: output key of the 0/1 label. Default "patch_label".
        allow_missing_keys: skip absent ``keys``. Default False.
    """

    def __init__(
        self,
        keys: KeysCollection,
        patch_size: int | Sequence[int] = (112, 112),
        num_samples: int = 2,
        pos: float = 1.0,
        neg: float = 1.0,
        point_keys: KeysCollection = (),
        box_keys: KeysCollection = (),
        box_label_keys: KeysCollection = (),
        label_keys: KeysCollection = (),
        breast_key: Hashable | None = None,
        pos_jitter: float = 0.0,
        max_tries: int = 100,
        patch_box_key: str = "patch_box",
        patch_label_key: str = "patch_label",
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.patch_size = tuple(int(v) for v in ensure_tuple_rep(patch_size, 2))
        if num_samples < 1 or pos < 0 or neg < 0 or pos + neg <= 0:
            raise ValueError(f"need num_samples >= 1 and pos, neg >= 0 with pos + neg > 0; got {num_samples}, {pos}, {neg}.")
        if not 0.0 <= pos_jitter <= 1.0:
            raise ValueError(f"pos_jitter must be in [0, 1], got {pos_jitter}.")
        self.num_samples = int(num_samples)
        self.pos_ratio = float(pos) / float(pos + neg)
        self.point_keys = ensure_tuple(point_keys)
        self.box_keys = ensure_tuple(box_keys)
        self.box_label_keys = ensure_tuple(box_label_keys)
        self.label_keys = ensure_tuple(label_keys)
        self.breast_key = breast_key
        self.pos_jitter = float(pos_jitter)
        self.max_tries = int(max_tries)
        self.patch_box_key = patch_box_key
        self.patch_label_key = patch_label_key

    def randomize(self, data: Any = None) -> None:  # randomness is drawn inside __call__ from self.R
        pass

    def _place(self, cy: float, cx: float, h: int, w: int) -> list[int]:
        ph, pw = self.patch_size
        y0 = int(np.clip(int(round(cy)) - ph // 2, 0, h - ph))
        x0 = int(np.clip(int(round(cx)) - pw // 2, 0, w - pw))
        return [x0, y0, x0 + pw, y0 + ph]

    def __call__(self, data: Mapping[Hashable, Any]) -> list[dict[Hashable, Any]]:
        d = dict(data)
        first = next((k for k in self.keys if k in d), None)
        if first is None:
            raise KeyError(f"PositiveNegativePatchSamplerd: none of {self.keys} in data (keys: {list(d)}).")
        ph, pw = self.patch_size
        h, w = (int(s) for s in d[first].shape[-2:])
        if h < ph or w < pw:  # end padding keeps coordinates unchanged
            pad = SpatialPad(spatial_size=(max(h, ph), max(w, pw)), method="end")
            for k in list(self.keys) + ([self.breast_key] if self.breast_key else []) + list(self.label_keys):
                if k in d and isinstance(d[k], torch.Tensor):
                    with pad.trace_transform(False):
                        d[k] = pad(d[k])
            h, w = max(h, ph), max(w, pw)
        boxes, lesion = _positive_map(d, (h, w), self.point_keys, self.box_keys, self.label_keys)
        lesion_ii = _integral(lesion) if lesion is not None else None
        breast = _mask2d(d[self.breast_key]) if self.breast_key and d.get(self.breast_key) is not None else None
        # positive sources: box centres (points are 1-pixel boxes) and mask pixels
        centres = [np.stack([(boxes[:, 1] + boxes[:, 3]) / 2 - 0.5, (boxes[:, 0] + boxes[:, 2]) / 2 - 0.5], 1)] if len(boxes) else []
        mask_pix = np.argwhere(lesion) if lesion is not None else np.zeros((0, 2))
        n_sources = sum(len(c) for c in centres) + len(mask_pix)
        exp_pos = self.num_samples * self.pos_ratio
        n_pos = int(np.floor(exp_pos)) + int(self.R.rand() < exp_pos - np.floor(exp_pos))
        if n_sources == 0:
            n_pos = 0
        labels = [1] * n_pos + [0] * (self.num_samples - n_pos)
        self.R.shuffle(labels)
        if breast is not None and breast.any():
            neg_pool = np.argwhere(breast)
        else:
            neg_pool = None
        samples = []
        for want in labels:
            if want:
                i = int(self.R.randint(n_sources))
                cy, cx = centres[0][i] if centres and i < len(centres[0]) else mask_pix[i - (len(centres[0]) if centres else 0)]
                jy, jx = (self.R.uniform(-1, 1, 2) * self.pos_jitter * np.array([ph // 2, pw // 2])) if self.pos_jitter else (0, 0)
                patch = self._place(cy + jy, cx + jx, h, w)
            else:
                patch = None
                for _ in range(self.max_tries):
                    if neg_pool is not None:
                        cy, cx = neg_pool[int(self.R.randint(len(neg_pool)))]
                    else:
                        cy, cx = self.R.randint(h), self.R.randint(w)
                    patch = self._place(cy, cx, h, w)
                    if not _is_positive(patch, boxes, lesion_ii):
                        break
            sample = crop_sample(d, patch, list(self.keys) + list(self.label_keys) + ([self.breast_key] if self.breast_key else []),
                                 self.point_keys, self.box_keys, self.box_label_keys)
            sample[self.patch_box_key] = np.asarray(patch, dtype=np.int64)
            sample[self.patch_label_key] = int(_is_positive(patch, boxes, lesion_ii))
            samples.append(sample)
        return samples


class BreastRegionTilerd(MapTransform):
    """Regular tiles (size, stride) over the image, kept where the breast mask covers ``min_coverage``.

    For sliding-window training/inference that skips background (DESIGN.md: "computation can skip
    tiles that lie outside the breast"; LatentCADx negatives are sliding-window patches). Coverage is
    computed for all tiles at once from an integral image. With ``crop=True`` (default) returns one
    sample dict per kept tile (cropped keys, points/boxes in tile coordinates, ``patch_box``,
    ``patch_label``, ``breast_coverage``); with ``crop=False`` returns the input dict plus
    ``tile_boxes_key`` (N, 4) int64 [x0, y0, x1, y1] and ``tile_coverage_key`` (N,) floats.

    Example::

        >>> import torch
        >>> m = torch.zeros(1, 32, 32); m[:, :, :10] = 1
        >>> d = BreastRegionTilerd(keys="image", tile_size=16, stride=16, min_coverage=0.1, crop=False)(
        ...     {"image": torch.rand(1, 32, 32), "breast_mask": m})
        >>> d["tile_boxes"].tolist()
        [[0, 0, 16, 16], [0, 16, 16, 32]]

    Args:
        keys: image/mask keys cropped per tile.
        tile_size: (h, w). Default (256, 256).
        stride: (h, w). Default equal to ``tile_size``.
        breast_key: breast mask key; None keeps every tile. Default "breast_mask".
        min_coverage: minimum breast fraction of a tile. Default 0.1.
        crop: return cropped samples (True) or only the boxes (False). Default True.
        point_keys / box_keys / box_label_keys / label_keys: as in :class:`PositiveNegativePatchSamplerd`.
        tile_boxes_key: output key for ``crop=False``. Default "tile_boxes".
        tile_coverage_key: output key for ``crop=False``. Default "tile_coverage".
        allow_missing_keys: skip absent ``keys``. Default False.
    """

    def __init__(
        self,
        keys: KeysCollection,
        tile_size: int | Sequence[int] = (256, 256),
        stride: int | Sequence[int] | None = None,
        breast_key: Hashable | None = "breast_mask",
        min_coverage: float = 0.1,
        crop: bool = True,
        point_keys: KeysCollection = (),
        box_keys: KeysCollection = (),
        box_label_keys: KeysCollection = (),
        label_keys: KeysCollection = (),
        tile_boxes_key: str = "tile_boxes",
        tile_coverage_key: str = "tile_coverage",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.tile_size = tuple(int(v) for v in ensure_tuple_rep(tile_size, 2))
        self.stride = tuple(int(v) for v in ensure_tuple_rep(stride, 2)) if stride is not None else self.tile_size
        if not 0.0 <= min_coverage <= 1.0:
            raise ValueError(f"min_coverage must be in [0, 1], got {min_coverage}.")
        self.breast_key = breast_key
        self.min_coverage = float(min_coverage)
        self.crop = bool(crop)
        self.point_keys = ensure_tuple(point_keys)
        self.box_keys = ensure_tuple(box_keys)
        self.box_label_keys = ensure_tuple(box_label_keys)
        self.label_keys = ensure_tuple(label_keys)
        self.tile_boxes_key = tile_boxes_key
        self.tile_coverage_key = tile_coverage_key

    def __call__(self, data: Mapping[Hashable, Any]) -> list[dict[Hashable, Any]] | dict[Hashable, Any]:
        d = dict(data)
        first = next((k for k in self.keys if k in d), None)
        if first is None:
            raise KeyError(f"BreastRegionTilerd: none of {self.keys} in data (keys: {list(d)}).")
        h, w = (int(s) for s in d[first].shape[-2:])
        th, tw = self.tile_size
        if h < th or w < tw:
            pad = SpatialPad(spatial_size=(max(h, th), max(w, tw)), method="end")
            for k in list(self.keys) + ([self.breast_key] if self.breast_key else []) + list(self.label_keys):
                if k in d and isinstance(d[k], torch.Tensor):
                    with pad.trace_transform(False):
                        d[k] = pad(d[k])
            h, w = max(h, th), max(w, tw)
        tiles = tile_boxes(h, w, self.tile_size, self.stride)
        if self.breast_key is not None and d.get(self.breast_key) is not None:
            breast = _mask2d(d[self.breast_key])
            if breast.shape != (h, w):
                raise ValueError(f"breast mask {self.breast_key!r} has shape {breast.shape}, image has {(h, w)}.")
            coverage = _box_sum(_integral(breast), tiles) / float(th * tw)
        else:
            coverage = np.ones(len(tiles))
        keep = coverage >= self.min_coverage
        tiles, coverage = tiles[keep], coverage[keep]
        if not self.crop:
            d[self.tile_boxes_key] = tiles.astype(np.int64)
            d[self.tile_coverage_key] = coverage.astype(np.float32)
            return d
        boxes, lesion = _positive_map(d, (h, w), self.point_keys, self.box_keys, self.label_keys)
        lesion_ii = _integral(lesion) if lesion is not None else None
        crop_keys = list(self.keys) + list(self.label_keys) + ([self.breast_key] if self.breast_key else [])
        samples = []
        for tile, cov in zip(tiles, coverage):
            s = crop_sample(d, tile, crop_keys, self.point_keys, self.box_keys, self.box_label_keys)
            s["patch_box"] = tile.astype(np.int64)
            s["patch_label"] = int(_is_positive(tile, boxes, lesion_ii))
            s["breast_coverage"] = float(cov)
            samples.append(s)
        return samples
