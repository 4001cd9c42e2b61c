"""Shared pieces of the dataset adapters: problem reporting, boxes, labels, paths and atomic writes.

Every adapter turns a public dataset into a MONAI decathlon-style datalist, a dict with
``"training"``, ``"validation"`` and ``"test"`` lists of records (see DESIGN.md principle 5 and
HELPERS.md "Data contracts"). The keys every mammography adapter may emit are:

``image``
    path of the image, relative to the datalist's folder when possible, else absolute.
``label``
    mammogram image label ``[y_malignant, y_benign]``: ``[0, 0]`` normal, ``[0, 1]`` benign,
    ``[1, 0]`` malignant, ``[1, 1]`` both (CBIS-DDSM only). ChestX-ray14: 14 ints (multi-hot).
``boxes`` / ``box_labels``
    mass boxes ``[x0, y0, x1, y1]`` in pixels of the stored image (x1, y1 exclusive pixel edges)
    and one label per box: 1 benign mass, 2 malignant mass (ChestX-ray14: the class index).
``points``
    microcalcification centres ``[x, y]`` in pixels (pixel centres).
``calc_boxes`` / ``calc_box_labels``
    calcification clusters or outlined calcifications, same box format; labels 1 benign,
    2 malignant, 0 unknown.
``mask`` / ``coarse_mask``
    exact lesion mask / hand-drawn (loose) lesion mask, uint8 PNG with 0 background and 1
    foreground, written by the adapter where the dataset gives outlines.
``spacing``
    ``[sx, sy]`` mm per pixel along x (columns) and y (rows) where the adapter knows it; left out
    where the reader must take it from the DICOM header at load time.
``patient_id``, ``laterality`` ("L" / "R" / ""), ``view`` ("CC", "MLO", "PA", ...),
``fully_labelled``
    whether every lesion of the image is localised (boxes / points / masks complete).

Dataset-specific extras (``birads``, ``density``, ``pathology``, ``abnormalities``, ...) are
documented in each adapter's module docstring.

Problems in the input (a malformed row, a missing file, a box outside the image) never stop an
adapter: they are recorded in an :class:`AdapterReport` with the file, the row or field and the
reason, the offending row or annotation is skipped (or a box clipped), and the report is summarised
at the end. ``strict=True`` turns any recorded problem into a :class:`DatalistError`.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from monai_mammo.atomic_io import atomic_write_bytes, atomic_write_json

logger = logging.getLogger(__name__)

#: actions an issue can record; "note" is informational and never fails ``strict`` mode.
ISSUE_ACTIONS = ("skipped record", "skipped annotation", "clipped box", "note")


class DatalistError(ValueError):
    """Raised when a datalist cannot be built, or when ``strict`` and a problem was found."""


@dataclass(frozen=True)
class AdapterIssue:
    """One problem found in the input.

    Args:
        source: the file the problem is in (or refers to).
        location: where in it: ``"row 12"``, ``"row 12, field 'pathology'"``, ``"ROI 3"``...
        reason: what is wrong, in words.
        action: what the adapter did about it, one of :data:`ISSUE_ACTIONS`.
    """

    source: str
    location: str
    reason: str
    action: str = "skipped record"

    def __str__(self) -> str:
        where = f"{self.source} ({self.location})" if self.location else self.source
        return f"{where}: {self.reason} [{self.action}]"


class AdapterReport:
    """Collects what an adapter skipped or changed, and why.

    Args:
        dataset: dataset name used in messages, default ``""``.
        log: also log each issue as a warning (default True) through this module's logger.

    Example::

        report = AdapterReport("inbreast")
        report.add("INbreast.csv", "row 4", "unknown BI-RADS '7'")
        print(report.summary())
    """

    def __init__(self, dataset: str = "", log: bool = True) -> None:
        self.dataset = dataset
        self.log = log
        self.issues: list[AdapterIssue] = []

    def add(self, source: str | os.PathLike, location: str, reason: str, action: str = "skipped record") -> None:
        if action not in ISSUE_ACTIONS:
            raise ValueError(f"action must be one of {ISSUE_ACTIONS}, got {action!r}")
        issue = AdapterIssue(str(source), location, reason, action)
        self.issues.append(issue)
        if self.log:
            logger.warning("%s: %s", self.dataset or "datalist", issue)

    @property
    def problems(self) -> list[AdapterIssue]:
        """Issues that count as problems (everything but notes)."""
        return [issue for issue in self.issues if issue.action != "note"]

    def counts(self) -> dict[str, int]:
        """Number of issues per action."""
        return dict(collections.Counter(issue.action for issue in self.issues))

    def summary(self, max_examples: int = 3) -> str:
        """A short human summary: counts per action and reason, with a few examples each."""
        if not self.issues:
            return f"{self.dataset or 'datalist'}: nothing skipped"
        groups: dict[tuple[str, str], list[AdapterIssue]] = collections.defaultdict(list)
        for issue in self.issues:
            groups[(issue.action, _reason_kind(issue.reason))].append(issue)
        lines = [f"{self.dataset or 'datalist'}: {len(self.issues)} issue(s): " + ", ".join(
            f"{count} {action}" for action, count in sorted(self.counts().items()))]
        for (action, kind), issues in sorted(groups.items(), key=lambda item: (-len(item[1]), item[0])):
            lines.append(f"  {len(issues)} x {action}: {kind}")
            for issue in issues[:max_examples]:
                lines.append(f"      {issue}")
            if len(issues) > max_examples:
                lines.append(f"      ... and {len(issues) - max_examples} more")
        return "\n".join(lines)

    def raise_if_strict(self, strict: bool) -> None:
        if strict and self.problems:
            raise DatalistError(f"strict mode: {len(self.problems)} problem(s) in the input\n{self.summary()}")


def _reason_kind(reason: str) -> str:
    """Group reasons that differ only in quoted values or numbers ("missing file 'a'" ~ "... 'b'")."""
    kind = re.sub(r"'[^']*'", "'…'", reason)
    return re.sub(r"-?\d+(\.\d+)?", "N", kind)


# ----------------------------------------------------------------------------- labels


#: default BI-RADS -> class mapping (mammograms): 1 normal, 2-3 benign, 4-6 malignant. BI-RADS 0
#: (incomplete) has no class: such images are reported and skipped unless the mapping names it.
DEFAULT_BIRADS_CLASSES: dict[str, str] = {
    "1": "normal", "2": "benign", "3": "benign", "4": "malignant", "5": "malignant", "6": "malignant",
}

#: BI-RADS -> class without BI-RADS 3 (Bakalo et al., Neurocomputing 2021, Sec. 5.1: BI-RADS 3 images
#: are excluded, 1 normal, 2 benign, 4-5 malignant): a BI-RADS 3 image has no class and is reported
#: and skipped. Pass it as an adapter's ``birads_classes``.
BIRADS_CLASSES_WITHOUT_3: dict[str, str] = {
    "1": "normal", "2": "benign", "4": "malignant", "5": "malignant", "6": "malignant",
}

#: image label [y_malignant, y_benign] per class name
IMAGE_LABELS: dict[str, list[int]] = {
    "normal": [0, 0], "benign": [0, 1], "malignant": [1, 0], "both": [1, 1],
}

#: box label per class name (DESIGN: 1 benign mass, 2 malignant mass)
BOX_LABELS: dict[str, int] = {"benign": 1, "malignant": 2}


def normalise_birads(value: str) -> str:
    """``"BI-RADS 4"`` / ``"4a"`` / ``" 4A "`` -> ``"4"`` / ``"4A"`` / ``"4A"``; ``""`` when empty."""
    text = str(value).strip().upper().replace("BI-RADS", "").replace("BIRADS", "").strip()
    return text


def birads_class(value: str, mapping: Mapping[str, str] | None = None) -> str | None:
    """Class name (``"normal"``, ``"benign"``, ``"malignant"``) of a BI-RADS assessment, or None.

    ``mapping`` maps normalised BI-RADS strings (``"4"``, ``"4A"``...) to class names; a sub-category
    such as ``"4A"`` falls back to its number when the mapping does not name it.
    """
    mapping = DEFAULT_BIRADS_CLASSES if mapping is None else mapping
    key = normalise_birads(value)
    if not key:
        return None
    if key in mapping:
        return mapping[key]
    match = re.match(r"\d+", key)
    if match and match.group(0) in mapping:
        return mapping[match.group(0)]
    return None


# ----------------------------------------------------------------------------- boxes


def round_coordinate(value: float, ndigits: int = 2) -> float | int:
    """Round a coordinate for JSON; integral values come out as ints."""
    rounded = round(float(value), ndigits)
    return int(rounded) if rounded == int(rounded) else rounded


def check_box(
    box: Sequence[float],
    image_size: tuple[int, int] | None,
    report: AdapterReport,
    source: str | os.PathLike,
    location: str,
) -> list[float | int] | None:
    """Validate a box ``[x0, y0, x1, y1]`` against the image size ``(H, W)``.

    Returns the box (clipped to the image when it sticks out, which is reported as
    ``"clipped box"``), or None when it is not finite, empty, or wholly outside the image (reported
    as ``"skipped annotation"``).
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        report.add(source, location, f"box {list(box)} is not finite", "skipped annotation")
        return None
    if x1 <= x0 or y1 <= y0:
        report.add(source, location, f"box {[x0, y0, x1, y1]} is empty (x1 <= x0 or y1 <= y0)", "skipped annotation")
        return None
    if image_size is not None:
        height, width = image_size
        cx0, cy0, cx1, cy1 = max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height))
        if cx1 <= cx0 or cy1 <= cy0:
            report.add(source, location, f"box {[x0, y0, x1, y1]} lies outside the image (H, W) = {image_size}",
                       "skipped annotation")
            return None
        if (cx0, cy0, cx1, cy1) != (x0, y0, x1, y1):
            report.add(source, location, f"box {[x0, y0, x1, y1]} extends outside the image (H, W) = {image_size}",
                       "clipped box")
            x0, y0, x1, y1 = cx0, cy0, cx1, cy1
    return [round_coordinate(v) for v in (x0, y0, x1, y1)]


