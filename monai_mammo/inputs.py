"""Inputs of a batch prediction: discovery (files, folders, datalists), output names, shards, and checks.

* :func:`discover_inputs`: every input as an :class:`InputItem`. Folders are walked recursively
  and every file is a candidate (hidden names, starting with ".", are ignored): DICOM is recognised
  by its content later, not by its extension. A ``.json`` input is a datalist (its ``test`` list,
  else all lists of items), whose per-item fields (``spacing``, ``boxes``...) are kept.
* :func:`assign_output_names`: a unique, readable output name per item (the path below its input
  folder without the image suffix), fixed before sharding so every rank agrees.
* :func:`shard`: rank ``r`` of ``world`` takes ``items[r::world]`` of the path-sorted list, a
  disjoint deterministic share.
* :class:`InputChecker`: what cannot be processed, and why, from the header alone: not an image
  file, a corrupt DICOM, a non-image DICOM (SR, presentation state: no Image Pixel module), the
  wrong modality, a missing pixel spacing (unless a default spacing is given, which the item then
  carries as its ``spacing``). The reader (:class:`~monai_mammo.transforms.io.RadiographReader`)
  still checks the pixels when the image is processed.

Coordinates and spacing follow :mod:`monai_mammo.coordinates`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monai_mammo.bundle_utils import strip_image_suffix
from monai_mammo.transforms.io import DICOM_SUFFIXES, NIFTI_SUFFIXES, RASTER_SUFFIXES

__all__ = [
    "InputItem",
    "CheckResult",
    "InputChecker",
    "discover_inputs",
    "assign_output_names",
    "shard",
    "looks_like_dicom",
    "dicom_spacing",
]

logger = logging.getLogger(__name__)

_DICOM_MAGIC_OFFSET = 128


@dataclass
class InputItem:
    """One image to process.

    Attributes:
        path: the image file (absolute).
        fields: the datalist item's other fields (``spacing``, ``boxes``, ...); empty for files.
        root: the folder the output name is taken relative to (the input folder or datalist's).
        name: the output name (set by :func:`assign_output_names`), e.g. ``"patient1/LCC"``.
    """

    path: Path
    fields: dict[str, Any] = field(default_factory=dict)
    root: Path | None = None
    name: str = ""

    def as_data(self) -> dict[str, Any]:
        """The bundle's input dict: ``{"image": path, **fields}``."""
        return {**self.fields, "image": str(self.path)}


@dataclass
class CheckResult:
    """What :meth:`InputChecker.check` found.

    Attributes:
        reason: why the item cannot be processed, or None when it can.
        kind: "dicom", "raster" (PNG/JPEG/TIFF), "nifti" or "unknown".
        assumed_spacing_mm: the default spacing the item now carries, or None.
        modality: the DICOM Modality ("" for other files).
    """

    reason: str | None
    kind: str
    assumed_spacing_mm: float | None = None
    modality: str = ""

    @property
    def ok(self) -> bool:
        return self.reason is None


def _walk(folder: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files += [Path(dirpath) / f for f in filenames if not f.startswith(".")]
    return sorted(files)


def _datalist_items(path: Path, keys: Sequence[str]) -> list[InputItem]:
    from monai_mammo.bundle_utils import load_items

    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"datalist {path}: cannot be read as JSON ({error})") from error
    if not isinstance(content, dict):
        raise ValueError(f"datalist {path}: expected a JSON object of lists, got {type(content).__name__}")
    lists = [k for k in keys if content.get(k)]
    if not lists:
        lists = [k for k, v in content.items() if isinstance(v, list) and v and isinstance(v[0], dict) and "image" in v[0]]
    if not lists:
        raise ValueError(f"datalist {path}: no list of items with an 'image' (looked for {list(keys)} first)")
    items = []
    for entry in load_items(path, lists):
        fields = {k: v for k, v in entry.items() if k != "image"}
        items.append(InputItem(Path(entry["image"]).resolve(), fields, path.parent.resolve()))
    return items


def discover_inputs(inputs: Iterable[str | os.PathLike], datalist_keys: Sequence[str] = ("test",)) -> list[InputItem]:
    """Every input as an item, sorted by path; a file given twice is kept once (the first entry).

    Raises:
        FileNotFoundError: an input does not exist.
        ValueError: a datalist cannot be read or holds no items.
    """
    items: list[InputItem] = []
    for raw in inputs:
        path = Path(raw).expanduser()
        if path.is_dir():
            root = path.resolve()
            items += [InputItem(p.resolve(), {}, root) for p in _walk(path)]
        elif path.is_file() and path.suffix.lower() == ".json":
            items += _datalist_items(path, datalist_keys)
        elif path.is_file():
            items.append(InputItem(path.resolve(), {}, path.resolve().parent))
        else:
            raise FileNotFoundError(f"input {raw}: no such file or folder")
    unique: dict[Path, InputItem] = {}
    for item in items:
        if item.path in unique:
            logger.warning("input %s given more than once: processed once", item.path)
            continue
        unique[item.path] = item
    return sorted(unique.values(), key=lambda item: str(item.path))


def assign_output_names(items: Sequence[InputItem]) -> list[InputItem]:
    """Set each item's ``name``: its path below ``root`` without the image suffix; names that two
    inputs share get ``-<8 hex of the path's hash>`` appended. Returns ``items``.

    Example::

        >>> a, b = InputItem(Path("/d/x/1.dcm"), root=Path("/d")), InputItem(Path("/e/x/1.dcm"), root=Path("/e"))
        >>> [i.name for i in assign_output_names([a, b])] == ["x/1-" + hashlib.sha1(b"/d/x/1.dcm").hexdigest()[:8],
        ...                                                  "x/1-" + hashlib.sha1(b"/e/x/1.dcm").hexdigest()[:8]]
        True
    """
    def base(item: InputItem) -> str:
        try:
            relative = item.path.relative_to(item.root) if item.root else Path(item.path.name)
        except ValueError:
            relative = Path(item.path.name)
        return strip_image_suffix(relative.as_posix())

    names = [base(item) for item in items]
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    for item, name in zip(items, names):
        if counts[name] > 1:
            name = f"{name}-{hashlib.sha1(str(item.path).encode()).hexdigest()[:8]}"
        item.name = name
    return list(items)


def shard(items: Sequence[InputItem], rank: int, world_size: int) -> list[InputItem]:
    """Rank ``rank``'s share of ``world_size``: every ``world_size``-th item from ``rank`` on.

    Example::

        >>> [i.name for i in shard([InputItem(Path(str(k)), name=str(k)) for k in range(5)], 1, 2)]
        ['1', '3']
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"shard: need 0 <= rank < world_size, got rank {rank}, world size {world_size}")
    return list(items[rank::world_size])


def looks_like_dicom(path: str | os.PathLike) -> bool:
    """True when the file has the DICM magic after its 128-byte preamble, or pydicom reads a DICOM
    header from it (files written without the preamble)."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(_DICOM_MAGIC_OFFSET + 4)
    except OSError:
        return False
    if head[_DICOM_MAGIC_OFFSET : _DICOM_MAGIC_OFFSET + 4] == b"DICM":
        return True
    try:
        import pydicom

        pydicom.dcmread(str(path), stop_before_pixels=True)
        return True
    except Exception:  # noqa: BLE001 - anything pydicom cannot parse is not DICOM here
        return False


def dicom_spacing(ds: Any) -> list[float] | None:
    """``[sx, sy]`` in mm from PixelSpacing, else ImagerPixelSpacing (DICOM order is row, column),
    or None when neither holds two positive numbers."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        try:
            if value is not None and len(value) == 2 and float(value[0]) > 0 and float(value[1]) > 0:
                return [float(value[1]), float(value[0])]
        except (TypeError, ValueError):
            continue
    return None


def _item_spacing(fields: Mapping[str, Any]) -> list[float] | None:
    from monai_mammo.transforms.io import spacing_of

    return spacing_of({"spacing": fields.get("spacing")}) if fields.get("spacing") is not None else None


class InputChecker:
    """Decide from the header whether an item can be processed by a bundle.

    Args:
        modalities: DICOM Modality values the bundle accepts (e.g. ``("MG",)``); None: any.
        requires_spacing: the bundle needs physical units (e.g. it resamples to 0.07 mm).
        default_spacing_mm: the spacing assumed for files without one; None: such files are skipped.
    """

    def __init__(
        self,
        modalities: Sequence[str] | None = None,
        requires_spacing: bool = True,
        default_spacing_mm: float | None = None,
    ) -> None:
        self.modalities = tuple(m.upper() for m in modalities) if modalities else None
        self.requires_spacing = bool(requires_spacing)
        if default_spacing_mm is not None and not float(default_spacing_mm) > 0:
            raise ValueError(f"default spacing must be a positive number of mm, got {default_spacing_mm!r}")
        self.default_spacing_mm = float(default_spacing_mm) if default_spacing_mm is not None else None

    def check(self, item: InputItem) -> CheckResult:
        """Classify ``item``; when it needs the default spacing, set ``item.fields["spacing"]``."""
        path = item.path
        name = path.name.lower()
        try:
            size = path.stat().st_size
        except OSError as error:
            return CheckResult(f"unreadable file ({error.strerror or error})", "unknown")
        if size == 0:
            return CheckResult("empty file (0 bytes)", "unknown")
        if looks_like_dicom(path):
            return self._check_dicom(item)
        if name.endswith(RASTER_SUFFIXES) or name.endswith(NIFTI_SUFFIXES):
            kind = "nifti" if name.endswith(NIFTI_SUFFIXES) else "raster"
            return self._spacing(item, kind, file_spacing=None)
        if name.endswith(DICOM_SUFFIXES):
            return CheckResult("corrupt DICOM file: no DICM preamble and no readable DICOM header", "dicom")
        return CheckResult("not a DICOM or image file (no DICM preamble, no readable DICOM header, no image suffix)", "unknown")

    def _check_dicom(self, item: InputItem) -> CheckResult:
        import pydicom

        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                ds = pydicom.dcmread(str(item.path), stop_before_pixels=True)
        except Exception as error:  # noqa: BLE001 - a corrupt header must become a skip reason
            return CheckResult(f"corrupt DICOM file ({type(error).__name__}: {error})", "dicom")
        truncated = [str(w.message) for w in caught if "end of file" in str(w.message).lower()]
        if truncated:
            return CheckResult(f"corrupt DICOM file (truncated: {truncated[0]})", "dicom")
        if "SOPClassUID" not in ds:
            return CheckResult("corrupt DICOM file (no SOP Class UID: truncated or damaged header)", "dicom")
        modality = str(ds.get("Modality", "") or "").upper()
        sop_class = ds.get("SOPClassUID")
        sop_name = getattr(sop_class, "name", None) or str(sop_class or "unknown SOP class")
        if not all(k in ds for k in ("Rows", "Columns", "BitsAllocated")):
            return CheckResult(
                f"non-image DICOM ({sop_name}, Modality {modality or '<missing>'}): no Image Pixel module", "dicom", modality=modality
            )
        if self.modalities is not None and modality not in self.modalities:
            return CheckResult(
                f"wrong modality {modality or '<missing>'} ({sop_name}); the bundle accepts {', '.join(self.modalities)}",
                "dicom",
                modality=modality,
            )
        return self._spacing(item, "dicom", dicom_spacing(ds), modality)

    def _spacing(self, item: InputItem, kind: str, file_spacing: list[float] | None, modality: str = "") -> CheckResult:
        if not self.requires_spacing or file_spacing is not None or _item_spacing(item.fields) is not None:
            return CheckResult(None, kind, modality=modality)
        if self.default_spacing_mm is None:
            where = "no PixelSpacing / ImagerPixelSpacing" if kind == "dicom" else "no 'spacing' in the datalist"
            return CheckResult(
                f"missing pixel spacing ({where}); pass --default-spacing MM to assume one", kind, modality=modality
            )
        item.fields["spacing"] = [self.default_spacing_mm, self.default_spacing_mm]
        return CheckResult(None, kind, assumed_spacing_mm=self.default_spacing_mm, modality=modality)
