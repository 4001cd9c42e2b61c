"""INbreast adapter on a small fixture written in the real INbreast layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from monai_mammo.data.adapters.datalist import AdapterReport, DatalistError
from monai_mammo.data.adapters.inbreast import inbreast_datalist, parse_point

HEIGHT, WIDTH = 48, 64


def write_dicom(path: Path, rows: int = HEIGHT, columns: int = WIDTH) -> None:
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MG"
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 14, 13, 0
    ds.PixelData = np.zeros((rows, columns), np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def roi_xml(rois: list[tuple[str, list[str]]]) -> str:
    """An OsiriX ROI plist as INbreast ships them (trimmed to the keys that matter)."""
    body = []
    for index, (name, points) in enumerate(rois):
        point_strings = "".join(f"\n\t\t\t\t\t\t<string>{p}</string>" for p in points)
        body.append(f"""
\t\t\t\t<dict>
\t\t\t\t\t<key>Area</key>
\t\t\t\t\t<real>0.0</real>
\t\t\t\t\t<key>Center</key>
\t\t\t\t\t<string>(0.000000, 0.000000, 0.000000)</string>
\t\t\t\t\t<key>IndexInImage</key>
\t\t\t\t\t<integer>{index}</integer>
\t\t\t\t\t<key>Name</key>
\t\t\t\t\t<string>{name}</string>
\t\t\t\t\t<key>NumberOfPoints</key>
\t\t\t\t\t<integer>{len(points)}</integer>
\t\t\t\t\t<key>Point_mm</key>
\t\t\t\t\t<array/>
\t\t\t\t\t<key>Point_px</key>
\t\t\t\t\t<array>{point_strings}
\t\t\t\t\t</array>
\t\t\t\t\t<key>Type</key>
\t\t\t\t\t<integer>15</integer>
\t\t\t\t</dict>""")
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
\t<key>Images</key>
\t<array>
\t\t<dict>
\t\t\t<key>ImageIndex</key>
\t\t\t<integer>0</integer>
\t\t\t<key>NumberOfROIs</key>
\t\t\t<integer>{len(rois)}</integer>
\t\t\t<key>ROIs</key>
\t\t\t<array>{''.join(body)}
\t\t\t</array>
\t\t</dict>
\t</array>
</dict>
</plist>
"""


@pytest.fixture()
def inbreast_root(tmp_path: Path) -> Path:
    root = tmp_path / "INbreast"
    images = [
        ("1001", "aaa111", "R", "CC"),
        ("1002", "aaa111", "R", "MLO"),
        ("1003", "bbb222", "L", "CC"),
        ("1004", "ccc333", "L", "MLO"),
        ("1006", "ddd444", "L", "CC"),
        ("1007", "eee555", "R", "CC"),
    ]
    for file_id, patient, side, view in images:
        write_dicom(root / "AllDICOMs" / f"{file_id}_{patient}_MG_{side}_{view}_ANON.dcm")
    csv_lines = [
        "Patient ID;Patient age;Laterality;View;Acquisition date;File Name;ACR;Bi-Rads",
        "removed;removed;R;CC;201001;1001;2;4c",
        "removed;removed;R;MLO;201001;1002;2;2",
        "removed;removed;L;CC;200905;1003;1;1",
        "removed;removed;L;MLO;200905;1004;3;0",  # BI-RADS 0: no class -> skipped
        "removed;removed;L;CC;200905;1005;3;2",  # no DICOM -> skipped
        "removed;removed;L;CC;200905;1006;4;3",
        "removed;removed;R;CC;200905;1007;4;5",
        "",
    ]
    (root / "INbreast.csv").write_bytes("\r\n".join(csv_lines).encode("latin-1"))
    xml = root / "AllXML"
    xml.mkdir()
    (xml / "1001.xml").write_text(roi_xml([
        ("Mass", ["(10.000000, 10.000000)", "(20.000000, 10.000000)", "(20.000000, 18.000000)",
                  "(10.000000, 18.000000)"]),
        ("Calcification", ["(30.000000, 5.000000)"]),
        ("Calcification", ["(40.000000, 40.000000)", "(41.000000, 40.000000)", "(41.000000, 41.000000)"]),
        ("Cluster", ["(25.000000, 20.000000)", "(35.000000, 20.000000)", "(35.000000, 30.000000)"]),
        ("Distortion", ["(50.000000, 30.000000)", "(55.000000, 35.000000)", "(50.000000, 40.000000)"]),
        ("Calcification", ["(12.5; 3)"]),  # malformed -> skipped annotation
    ]))
    (xml / "1002.xml").write_text(roi_xml([
        # sticks out of the 64-wide image on the right -> clipped box, reported
        ("Mass", ["(58.000000, 2.000000)", "(70.000000, 2.000000)", "(70.000000, 6.000000)",
                  "(58.000000, 6.000000)"]),
        ("Calcification", ["(100.000000, 100.000000)"]),  # outside -> skipped annotation
    ]))
    (xml / "1006.xml").write_text("<plist><dict><key>Images</key>")  # truncated
    (xml / "1007.xml").write_text(roi_xml([("Calcification", ["(3.000000, 4.000000)"])]))
    return root


