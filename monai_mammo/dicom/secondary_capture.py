"""The findings burnt into an RGB Secondary Capture (highdicom ``hd.sc.SCImage``), for viewers without SEG/SR.

The overlay has the source's pixel grid (same Rows x Columns, so a mark sits at the JSON's
coordinates), the source's grey levels through its VOI window (:class:`~monai_mammo.transforms.io.RadiographReader`
``intensity="voi"``, MONOCHROME1 inverted), circles of ``radius_mm`` around the ``top_k``
highest-scoring points and rectangles on every box. It copies the patient and study from the
source, and references it in the Source Image Sequence (Image Type DERIVED\\SECONDARY).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from monai_mammo.dicom.common import OUTPUT_SERIES_NUMBERS, Algorithm, output_uids, prepare_source, require_highdicom, save_dataset
from monai_mammo.dicom.findings import Finding

__all__ = ["source_grey", "render_overlay", "build_overlay", "write_overlay", "MARK_COLOUR"]

#: RGB colour of the marks.
MARK_COLOUR = (255, 40, 40)


def source_grey(path: str | os.PathLike) -> np.ndarray:
    """The source image as ``(H, W)`` float32 in [0, 1], tissue bright, through its VOI window."""
    from monai_mammo.transforms.io import RadiographReader

    reader = RadiographReader(intensity="voi", allow_any_modality=True)
    array, _ = reader.get_data(reader.read(str(path)))
    return array[0]


def render_overlay(
    grey: np.ndarray,
    findings: Sequence[Finding],
    spacing_mm: Sequence[float] | None = None,
    top_k: int | None = 20,
    radius_mm: float = 1.5,
) -> np.ndarray:
    """``(H, W, 3)`` uint8: ``grey`` (in [0, 1]) with the findings drawn.

    Example::

        >>> from monai_mammo.dicom.findings import Finding
        >>> rgb = render_overlay(np.zeros((40, 50)), [Finding("box", (5.0, 6.0, 20.0, 30.0))])
        >>> rgb.shape, rgb[6, 12].tolist(), rgb[18, 12].tolist()
        ((40, 50, 3), [255, 40, 40], [0, 0, 0])

    Args:
        grey: ``(H, W)`` image in [0, 1].
        findings: points (circles) and boxes (rectangles) in stored pixels.
        spacing_mm: ``(sx, sy)`` to size the circles in mm; None: circles of 20 pixels.
        top_k: draw the ``top_k`` best-scoring points only (None: all). Boxes are all drawn.
        radius_mm: circle radius. Default 1.5 mm.
    """
    from PIL import Image, ImageDraw

    grey = np.asarray(grey, dtype=np.float32)
    if grey.ndim != 2:
        raise ValueError(f"render_overlay: expected an (H, W) image, got shape {grey.shape}")
    canvas = Image.fromarray(np.clip(np.rint(grey * 255.0), 0, 255).astype(np.uint8)).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    h, w = grey.shape
    width = max(1, round(min(h, w) / 500))
    points = [f for f in findings if f.kind == "point"]
    points.sort(key=lambda f: -(f.main_score[1] if f.main_score else 0.0))
    if top_k is not None:
        points = points[: int(top_k)]
    rx, ry = ((radius_mm / spacing_mm[0], radius_mm / spacing_mm[1]) if spacing_mm else (20.0, 20.0))
    for f in points:
        x, y = f.coordinates
        draw.ellipse([x - rx, y - ry, x + rx, y + ry], outline=MARK_COLOUR, width=width)
    for f in findings:
        if f.kind == "box":
            x0, y0, x1, y1 = f.coordinates  # edge coordinates: the last column / row is x1 - 1 / y1 - 1
            draw.rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=MARK_COLOUR, width=width)
    return np.asarray(canvas)


def build_overlay(source: Any, rgb: np.ndarray, algorithm: Algorithm, series_description: str | None = None) -> Any:
    """The Secondary Capture dataset (``highdicom.sc.SCImage``) of ``rgb`` derived from ``source``.

    Raises:
        ValueError: ``rgb`` is not ``(Rows, Columns, 3)`` uint8 of the source.
    """
    hd = require_highdicom()
    from pydicom.dataset import Dataset

    source = prepare_source(source)
    shape = (int(source.Rows), int(source.Columns), 3)
    if rgb.shape != shape or rgb.dtype != np.uint8:
        raise ValueError(f"overlay must be uint8 {shape} (the source's Rows x Columns x RGB), got {rgb.dtype} {rgb.shape}")
    series_uid, sop_uid = output_uids(source, algorithm, "overlay")
    orientation = source.get("PatientOrientation")
    laterality = str(source.get("ImageLaterality", "") or source.get("Laterality", "") or "").upper()
    spacing = source.get("PixelSpacing") or source.get("ImagerPixelSpacing")
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source,
        pixel_array=rgb,
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=series_uid,
        series_number=OUTPUT_SERIES_NUMBERS["overlay"],
        sop_instance_uid=sop_uid,
        instance_number=1,
        manufacturer=algorithm.manufacturer,
        # highdicom accepts one letter per value; mammograms use compound ones (MLO: "A\\FR"), put back below
        patient_orientation=tuple(str(v)[:1] for v in orientation) if orientation and len(orientation) == 2 else None,
        laterality=laterality if laterality in ("L", "R") else None,
        pixel_spacing=tuple(float(v) for v in spacing) if spacing and len(spacing) == 2 else None,
        series_description=(series_description or f"{algorithm.display_name} findings overlay")[:64],
        manufacturer_model_name=algorithm.display_name[:64],
        software_versions=algorithm.software_version[:64],
    )
    reference = Dataset()
    reference.ReferencedSOPClassUID = source.SOPClassUID
    reference.ReferencedSOPInstanceUID = source.SOPInstanceUID
    if orientation:
        sc.PatientOrientation = orientation
    sc.SourceImageSequence = [reference]
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.DerivationDescription = f"findings of {algorithm.software_version} burnt in"[:1024]
    return sc


def write_overlay(path: str | os.PathLike, source: Any, rgb: np.ndarray, algorithm: Algorithm, **kwargs: Any) -> str:
    """Build the Secondary Capture (:func:`build_overlay` arguments) and write it atomically; return the path."""
    return save_dataset(build_overlay(source, rgb, algorithm, **kwargs), path)
