"""VinDr-Mammo -> MONAI datalist.

VinDr-Mammo (Nguyen et al., Scientific Data 10, 277, 2023; PhysioNet v1.0.0) as distributed::

    ROOT/finding_annotations.csv   study_id,series_id,image_id,laterality,view_position,height,width,
                                   breast_birads,breast_density,finding_categories,finding_birads,
                                   xmin,ymin,xmax,ymax,split
                                   one row per finding; images without one have a "['No Finding']" row
    ROOT/images/<study_id>/<image_id>.dicom

Record keys (besides those of :mod:`monai_mammo.data.adapters.datalist`):

``label``
    ``[y_malignant, y_benign]`` from ``breast_birads`` through ``birads_classes`` (default
    1 normal, 2-3 benign, 4-5 malignant).
``boxes`` / ``box_labels``
    findings whose categories include "Mass": ``[xmin, ymin, xmax, ymax]`` as given (float pixels),
    clipped to ``width`` x ``height``; label from ``finding_birads`` (falling back to the breast
    BI-RADS): 1 benign (BI-RADS <= 3), 2 malignant (>= 4).
``calc_boxes`` / ``calc_box_labels``
    findings whose categories include "Suspicious Calcification"; labels as above.
``findings``
    every boxed finding: ``{"categories": [...], "birads": "BI-RADS 4", "box": [...]}``, including
    those (asymmetry, distortion, lymph node...) that are neither mass nor calcification.
``spacing``
    not written: VinDr DICOMs carry ``PixelSpacing`` / ``ImagerPixelSpacing``, which the reader
    takes at load time (it differs between the scanners of the dataset).
``patient_id``
    the ``study_id`` (VinDr has one exam per woman and publishes no other patient key).
``fully_labelled``
    False for BI-RADS 2 breasts (VinDr boxes only non-benign findings, so their benign findings
    are unlocalised), True otherwise.
``birads`` (breast BI-RADS string), ``density`` ("A"-"D"), ``study_id``, ``image_id``,
``image_size`` ``[H, W]`` from the CSV.

Split: the CSV's ``split`` column ("training" / "test") is the official split; validation is
carved patient-wise from its training part. With ``official_split=False`` patients are split with
``seed`` and the fractions, stratified by the worst class.
"""

from __future__ import annotations

import ast
import math
import os
from pathlib import Path
from typing import Any, Mapping

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
)
from monai_mammo.data.adapters.split import split_by_patient

COLUMNS = ("study_id", "image_id", "laterality", "view_position", "height", "width", "breast_birads",
           "breast_density", "finding_categories", "finding_birads", "xmin", "ymin", "xmax", "ymax", "split")
MASS = "mass"
CALCIFICATION = "suspicious calcification"
NO_FINDING = "no finding"
OFFICIAL_SPLITS = {"training": "training", "train": "training", "test": "test"}


def parse_categories(text: str) -> list[str]:
    """``"['Mass', 'Suspicious Calcification']"`` -> list of names; raises ValueError if malformed."""
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        raise ValueError(f"finding_categories {text!r} is not a list literal") from None
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"finding_categories {text!r} is not a list of strings")
    return [item.strip() for item in value]


def vindr_mammo_datalist(
    root: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    official_split: bool = True,
    birads_classes: Mapping[str, str] | None = None,
    stratify: bool = True,
    strict: bool = False,
    report: AdapterReport | None = None,
) -> dict[str, Any]:
    """Build the VinDr-Mammo datalist (see the module docstring for the keys).

    Args:
        root: the dataset folder (finding_annotations.csv, images/).
        out_dir: folder the datalist will be written to; paths are made relative to it.
            Default None: ``root``.
        seed, val_fraction, test_fraction: patient-wise split (defaults 0, 0.1, 0.2).
        official_split: honour the CSV's ``split`` column. Default True.
        birads_classes: BI-RADS -> "normal" / "benign" / "malignant". Default None: 1 normal,
            2-3 benign, 4-6 malignant.
        stratify: stratify a seeded split by the patient's worst class. Default True.
        strict: raise :class:`DatalistError` if anything was skipped. Default False.
        report: collects what was skipped; default None: a new one (logged as warnings).
    """
    root = Path(root)
    out_dir = Path(out_dir) if out_dir is not None else root
    report = report if report is not None else AdapterReport("vindr-mammo")
    csv_path = root / "finding_annotations.csv"
    if not csv_path.is_file():
        raise DatalistError(f"{root}: no finding_annotations.csv found")
    header, rows = read_csv_rows(csv_path)
    missing = [name for name in COLUMNS if name not in header]
    if missing:
        raise DatalistError(f"{csv_path}: header lacks column(s) {missing}")
    column = {name: header.index(name) for name in COLUMNS}

    records: list[dict[str, Any]] = []
    by_image: dict[str, dict[str, Any]] = {}
    official: dict[str, str] = {}
    bad_images: set[str] = set()
    for line, cells in rows:
        where = f"row {line}"
        if len(cells) < len(header):
            report.add(csv_path, where, f"{len(cells)} cells, expected {len(header)}")
            continue
        value = {name: cells[index].strip() for name, index in column.items()}
        image_id, study_id = value["image_id"], value["study_id"]
        if not image_id or not study_id:
            report.add(csv_path, where, "empty study_id or image_id")
            continue
        if image_id in bad_images:
            continue
        record = by_image.get(image_id)
        if record is None:
            record = _new_record(value, root, out_dir, birads_classes, csv_path, where, report)
            if record is None:
                bad_images.add(image_id)
                continue
            split = OFFICIAL_SPLITS.get(value["split"].lower())
            if official_split and split is None:
                report.add(csv_path, f"{where}, field 'split'", f"unknown split {value['split']!r}")
                bad_images.add(image_id)
                continue
            by_image[image_id] = record
            official[image_id] = split or "training"
            records.append(record)
        _add_finding(record, value, birads_classes, csv_path, where, report)

    splits, info = split_by_patient(
        records, val_fraction, test_fraction, seed,
        official=[official[r["image_id"]] for r in records] if official_split else None,
        stratum=(lambda r: 2 if r["label"][0] else int(bool(r["label"][1]))) if stratify else None,
        report=report,
    )
    report.raise_if_strict(strict)
    return {
        **dataset_metadata("VinDr-Mammo", "VinDr-Mammo full-field digital mammograms (Nguyen et al. 2023)", info,
                           report, labels={"label": ["malignant", "benign"], "box_labels": {"1": "benign mass",
                                                                                           "2": "malignant mass"}}),
        **splits,
    }


