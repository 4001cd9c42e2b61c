"""VinDr-Mammo adapter on a small fixture written in the real finding_annotations.csv format."""

from __future__ import annotations

from pathlib import Path

import pytest

from monai_mammo.data.adapters.datalist import AdapterReport, DatalistError
from monai_mammo.data.adapters.vindr_mammo import parse_categories, vindr_mammo_datalist

HEADER = ("study_id,series_id,image_id,laterality,view_position,height,width,breast_birads,breast_density,"
          "finding_categories,finding_birads,xmin,ymin,xmax,ymax,split")
ROWS = [
    # s1: two images of one exam, a malignant mass + calcification box and a normal view
    's1,se1,i1,L,CC,3518,2800,BI-RADS 4,DENSITY C,"[\'Mass\', \'Suspicious Calcification\']",BI-RADS 4,'
    '100.5,200.25,300.75,410.0,training',
    's1,se1,i1,L,CC,3518,2800,BI-RADS 4,DENSITY C,"[\'Architectural Distortion\']",BI-RADS 3,'
    '2700.0,3400.0,2900.0,3600.0,training',
    's1,se1,i2,R,MLO,3518,2800,BI-RADS 1,DENSITY C,"[\'No Finding\']",,,,,,training',
    # s2: a benign-assessed mass, but the breast is BI-RADS 3
    's2,se2,i3,R,CC,3518,2800,BI-RADS 3,DENSITY B,"[\'Mass\']",BI-RADS 3,10,20,30,40,test',
    's2,se2,i4,R,MLO,3518,2800,BI-RADS 2,DENSITY B,"[\'No Finding\']",,,,,,test',
    # s3: malformed categories, an empty box, and an image that is missing on disk
    's3,se3,i5,L,CC,3518,2800,BI-RADS 5,DENSITY D,"[Mass",BI-RADS 5,10,20,30,40,training',
    's3,se3,i5,L,CC,3518,2800,BI-RADS 5,DENSITY D,"[\'Mass\']",BI-RADS 5,50,60,50,80,training',
    's3,se3,i5,L,CC,3518,2800,BI-RADS 5,DENSITY D,"[\'Mass\']",,1000,1100,1200,1300,training',
    's3,se3,i6,L,MLO,3518,2800,BI-RADS 5,DENSITY D,"[\'No Finding\']",,,,,,training',
    # s4: a box without coordinates, and an unknown split
    's4,se4,i7,L,CC,3518,2800,BI-RADS 4,DENSITY A,"[\'Suspicious Calcification\']",BI-RADS 4,,,,,training',
    's4,se4,i8,L,MLO,3518,2800,BI-RADS 1,DENSITY A,"[\'No Finding\']",,,,,,validation',
]
PRESENT = {("s1", "i1"), ("s1", "i2"), ("s2", "i3"), ("s2", "i4"), ("s3", "i5"), ("s4", "i7"), ("s4", "i8")}


@pytest.fixture()
def vindr_root(tmp_path: Path) -> Path:
    root = tmp_path / "vindr"
    for study, image in PRESENT:
        path = root / "images" / study / f"{image}.dicom"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0" * 128 + b"DICM")
    (root / "finding_annotations.csv").write_text("\n".join([HEADER, *ROWS]) + "\n")
    return root


def by_image(datalist: dict) -> dict[str, dict]:
    return {r["image_id"]: r for s in ("training", "validation", "test") for r in datalist[s]}


def test_parse_categories() -> None:
    assert parse_categories("['Mass', 'Suspicious Calcification']") == ["Mass", "Suspicious Calcification"]
    with pytest.raises(ValueError, match="not a list literal"):
        parse_categories("[Mass")


def test_vindr_records(vindr_root: Path) -> None:
    report = AdapterReport(log=False)
    datalist = vindr_mammo_datalist(vindr_root, report=report)
    records = by_image(datalist)
    assert sorted(records) == ["i1", "i2", "i3", "i4", "i5", "i7"]
    first = records["i1"]
    assert first["image"] == "images/s1/i1.dicom" and first["patient_id"] == "s1"
    assert first["label"] == [1, 0] and first["laterality"] == "L" and first["view"] == "CC"
    assert first["boxes"] == [[100.5, 200.25, 300.75, 410]] and first["box_labels"] == [2]
    assert first["calc_boxes"] == [[100.5, 200.25, 300.75, 410]] and first["calc_box_labels"] == [2]
    assert [f["categories"] for f in first["findings"]] == [["Mass", "Suspicious Calcification"],
                                                            ["Architectural Distortion"]]
    assert first["findings"][1]["box"] == [2700, 3400, 2800, 3518]  # clipped to 2800 x 3518
    assert first["density"] == "C" and first["image_size"] == [3518, 2800] and "spacing" not in first
    assert records["i2"]["label"] == [0, 0] and records["i2"]["boxes"] == [] and records["i2"]["fully_labelled"]
    assert records["i3"]["label"] == [0, 1] and records["i3"]["box_labels"] == [1]
    assert records["i4"]["fully_labelled"] is False  # BI-RADS 2: benign findings are not boxed
    # i5: only the valid mass survives; its finding_birads is empty, so the breast's BI-RADS 5 decides
    assert records["i5"]["boxes"] == [[1000, 1100, 1200, 1300]] and records["i5"]["box_labels"] == [2]
    assert records["i7"]["calc_boxes"] == []

    issues = [(i.location, i.action, i.reason.split(" ")[0]) for i in report.issues]
    assert ("row 3", "clipped box", "box") in issues
    assert ("row 7, field 'finding_categories'", "skipped annotation", "finding_categories") in issues
    assert ("row 8", "skipped annotation", "box") in issues  # empty box
    assert ("row 10", "skipped record", "missing") in issues  # i6 not on disk
    assert ("row 11, field 'xmin'..'ymax'", "skipped annotation", "finding") in issues
    assert ("row 12, field 'split'", "skipped record", "unknown") in issues


def test_vindr_official_and_seeded_split(vindr_root: Path) -> None:
    datalist = vindr_mammo_datalist(vindr_root, val_fraction=0.0, report=AdapterReport(log=False))
    assert sorted(r["image_id"] for r in datalist["test"]) == ["i3", "i4"]
    assert sorted(r["image_id"] for r in datalist["training"]) == ["i1", "i2", "i5", "i7"]

    seeded = [vindr_mammo_datalist(vindr_root, official_split=False, seed=7, val_fraction=0.25,
                                   test_fraction=0.25, stratify=False, report=AdapterReport(log=False))
              for _ in range(2)]
    assert seeded[0] == seeded[1] and "i8" in by_image(seeded[0])
    owner: dict[str, str] = {}
    for split in ("training", "validation", "test"):
        for record in seeded[0][split]:
            assert owner.setdefault(record["patient_id"], split) == split
    assert sorted(owner.values()) == ["test", "training", "training", "validation"]


def test_vindr_strict_and_missing(vindr_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DatalistError, match="strict mode"):
        vindr_mammo_datalist(vindr_root, strict=True, report=AdapterReport(log=False))
    with pytest.raises(DatalistError, match="finding_annotations.csv"):
        vindr_mammo_datalist(tmp_path)
