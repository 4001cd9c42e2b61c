"""Findings records (what a bundle writes as JSON) as :class:`Finding` objects, and DICOM image coordinates.

A findings record holds ``points`` (the records of :meth:`monai_mammo.regions.Regions.to_records`
that :class:`monai_mammo.writers.SaveRegionsd` writes: ``{"x", "y", "score", "<stage>_score", ...}``,
ASN) and/or ``boxes`` (``{"box": [x0, y0, x1, y1], "label", "probability" | "score", ...}``,
DAB-Net) in the pixels of the stored image, in the convention of :mod:`monai_mammo.coordinates`:
points in *centre* coordinates (pixel centres at integer positions), boxes in *edge* coordinates
(``x1``, ``y1`` exclusive, as in :mod:`monai_mammo.regions`).

DICOM 2D image coordinates (SCOORD Graphic Data, highdicom's image coordinate system) put the
*top left corner* of the top left pixel at ``(0, 0)``: they are edge coordinates. So a point
(centre of pixel ``(column c, row r)``) is ``(c + 0.5, r + 0.5)`` and a box's corners are its
values unchanged: :func:`to_image_coordinates` adds half a pixel to points only and
:func:`from_image_coordinates` removes it. SCOORD values are 32-bit floats (VR FL), so a point
read back equals ``float32(x + 0.5) - 0.5``.

Example::

    >>> record = {"points": [{"x": 10.0, "y": 4.0, "score": 0.9, "asn_score": 3.0, "fpr_score": 0.3, "area": 5}],
    ...           "boxes": [{"box": [1, 2, 30, 40], "label": "mass", "probability": 0.25}]}
    >>> [(f.kind, f.coordinates, f.label, f.scores) for f in findings_from_record(record, default_label="calcification")]
    [('point', (10.0, 4.0), 'calcification', {'score': 0.9, 'asn_score': 3.0, 'fpr_score': 0.3}), ('box', (1.0, 2.0, 30.0, 40.0), 'mass', {'probability': 0.25})]
    >>> to_image_coordinates(findings_from_record(record)[0]).tolist()   # a pixel centre
    [[10.5, 4.5]]
    >>> to_image_coordinates(findings_from_record(record)[1]).tolist()   # edges stay edges
    [[1.0, 2.0], [30.0, 2.0], [30.0, 40.0], [1.0, 40.0], [1.0, 2.0]]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "Finding",
    "findings_from_record",
    "best_findings",
    "is_score_field",
    "to_image_coordinates",
    "from_image_coordinates",
    "PIXEL_CENTRE_OFFSET",
]

#: DICOM image coordinate of the centre of pixel (0, 0), on both axes (points only: boxes are
#: already in edge coordinates, which DICOM image coordinates are).
PIXEL_CENTRE_OFFSET = 0.5


def is_score_field(name: str) -> bool:
    """True for the fields of a finding that are scores: ``score``, ``probability``, ``*_score``,
    ``*_probability``."""
    return name in ("score", "probability") or name.endswith(("_score", "_probability"))


@dataclass(frozen=True)
class Finding:
    """One finding of one image.

    Attributes:
        kind: ``"point"`` or ``"box"``.
        coordinates: ``(x, y)`` or ``(x0, y0, x1, y1)`` in stored-image pixels.
        label: what it is (e.g. "microcalcification", "mass"), or None.
        scores: the finding's scores by field name, in the record's order (None values dropped).
        index: position in the record's ``points`` / ``boxes`` list.
    """

    kind: str
    coordinates: tuple[float, ...]
    label: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    index: int = 0

    @property
    def main_score(self) -> tuple[str, float] | None:
        """``("score" | "probability" | first score field, value)``, or None without scores."""
        for name in ("score", "probability"):
            if name in self.scores:
                return name, self.scores[name]
        return next(iter(self.scores.items()), None)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise ValueError(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def _scores(entry: Mapping[str, Any], where: str) -> dict[str, float]:
    return {k: _number(v, f"{where}.{k}") for k, v in entry.items() if is_score_field(k) and v is not None}


def findings_from_record(record: Mapping[str, Any], default_label: str | None = None) -> list[Finding]:
    """The points then the boxes of a findings record, validated.

    Raises:
        ValueError: naming the entry and field, for a point without finite ``x``/``y``, a box that
            is not four finite numbers with ``x0 <= x1`` and ``y0 <= y1``, or a non-numeric score.
    """
    findings: list[Finding] = []
    for i, point in enumerate(record.get("points") or []):
        where = f"points[{i}]"
        xy = (_number(point.get("x"), f"{where}.x"), _number(point.get("y"), f"{where}.y"))
        findings.append(Finding("point", xy, point.get("label") or default_label, _scores(point, where), i))
    for i, box in enumerate(record.get("boxes") or []):
        where = f"boxes[{i}]"
        values = box.get("box")
        if not isinstance(values, (list, tuple)) or len(values) != 4:
            raise ValueError(f"{where}.box: expected [x0, y0, x1, y1], got {values!r}")
        x0, y0, x1, y1 = (_number(v, f"{where}.box") for v in values)
        if x1 < x0 or y1 < y0:
            raise ValueError(f"{where}.box: inverted box {list(values)} (need x0 <= x1 and y0 <= y1)")
        findings.append(Finding("box", (x0, y0, x1, y1), box.get("label") or default_label, _scores(box, where), i))
    return findings


def best_findings(findings: list[Finding], max_findings: int | None) -> list[Finding]:
    """The ``max_findings`` best (by :attr:`Finding.main_score`; ties keep their order) in their
    original order; all of them when ``max_findings`` is None.

    Example::

        >>> fs = [Finding("point", (0.0, 0.0), scores={"score": s}, index=i) for i, s in enumerate([0.1, 0.9, 0.5])]
        >>> [f.index for f in best_findings(fs, 2)]
        [1, 2]
    """
    if max_findings is None or len(findings) <= max_findings:
        return list(findings)
    ranked = sorted(range(len(findings)), key=lambda i: -(findings[i].main_score or ("", 0.0))[1])
    keep = sorted(ranked[: max(int(max_findings), 0)])
    return [findings[i] for i in keep]


def to_image_coordinates(finding: Finding) -> np.ndarray:
    """SCOORD Graphic Data of a finding: a ``(1, 2)`` POINT (the pixel centre + 0.5) or a ``(5, 2)``
    closed POLYLINE rectangle (the box's edges, corners clockwise from ``(x0, y0)``, the first
    repeated last), in DICOM image coordinates."""
    if finding.kind == "point":
        return np.asarray([finding.coordinates], dtype=np.float64) + PIXEL_CENTRE_OFFSET
    if finding.kind == "box":
        x0, y0, x1, y1 = finding.coordinates
        return np.asarray([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=np.float64)
    raise ValueError(f"finding kind must be 'point' or 'box', got {finding.kind!r}")


def from_image_coordinates(graphic_type: str, graphic_data: Any) -> tuple[float, ...]:
    """Stored-pixel coordinates of a SCOORD read back: ``(x, y)`` (centre coordinates) for a POINT,
    ``(x0, y0, x1, y1)`` (the bounding box, edge coordinates) for a POLYLINE / POLYGON."""
    xy = np.asarray(graphic_data, dtype=np.float64).reshape(-1, 2)
    if str(graphic_type).upper() == "POINT":
        return float(xy[0, 0]) - PIXEL_CENTRE_OFFSET, float(xy[0, 1]) - PIXEL_CENTRE_OFFSET
    return float(xy[:, 0].min()), float(xy[:, 1].min()), float(xy[:, 0].max()), float(xy[:, 1].max())
