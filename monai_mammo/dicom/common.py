"""What the DICOM writers share: the lazy highdicom import, the algorithm identity, UIDs, the source.

highdicom is optional (``pip install "monai-mammo[dicom]"``): :func:`require_highdicom` imports it
when a writer runs and otherwise raises :class:`HighdicomMissingError` saying how to install it.

UIDs are derived, not random: the same source image, algorithm (name, version and weights
fingerprint) and output kind always give the same SOP Instance UID, so rerunning a batch
re-creates identical identities (a PACS replaces the object instead of storing a duplicate), and a
different model gives different ones.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "HighdicomMissingError",
    "require_highdicom",
    "Algorithm",
    "derived_uid",
    "output_uids",
    "prepare_source",
    "save_dataset",
    "read_source_header",
    "OUTPUT_SERIES_NUMBERS",
]

#: Series numbers of the outputs (any value is legal; distinct ones keep them apart in viewers).
OUTPUT_SERIES_NUMBERS = {"sr": 9001, "seg": 9002, "overlay": 9003}

# Type 2 attributes of the Patient and General Study modules that highdicom copies from the source.
# They must be present (possibly empty) in a conformant image; synthetic or anonymised files often
# drop them, so a copy of the header gets empty values before it is handed to highdicom.
_TYPE2_PATIENT_STUDY = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)


class HighdicomMissingError(ImportError):
    """DICOM outputs were asked for but highdicom is not installed."""


def require_highdicom() -> Any:
    """Import and return ``highdicom``; raise :class:`HighdicomMissingError` with the install line."""
    try:
        import highdicom
    except ImportError as error:
        raise HighdicomMissingError(
            "DICOM outputs (SR, SEG, Secondary Capture) need highdicom, an optional extra: "
            'pip install "monai-mammo[dicom]" (it needs pydicom >= 3)'
        ) from error
    return highdicom


@dataclass(frozen=True)
class Algorithm:
    """Who made the findings, as DICOM outputs name it.

    Example::

        >>> a = Algorithm(name="asn", version="0.1.0", fingerprint="abc")
        >>> a.display_name, a.software_version
        ('monai-mammo asn', 'asn 0.1.0')

    Attributes:
        name: the bundle name, e.g. "asn".
        version: the bundle version (``configs/metadata.json``).
        fingerprint: a hash of the weights (changes the derived UIDs when the model changes).
        parameters: notes recorded with the algorithm, e.g. ``{"assumed pixel spacing": "0.07 mm"}``.
        manufacturer: the Manufacturer of the outputs. Default "monai-mammo".
    """

    name: str
    version: str
    fingerprint: str = ""
    parameters: Mapping[str, str] = field(default_factory=dict)
    manufacturer: str = "monai-mammo"

    @property
    def display_name(self) -> str:
        return f"{self.manufacturer} {self.name}"

    @property
    def software_version(self) -> str:
        return f"{self.name} {self.version}"

    def with_parameters(self, **parameters: str) -> Algorithm:
        """A copy with more ``parameters`` (e.g. an assumed spacing for one image)."""
        return Algorithm(self.name, self.version, self.fingerprint, {**self.parameters, **parameters}, self.manufacturer)


def derived_uid(*parts: str) -> str:
    """A UID derived from ``parts`` (pydicom's ``generate_uid`` with them as entropy sources).

    Example::

        >>> derived_uid("1.2.3", "asn", "sr") == derived_uid("1.2.3", "asn", "sr") != derived_uid("1.2.3", "asn", "seg")
        True
    """
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=[str(p) for p in parts]))


def output_uids(source: Any, algorithm: Algorithm, kind: str) -> tuple[str, str]:
    """``(series_instance_uid, sop_instance_uid)`` of output ``kind`` for ``source``.

    One series per study, algorithm and kind (a series never spans studies); one instance per
    source image, algorithm and kind.
    """
    key = (algorithm.name, algorithm.version, algorithm.fingerprint, kind)
    series = derived_uid(str(source.StudyInstanceUID), *key, "series")
    instance = derived_uid(str(source.SOPInstanceUID), *key, "instance")
    return series, instance


def prepare_source(source: Any) -> Any:
    """A copy of ``source`` with every type 2 Patient / Study attribute present (empty if absent).

    Raises:
        ValueError: the source lacks a type 1 attribute the outputs must reference.
    """
    missing = [k for k in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "Rows", "Columns") if k not in source]
    if missing:
        name = getattr(source, "filename", None) or "source dataset"
        raise ValueError(f"{name}: cannot reference it from a DICOM output, it lacks {', '.join(missing)}")
    from pydicom import Dataset

    ds = Dataset()  # a new top level sharing the (unchanged) elements: the source is left as it was
    for element in source:
        ds.add(element)
    if getattr(source, "file_meta", None) is not None:
        ds.file_meta = source.file_meta
    for keyword in _TYPE2_PATIENT_STUDY:
        if keyword not in ds:
            setattr(ds, keyword, "")
    return ds


def read_source_header(path: str | os.PathLike) -> Any:
    """The source image's header (no pixel data), ready for :func:`prepare_source`."""
    import pydicom

    return pydicom.dcmread(str(path), stop_before_pixels=True)


def save_dataset(dataset: Any, path: str | os.PathLike) -> str:
    """Write a highdicom / pydicom dataset atomically (Part 10 file with preamble)."""
    from monai_mammo.atomic_io import atomic_path

    with atomic_path(path) as tmp:
        dataset.save_as(str(tmp), enforce_file_format=True)
    return str(path)
