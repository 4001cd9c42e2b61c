"""INbreast -> MONAI datalist.

INbreast (Moreira et al., Academic Radiology 19(2), 2012) as distributed::

    ROOT/INbreast.csv              ';'-separated: Patient ID;Patient age;Laterality;View;
                                   Acquisition date;File Name;ACR;Bi-Rads  (Latin-1 or UTF-8)
    ROOT/AllDICOMs/<file id>_<patient hash>_MG_<L|R>_<CC|ML|MLO>_ANON.dcm
    ROOT/AllXML/<file id>.xml      OsiriX ROIs in Apple plist format: {"Images": [{"ROIs": [
                                   {"Name": "Mass" | "Calcification" | "Cluster" | ...,
                                    "NumberOfPoints": n, "Point_px": ["(x, y)", ...], ...}]}]}

The spreadsheet's ``Patient ID`` column is "removed" in the public release, so the patient is the
second token of the DICOM file name (the anonymised patient hash), falling back to the CSV column.
Only the CSV variant of the spreadsheet is read (save ``INbreast.xls`` as ``;``-separated CSV).

Record keys (besides those of :mod:`monai_mammo.data.adapters.datalist`):

``image``
    the DICOM; ``spacing`` ``[0.07, 0.07]`` mm (the MammoNovation detector, a parameter).
``label``
    ``[y_malignant, y_benign]`` from the image BI-RADS through ``birads_classes`` (default
    1 normal, 2-3 benign, 4-6 malignant; sub-categories 4a/4b/4c follow 4).
``boxes`` / ``box_labels``
    one box per "Mass" ROI: the bounding box of the rasterised polygon; label 1 benign / 2 malignant
    from the image BI-RADS class (INbreast has no per-lesion pathology).
``mask``
    uint8 PNG (0/1) of the union of the mass polygons (``skimage.draw.polygon`` plus its perimeter),
    written to ``mask_dir``; present only when the image has a mass (or ``write_empty_masks``).
``points``
    one ``[x, y]`` per "Calcification" ROI that is a single point or spans at most
    ``point_max_size_mm`` (default 1 mm, the upper end of a microcalcification): the mean of its
    vertices.
``calc_boxes`` / ``calc_box_labels``
    "Cluster" ROIs and larger outlined calcifications; labels as ``box_labels``.
``findings``
    every other ROI (distortion, asymmetry, spiculated region...): ``{"name", "box"}``.
``fully_labelled``
    True when the XML was parsed, or when there is no XML and the image is BI-RADS 1.
``birads`` (string as in the CSV), ``density`` (ACR 1-4 as int, or None), ``file_id``.

INbreast has no official split: patients are split with ``seed`` and the fractions, stratified
by the worst class of the patient's images.
"""

from __future__ import annotations

import math
import os
import plistlib
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from monai_mammo.data.adapters.datalist import (
    BOX_LABELS,
    IMAGE_LABELS,
    AdapterReport,
    DatalistError,
    birads_class,
    check_box,
    dataset_metadata,
    datalist_path,
    read_csv_rows,
    round_coordinate,
    write_mask_png,
)
from monai_mammo.data.adapters.split import split_by_patient

_POINT = re.compile(r"^\s*\(?\s*([-+0-9.eE]+|nan)\s*,\s*([-+0-9.eE]+|nan)\s*\)?\s*$", re.IGNORECASE)
_SEVERITY = {"normal": 0, "benign": 1, "malignant": 2}


def _column(header: list[str], *names: str) -> int | None:
    normalised = [re.sub(r"[\s_\-]", "", cell.lower()) for cell in header]
    for name in names:
        if name in normalised:
            return normalised.index(name)
    return None


def _find_csv(root: Path) -> Path:
    for candidate in (root / "INbreast.csv", *sorted(root.glob("*.csv"))):
        if candidate.is_file():
            return candidate
    if list(root.glob("*.xls*")):
        raise DatalistError(f"{root}: only INbreast.xls found; save it as a ';'-separated INbreast.csv")
    raise DatalistError(f"{root}: no INbreast.csv found")


