"""What a detection bundle writes: label images of regions and per-image JSON in original pixels.

* :func:`draw_discs` / :func:`draw_boxes`: THE rasteriser (filled discs, or ellipses for
  anisotropic radii, and filled rectangles) on a ``(H, W)`` array; target masks and label images
  are both drawn with it;
* :class:`RegionsToLabeld`: regions (the records of :meth:`monai_mammo.regions.Regions.to_records`)
  -> a uint8 label image on the stored image's pixel grid, ending in MONAI Label's layout
  (:class:`monai_mammo.transforms.label_app.ToLabelAppLayoutd`);
* :class:`SaveRegionsd`: ``<output_dir>/<image name>.json`` with the regions in the stored image's
  pixels, plus an optional map (NIfTI) and overlay (PNG).

Coordinates follow :mod:`monai_mammo.coordinates`; boxes are in edge coordinates as in
:mod:`monai_mammo.regions` (``image[y0:y1, x0:x1]`` for integer boxes).
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform

from monai_mammo.atomic_io import atomic_write_bytes
from monai_mammo.bundle_utils import strip_image_suffix
from monai_mammo.coordinates import DEFAULT_SPACING_MM, meta_of, spacing_xy
from monai_mammo.transforms.geometry import apply_to_boxes, apply_to_points, get_pixel_to_original
from monai_mammo.transforms.label_app import ToLabelAppLayoutd

__all__ = ["draw_discs", "draw_boxes", "RegionsToLabeld", "SaveRegionsd"]

logger = logging.getLogger(__name__)


def _plain(x: Any) -> torch.Tensor:
    return x.as_tensor() if isinstance(x, MetaTensor) else torch.as_tensor(x)


def draw_discs(canvas: np.ndarray, centres: Any, radii: Any, value: float = 1.0) -> np.ndarray:
    """Set the pixels of a filled ellipse around each centre to ``value``, in place; return ``canvas``.

    Pixel ``(row r, column c)`` is inside the ellipse of centre ``[x, y]`` and radii ``[rx, ry]``
    (pixels) when ``((c − x) / rx)² + ((r − y) / ry)² <= 1``. Parts outside ``canvas`` are clipped.

    Example::

        >>> draw_discs(np.zeros((5, 5), np.uint8), [[2, 2]], 1.0).tolist()   # radius 1: a cross
        [[0, 0, 0, 0, 0], [0, 0, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0]]

    Args:
        canvas: (H, W) array.
        centres: (N, 2) ``[x, y]``.
        radii: a scalar, (N,) per centre, or (N, 2) ``[rx, ry]`` per centre; all > 0.
        value: the value drawn. Default 1.
    """
    if canvas.ndim != 2:
        raise ValueError(f"draw_discs: canvas must be (H, W), got shape {canvas.shape}")
    pts = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    r = np.asarray(radii, dtype=np.float64)
    r = np.broadcast_to(r.reshape(-1, 1) if r.ndim == 1 else r, (len(pts), 2))
    if len(pts) and not np.all(r > 0):
        raise ValueError("draw_discs: radii must be > 0")
    h, w = canvas.shape
    for (x, y), (rx, ry) in zip(pts, r):
        r0, r1 = int(max(np.floor(y - ry), 0)), int(min(np.ceil(y + ry) + 1, h))
        c0, c1 = int(max(np.floor(x - rx), 0)), int(min(np.ceil(x + rx) + 1, w))
        if r0 >= r1 or c0 >= c1:
            continue
        yy, xx = np.mgrid[r0:r1, c0:c1]
        canvas[r0:r1, c0:c1][((xx - x) / rx) ** 2 + ((yy - y) / ry) ** 2 <= 1.0] = value
    return canvas


def draw_boxes(canvas: np.ndarray, boxes: Any, value: float = 1.0) -> np.ndarray:
    """Fill each box ``[x0, y0, x1, y1]`` (edge coordinates) with ``value``, in place; return ``canvas``.

    Pixel ``(r, c)`` is inside when its centre ``(c + 0.5, r + 0.5)`` in edge coordinates lies in
    ``[x0, x1) × [y0, y1)``: an integer box fills ``canvas[y0:y1, x0:x1]``. Clipped to ``canvas``.

    Example::

        >>> draw_boxes(np.zeros((4, 5), np.uint8), [[1, 0, 3, 2]]).tolist()
        [[0, 1, 1, 0, 0], [0, 1, 1, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]
    """
    if canvas.ndim != 2:
        raise ValueError(f"draw_boxes: canvas must be (H, W), got shape {canvas.shape}")
    h, w = canvas.shape
    for x0, y0, x1, y1 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        c0, c1 = max(int(np.ceil(x0 - 0.5)), 0), min(int(np.ceil(x1 - 0.5)), w)
        r0, r1 = max(int(np.ceil(y0 - 0.5)), 0), min(int(np.ceil(y1 - 0.5)), h)
        if r0 < r1 and c0 < c1:
            canvas[r0:r1, c0:c1] = value
    return canvas


def _json_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A region record with plain Python values (floats, lists, None) for a JSON reply."""
    out: dict[str, Any] = {}
    for k, v in record.items():
        if isinstance(v, (torch.Tensor, np.ndarray)):
            v = v.tolist()
        elif isinstance(v, np.generic):
            v = v.item()
        out[str(k)] = v
    return out


class RegionsToLabeld(MapTransform):
    """A uint8 label image of regions on the stored image's pixel grid, for MONAI Label.

    MONAI Label's bundle app writes ``pred`` as the label of the image it loaded, so the label has
    the stored image's size (``meta["original_size"]`` of ``ref_key``) and the regions must be in
    original pixels (e.g. ``ASNDetectd(to_original=True)``). Regions with ``score >= min_score``
    (the ``max_regions`` best) are drawn with ``label_value``: a record with a ``box`` as a filled
    rectangle, a point as a disc of ``radius_mm`` (at least one pixel). With ``label_app_layout``
    (default) the result goes through :class:`~monai_mammo.transforms.label_app.ToLabelAppLayoutd`,
    the last step of a bundle's ``postprocessing``: ``(W, H)``, as the app writes it the right way
    round.

    Example::

        >>> img = MetaTensor(torch.zeros(1, 6, 8), meta={"spacing": [1.0, 1.0]})
        >>> d = RegionsToLabeld(radius_mm=1.0)({"image": img, "pred_points": [{"x": 2.0, "y": 3.0, "score": 1.0}]})
        >>> d["pred"].dtype, tuple(d["pred"].shape), int(d["pred"].sum()), int(d["pred"][2, 3])
        (torch.uint8, (8, 6), 5, 1)
        >>> d["result"]["findings"], d["result"]["coordinates"]
        ([{'x': 2.0, 'y': 3.0, 'score': 1.0}], 'original_pixels')

    Args:
        regions_key: the region records. Default "pred_points".
        ref_key: image whose meta gives ``original_size`` (else its shape) and the spacing. Default "image".
        label_key: output key. Default "pred".
        spacing_key: key of the regions' spacing ``[sx, sy]``; falls back to the image's, then
            :data:`~monai_mammo.coordinates.DEFAULT_SPACING_MM`. Default "pred_spacing".
        min_score: smallest final score drawn. Default 0.0 (all).
        max_regions: draw at most this many (highest scores); None: all. Default 20.
        radius_mm: disc radius of point regions in mm. Default 0.5.
        label_value: value of the regions. Default 1.
        value_key: a record field holding each region's own value (e.g. 1 benign, 2 malignant),
            painted in increasing order so the higher value wins where regions overlap; None: every
            region gets ``label_value``. Default None.
        label_app_layout: end in MONAI Label's ``(W, H)`` layout. Default True.
        result_key: where the findings go as JSON-ready data (``None``: not written). MONAI Label
            returns ``data["result"]`` as the JSON part of its reply (``output=json`` / ``all``):
            ``{"findings": [records, best first, every region with score >= min_score, not only
            the drawn ones], "spacing": [sx, sy], "coordinates": "original_pixels"}``. Default "result".
    """

    def __init__(
        self,
        regions_key: str = "pred_points",
        ref_key: str = "image",
        label_key: str = "pred",
        spacing_key: str = "pred_spacing",
        min_score: float = 0.0,
        max_regions: int | None = 20,
        radius_mm: float = 0.5,
        label_value: int = 1,
        label_app_layout: bool = True,
        result_key: str | None = "result",
        value_key: str | None = None,
    ) -> None:
        super().__init__(keys=[regions_key])
        self.result_key = result_key
        self.value_key = value_key
        self.regions_key, self.ref_key, self.label_key, self.spacing_key = regions_key, ref_key, label_key, spacing_key
        self.min_score, self.max_regions = float(min_score), max_regions
        self.radius_mm, self.label_value = float(radius_mm), int(label_value)
        self.to_label_app = ToLabelAppLayoutd(keys=label_key, ref_key=ref_key) if label_app_layout else None

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        meta = meta_of(d.get(self.ref_key))
        size = meta.get("original_size")
        if size is None:
            size = list(d[self.ref_key].shape[-2:])
        h, w = (int(v) for v in np.asarray(size).reshape(-1)[:2])
        sp = spacing_xy({"spacing": d.get(self.spacing_key)}) or spacing_xy(meta, DEFAULT_SPACING_MM)
        regions = [r for r in d.get(self.regions_key) or [] if r["score"] >= self.min_score]
        regions = sorted(regions, key=lambda r: -r["score"])
        if self.result_key is not None:
            d[self.result_key] = {
                "findings": [_json_record(r) for r in regions],
                "spacing": [float(sp[0]), float(sp[1])],  # type: ignore[index]
                "coordinates": "original_pixels",
            }
        regions = regions[: self.max_regions]
        label = np.zeros((h, w), dtype=np.uint8)
        radii = [max(self.radius_mm / sp[0], 1.0), max(self.radius_mm / sp[1], 1.0)]  # type: ignore[index]
        # per-record values (e.g. 1 benign, 2 malignant) are painted in increasing order: where
        # regions overlap, the higher value (the more severe class) stays visible
        values = sorted({int(r[self.value_key]) for r in regions}) if self.value_key else [self.label_value]
        for value in values:
            chosen = [r for r in regions if not self.value_key or int(r[self.value_key]) == value]
            boxes = [r["box"] for r in chosen if r.get("box") is not None]
            points = [[r["x"], r["y"]] for r in chosen if r.get("box") is None]
            draw_boxes(label, boxes, value)
            draw_discs(label, points, np.asarray([radii] * len(points)).reshape(-1, 2), value)
        out_meta = {k: meta[k] for k in ("filename_or_obj", "laterality", "view", "original_size") if k in meta}
        out_meta["spacing"] = [float(sp[0]), float(sp[1])]  # type: ignore[index]
        out_meta["affine"] = torch.diag(torch.tensor([sp[1], sp[0], 1.0], dtype=torch.float64))  # type: ignore[index]
        d[self.label_key] = MetaTensor(torch.from_numpy(label[None]), meta=out_meta)
        return self.to_label_app(d) if self.to_label_app is not None else d


class SaveRegionsd(MapTransform):
    """Write ``<output_dir>/<image name>.json`` per image (+ optional map NIfTI and overlay PNG).

    The JSON holds ``source`` (input path), ``coordinates`` ("original_pixels" or
    "preprocessed_pixels"), ``spacing`` (of the coordinates: the stored image's when the regions
    were mapped back), ``image_size`` [H, W] of the stored image, ``laterality``, ``view``,
    ``num_<field>`` and ``<field>``: the region records (``x``, ``y`` pixel centres, x = column;
    ``box`` for box regions; ``score`` and the named ``<stage>_score``; ``area``). The map
    (``map_key``) is written on the preprocessed grid as ``<name>_<map_name>.nii.gz``; the overlay
    (``<name>_overlay.png``) shows the preprocessed image with the ``overlay_top_k`` best regions
    (circles of 1.5 mm for points, rectangles for boxes), mapped from original pixels through the
    inverse of ``pixel_to_original``.

    Example::

        >>> import tempfile
        >>> img = MetaTensor(torch.zeros(1, 4, 4), meta={"filename_or_obj": "/data/case1.dcm", "original_size": [4, 4]})
        >>> d = SaveRegionsd(tempfile.mkdtemp())({"image": img, "pred_points": [{"x": 1.0, "y": 2.0, "score": 0.5}]})
        >>> json.loads(Path(d["detections_file"]).read_text())["points"], Path(d["detections_file"]).name
        ([{'x': 1.0, 'y': 2.0, 'score': 0.5}], 'case1.json')

    Args:
        output_dir: folder. Required.
        regions_key: the region records. Default "pred_points".
        field: JSON key of the records (and of ``num_<field>``). Default "points".
        spacing_key: spacing of the regions' grid. Default "pred_spacing".
        image_key: the (preprocessed) image. Default "image".
        map_key: map to write as NIfTI; None: none. Default None.
        map_name: file name suffix of the map. Default "residual".
        write_overlay: write the PNG. Default False.
        overlay_top_k: regions drawn. Default 20.
        original_coordinates: the regions are in original pixels. Default True.
        json_key: output key of the written JSON path. Default "detections_file".
        extra_key: a data key holding a mapping whose entries join the JSON's top level (e.g. an
            image-level probability); None (default): none.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        regions_key: str = "pred_points",
        field: str = "points",
        spacing_key: str = "pred_spacing",
        image_key: str = "image",
        map_key: str | None = None,
        map_name: str = "residual",
        write_overlay: bool = False,
        overlay_top_k: int = 20,
        original_coordinates: bool = True,
        json_key: str = "detections_file",
        extra_key: str | None = None,
    ) -> None:
        super().__init__(keys=[regions_key])
        self.extra_key = extra_key
        self.output_dir = Path(output_dir)
        self.regions_key, self.field, self.spacing_key, self.image_key = regions_key, field, spacing_key, image_key
        self.map_key, self.map_name = map_key, map_name
        self.write_overlay, self.overlay_top_k = bool(write_overlay), int(overlay_top_k)
        self.original_coordinates = bool(original_coordinates)
        self.json_key = json_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        image = d[self.image_key]
        meta = meta_of(image)
        source = str(meta.get("filename_or_obj", "image"))
        stem = strip_image_suffix(Path(source).name)
        regions = list(d.get(self.regions_key) or [])
        size = meta.get("original_size") if self.original_coordinates else list(image.shape[-2:])
        record = {
            "source": source,
            "coordinates": "original_pixels" if self.original_coordinates else "preprocessed_pixels",
            "spacing": d.get(self.spacing_key),
            "image_size": [int(v) for v in np.asarray(size).reshape(-1)[:2]] if size is not None else None,
            "laterality": meta.get("laterality", ""),
            "view": meta.get("view", ""),
            f"num_{self.field}": len(regions),
            self.field: regions,
        }
        if self.extra_key is not None and isinstance(d.get(self.extra_key), Mapping):
            record.update({str(k): v for k, v in d[self.extra_key].items()})
        path = self.output_dir / f"{stem}.json"
        atomic_write_bytes(path, (json.dumps(record, indent=1) + "\n").encode())
        d[self.json_key] = str(path)
        if self.map_key is not None and d.get(self.map_key) is not None:
            self._write_map(d[self.map_key], meta, self.output_dir / f"{stem}_{self.map_name}.nii.gz")
        if self.write_overlay:
            self._overlay(image, meta, regions, self.output_dir / f"{stem}_overlay.png")
        return d

    @staticmethod
    def _write_map(value: Any, meta: Mapping[str, Any], path: Path) -> None:
        import nibabel as nib

        arr = _plain(value).detach().cpu().float().numpy()[0]
        sp = spacing_xy(meta) or (1.0, 1.0)
        # NIfTI axis 0 = rows (our reader's convention for NIfTI input)
        nii = nib.Nifti1Image(arr.astype(np.float32), np.diag([sp[1], sp[0], 1.0, 1.0]))
        atomic_write_bytes(path, gzip.compress(nii.to_bytes(), mtime=0))

    def _overlay(self, image: Any, meta: Mapping[str, Any], regions: Sequence[Mapping[str, Any]], path: Path) -> None:
        from PIL import Image, ImageDraw

        arr = _plain(image).detach().cpu().float().numpy()[0]
        lo, hi = float(arr.min()), float(arr.max())
        grey = np.clip((arr - lo) / (hi - lo + 1e-12) * 255.0, 0, 255).astype(np.uint8)
        canvas = Image.fromarray(grey).convert("RGB")
        draw = ImageDraw.Draw(canvas)
        best = sorted(regions, key=lambda r: -r["score"])[: self.overlay_top_k]
        inv = np.linalg.inv(get_pixel_to_original(meta)) if self.original_coordinates else np.eye(3)
        points = np.array([[r["x"], r["y"]] for r in best if r.get("box") is None], dtype=np.float64).reshape(-1, 2)
        boxes = np.array([r["box"] for r in best if r.get("box") is not None], dtype=np.float64).reshape(-1, 4)
        sp = spacing_xy(meta, DEFAULT_SPACING_MM)
        radius = max(1.5 / sp[0], 4.0)  # type: ignore[index]  # 1.5 mm circles
        for x, y in apply_to_points(points, inv) if len(points) else []:
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], outline=(255, 0, 0), width=2)
        for x0, y0, x1, y1 in apply_to_boxes(boxes, inv) if len(boxes) else []:
            draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=(255, 0, 0), width=2)
        buf = io.BytesIO()
        canvas.save(buf, format="PNG")
        atomic_write_bytes(path, buf.getvalue())