def mask_to_box(mask: np.ndarray) -> list[int] | None:
    """Bounding box ``[x0, y0, x1, y1]`` (x1, y1 exclusive) of a 2D mask's foreground, None if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return [int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1]


# ----------------------------------------------------------------------------- paths and writing


def datalist_path(path: str | os.PathLike, base_dir: str | os.PathLike | None) -> str:
    """``path`` relative to ``base_dir`` when possible (same drive), else absolute."""
    absolute = os.path.abspath(path)
    if base_dir is None:
        return absolute
    try:
        return Path(os.path.relpath(absolute, os.path.abspath(base_dir))).as_posix()
    except ValueError:  # different drives on Windows
        return absolute


def write_datalist(datalist: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write a datalist as JSON atomically (temp file in the same folder, then ``os.replace``)."""
    path = Path(path)
    atomic_write_json(path, datalist, indent=2)
    return path


def write_mask_png(mask: np.ndarray, path: str | os.PathLike) -> Path:
    """Write a 2D mask as a uint8 PNG with 0 background and 1 foreground, atomically."""
    import io

    from PIL import Image

    if mask.ndim != 2:
        raise ValueError(f"mask for {path} must be 2D (H, W), got shape {mask.shape}")
    buffer = io.BytesIO()
    Image.fromarray((np.asarray(mask) > 0).astype(np.uint8)).save(buffer, format="PNG", optimize=False)
    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def read_csv_rows(path: str | os.PathLike, delimiter: str = ",") -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Read a CSV with the stdlib: header and ``(line_number, cells)`` rows, blank lines dropped.

    Tries UTF-8 (with or without BOM) and falls back to Latin-1, which the INbreast CSV uses.
    """
    import csv

    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    reader = csv.reader(text.splitlines(), delimiter=delimiter)
    try:
        header = [cell.strip() for cell in next(reader)]
    except StopIteration:
        raise DatalistError(f"{path}: empty CSV file (no header)") from None
    rows = []
    for line_number, cells in enumerate(reader, start=2):
        if not any(cell.strip() for cell in cells):
            continue
        rows.append((line_number, cells))
    return header, rows


def dataset_metadata(name: str, description: str, split_info: Mapping[str, Any], report: AdapterReport,
                     **extra: Any) -> dict[str, Any]:
    """Top-level datalist fields besides the splits (MONAI ignores keys it does not read)."""
    meta: dict[str, Any] = {"name": name, "description": description}
    meta.update(extra)
    meta["split"] = dict(split_info)
    meta["issues"] = report.counts()
    return meta
