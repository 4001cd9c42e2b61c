"""CBIS-DDSM adapter on a small fixture in the real CSV and DICOM-tree formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from monai_mammo.data.adapters.cbis_ddsm import cbis_ddsm_datalist
from monai_mammo.data.adapters.datalist import AdapterReport, DatalistError

H, W = 40, 30
MASS_HEADER = ("patient_id,breast_density,left or right breast,image view,abnormality id,abnormality type,"
               "mass shape,mass margins,assessment,pathology,subtlety,image file path,cropped image file path,"
               "ROI mask file path")
CALC_HEADER = ("patient_id,breast density,left or right breast,image view,abnormality id,abnormality type,"
               "calc type,calc distribution,assessment,pathology,subtlety,image file path,cropped image file path,"
               "ROI mask file path")


def write_dicom(path: Path, pixels: np.ndarray, spacing: float | None = None) -> None:
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "MG"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PixelRepresentation = 1, "MONOCHROME2", 0
    bits = pixels.dtype.itemsize * 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    if spacing is not None:
        ds.PixelSpacing = [spacing, spacing]
    ds.PixelData = pixels.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def full_image() -> np.ndarray:
    return (np.arange(H * W, dtype=np.uint16).reshape(H, W) * 7) % 4096


def roi(rows: slice, cols: slice, shape: tuple[int, int] = (H, W)) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[rows, cols] = 255
    return mask


@pytest.fixture()
def cbis_root(tmp_path: Path) -> Path:
    root = tmp_path / "cbis"
    crop = (np.arange(36, dtype=np.uint16).reshape(6, 6) * 50)
    # P_00001 LEFT CC: CSV layout as given; abnormality 2 has mask and crop paths swapped
    write_dicom(root / "Mass-Training_P_00001_LEFT_CC/1.3.1/1.3.2/000000.dcm", full_image())
    write_dicom(root / "Mass-Training_P_00001_LEFT_CC_1/1.3.3/1.3.4/000000.dcm", crop)
    write_dicom(root / "Mass-Training_P_00001_LEFT_CC_1/1.3.3/1.3.4/000001.dcm", roi(slice(5, 10), slice(10, 20)))
    write_dicom(root / "Mass-Training_P_00001_LEFT_CC_2/1.3.5/1.3.6/000000.dcm", roi(slice(20, 25), slice(2, 6)))
    write_dicom(root / "Mass-Training_P_00001_LEFT_CC_2/1.3.5/1.3.6/000001.dcm", crop)
    # P_00002 RIGHT MLO: the newer TCIA folder names, under CBIS-DDSM/
    tcia = root / "CBIS-DDSM"
    write_dicom(tcia / "Mass-Training_P_00002_RIGHT_MLO/07-20-2016-DDSM-1/1.000000-full mammogram images-1/1-1.dcm",
                full_image(), spacing=0.05)
    write_dicom(tcia / "Mass-Training_P_00002_RIGHT_MLO_1/07-21-2016-DDSM-2/1.000000-ROI mask images-2/1-1.dcm", crop)
    write_dicom(tcia / "Mass-Training_P_00002_RIGHT_MLO_1/07-21-2016-DDSM-2/1.000000-ROI mask images-2/1-2.dcm",
                roi(slice(30, 40), slice(25, 30)))
    # P_00004 LEFT MLO: exists, but its only abnormality has an unknown pathology
    write_dicom(root / "Mass-Training_P_00004_LEFT_MLO/1.4.1/1.4.2/000000.dcm", full_image())
    # P_00005 RIGHT CC (test set), and P_00001 RIGHT CC in the test set too
    write_dicom(root / "Mass-Test_P_00005_RIGHT_CC/1.5.1/1.5.2/000000.dcm", full_image())
    write_dicom(root / "Mass-Test_P_00005_RIGHT_CC_1/1.5.3/1.5.4/000000.dcm", roi(slice(0, 3), slice(0, 3)))
    write_dicom(root / "Mass-Test_P_00001_RIGHT_CC/1.6.1/1.6.2/000000.dcm", full_image())
    write_dicom(root / "Mass-Test_P_00001_RIGHT_CC_1/1.6.3/1.6.4/000000.dcm", roi(slice(1, 2), slice(1, 2)))
    # calcification set: P_00001 LEFT CC again (second copy of the view), an empty and a wrong-size mask
    write_dicom(root / "Calc-Training_P_00001_LEFT_CC/1.7.1/1.7.2/000000.dcm", full_image())
    write_dicom(root / "Calc-Training_P_00001_LEFT_CC_1/1.7.3/1.7.4/000000.dcm", roi(slice(12, 14), slice(3, 8)))
    write_dicom(root / "Calc-Training_P_00001_LEFT_CC_2/1.7.5/1.7.6/000000.dcm", roi(slice(0, 0), slice(0, 0)))
    write_dicom(root / "Calc-Training_P_00001_LEFT_CC_3/1.7.7/1.7.8/000000.dcm",
                roi(slice(0, 5), slice(0, 5), shape=(20, 15)))

    mass_train = [
        MASS_HEADER,
        'P_00001,3,LEFT,CC,1,mass,IRREGULAR,SPICULATED,5,MALIGNANT,5,'
        'Mass-Training_P_00001_LEFT_CC/1.3.1/1.3.2/000000.dcm,'
        'Mass-Training_P_00001_LEFT_CC_1/1.3.3/1.3.4/000000.dcm,'
        '"Mass-Training_P_00001_LEFT_CC_1/1.3.3/1.3.4/000001.dcm\n"',
        'P_00001,3,LEFT,CC,2,mass,OVAL,CIRCUMSCRIBED,3,BENIGN_WITHOUT_CALLBACK,2,'
        'Mass-Training_P_00001_LEFT_CC/1.3.1/1.3.2/000000.dcm,'
        'Mass-Training_P_00001_LEFT_CC_2/1.3.5/1.3.6/000000.dcm,'
        '"Mass-Training_P_00001_LEFT_CC_2/1.3.5/1.3.6/000001.dcm\n"',
        'P_00002,2,RIGHT,MLO,1,mass,ROUND,OBSCURED,4,BENIGN,3,'
        'Mass-Training_P_00002_RIGHT_MLO/1.2.1/1.2.2/000000.dcm,'
        'Mass-Training_P_00002_RIGHT_MLO_1/1.2.3/1.2.4/000000.dcm,'
        '"Mass-Training_P_00002_RIGHT_MLO_1/1.2.3/1.2.4/000001.dcm\n"',
        'P_00003,2,LEFT,CC,1,mass,ROUND,OBSCURED,4,BENIGN,3,'
        'Mass-Training_P_00003_LEFT_CC/1.9.1/1.9.2/000000.dcm,x/000000.dcm,"x/000001.dcm\n"',
        'P_00004,2,LEFT,MLO,1,mass,ROUND,OBSCURED,4,UNPROVEN,3,'
        'Mass-Training_P_00004_LEFT_MLO/1.4.1/1.4.2/000000.dcm,x/000000.dcm,"x/000001.dcm\n"',
    ]
    mass_test = [
        MASS_HEADER,
        'P_00005,4,RIGHT,CC,1,mass,LOBULATED,ILL_DEFINED,4,MALIGNANT,4,'
        'Mass-Test_P_00005_RIGHT_CC/1.5.1/1.5.2/000000.dcm,Mass-Test_P_00005_RIGHT_CC_1/1.5.3/1.5.4/000001.dcm,'
        '"Mass-Test_P_00005_RIGHT_CC_1/1.5.3/1.5.4/000000.dcm\n"',
        'P_00001,3,RIGHT,CC,1,mass,OVAL,CIRCUMSCRIBED,2,BENIGN,3,'
        'Mass-Test_P_00001_RIGHT_CC/1.6.1/1.6.2/000000.dcm,Mass-Test_P_00001_RIGHT_CC_1/1.6.3/1.6.4/000001.dcm,'
        '"Mass-Test_P_00001_RIGHT_CC_1/1.6.3/1.6.4/000000.dcm\n"',
    ]
    calc_train = [
        CALC_HEADER,
        'P_00001,3,LEFT,CC,1,calcification,PLEOMORPHIC,CLUSTERED,4,MALIGNANT,3,'
        'Calc-Training_P_00001_LEFT_CC/1.7.1/1.7.2/000000.dcm,x/000000.dcm,'
        '"Calc-Training_P_00001_LEFT_CC_1/1.7.3/1.7.4/000000.dcm\n"',
        'P_00001,3,LEFT,CC,2,calcification,PUNCTATE,CLUSTERED,2,BENIGN,3,'
        'Calc-Training_P_00001_LEFT_CC/1.7.1/1.7.2/000000.dcm,x/000000.dcm,'
        '"Calc-Training_P_00001_LEFT_CC_2/1.7.5/1.7.6/000000.dcm\n"',
        'P_00001,3,LEFT,CC,3,calcification,PUNCTATE,CLUSTERED,2,BENIGN,3,'
        'Calc-Training_P_00001_LEFT_CC/1.7.1/1.7.2/000000.dcm,x/000000.dcm,'
        '"Calc-Training_P_00001_LEFT_CC_3/1.7.7/1.7.8/000000.dcm\n"',
    ]
    for name, lines in (("mass_case_description_train_set.csv", mass_train),
                        ("mass_case_description_test_set.csv", mass_test),
                        ("calc_case_description_train_set.csv", calc_train)):
        (root / name).write_text("\n".join(lines) + "\n")
    return root


def views(datalist: dict) -> dict[tuple[str, str, str], tuple[str, dict]]:
    return {(r["patient_id"], r["laterality"], r["view"]): (s, r)
            for s in ("training", "validation", "test") for r in datalist[s]}


def test_cbis_ddsm_records(cbis_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = AdapterReport(log=False)
    datalist = cbis_ddsm_datalist(cbis_root, out_dir=out, report=report, spacing=(0.042, 0.042))
    records = views(datalist)
    assert sorted(records) == [("P_00001", "L", "CC"), ("P_00001", "R", "CC"), ("P_00002", "R", "MLO"),
                               ("P_00005", "R", "CC")]
    split, first = records[("P_00001", "L", "CC")]
    assert first["image"] == "../cbis/Mass-Training_P_00001_LEFT_CC/1.3.1/1.3.2/000000.dcm"
    assert first["alternate_images"] == ["../cbis/Calc-Training_P_00001_LEFT_CC/1.7.1/1.7.2/000000.dcm"]
    assert first["boxes"] == [[10, 5, 20, 10], [2, 20, 6, 25]] and first["box_labels"] == [2, 1]
    assert first["calc_boxes"] == [[3, 12, 8, 14]] and first["calc_box_labels"] == [2]
    assert first["label"] == [1, 1] and first["density"] == 3 and first["fully_labelled"] is False
    assert first["spacing"] == [0.042, 0.042] and "mask" not in first
    assert [a["id"] for a in first["abnormalities"]] == [1, 2, 1]
    assert first["abnormalities"][1]["roi_mask"].endswith("_LEFT_CC_2/1.3.5/1.3.6/000000.dcm")  # swapped paths
    assert first["abnormalities"][0]["shape"] == "IRREGULAR" and first["abnormalities"][2]["calc_type"] == "PLEOMORPHIC"
    union = np.asarray(Image.open(out / first["coarse_mask"]))
    assert union.dtype == np.uint8 and union.shape == (H, W) and set(np.unique(union)) == {0, 1}
    assert union.sum() == 5 * 10 + 5 * 4 + 2 * 5

    _, second = records[("P_00002", "R", "MLO")]
    assert second["image"].startswith("../cbis/CBIS-DDSM/Mass-Training_P_00002_RIGHT_MLO/")
    assert second["boxes"] == [[25, 30, 30, 40]] and second["label"] == [0, 1] and second["spacing"] == [0.05, 0.05]

    # P_00001 is in the official test set through its right CC, so all its views are in test
    assert split == "test" and records[("P_00001", "R", "CC")][0] == "test"
    assert records[("P_00005", "R", "CC")][0] == "test" and records[("P_00002", "R", "MLO")][0] != "test"

    found = {(Path(i.source).name, i.location.split(",")[0], i.action) for i in report.issues}
    assert ("mass_case_description_train_set.csv", "row 5", "skipped record") in found  # P_00003 no image
    assert ("mass_case_description_train_set.csv", "row 6", "skipped annotation") in found  # pathology
    assert ("calc_case_description_train_set.csv", "row 4", "skipped annotation") in found  # wrong size
    assert any(i.reason == "ROI mask is empty" for i in report.issues)
    assert any("P_00004" in i.location and i.action == "skipped record" for i in report.issues)
    assert any(i.action == "note" and "P_00001" in i.location for i in report.issues)


def test_cbis_ddsm_options(cbis_root: Path, tmp_path: Path) -> None:
    kwargs = dict(out_dir=tmp_path, official_split=False, seed=5, val_fraction=0.25, test_fraction=0.25,
                  mask_key="mask", write_masks=True)
    first = cbis_ddsm_datalist(cbis_root, report=AdapterReport(log=False), **kwargs)
    again = cbis_ddsm_datalist(cbis_root, report=AdapterReport(log=False), **kwargs)
    assert first == again
    owner: dict[str, str] = {}
    for split in ("training", "validation", "test"):
        for record in first[split]:
            assert owner.setdefault(record["patient_id"], split) == split
            assert "mask" in record and "coarse_mask" not in record
    with pytest.raises(DatalistError, match="strict mode"):
        cbis_ddsm_datalist(cbis_root, out_dir=tmp_path, strict=True, report=AdapterReport(log=False))
    with pytest.raises(DatalistError, match="description CSVs"):
        cbis_ddsm_datalist(tmp_path / "nothing")