def by_file(datalist: dict) -> dict:
    return {r["file_id"]: r for split in ("training", "validation", "test") for r in datalist[split]}


def test_parse_point() -> None:
    assert parse_point("(1639.000000, 1345.500000)") == (1639.0, 1345.5)
    with pytest.raises(ValueError, match="malformed"):
        parse_point("(1; 2)")


def test_inbreast_records(inbreast_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = AdapterReport("inbreast", log=False)
    datalist = inbreast_datalist(inbreast_root, out_dir=out, report=report, val_fraction=0.25, test_fraction=0.25)
    records = by_file(datalist)
    assert sorted(records) == ["1001", "1002", "1003", "1006", "1007"]

    first = records["1001"]
    assert first["image"] == "../INbreast/AllDICOMs/1001_aaa111_MG_R_CC_ANON.dcm"
    assert first["patient_id"] == "aaa111" and first["laterality"] == "R" and first["view"] == "CC"
    assert first["label"] == [1, 0] and first["birads"] == "4c" and first["density"] == 2
    assert first["boxes"] == [[10, 10, 21, 19]] and first["box_labels"] == [2]
    assert first["points"] == [[30, 5], [40.67, 40.33]]
    assert first["calc_boxes"] == [[25, 20, 36, 31]] and first["calc_box_labels"] == [2]
    assert first["findings"] == [{"name": "Distortion", "box": [50, 30, 56, 41]}]
    assert first["spacing"] == [0.07, 0.07] and first["fully_labelled"] is True
    mask = np.asarray(Image.open(out / first["mask"]))
    assert mask.dtype == np.uint8 and mask.shape == (HEIGHT, WIDTH)
    assert mask.sum() == 11 * 9 and mask[10:19, 10:21].all()

    second = records["1002"]
    assert second["label"] == [0, 1] and second["box_labels"] == [1]
    assert second["boxes"] == [[58, 2, 64, 7]] and second["points"] == []

    normal = records["1003"]
    assert normal["label"] == [0, 0] and normal["boxes"] == [] and "mask" not in normal
    assert normal["fully_labelled"] is True
    assert records["1006"]["fully_labelled"] is False and records["1006"]["label"] == [0, 1]
    assert records["1007"]["points"] == [[3, 4]] and "mask" not in records["1007"]

    reasons = {(Path(i.source).name, i.action, i.reason.split(" ")[0]) for i in report.issues}
    assert ("INbreast.csv", "skipped record", "BI-RADS") in reasons
    assert ("INbreast.csv", "skipped record", "no") in reasons  # 1005 has no DICOM
    assert ("1001.xml", "skipped annotation", "malformed") in reasons
    assert ("1002.xml", "clipped box", "box") in reasons
    assert ("1002.xml", "skipped annotation", "point") in reasons
    assert ("1006.xml", "skipped annotation", "not") in reasons
    assert report.counts()["skipped record"] == 2


def test_inbreast_patient_split(inbreast_root: Path, tmp_path: Path) -> None:
    kwargs = dict(out_dir=tmp_path, val_fraction=0.2, test_fraction=0.2, seed=3, stratify=False)
    first = inbreast_datalist(inbreast_root, report=AdapterReport(log=False), **kwargs)
    second = inbreast_datalist(inbreast_root, report=AdapterReport(log=False), **kwargs)
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    patients = {split: {r["patient_id"] for r in first[split]} for split in ("training", "validation", "test")}
    assert not (patients["training"] & patients["validation"]) and not (patients["training"] & patients["test"])
    assert not (patients["validation"] & patients["test"])
    sides = [split for split, ids in patients.items() if "aaa111" in ids]
    assert len(sides) == 1 and sum(len(first[s]) for s in patients) == 5
    assert [len(patients[s]) for s in ("training", "validation", "test")] == [2, 1, 1]


def test_inbreast_strict_and_mapping(inbreast_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DatalistError, match="strict mode"):
        inbreast_datalist(inbreast_root, out_dir=tmp_path, strict=True, report=AdapterReport(log=False))
    mapping = {"0": "normal", "1": "normal", "2": "benign", "3": "benign", "4": "benign", "5": "malignant"}
    datalist = inbreast_datalist(inbreast_root, out_dir=tmp_path, birads_classes=mapping, write_masks=False,
                                 report=AdapterReport(log=False))
    records = by_file(datalist)
    assert records["1004"]["label"] == [0, 0]
    assert records["1001"]["label"] == [0, 1] and records["1001"]["box_labels"] == [1]
    assert "mask" not in records["1001"]


def test_inbreast_missing_csv(tmp_path: Path) -> None:
    (tmp_path / "INbreast.xls").write_bytes(b"\xd0\xcf")
    with pytest.raises(DatalistError, match="INbreast.xls"):
        inbreast_datalist(tmp_path)