def _new_record(value: dict[str, str], root: Path, out_dir: Path, birads_classes: Mapping[str, str] | None,
                csv_path: Path, where: str, report: AdapterReport) -> dict[str, Any] | None:
    class_name = birads_class(value["breast_birads"], birads_classes)
    if class_name not in IMAGE_LABELS:
        report.add(csv_path, f"{where}, field 'breast_birads'",
                   f"BI-RADS {value['breast_birads']!r} has no class in the mapping")
        return None
    try:
        height, width = int(float(value["height"])), int(float(value["width"]))
        if height <= 0 or width <= 0:
            raise ValueError
    except ValueError:
        report.add(csv_path, f"{where}, field 'height'/'width'", f"invalid size {value['height']!r} x {value['width']!r}")
        return None
    image = root / "images" / value["study_id"] / f"{value['image_id']}.dicom"
    if not image.is_file() and image.with_suffix(".dcm").is_file():
        image = image.with_suffix(".dcm")
    if not image.is_file():
        report.add(csv_path, where, f"missing image file images/{value['study_id']}/{value['image_id']}.dicom")
        return None
    laterality = value["laterality"].upper()
    birads_number = value["breast_birads"].upper().replace("BI-RADS", "").strip()
    return {
        "image": datalist_path(image, out_dir),
        "label": list(IMAGE_LABELS[class_name]),
        "boxes": [],
        "box_labels": [],
        "calc_boxes": [],
        "calc_box_labels": [],
        "findings": [],
        "patient_id": value["study_id"],
        "laterality": laterality if laterality in ("L", "R") else "",
        "view": value["view_position"].upper(),
        "fully_labelled": birads_number != "2",
        "birads": value["breast_birads"],
        "density": value["breast_density"].upper().replace("DENSITY", "").strip(),
        "study_id": value["study_id"],
        "image_id": value["image_id"],
        "image_size": [height, width],
    }


def _add_finding(record: dict[str, Any], value: dict[str, str], birads_classes: Mapping[str, str] | None,
                 csv_path: Path, where: str, report: AdapterReport) -> None:
    try:
        categories = parse_categories(value["finding_categories"])
    except ValueError as error:
        report.add(csv_path, f"{where}, field 'finding_categories'", str(error), "skipped annotation")
        return
    lowered = {c.lower() for c in categories}
    if not categories or lowered == {NO_FINDING}:
        return
    coordinates = [value[name] for name in ("xmin", "ymin", "xmax", "ymax")]
    try:
        box = [float(c) for c in coordinates]
        if not all(math.isfinite(v) for v in box):
            raise ValueError
    except ValueError:
        report.add(csv_path, f"{where}, field 'xmin'..'ymax'", f"finding {categories} has no valid box {coordinates}",
                   "skipped annotation")
        return
    box = check_box(box, tuple(record["image_size"]), report, csv_path, where)
    if box is None:
        return
    lesion_class = birads_class(value["finding_birads"], birads_classes) or birads_class(record["birads"], birads_classes)
    lesion_label = BOX_LABELS.get(lesion_class or "benign", BOX_LABELS["benign"])
    record["findings"].append({"categories": categories, "birads": value["finding_birads"], "box": box})
    if MASS in lowered:
        record["boxes"].append(box)
        record["box_labels"].append(lesion_label)
    if CALCIFICATION in lowered:
        record["calc_boxes"].append(box)
        record["calc_box_labels"].append(lesion_label)
