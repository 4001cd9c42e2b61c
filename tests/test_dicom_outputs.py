"""DICOM outputs of ``monai-mammo predict`` (monai_mammo.dicom): SR, SEG and Secondary Capture round trips.

Each object is written from a small synthetic MG source (the phantom DICOM writer), read back with
highdicom and pydicom, and its coordinates, UIDs and values compared with what went in; where
``dciodvfy`` (Debian package dicom3tools) is installed, each must pass it without errors.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from monai_mammo.dicom.common import Algorithm, HighdicomMissingError, output_uids, prepare_source, require_highdicom
from monai_mammo.dicom.findings import findings_from_record, from_image_coordinates, to_image_coordinates

RECORD = {
    "points": [
        {"x": 10.123456789, "y": 4.0, "score": 0.9, "asn_score": 3.25, "fpr_score": 0.3, "area": 5},
        {"x": 40.0, "y": 30.75, "score": 0.1, "asn_score": 1.0, "fpr_score": None, "area": 2},
    ],
    "boxes": [{"box": [1.0, 2.0, 30.0, 40.0], "label": "mass", "probability": 0.25}],
}
ALGORITHM = Algorithm("asn", "0.1.0", "weights123", {"assumed pixel spacing": "0.07 mm"})


@pytest.fixture(scope="module")
def source_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from monai_mammo.data.phantoms.dicom_writer import write_mammogram_dicom

    y, x = np.mgrid[0:64, 0:48]
    image = ((x * 97 + y * 131) % 16384).astype(np.uint16)
    path = tmp_path_factory.mktemp("dicom_source") / "mg.dcm"
    return write_mammogram_dicom(
        path, image, uid_key="test-source", patient_id="P7", laterality="L", view="MLO", spacing_mm=0.07
    )


@pytest.fixture(scope="module")
def source(source_file: Path) -> pydicom.Dataset:
    return pydicom.dcmread(source_file, stop_before_pixels=True)


def _dciodvfy(path: Path) -> str:
    tool = shutil.which("dciodvfy")
    if tool is None:
        pytest.skip("dciodvfy is not installed (Debian package dicom3tools: apt-get install -y dicom3tools)")
    proc = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60)
    return proc.stdout + proc.stderr


def _text_values(ds: pydicom.Dataset) -> list[str]:
    """Every TEXT content item's value, at any depth of the content tree."""
    out = []
    for element in ds:
        if element.VR == "SQ":
            for item in element.value:
                out += _text_values(item)
        elif element.keyword == "TextValue":
            out.append(str(element.value))
    return out


# ------------------------------------------------------------------------------ no highdicom needed


def test_findings_and_image_coordinates_by_hand() -> None:
    point, box = findings_from_record({"points": [{"x": 3.0, "y": 7.5, "score": 0.5}], "boxes": [{"box": [1, 2, 4, 6], "probability": 0.2}]}, "mass")
    assert (point.kind, point.coordinates, point.label, point.scores) == ("point", (3.0, 7.5), "mass", {"score": 0.5})
    # pixel centre (c, r) is DICOM image coordinate (c + 0.5, r + 0.5); a box (edge coordinates, as
    # DICOM's) is the closed rectangle of its edges: [1, 2, 4, 6] covers columns 1..3, rows 2..5
    assert to_image_coordinates(point).tolist() == [[3.5, 8.0]]
    assert to_image_coordinates(box).tolist() == [[1.0, 2.0], [4.0, 2.0], [4.0, 6.0], [1.0, 6.0], [1.0, 2.0]]
    assert from_image_coordinates("POINT", [[3.5, 8.0]]) == (3.0, 7.5)
    assert from_image_coordinates("POLYLINE", to_image_coordinates(box)) == (1.0, 2.0, 4.0, 6.0)


@pytest.mark.parametrize(
    "record, message",
    [
        ({"points": [{"x": float("nan"), "y": 1.0}]}, r"points\[0\]\.x"),
        ({"points": [{"x": 1.0, "y": 2.0, "score": "high"}]}, r"points\[0\]\.score"),
        ({"boxes": [{"box": [5, 0, 1, 3]}]}, r"boxes\[0\]\.box: inverted"),
        ({"boxes": [{"box": [0, 1, 2]}]}, r"boxes\[0\]\.box: expected"),
    ],
)
def test_malformed_findings_name_the_entry(record: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        findings_from_record(record)


def test_missing_highdicom_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "highdicom", None)  # import fails as when it is not installed
    with pytest.raises(HighdicomMissingError, match=r'pip install "monai-mammo\[dicom\]"'):
        require_highdicom()


def test_source_without_type2_attributes_is_completed_not_changed(source: pydicom.Dataset) -> None:
    assert "PatientBirthDate" not in source  # the phantom writer leaves it out
    prepared = prepare_source(source)
    assert prepared.PatientBirthDate == "" and prepared.StudyTime == "" and prepared.AccessionNumber == ""
    assert "PatientBirthDate" not in source
    with pytest.raises(ValueError, match="StudyInstanceUID"):
        bare = pydicom.Dataset()
        bare.SOPClassUID, bare.SOPInstanceUID, bare.Rows, bare.Columns = "1.2", "1.2.3", 4, 4
        prepare_source(bare)


