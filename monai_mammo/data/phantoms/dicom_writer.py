"""Write a synthetic 14-bit image as a real DICOM Digital Mammography X-Ray image (for presentation).

Tags follow the DICOM Digital Mammography IOD as read by :mod:`monai_mammo.transforms.io`:
PixelSpacing and/or ImagerPixelSpacing, EstimatedRadiographicMagnificationFactor,
ImageLaterality, ViewPosition, Modality "MG", Manufacturer, BitsStored 14, MONOCHROME1 (stored
inverted: high value = dark) or MONOCHROME2, WindowCenter/Width, RescaleSlope/Intercept. Transfer
syntax: Explicit VR Little Endian, RLE Lossless or JPEG 2000 Lossless (encoded with pydicom's
``Dataset.compress`` through pylibjpeg-rle / pylibjpeg-openjpeg). UIDs are derived from the content
identifiers, and dates are fixed, so the same phantom gives the same bytes.

Works with pydicom 3 and with pydicom 2.4 (which MONAI Label 0.8.5's environment pins). pydicom 2.4
has no JPEG 2000 encoder: :func:`available_syntaxes` says which syntaxes can be written here, and
the phantom generator writes RLE instead of JPEG 2000 where it cannot, saying so once in the log.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    generate_uid,
)

from monai_mammo.atomic_io import atomic_path

__all__ = ["write_mammogram_dicom", "TRANSFER_SYNTAXES", "available_syntaxes", "PYDICOM_MAJOR"]

logger = logging.getLogger(__name__)

#: short name -> transfer syntax UID
TRANSFER_SYNTAXES = {"explicit": ExplicitVRLittleEndian, "rle": RLELossless, "jpeg2000": JPEG2000Lossless}

PYDICOM_MAJOR = int(pydicom.__version__.split(".")[0])


def _encoder_available(uid: str) -> tuple[bool, str]:
    """Whether pydicom can encode ``uid`` here, and if not, why."""
    if uid == ExplicitVRLittleEndian:
        return True, ""
    try:
        from pydicom.pixels import get_encoder  # pydicom >= 3
    except ImportError:
        from pydicom.encoders import get_encoder  # pydicom 2.x
    try:
        encoder = get_encoder(uid)
    except NotImplementedError:
        return False, f"pydicom {pydicom.__version__} has no encoder for {uid.name}"
    if not encoder.is_available:
        return False, f"no installed plugin can encode {uid.name} (pydicom {pydicom.__version__}; e.g. pylibjpeg-openjpeg)"
    return True, ""


@lru_cache(maxsize=1)
def available_syntaxes() -> dict[str, str]:
    """``{short name: ""}`` for the syntaxes this installation can write, and ``{name: why not}``
    for the others: ``{name: reason}`` with an empty reason when available.

    Example::

        >>> available_syntaxes()["explicit"]
        ''
    """
    return {name: _encoder_available(uid)[1] for name, uid in TRANSFER_SYNTAXES.items()}

_MG_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"


def write_mammogram_dicom(
    path: str | os.PathLike,
    image: np.ndarray,
    *,
    uid_key: str,
    patient_id: str,
    laterality: str,
    view: str,
    spacing_mm: float,
    photometric: str = "MONOCHROME2",
    syntax: str = "explicit",
    write_pixel_spacing: bool = True,
    magnification: float = 1.0,
    manufacturer: str = "monai-mammo phantom",
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``image`` (uint16, tissue bright, 14-bit) as DICOM MG, atomically.

    Args:
        path: output file.
        image: (H, W) uint16 presentation values in [0, 16383], tissue bright.
        uid_key: unique, deterministic text from which the Study/Series/SOP UIDs are derived.
        patient_id: PatientID.
        laterality: "L" or "R" (ImageLaterality).
        view: "CC" or "MLO" (ViewPosition).
        spacing_mm: pixel spacing at the breast plane (PixelSpacing).
        photometric: "MONOCHROME2" or "MONOCHROME1" (then the stored values are inverted).
        syntax: "explicit", "rle" or "jpeg2000".
        write_pixel_spacing: write PixelSpacing; ImagerPixelSpacing (= spacing x magnification) is
            always written.
        magnification: EstimatedRadiographicMagnificationFactor.
        manufacturer: Manufacturer.
        extra: further keyword -> value tags.
    """
    if image.ndim != 2 or image.dtype != np.uint16:
        raise ValueError(f"write_mammogram_dicom {path}: expected a 2D uint16 image, got {image.dtype} {image.shape}")
    if syntax not in TRANSFER_SYNTAXES:
        raise ValueError(f"write_mammogram_dicom {path}: unknown syntax {syntax!r}; known: {sorted(TRANSFER_SYNTAXES)}")
    if available_syntaxes()[syntax]:
        raise ValueError(f"write_mammogram_dicom {path}: cannot write {syntax!r}: {available_syntaxes()[syntax]}")
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"write_mammogram_dicom {path}: photometric must be MONOCHROME1 or MONOCHROME2, got {photometric!r}")
    path = Path(path)
    stored = (16383 - image.astype(np.int32)).astype(np.uint16) if photometric == "MONOCHROME1" else image
    stored = np.ascontiguousarray(stored)

    def uid(tag: str) -> str:
        return generate_uid(entropy_srcs=[uid_key, tag])

    sop_uid = uid("sop")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = _MG_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = generate_uid(entropy_srcs=["monai-mammo phantom implementation"])
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = _MG_FOR_PRESENTATION
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[patient_id, "study"])
    ds.SeriesInstanceUID = uid("series")
    ds.Modality = "MG"
    ds.Manufacturer = manufacturer
    ds.ManufacturerModelName = "synthetic"
    ds.PatientID = patient_id
    ds.PatientName = f"Phantom^{patient_id}"
    ds.StudyDate = "20000101"
    ds.ContentDate = "20000101"
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.BodyPartExamined = "BREAST"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.ImageLaterality = laterality
    ds.Laterality = laterality
    ds.ViewPosition = view
    anterior = "A" if laterality == "L" else "P"
    ds.PatientOrientation = [anterior, ("F" if view == "MLO" else "") + ("R" if laterality == "L" else "L")]
    ds.ImagerPixelSpacing = [f"{spacing_mm * magnification:.6g}", f"{spacing_mm * magnification:.6g}"]
    if write_pixel_spacing:
        ds.PixelSpacing = [f"{spacing_mm:.6g}", f"{spacing_mm:.6g}"]
    ds.EstimatedRadiographicMagnificationFactor = f"{magnification:.4f}"
    ds.RescaleSlope = "1"
    ds.RescaleIntercept = "0"
    ds.RescaleType = "US"
    tissue = image[image > np.percentile(image, 40)] if image.size else image
    low, high = (np.percentile(tissue, [2, 99.5]) if tissue.size else (0, 16383))
    centre, width = (low + high) / 2, max(high - low, 1)
    if photometric == "MONOCHROME1":
        centre = 16383 - centre
    ds.WindowCenter = f"{centre:.1f}"
    ds.WindowWidth = f"{width:.1f}"
    ds.VOILUTFunction = "LINEAR"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = int(image.shape[0]), int(image.shape[1])
    ds.BitsAllocated = 16
    ds.BitsStored = 14
    ds.HighBit = 13
    ds.PixelRepresentation = 0
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)
    ds.PixelData = stored.tobytes()
    if syntax != "explicit":
        if PYDICOM_MAJOR >= 3:
            # keep our deterministic SOP Instance UID (pydicom 3's compress() would mint a random one)
            ds.compress(TRANSFER_SYNTAXES[syntax], stored, generate_instance_uid=False)
        else:
            ds.compress(TRANSFER_SYNTAXES[syntax], stored)
    with atomic_path(path) as tmp:
        if PYDICOM_MAJOR >= 3:
            ds.save_as(tmp, enforce_file_format=True)
        else:  # pydicom 2.x spelling of the same: preamble, file meta, conformant encoding
            ds.save_as(tmp, write_like_original=False)
    return path


def read_back(path: str | os.PathLike) -> tuple[pydicom.Dataset, np.ndarray]:
    """Read a written file and return (dataset, presentation values, tissue bright) -- for tests."""
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array.astype(np.int32)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        pixels = 16383 - pixels
    return ds, pixels.astype(np.uint16)