def parse_point(text: str) -> tuple[float, float]:
    """``"(1639.000000, 1345.000000)"`` -> ``(1639.0, 1345.0)``; raises ValueError if malformed."""
    match = _POINT.match(str(text))
    if not match:
        raise ValueError(f"malformed point {text!r}, expected '(x, y)'")
    x, y = float(match.group(1)), float(match.group(2))
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError(f"point {text!r} is not finite")
    return x, y


def read_inbreast_rois(xml_path: str | os.PathLike) -> list[dict[str, Any]]:
    """The ROI dicts of an INbreast XML (plist); raises ValueError naming the problem."""
    with open(xml_path, "rb") as stream:
        try:
            plist = plistlib.load(stream)
        except Exception as error:  # plistlib raises several types for broken XML
            raise ValueError(f"not a readable plist: {error}") from None
    images = plist.get("Images") if isinstance(plist, dict) else None
    if not isinstance(images, list):
        raise ValueError("no 'Images' array")
    rois: list[dict[str, Any]] = []
    for image in images:
        if not isinstance(image, dict) or not isinstance(image.get("ROIs", []), list):
            raise ValueError("an 'Images' entry has no 'ROIs' array")
        rois.extend(image.get("ROIs", []))
    return rois


def _header_size(path: Path) -> tuple[int, int]:
    import pydicom

    dataset = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Rows", "Columns"])
    rows, columns = int(dataset.Rows), int(dataset.Columns)
    if rows <= 0 or columns <= 0:
        raise ValueError(f"zero-size image (Rows={rows}, Columns={columns})")
    return rows, columns