# ------------------------------------------------------------------------------------ highdicom


def test_structured_report_round_trip(source: pydicom.Dataset, tmp_path: Path) -> None:
    pytest.importorskip("highdicom", reason="the [dicom] extra (highdicom) is not installed")
    from monai_mammo.dicom.structured_report import read_structured_report, write_structured_report

    path = Path(write_structured_report(tmp_path / "sr.dcm", source, RECORD, ALGORITHM, default_label="microcalcification"))
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.22"  # Enhanced SR
    assert ds.StudyInstanceUID == source.StudyInstanceUID and ds.PatientID == "P7"
    assert (ds.SeriesInstanceUID, ds.SOPInstanceUID) == output_uids(source, ALGORITHM, "sr")
    evidence = ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert evidence.ReferencedSOPInstanceUID == source.SOPInstanceUID
    found = read_structured_report(path)
    assert [f["kind"] for f in found] == ["point", "point", "box"]
    assert {f["source_sop_instance_uid"] for f in found} == {source.SOPInstanceUID}
    assert [f["graphic_type"] for f in found] == ["POINT", "POINT", "POLYLINE"]
    # Graphic Data is FL (float32): the coordinates come back as float32(x + 0.5) - 0.5, exactly
    for f, p in zip(found[:2], RECORD["points"]):
        assert f["coordinates"] == (float(np.float32(p["x"] + 0.5)) - 0.5, float(np.float32(p["y"] + 0.5)) - 0.5)
        assert f["finding_type"] == ("129770007", "SCT", "Individual Calcification")
    assert found[0]["coordinates"][1] == 4.0 and abs(found[0]["coordinates"][0] - 10.123456789) < 1e-5
    assert found[0]["scores"] == pytest.approx({"score": 0.9, "asn_score": 3.25, "fpr_score": 0.3})
    assert found[1]["scores"] == pytest.approx({"score": 0.1, "asn_score": 1.0})  # fpr_score None: no measurement
    assert found[2]["coordinates"] == (1.0, 2.0, 30.0, 40.0)
    assert np.asarray(found[2]["graphic_data"]).tolist() == [[1.0, 2.0], [30.0, 2.0], [30.0, 40.0], [1.0, 40.0], [1.0, 2.0]]
    assert found[2]["finding_type"] == ("4147007", "SCT", "Mass") and found[2]["scores"] == pytest.approx({"probability": 0.25})
    texts = _text_values(ds)
    assert "monai-mammo asn" in texts and "assumed pixel spacing: 0.07 mm" in texts
    # same source, algorithm and weights: the same identity; other weights: another one
    again = pydicom.dcmread(write_structured_report(tmp_path / "again.dcm", source, RECORD, ALGORITHM))
    other = Algorithm("asn", "0.1.0", "other-weights")
    assert again.SOPInstanceUID == ds.SOPInstanceUID != output_uids(source, other, "sr")[1]


def test_structured_report_without_findings(source: pydicom.Dataset, tmp_path: Path) -> None:
    pytest.importorskip("highdicom", reason="the [dicom] extra (highdicom) is not installed")
    from monai_mammo.dicom.structured_report import read_structured_report, write_structured_report

    path = write_structured_report(tmp_path / "empty.dcm", source, {"points": []}, ALGORITHM)
    assert read_structured_report(path) == []


def test_segmentation_round_trip(source: pydicom.Dataset, tmp_path: Path) -> None:
    hd = pytest.importorskip("highdicom", reason="the [dicom] extra (highdicom) is not installed")
    from monai_mammo.dicom.segmentation import write_segmentation

    mask = np.zeros((64, 48), np.uint8)
    mask[5:9, 10:14] = 1
    mask[30, 20] = 2
    path = write_segmentation(tmp_path / "seg.dcm", source, mask, ALGORITHM, {1: "microcalcification", 2: "mass"})
    seg = hd.seg.segread(path)
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4" and seg.SegmentationType == "BINARY"
    assert seg.StudyInstanceUID == source.StudyInstanceUID
    assert seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert "FrameOfReferenceUID" not in seg and list(seg.PatientOrientation) == list(source.PatientOrientation)
    assert seg.number_of_segments == 2
    assert [seg.get_segment_description(n).segment_label for n in (1, 2)] == ["microcalcification", "mass"]
    description = seg.get_segment_description(1)
    assert description.segmented_property_type.value == "129770007"
    assert description.algorithm_identification[0].AlgorithmName == "monai-mammo asn"
    assert description.algorithm_identification[0].AlgorithmVersion == "0.1.0"
    pixels = pydicom.dcmread(path).pixel_array  # one frame per segment, bit-packed
    assert pixels.shape == (2, 64, 48)
    np.testing.assert_array_equal(pixels[0], mask == 1)
    np.testing.assert_array_equal(pixels[1], mask == 2)
    with pytest.raises(ValueError, match=r"shape \(64, 47\).*\(64, 48\)"):
        write_segmentation(tmp_path / "bad.dcm", source, mask[:, :47], ALGORITHM, {1: "microcalcification"})


