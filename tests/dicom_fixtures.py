"""Helpers that write small DICOM / PNG / NIfTI radiographs for the transform tests (no real data)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.dataset import Dataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    PYDICOM_IMPLEMENTATION_UID,
    RLELossless,
    generate_uid,
)

MG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1.2"  # Digital Mammography X-Ray Image Storage - For Presentation
CT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.2"
SR_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.88.22"  # Enhanced SR


def make_dataset(
    arr: np.ndarray | None,
    modality: str = "MG",
    bits_stored: int = 14,
    photometric: str = "MONOCHROME2",
    pixel_spacing: tuple[float, float] | None = (0.07, 0.07),
    imager_spacing: tuple[float, float] | None = None,
    laterality: str = "L",
    view: str = "CC",
    sop_class: str = MG_SOP_CLASS,
    **tags: Any,
) -> FileDataset:
    """A minimal valid single-frame image dataset (or a non-image one when ``arr`` is None)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.Manufacturer = "monai-mammo-tests"
    ds.PatientID = "P0"
    if arr is not None:
        ds.Rows, ds.Columns = arr.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        bits_alloc = 8 if bits_stored <= 8 else 16
        ds.BitsAllocated = bits_alloc
        ds.BitsStored = bits_stored
        ds.HighBit = bits_stored - 1
        ds.PixelRepresentation = 0
        ds.PixelData = arr.astype(np.uint8 if bits_alloc == 8 else np.uint16).tobytes()
    if pixel_spacing is not None:
        ds.PixelSpacing = [f"{pixel_spacing[0]}", f"{pixel_spacing[1]}"]
    if imager_spacing is not None:
        ds.ImagerPixelSpacing = [f"{imager_spacing[0]}", f"{imager_spacing[1]}"]
    if laterality:
        ds.ImageLaterality = laterality
    if view:
        ds.ViewPosition = view
    for k, v in tags.items():
        setattr(ds, k, v)
    return ds


def write_dicom(path: Path, arr: np.ndarray | None, compress: str | None = None, **kwargs: Any) -> Path:
    """Write ``arr`` as a DICOM file; ``compress`` in {None, "rle", "j2k"}."""
    ds = make_dataset(arr, **kwargs)
    if compress == "rle":
        ds.compress(RLELossless)
    elif compress == "j2k":
        ds.compress(JPEG2000Lossless)
    elif compress is not None:
        raise ValueError(compress)
    ds.save_as(path, enforce_file_format=True)
    return Path(path)


def voi_lut_item(lut: np.ndarray, first_map: int = 0, bits: int = 16) -> Dataset:
    item = Dataset()
    item.LUTDescriptor = [len(lut), first_map, bits]
    item.add_new(0x00283006, "US", [int(v) for v in lut])  # LUTData; VR US avoids the OW ambiguity
    return item


def add_voi_lut(ds: Dataset, lut: np.ndarray, first_map: int = 0, bits: int = 16) -> Dataset:
    ds.VOILUTSequence = DicomSequence([voi_lut_item(lut, first_map, bits)])
    return ds


def ramp(h: int = 24, w: int = 32, bits: int = 14) -> np.ndarray:
    """A deterministic ramp over the full stored range, distinct in x and y."""
    y, x = np.mgrid[0:h, 0:w]
    v = (x * 7 + y * 131) % (2**bits)
    return v.astype(np.uint16 if bits > 8 else np.uint8)
