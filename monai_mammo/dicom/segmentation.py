"""A DICOM Segmentation of one source image (highdicom ``hd.seg.Segmentation``).

One SEG per source image, on the source's pixel grid (the mask must have its Rows x Columns):

* a **label map** (integers; 0 is background) becomes a BINARY segmentation with one segment per
  named label value (segment numbers 1..K in the order of ``segments``);
* a **probability map** (floats in [0, 1]) with ``fractional=True`` becomes a FRACTIONAL
  (PROBABILITY) segmentation with one segment.

Each segment names its property (:data:`SEGMENT_TYPES`, else a private code with the label), the
algorithm type AUTOMATIC and the algorithm identification (name, version, family Artificial
Intelligence). Mammograms carry no frame of reference: highdicom supports single-frame sources
without one, and the SEG then carries the source's Patient Orientation (type 2C in the General
Image module in that case). Empty masks are kept (one empty frame) so every image gets its SEG.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from monai_mammo.dicom.common import OUTPUT_SERIES_NUMBERS, Algorithm, output_uids, prepare_source, require_highdicom, save_dataset
from monai_mammo.dicom.structured_report import FINDING_TYPES, PRIVATE_SCHEME

__all__ = ["SEGMENT_CATEGORY", "build_segmentation", "write_segmentation"]

#: Segmented property category of every finding segment: SCT Morphologically Abnormal Structure.
SEGMENT_CATEGORY = ("49755003", "SCT", "Morphologically Abnormal Structure")


def _property_type(label: str) -> tuple[str, str, str]:
    known = FINDING_TYPES.get(label.lower())
    if known is not None:
        return known
    value = "".join(c if c.isalnum() else "_" for c in label.upper())[:16] or "UNNAMED"
    return value, PRIVATE_SCHEME, label[:64]


def build_segmentation(
    source: Any,
    mask: np.ndarray,
    algorithm: Algorithm,
    segments: Mapping[int, str],
    *,
    fractional: bool = False,
    series_description: str | None = None,
) -> Any:
    """The SEG dataset (a ``highdicom.seg.Segmentation``) of ``mask`` on ``source``.

    Args:
        source: the source image header (``pydicom.Dataset``; pixel data not needed).
        mask: ``(Rows, Columns)`` label map (integers) or, with ``fractional``, a map in [0, 1].
        algorithm: bundle name, version, fingerprint.
        segments: label value -> segment label, e.g. ``{1: "microcalcification"}``; with
            ``fractional`` exactly one entry (its key is ignored).
        fractional: write a FRACTIONAL (probability) segmentation. Default False (BINARY).
        series_description: SeriesDescription. Default "<algorithm> segmentation".

    Raises:
        ValueError: the mask's shape is not the source's, a fractional map leaves [0, 1] or has
            more than one segment, or ``segments`` is empty.
    """
    hd = require_highdicom()

    source = prepare_source(source)
    # Without a frame of reference the SEG's geometry is the referenced source's pixel grid. A Pixel
    # Measures macro copied from a projection's PixelSpacing would lack Slice Thickness, which
    # highdicom's own reader then rejects; leave it out (the copy only: the source is unchanged).
    if "FrameOfReferenceUID" not in source and "PixelSpacing" in source:
        del source.PixelSpacing
    mask = np.asarray(mask)
    shape = (int(source.Rows), int(source.Columns))
    if mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.shape != shape:
        raise ValueError(f"segmentation mask has shape {mask.shape}, the source image is {shape} (Rows, Columns)")
    if not segments:
        raise ValueError("segmentation: no segments named")
    if fractional:
        if len(segments) != 1:
            raise ValueError(f"a fractional segmentation has one segment, got {len(segments)}: {dict(segments)}")
        values = mask.astype(np.float32)
        if not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 1:
            raise ValueError(f"a fractional map must lie in [0, 1], got [{values.min()}, {values.max()}]")
        pixel_array, seg_type = values, "FRACTIONAL"
    else:
        labels = np.rint(mask).astype(np.int64)
        pixel_array = np.zeros(shape, dtype=np.uint8 if len(segments) < 256 else np.uint16)
        for number, value in enumerate(segments, start=1):
            pixel_array[labels == int(value)] = number
        seg_type = "BINARY"
    series_uid, sop_uid = output_uids(source, algorithm, "seg")
    algorithm_id = hd.AlgorithmIdentificationSequence(
        name=algorithm.display_name[:64],
        family=hd.sr.CodedConcept(value="123110", scheme_designator="DCM", meaning="Artificial Intelligence"),
        version=algorithm.version,
        parameters={k: str(v) for k, v in algorithm.parameters.items()} or None,
    )
    descriptions = []
    for number, label in enumerate(segments.values(), start=1):
        category, prop = SEGMENT_CATEGORY, _property_type(str(label))
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=str(label)[:64],
                segmented_property_category=hd.sr.CodedConcept(value=category[0], scheme_designator=category[1], meaning=category[2]),
                segmented_property_type=hd.sr.CodedConcept(value=prop[0], scheme_designator=prop[1], meaning=prop[2]),
                algorithm_type="AUTOMATIC",
                algorithm_identification=algorithm_id,
            )
        )
    seg = hd.seg.Segmentation(
        source_images=[source],
        pixel_array=pixel_array,
        segmentation_type=seg_type,
        segment_descriptions=descriptions,
        series_instance_uid=series_uid,
        series_number=OUTPUT_SERIES_NUMBERS["seg"],
        sop_instance_uid=sop_uid,
        instance_number=1,
        manufacturer=algorithm.manufacturer,
        manufacturer_model_name=algorithm.display_name[:64],
        software_versions=algorithm.software_version[:64],
        device_serial_number=(algorithm.fingerprint or "0")[:64],
        omit_empty_frames=False,
        series_description=(series_description or f"{algorithm.display_name} segmentation")[:64],
        coding_schemes=[hd.coding_schemes.CodingSchemeIdentificationItem(designator=PRIVATE_SCHEME, name="monai-mammo private concepts")]
        if any(_property_type(str(label))[1] == PRIVATE_SCHEME for label in segments.values())
        else None,
    )
    if "FrameOfReferenceUID" not in seg:
        # General Image module: Patient Orientation is type 2C when there is no frame of reference
        seg.PatientOrientation = source.get("PatientOrientation", "")
    return seg


def write_segmentation(
    path: str | os.PathLike, source: Any, mask: np.ndarray, algorithm: Algorithm, segments: Mapping[int, str], **kwargs: Any
) -> str:
    """Build the SEG (:func:`build_segmentation` arguments) and write it atomically; return the path."""
    return save_dataset(build_segmentation(source, mask, algorithm, segments, **kwargs), path)