def inbreast_datalist(
    root: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    mask_dir: str | os.PathLike | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    official_split: bool = True,
    birads_classes: Mapping[str, str] | None = None,
    spacing: tuple[float, float] = (0.07, 0.07),
    point_max_size_mm: float = 1.0,
    write_masks: bool = True,
    write_empty_masks: bool = False,
    stratify: bool = True,
    strict: bool = False,
    report: AdapterReport | None = None,
) -> dict[str, Any]:
    """Build the INbreast datalist (see the module docstring for the keys).

    Args:
        root: the INbreast folder (with INbreast.csv, AllDICOMs/, AllXML/).
        out_dir: folder the datalist will be written to; paths are made relative to it.
            Default None: ``root``.
        mask_dir: where mass masks are written. Default None: ``<out_dir>/inbreast_masks``.
        seed, val_fraction, test_fraction: patient-wise split (defaults 0, 0.1, 0.2).
        official_split: unused (INbreast has none); accepted so all adapters share a signature.
        birads_classes: BI-RADS -> "normal" / "benign" / "malignant". Default None:
            :data:`~monai_mammo.data.adapters.datalist.DEFAULT_BIRADS_CLASSES`.
        spacing: ``[sx, sy]`` mm per pixel. Default (0.07, 0.07).
        point_max_size_mm: a calcification ROI whose extent is at most this becomes a point.
            Default 1.0.
        write_masks: write mass masks (default True); False omits the ``mask`` key.
        write_empty_masks: also write an all-zero mask for fully labelled images without masses.
            Default False.
        stratify: stratify the split by the patient's worst class. Default True.
        strict: raise :class:`DatalistError` if anything was skipped. Default False.
        report: collects what was skipped; default None: a new one (logged as warnings).
    """
    root = Path(root)
    out_dir = Path(out_dir) if out_dir is not None else root
    mask_dir = Path(mask_dir) if mask_dir is not None else out_dir / "inbreast_masks"
    report = report if report is not None else AdapterReport("inbreast")
    if not root.is_dir():
        raise DatalistError(f"{root}: INbreast root folder does not exist")
    csv_path = _find_csv(root)
    header, rows = read_csv_rows(csv_path, delimiter=";")
    columns = {
        "file": _column(header, "filename"),
        "birads": _column(header, "birads"),
        "laterality": _column(header, "laterality"),
        "view": _column(header, "view"),
        "patient": _column(header, "patientid"),
        "density": _column(header, "acr"),
    }
    missing = [name for name in ("file", "birads") if columns[name] is None]
    if missing:
        raise DatalistError(f"{csv_path}: header {header} lacks column(s) {missing} (expected 'File Name', 'Bi-Rads')")

    dicoms: dict[str, Path] = {}
    for path in sorted((root / "AllDICOMs").glob("*.dcm")):
        dicoms.setdefault(path.name.split("_")[0], path)
    xml_dir = root / "AllXML"
    point_max_px = point_max_size_mm / min(spacing)

    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    for line, cells in rows:
        where = f"row {line}"

        def cell(name: str) -> str:
            index = columns[name]
            return cells[index].strip() if index is not None and index < len(cells) else ""

        file_id = re.sub(r"\.0+$", "", cell("file"))
        if not file_id.isdigit():
            report.add(csv_path, f"{where}, field 'File Name'", f"not a file id: {file_id!r}")
            continue
        if file_id in seen:
            report.add(csv_path, where, f"duplicate row for file id {file_id}")
            continue
        seen.add(file_id)
        birads = cell("birads")
        class_name = birads_class(birads, birads_classes)
        if class_name not in IMAGE_LABELS:
            report.add(csv_path, f"{where}, field 'Bi-Rads'", f"BI-RADS {birads!r} has no class in the mapping")
            continue
        dicom = dicoms.get(file_id)
        if dicom is None:
            report.add(csv_path, where, f"no DICOM AllDICOMs/{file_id}_*.dcm for file id {file_id}")
            continue
        try:
            image_size = _header_size(dicom)
        except Exception as error:
            report.add(dicom, "DICOM header", f"cannot read Rows/Columns: {error}")
            continue
        name_parts = dicom.stem.split("_")
        patient = name_parts[1] if len(name_parts) > 1 and name_parts[1] else ""
        if not patient and cell("patient").lower() not in ("", "removed"):
            patient = cell("patient")
        if not patient:
            report.add(dicom, "file name", "no patient hash in the file name and no Patient ID in the CSV")
            continue
        laterality = cell("laterality").upper() or (name_parts[3].upper() if len(name_parts) > 3 else "")
        view = cell("view").upper() or (name_parts[4].upper() if len(name_parts) > 4 else "")
        density_text = re.sub(r"\.0+$", "", cell("density"))
        record: dict[str, Any] = {
            "image": datalist_path(dicom, out_dir),
            "label": list(IMAGE_LABELS[class_name]),
            "boxes": [],
            "box_labels": [],
            "points": [],
            "calc_boxes": [],
            "calc_box_labels": [],
            "findings": [],
            "spacing": [float(spacing[0]), float(spacing[1])],
            "patient_id": patient,
            "laterality": laterality if laterality in ("L", "R") else "",
            "view": view,
            "fully_labelled": class_name == "normal",
            "birads": birads,
            "density": int(density_text) if density_text.isdigit() else None,
            "file_id": file_id,
        }
        lesion_label = BOX_LABELS.get(class_name, BOX_LABELS["benign"])
        xml_path = xml_dir / f"{file_id}.xml"
        mass_mask = None
        if xml_path.is_file():
            try:
                rois = read_inbreast_rois(xml_path)
            except ValueError as error:
                report.add(xml_path, "plist", str(error), "skipped annotation")
                rois = None
            if rois is not None:
                record["fully_labelled"] = True
                mass_mask = _add_rois(record, rois, xml_path, image_size, lesion_label, point_max_px, report)
                if class_name == "normal" and (record["boxes"] or record["points"]):
                    report.add(xml_path, "ROIs", f"lesions annotated on a BI-RADS {birads} (normal) image; "
                               f"labelled benign", "note")
        elif class_name != "normal":
            report.add(dicom, "AllXML", f"BI-RADS {birads} image has no {xml_path.name}; not fully labelled", "note")
        if write_masks and (mass_mask is not None or (write_empty_masks and record["fully_labelled"])):
            mask = mass_mask if mass_mask is not None else np.zeros(image_size, dtype=np.uint8)
            record["mask"] = datalist_path(write_mask_png(mask, mask_dir / f"{file_id}_mask.png"), out_dir)
        records.append(record)

    for file_id, dicom in dicoms.items():
        if file_id not in seen:
            report.add(dicom, "", f"no row for file id {file_id} in {csv_path.name}")

    def severity(record: dict[str, Any]) -> int:
        return 2 if record["label"][0] else 1 if record["label"][1] else 0

    splits, info = split_by_patient(records, val_fraction, test_fraction, seed,
                                    stratum=severity if stratify else None, report=report)
    report.raise_if_strict(strict)
    return {
        **dataset_metadata("INbreast", "INbreast full-field digital mammograms (Moreira et al. 2012)", info,
                           report, labels={"label": ["malignant", "benign"], "box_labels": {"1": "benign mass",
                                                                                           "2": "malignant mass"}}),
        **splits,
    }