def test_fractional_segmentation_round_trip(source: pydicom.Dataset, tmp_path: Path) -> None:
    pytest.importorskip("highdicom", reason="the [dicom] extra (highdicom) is not installed")
    from monai_mammo.dicom.segmentation import write_segmentation

    probability = np.linspace(0, 1, 64 * 48, dtype=np.float32).reshape(64, 48)
    path = write_segmentation(tmp_path / "frac.dcm", source, probability, ALGORITHM, {1: "microcalcification"}, fractional=True)
    ds = pydicom.dcmread(path)
    assert ds.SegmentationType == "FRACTIONAL" and ds.SegmentationFractionalType == "PROBABILITY"
    stored = ds.pixel_array.astype(np.float64) / float(ds.MaximumFractionalValue)
    assert np.abs(stored - probability).max() <= 0.5 / 255 + 1e-6
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        write_segmentation(tmp_path / "x.dcm", source, probability * 2, ALGORITHM, {1: "a"}, fractional=True)


def test_overlay_secondary_capture(source_file: Path, source: pydicom.Dataset, tmp_path: Path) -> None:
    pytest.importorskip("highdicom", reason="the [dicom] extra (highdicom) is not installed")
    from monai_mammo.dicom.secondary_capture import MARK_COLOUR, render_overlay, source_grey, write_overlay

    grey = source_grey(source_file)
    rgb = render_overlay(grey, findings_from_record(RECORD, "microcalcification"), (0.07, 0.07))
    assert rgb.shape == (64, 48, 3)
    assert tuple(rgb[2, 15]) == MARK_COLOUR  # top edge of the box [1, 2, 30, 40] (row 2)
    assert tuple(rgb[39, 15]) == MARK_COLOUR and tuple(rgb[20, 29]) == MARK_COLOUR  # last row 39, last column 29
    assert tuple(rgb[20, 30]) == (round(grey[20, 30] * 255),) * 3  # column 30 is outside the box
    assert tuple(rgb[20, 15]) == (round(grey[20, 15] * 255),) * 3  # inside: untouched grey
    path = write_overlay(tmp_path / "sc.dcm", source, rgb, ALGORITHM)
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and (ds.Rows, ds.Columns) == (64, 48)
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert list(ds.PatientOrientation) == list(source.PatientOrientation)  # MLO: compound "FR" kept
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY"] and ds.StudyInstanceUID == source.StudyInstanceUID
    np.testing.assert_array_equal(ds.pixel_array, rgb)


def test_outputs_pass_dciodvfy(source: pydicom.Dataset, source_file: Path, tmp_path: Path) -> None:
    pytest.importorskip("highdicom", reason="the [dicom] extra (highdicom) is not installed")
    from monai_mammo.dicom.secondary_capture import render_overlay, source_grey, write_overlay
    from monai_mammo.dicom.segmentation import write_segmentation
    from monai_mammo.dicom.structured_report import write_structured_report

    mask = np.zeros((64, 48), np.uint8)
    mask[5:9, 10:14] = 1
    rgb = render_overlay(source_grey(source_file), findings_from_record(RECORD))
    files = {
        "EnhancedSR": write_structured_report(tmp_path / "sr.dcm", source, RECORD, ALGORITHM, default_label="microcalcification"),
        "Segmentation": write_segmentation(tmp_path / "seg.dcm", source, mask, ALGORITHM, {1: "microcalcification"}),
        "SCImage": write_overlay(tmp_path / "sc.dcm", source, rgb, ALGORITHM),
    }
    for iod, path in files.items():
        report = _dciodvfy(Path(path))
        assert iod in report, report
        errors = [line for line in report.splitlines() if line.startswith("Error")]
        assert not errors, f"{iod}: {errors}"


def test_structured_report_keeps_the_best_findings_with_their_record_index(source: pydicom.Dataset, tmp_path: Path) -> None:
    pytest.importorskip("highdicom", reason="the [dicom] extra (highdicom) is not installed")
    from monai_mammo.dicom.structured_report import read_structured_report, write_structured_report

    scores = [0.2, 0.9, 0.1, 0.7, 0.5]
    record = {"points": [{"x": float(10 * i), "y": float(i), "score": s} for i, s in enumerate(scores)]}
    found = read_structured_report(write_structured_report(tmp_path / "top.dcm", source, record, ALGORITHM, max_findings=3))
    assert [f["index"] for f in found] == [1, 3, 4]  # the three best, in the record's order
    for f in found:
        entry = record["points"][f["index"]]
        assert f["coordinates"] == (entry["x"], entry["y"]) and f["scores"]["score"] == pytest.approx(entry["score"])
