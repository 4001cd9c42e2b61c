"""CBIS-DDSM -> MONAI datalist.

CBIS-DDSM (Lee et al., Scientific Data 4, 170177, 2017; TCIA) as distributed::

    ROOT/mass_case_description_train_set.csv   mass_case_description_test_set.csv
    ROOT/calc_case_description_train_set.csv   calc_case_description_test_set.csv
        patient_id, breast_density (mass) / breast density (calc), left or right breast, image view,
        abnormality id, abnormality type, mass shape, mass margins / calc type, calc distribution,
        assessment, pathology (MALIGNANT / BENIGN / BENIGN_WITHOUT_CALLBACK), subtlety,
        image file path, cropped image file path, ROI mask file path
    ROOT/[CBIS-DDSM/]<Mass|Calc>-<Training|Test>_P_00001_LEFT_CC[_1]/.../*.dcm

The CSV paths point into the DICOM tree. They are tried as given under ROOT and ROOT/CBIS-DDSM;
when the tree was downloaded with TCIA's newer folder names (``.../1.000000-full mammogram
images-24515/1-1.dcm``), the DICOMs are found under the CSV path's first folder instead. A known
fault of the CSVs is that the ROI mask and cropped image paths are sometimes swapped; the mask is
recognised by content (binary, the full image's size), so both listed files, and any other DICOM in
the abnormality's folder, are tried.

One record per view (patient, side, view): the abnormalities of both the mass and the calcification
CSVs are grouped onto it. A view in both sets has two full-image DICOM copies; the first (mass
set) is ``image`` and the others are listed in ``alternate_images``.

Record keys (besides those of :mod:`monai_mammo.data.adapters.datalist`):

``label``
    ``[y_malignant, y_benign]``: any MALIGNANT abnormality, any BENIGN(_WITHOUT_CALLBACK) one.
``boxes`` / ``box_labels``
    masses: bounding box of the ROI mask; 1 benign, 2 malignant.
``calc_boxes`` / ``calc_box_labels``
    calcification ROIs, same form (CBIS outlines calcification regions, not single µCs, so no
    ``points``).
``coarse_mask`` (default key, ``mask_key``)
    uint8 PNG (0/1), the union of the view's ROI masks, written to ``mask_dir``. CBIS-DDSM ROI masks
    are hand-drawn outlines, loose around the lesion, so they are the DESIGN's ``coarse_mask``, not
    an exact ``mask``; pass ``mask_key="mask"`` to treat them as exact.
``spacing``
    ``PixelSpacing`` / ``ImagerPixelSpacing`` of the full-image DICOM when present, else the
    ``spacing`` argument; left out when neither is known (the DDSM scanners digitised at 42-50 µm,
    but CBIS-DDSM keeps no scanner name to choose from).
``fully_labelled``
    False: CBIS-DDSM curated a subset of DDSM's abnormalities, so unannotated ones may remain.
``abnormalities``
    per ROI: ``{"id", "type" ("mass"/"calcification"), "pathology", "assessment", "subtlety",
    "shape", "margins" | "calc_type", "distribution", "box", "roi_mask" (DICOM path)}``.
``density`` (BI-RADS density 1-4), ``pathology`` (list of the view's pathologies),
``alternate_images``.

Split: the train/test CSVs are the official split (validation carved patient-wise from training).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from monai_mammo.data.adapters.datalist import (
    BOX_LABELS,
    AdapterReport,
    DatalistError,
    dataset_metadata,
    datalist_path,
    mask_to_box,
    read_csv_rows,
    write_mask_png,
)
from monai_mammo.data.adapters.split import split_by_patient

CSV_FILES = (
    ("mass_case_description_train_set.csv", "training"),
    ("mass_case_description_test_set.csv", "test"),
    ("calc_case_description_train_set.csv", "training"),
    ("calc_case_description_test_set.csv", "test"),
)
PATHOLOGY = {"MALIGNANT": "malignant", "BENIGN": "benign", "BENIGN_WITHOUT_CALLBACK": "benign"}
REQUIRED = ("patient id", "left or right breast", "image view", "abnormality id", "abnormality type", "pathology",
            "image file path", "roi mask file path")


def _key(name: str) -> str:
    return re.sub(r"[\s_]+", " ", name.strip().lower())


class _DicomTree:
    """Resolves CSV paths to DICOM files under the root, tolerating the newer TCIA folder names."""

    def __init__(self, root: Path) -> None:
        self.bases = [root, root / "CBIS-DDSM"]
        self._folders: dict[str, list[Path]] = {}

    def candidates(self, csv_path: str) -> list[Path]:
        relative = csv_path.strip().strip('"').replace("\\", "/").strip("/")
        if not relative:
            return []
        for base in self.bases:
            if (base / relative).is_file():
                return [base / relative]
        top = relative.split("/")[0]
        if top not in self._folders:
            found: list[Path] = []
            for base in self.bases:
                if (base / top).is_dir():
                    found = sorted((base / top).rglob("*.dcm"))
                    break
            self._folders[top] = found
        return self._folders[top]


def _header(path: Path) -> tuple[tuple[int, int], list[float] | None]:
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    size = (int(ds.Rows), int(ds.Columns))
    if min(size) <= 0:
        raise ValueError(f"zero-size image {size}")
    spacing = None
    for tag in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(tag)
        if value is not None and len(value) == 2 and float(value[0]) > 0 and float(value[1]) > 0:
            # DICOM gives (row spacing = y, column spacing = x); we store [sx, sy]
            spacing = [float(value[1]), float(value[0])]
            break
    return size, spacing


def _binary_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    """The ROI mask in ``path`` as bool, or ValueError when it is not a binary mask of ``size``."""
    import pydicom

    ds = pydicom.dcmread(path)
    if (int(ds.Rows), int(ds.Columns)) != size:
        raise ValueError(f"size {(int(ds.Rows), int(ds.Columns))} differs from the full image's {size}")
    pixels = ds.pixel_array
    if pixels.ndim != 2:
        raise ValueError(f"pixel array has shape {pixels.shape}, expected 2D")
    foreground = pixels != 0
    if np.count_nonzero(foreground & (pixels != pixels.max())):
        raise ValueError("not a binary mask (more than two grey levels)")
    return foreground


def cbis_ddsm_datalist(
    root: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    mask_dir: str | os.PathLike | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    official_split: bool = True,
    spacing: tuple[float, float] | None = None,
    mask_key: str = "coarse_mask",
    write_masks: bool = True,
    strict: bool = False,
    report: AdapterReport | None = None,
) -> dict[str, Any]:
    """Build the CBIS-DDSM datalist (see the module docstring for the keys).

    Args:
        root: folder with the four description CSVs and the DICOM tree (directly or in CBIS-DDSM/).
        out_dir: folder the datalist will be written to; paths are made relative to it.
            Default None: ``root``.
        mask_dir: where the per-view ROI mask unions go. Default None: ``<out_dir>/cbis_ddsm_masks``.
        seed, val_fraction, test_fraction: patient-wise split (defaults 0, 0.1, 0.2).
        official_split: honour the train/test CSVs. Default True.
        spacing: ``[sx, sy]`` mm for images whose DICOM has no pixel spacing. Default None (left out).
        mask_key: record key of the ROI mask union, ``"coarse_mask"`` (default) or ``"mask"``.
        write_masks: write the mask unions (default True).
        strict: raise :class:`DatalistError` if anything was skipped. Default False.
        report: collects what was skipped; default None: a new one (logged as warnings).
    """
    root = Path(root)
    out_dir = Path(out_dir) if out_dir is not None else root
    mask_dir = Path(mask_dir) if mask_dir is not None else out_dir / "cbis_ddsm_masks"
    report = report if report is not None else AdapterReport("cbis-ddsm")
    if mask_key not in ("coarse_mask", "mask"):
        raise ValueError(f"mask_key must be 'coarse_mask' or 'mask', got {mask_key!r}")
    csv_paths = [(root / name, side) for name, side in CSV_FILES if (root / name).is_file()]
    if not csv_paths:
        raise DatalistError(f"{root}: none of the CBIS-DDSM description CSVs {[n for n, _ in CSV_FILES]} found")
    tree = _DicomTree(root)
    views: dict[tuple[str, str, str], dict[str, Any]] = {}
    headers: dict[Path, tuple[tuple[int, int], list[float] | None]] = {}
    masks: dict[tuple[str, str, str], np.ndarray] = {}
    official: dict[tuple[str, str, str], str] = {}
    spacing_missing = 0

    for csv_path, side_of_split in csv_paths:
        header, rows = read_csv_rows(csv_path)
        column = {_key(name): index for index, name in enumerate(header)}
        missing = [name for name in REQUIRED if name not in column]
        if missing:
            raise DatalistError(f"{csv_path}: header lacks column(s) {missing}")

        for line, cells in rows:
            where = f"row {line}"

            def cell(name: str) -> str:
                index = column.get(name)
                return cells[index].strip() if index is not None and index < len(cells) else ""

            patient, side, view = cell("patient id"), cell("left or right breast").upper(), cell("image view").upper()
            if not patient or side not in ("LEFT", "RIGHT") or not view:
                report.add(csv_path, where, f"bad patient/side/view {(patient, side, view)}")
                continue
            key = (patient, side[0], view)
            image_candidates = tree.candidates(cell("image file path"))
            if len(image_candidates) != 1:
                reason = "missing" if not image_candidates else f"ambiguous ({len(image_candidates)} DICOMs)"
                report.add(csv_path, f"{where}, field 'image file path'",
                           f"{reason} full image {cell('image file path')!r}")
                continue
            image_path = image_candidates[0]
            if image_path not in headers:
                try:
                    headers[image_path] = _header(image_path)
                except Exception as error:
                    report.add(image_path, "DICOM header", f"cannot read the full image header: {error}")
                    continue
            size, header_spacing = headers[image_path]
            record = views.get(key)
            if record is None:
                record = {
                    "image": datalist_path(image_path, out_dir),
                    "label": [0, 0],
                    "boxes": [], "box_labels": [], "calc_boxes": [], "calc_box_labels": [],
                    "patient_id": patient, "laterality": side[0], "view": view,
                    "fully_labelled": False,
                    "density": None, "pathology": [], "abnormalities": [], "alternate_images": [],
                    "_size": size,
                }
                record_spacing = header_spacing or (list(spacing) if spacing is not None else None)
                if record_spacing is not None:
                    record["spacing"] = [float(record_spacing[0]), float(record_spacing[1])]
                else:
                    spacing_missing += 1
                views[key] = record
                official[key] = side_of_split
            elif datalist_path(image_path, out_dir) not in [record["image"], *record["alternate_images"]]:
                if size != record["_size"]:
                    report.add(image_path, where, f"copy of view {key} has size {size}, the first copy "
                               f"{record['_size']}; its abnormality is skipped", "skipped annotation")
                    continue
                record["alternate_images"].append(datalist_path(image_path, out_dir))
            if side_of_split == "test":
                official[key] = "test"
            density = cell("breast density")
            if density.isdigit() and record["density"] is None:
                record["density"] = int(density)

            pathology = cell("pathology").upper()
            if pathology not in PATHOLOGY:
                report.add(csv_path, f"{where}, field 'pathology'", f"unknown pathology {pathology!r}",
                           "skipped annotation")
                continue
            kind = cell("abnormality type").lower()
            if kind not in ("mass", "calcification"):
                report.add(csv_path, f"{where}, field 'abnormality type'", f"unknown type {kind!r}",
                           "skipped annotation")
                continue
            listed = [*tree.candidates(cell("roi mask file path")), *tree.candidates(cell("cropped image file path"))]
            mask, mask_path, errors = None, None, []
            for candidate in dict.fromkeys(p for p in listed if p != image_path):
                try:
                    mask, mask_path = _binary_mask(candidate, size), candidate
                    break
                except Exception as error:
                    errors.append(f"{candidate.name}: {error}")
            if mask is None:
                reason = "; ".join(errors) if errors else f"missing file {cell('roi mask file path')!r}"
                report.add(csv_path, f"{where}, field 'ROI mask file path'", f"no usable ROI mask ({reason})",
                           "skipped annotation")
                continue
            box = mask_to_box(mask)
            if box is None:
                report.add(mask_path, where, "ROI mask is empty", "skipped annotation")
                continue
            lesion_class = PATHOLOGY[pathology]
            label = BOX_LABELS[lesion_class]
            if kind == "mass":
                record["boxes"].append(box)
                record["box_labels"].append(label)
            else:
                record["calc_boxes"].append(box)
                record["calc_box_labels"].append(label)
            record["label"][0 if lesion_class == "malignant" else 1] = 1
            record["pathology"].append(pathology)
            abnormality = {
                "id": int(cell("abnormality id")) if cell("abnormality id").isdigit() else cell("abnormality id"),
                "type": kind, "pathology": pathology,
                "assessment": int(cell("assessment")) if cell("assessment").isdigit() else None,
                "subtlety": int(cell("subtlety")) if cell("subtlety").isdigit() else None,
                "box": box, "roi_mask": datalist_path(mask_path, out_dir),
            }
            if kind == "mass":
                abnormality.update(shape=cell("mass shape"), margins=cell("mass margins"))
            else:
                abnormality.update(calc_type=cell("calc type"), distribution=cell("calc distribution"))
            record["abnormalities"].append(abnormality)
            if key in masks:
                masks[key] |= mask
            else:
                masks[key] = mask

    if spacing_missing:
        report.add(root, "PixelSpacing", f"{spacing_missing} view(s) have no pixel spacing in the DICOM header and "
                   "no spacing argument; 'spacing' left out", "note")
    records = []
    for key, record in views.items():
        del record["_size"]
        if not record["abnormalities"]:
            report.add(record["image"], f"view {'/'.join(key)}", "no usable abnormality left for this view")
            continue
        if write_masks:
            name = f"{key[0]}_{key[1]}_{key[2]}_roi_mask.png"
            record[mask_key] = datalist_path(write_mask_png(masks[key], mask_dir / name), out_dir)
        records.append(record)

    splits, info = split_by_patient(
        records, val_fraction, test_fraction, seed,
        official=[official[(r["patient_id"], r["laterality"], r["view"])] for r in records] if official_split else None,
        stratum=lambda r: 2 if r["label"][0] else 1,
        report=report,
    )
    report.raise_if_strict(strict)
    return {
        **dataset_metadata("CBIS-DDSM", "Curated Breast Imaging Subset of DDSM (Lee et al. 2017)", info, report,
                           labels={"label": ["malignant", "benign"], "box_labels": {"1": "benign mass",
                                                                                   "2": "malignant mass"}}),
        **splits,
    }