def _add_rois(
    record: dict[str, Any],
    rois: list[Any],
    xml_path: Path,
    image_size: tuple[int, int],
    lesion_label: int,
    point_max_px: float,
    report: AdapterReport,
) -> np.ndarray | None:
    """Sort the ROIs of one image into points / boxes / findings; returns the mass mask or None."""
    from skimage.draw import polygon, polygon_perimeter

    height, width = image_size
    mass_mask: np.ndarray | None = None
    for index, roi in enumerate(rois):
        where = f"ROI {index}"
        if not isinstance(roi, dict):
            report.add(xml_path, where, "ROI is not a dict", "skipped annotation")
            continue
        name = str(roi.get("Name", "")).strip()
        where = f"ROI {index} ({name or 'unnamed'})"
        try:
            vertices = np.array([parse_point(text) for text in roi.get("Point_px", [])], dtype=float).reshape(-1, 2)
        except ValueError as error:
            report.add(xml_path, f"{where}, field 'Point_px'", str(error), "skipped annotation")
            continue
        if len(vertices) == 0:
            report.add(xml_path, f"{where}, field 'Point_px'", "no points", "skipped annotation")
            continue
        kind = name.lower()
        extent = float(np.max(vertices.max(axis=0) - vertices.min(axis=0)))
        # a vertex at (x, y) lies in pixel (row round(y), column round(x)); the box covers those pixels
        pixels = np.floor(vertices + 0.5).astype(int)
        vertex_box = [int(pixels[:, 0].min()), int(pixels[:, 1].min()),
                      int(pixels[:, 0].max()) + 1, int(pixels[:, 1].max()) + 1]
        if kind.startswith("calcification") and extent <= point_max_px:
            x, y = vertices.mean(axis=0)
            if not (-0.5 <= x < width - 0.5 and -0.5 <= y < height - 0.5):
                report.add(xml_path, where, f"point ({x:.1f}, {y:.1f}) outside the image (H, W) = {image_size}",
                           "skipped annotation")
                continue
            record["points"].append([round_coordinate(x), round_coordinate(y)])
            continue
        box = check_box(vertex_box, image_size, report, xml_path, where)
        if box is None:
            continue
        if kind == "mass":
            if len(vertices) < 3:
                report.add(xml_path, where, f"mass outline has {len(vertices)} point(s), need 3", "skipped annotation")
                continue
            rows, cols = polygon(vertices[:, 1], vertices[:, 0], shape=image_size)
            edge_rows, edge_cols = polygon_perimeter(vertices[:, 1], vertices[:, 0], shape=image_size, clip=False)
            inside = (edge_rows >= 0) & (edge_rows < height) & (edge_cols >= 0) & (edge_cols < width)
            rows = np.concatenate([rows, edge_rows[inside]])
            cols = np.concatenate([cols, edge_cols[inside]])
            if mass_mask is None:
                mass_mask = np.zeros(image_size, dtype=np.uint8)
            mass_mask[rows, cols] = 1
            record["boxes"].append([int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1])
            record["box_labels"].append(lesion_label)
        else:
            if kind.startswith("calcification") or kind.startswith("cluster"):
                record["calc_boxes"].append(box)
                record["calc_box_labels"].append(lesion_label)
            else:
                record["findings"].append({"name": name, "box": box})
    return mass_mask
