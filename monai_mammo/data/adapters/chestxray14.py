"""NIH ChestX-ray14 -> MONAI datalist.

ChestX-ray14 (Wang et al., CVPR 2017, "ChestX-ray8") as distributed::

    ROOT/Data_Entry_2017.csv   Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,
                               Patient Gender,View Position,OriginalImage[Width,Height],
                               OriginalImagePixelSpacing[x,y],
                               (the bracketed headers split into two cells each; the 2017 file has
                               a trailing comma and ages such as "058Y", the v2020 file neither)
    ROOT/BBox_List_2017.csv    Image Index,Finding Label,Bbox [x,y,w,h],,,   (x, y, w, h in four cells)
    ROOT/images*/.../*.png     the PNGs (1024 x 1024 in the release), found anywhere under ROOT
    ROOT/train_val_list.txt, ROOT/test_list.txt   the official patient-wise split (optional)

Record keys (besides those of :mod:`monai_mammo.data.adapters.datalist`):

``label``
    14 ints, multi-hot in :data:`CXR14_CLASSES` order; "No Finding" is all zeros.
``boxes`` / ``box_labels``
    ``[x0, y0, x1, y1] = [x, y, x + w, y + h]`` in pixels of the stored PNG (floats as given), and
    the class index into :data:`CXR14_CLASSES` (the CSV's "Infiltrate" is "Infiltration").
``spacing``
    ``OriginalImagePixelSpacing`` scaled from the original detector size to the stored PNG size:
    ``sx = spacing_x * OriginalWidth / stored_width`` (same for y); left out (with a note) when the
    CSV has no valid spacing.
``fully_labelled``
    True when the image has boxes and every positive label among the box classes has one. Images
    outside the box subset (including "No Finding" ones) were never localised, hence False.
``findings`` (class names), ``follow_up`` (int), ``age`` (years, or None), ``sex`` ("M"/"F"),
``acquired_size`` ``[H, W]`` and ``acquired_spacing`` ``[sx, sy]`` of the original acquisition.
``laterality`` is ``""``; ``view`` is the CSV's View Position (PA / AP).

Split: with ``official_split`` and both list files present, ``test_list.txt`` is the test set and
validation is carved patient-wise from ``train_val_list.txt``; an image in neither list is
reported and skipped. Otherwise patients are split with ``seed`` and the fractions, stratified by
whether the image has boxes, so boxes reach every split.

Example::

    datalist = chestxray14_datalist("/data/ChestX-ray14", out_dir="/data/ChestX-ray14")
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from monai_mammo.data.adapters.datalist import (
    AdapterReport,
    DatalistError,
    check_box,
    dataset_metadata,
    datalist_path,
    read_csv_rows,
)
from monai_mammo.data.adapters.split import split_by_patient

#: the 14 classes in the standard order (Wang et al. 2017); index = position in the label vector
CXR14_CLASSES: tuple[str, ...] = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
)
#: spellings in the CSVs that differ from the class list
CXR14_ALIASES: dict[str, str] = {"Infiltrate": "Infiltration", "Pleural Thickening": "Pleural_Thickening"}
#: the 8 classes that have boxes in BBox_List_2017.csv
CXR14_BOX_CLASSES: tuple[str, ...] = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia", "Pneumothorax",
)
NO_FINDING = "No Finding"


def class_index(name: str) -> int | None:
    """Index of a ChestX-ray14 class name (aliases allowed), None if unknown."""
    name = CXR14_ALIASES.get(name.strip(), name.strip())
    return CXR14_CLASSES.index(name) if name in CXR14_CLASSES else None


def _find(root: Path, names: tuple[str, ...], pattern: str) -> Path | None:
    for name in names:
        if (root / name).is_file():
            return root / name
    matches = sorted(root.glob(pattern))
    return matches[0] if matches else None


def _parse_age(text: str) -> float | None:
    match = re.fullmatch(r"0*(\d+)\s*([YMD]?)", text.strip().upper())
    if not match:
        return None
    value = int(match.group(1))
    return {"": value, "Y": value, "M": round(value / 12, 2), "D": round(value / 365, 2)}[match.group(2)]


def _index_pngs(root: Path, report: AdapterReport) -> dict[str, Path]:
    images: dict[str, Path] = {}
    for folder, subfolders, files in os.walk(root):
        subfolders.sort()
        for name in sorted(files):
            if name.lower().endswith(".png"):
                path = Path(folder) / name
                if name in images:
                    report.add(path, "", f"duplicate image name {name}; using {images[name]}", "note")
                    continue
                images[name] = path
    return images


def _read_list(path: Path) -> set[str]:
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def chestxray14_datalist(
    root: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    official_split: bool = True,
    image_size: tuple[int, int] | None = None,
    strict: bool = False,
    report: AdapterReport | None = None,
) -> dict[str, Any]:
    """Build the ChestX-ray14 datalist (see the module docstring for the keys).

    Args:
        root: the dataset folder (Data_Entry_2017.csv, BBox_List_2017.csv, PNGs anywhere below).
        out_dir: folder the datalist will be written to; paths are made relative to it.
            Default None: ``root``.
        seed, val_fraction, test_fraction: patient-wise split (defaults 0, 0.1, 0.2).
        official_split: use train_val_list.txt / test_list.txt when both exist. Default True.
        image_size: ``(H, W)`` of every stored PNG (the release uses (1024, 1024)), which saves
            opening each PNG header. Default None: read each PNG's size.
        strict: raise :class:`DatalistError` if anything was skipped. Default False.
        report: collects what was skipped; default None: a new one (logged as warnings).
    """
    root = Path(root)
    out_dir = Path(out_dir) if out_dir is not None else root
    report = report if report is not None else AdapterReport("chestxray14")
    if not root.is_dir():
        raise DatalistError(f"{root}: ChestX-ray14 root folder does not exist")
    entry_path = _find(root, ("Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv"), "Data_Entry*.csv")
    if entry_path is None:
        raise DatalistError(f"{root}: no Data_Entry_2017.csv found")
    header, rows = read_csv_rows(entry_path)
    # positional columns: the bracketed headers are split across cells, so find them by prefix
    width_column = next((i for i, c in enumerate(header) if c.startswith("OriginalImage[")), 7)
    spacing_column = next((i for i, c in enumerate(header) if c.startswith("OriginalImagePixelSpacing")), 9)
    if len(header) < 9 or not header[0].startswith("Image Index"):
        raise DatalistError(f"{entry_path}: header {header} is not the Data_Entry_2017 header")

    pngs = _index_pngs(root, report)
    records: list[dict[str, Any]] = []
    by_image: dict[str, dict[str, Any]] = {}
    sizes: dict[str, tuple[int, int]] = {}
    for line, cells in rows:
        where = f"row {line}"
        if len(cells) < spacing_column:
            report.add(entry_path, where, f"{len(cells)} cells, expected at least {spacing_column}")
            continue
        name, finding_text, follow_up, patient, age, sex, view = (c.strip() for c in cells[:7])
        if name in by_image:
            report.add(entry_path, where, f"duplicate row for {name}")
            continue
        findings = [f.strip() for f in finding_text.split("|") if f.strip()]
        label = [0] * len(CXR14_CLASSES)
        unknown = [f for f in findings if f != NO_FINDING and class_index(f) is None]
        if unknown or not findings:
            report.add(entry_path, f"{where}, field 'Finding Labels'",
                       f"unknown finding(s) {unknown}" if unknown else "empty Finding Labels")
            continue
        for finding in findings:
            if finding != NO_FINDING:
                label[class_index(finding)] = 1
        if not patient:
            report.add(entry_path, f"{where}, field 'Patient ID'", "empty Patient ID")
            continue
        path = pngs.get(name)
        if path is None:
            report.add(entry_path, where, f"missing image file {name}")
            continue
        try:
            if image_size is not None:
                stored = (int(image_size[0]), int(image_size[1]))
            else:
                from PIL import Image

                with Image.open(path) as image:
                    stored = (image.height, image.width)
        except Exception as error:
            report.add(path, "PNG header", f"cannot read the image size: {error}")
            continue
        record: dict[str, Any] = {
            "image": datalist_path(path, out_dir),
            "label": label,
            "boxes": [],
            "box_labels": [],
        }
        try:
            acquired = [int(float(cells[width_column + 1])), int(float(cells[width_column]))]
            acquired_spacing = [float(cells[spacing_column]), float(cells[spacing_column + 1])]
            if min(acquired) <= 0 or min(acquired_spacing) <= 0:
                raise ValueError("not positive")
            record["spacing"] = [round(acquired_spacing[0] * acquired[1] / stored[1], 6),
                                 round(acquired_spacing[1] * acquired[0] / stored[0], 6)]
        except (ValueError, IndexError):
            acquired, acquired_spacing = None, None
            report.add(entry_path, f"{where}, field 'OriginalImage/OriginalImagePixelSpacing'",
                       "no valid original size and spacing; spacing left out", "note")
        record.update({
            "patient_id": patient,
            "laterality": "",
            "view": view.upper(),
            "fully_labelled": False,
            "findings": [f for f in findings if f != NO_FINDING],
            "follow_up": int(follow_up) if follow_up.isdigit() else None,
            "age": _parse_age(age),
            "sex": sex.upper(),
            "acquired_size": acquired,
            "acquired_spacing": acquired_spacing,
        })
        by_image[name] = record
        sizes[name] = stored
        records.append(record)

    bbox_path = _find(root, ("BBox_List_2017.csv",), "BBox_List*.csv")
    if bbox_path is None:
        report.add(root, "BBox_List_2017.csv", "no box file; no boxes", "note")
    else:
        _, bbox_rows = read_csv_rows(bbox_path)
        for line, cells in bbox_rows:
            where = f"row {line}"
            if len(cells) < 6:
                report.add(bbox_path, where, f"{len(cells)} cells, expected 6 (Image Index, Finding Label, x, y, w, h)",
                           "skipped annotation")
                continue
            name, finding = cells[0].strip(), cells[1].strip()
            index = class_index(finding)
            if index is None:
                report.add(bbox_path, f"{where}, field 'Finding Label'", f"unknown class {finding!r}",
                           "skipped annotation")
                continue
            record = by_image.get(name)
            if record is None:
                report.add(bbox_path, where, f"image {name} has no usable Data_Entry row", "skipped annotation")
                continue
            try:
                x, y, w, h = (float(c) for c in cells[2:6])
            except ValueError:
                report.add(bbox_path, f"{where}, field 'Bbox [x,y,w,h]'", f"not numbers: {cells[2:6]}",
                           "skipped annotation")
                continue
            box = check_box([x, y, x + w, y + h], sizes[name], report, bbox_path, where)
            if box is None:
                continue
            if not record["label"][index]:
                report.add(bbox_path, where, f"box class {CXR14_CLASSES[index]} is not in the image's Finding Labels",
                           "note")
            record["boxes"].append(box)
            record["box_labels"].append(index)
        for record in records:
            boxed = set(record["box_labels"])
            positives = {i for i, c in enumerate(CXR14_CLASSES) if record["label"][i] and c in CXR14_BOX_CLASSES}
            record["fully_labelled"] = bool(boxed) and positives <= boxed

    official = None
    train_list, test_list = root / "train_val_list.txt", root / "test_list.txt"
    if official_split and train_list.is_file() and test_list.is_file():
        train_names, test_names = _read_list(train_list), _read_list(test_list)
        names = {id(r): n for n, r in by_image.items()}
        kept, official = [], []
        for record in records:
            name = names[id(record)]
            side = "test" if name in test_names else "training" if name in train_names else None
            if side is None:
                report.add(entry_path, name, "image is in neither train_val_list.txt nor test_list.txt")
                continue
            kept.append(record)
            official.append(side)
        records = kept

    splits, info = split_by_patient(records, val_fraction, test_fraction, seed, official=official,
                                    stratum=None if official is not None else (lambda r: int(bool(r["boxes"]))),
                                    report=report)
    report.raise_if_strict(strict)
    return {
        **dataset_metadata("ChestX-ray14", "NIH ChestX-ray14 chest radiographs (Wang et al. 2017)", info, report,
                           labels=list(CXR14_CLASSES)),
        **splits,
    }
