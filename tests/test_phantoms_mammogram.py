"""Full-field mammogram phantoms: determinism, DICOM, ground truth and lesion statistics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from scipy import ndimage

from monai_mammo.data.phantoms import ensure_phantoms, phantom_cache_key, synthesize
from monai_mammo.data.phantoms.dicom_writer import read_back, write_mammogram_dicom
from monai_mammo.data.phantoms.lesions import render_mass, sample_mass_shape
from monai_mammo.data.phantoms.mammogram import MammogramOptions, plan_patient, render_view

SMALL = dict(image_size=(512, 416), p_mass=1.0, p_calc_cluster=1.0, p_vessel=1.0, mass_diameter_mm=(5.0, 12.0), monochrome1_fraction=0.5, syntax_probs=(1, 1, 1))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    path = synthesize("mammogram", tmp_path_factory.mktemp("mg") / "a", n=6, seed=11, **SMALL)
    return path, json.loads(path.read_text())


def _entries(content: dict) -> list[dict]:
    return content["training"] + content["validation"] + content["test"]


def test_same_seed_identical_bytes_other_seed_differs(dataset: tuple[Path, dict], tmp_path: Path) -> None:
    path, _ = dataset
    again = synthesize("mammogram", tmp_path / "b", n=6, seed=11, **SMALL)
    files = sorted(p.relative_to(path.parent) for p in path.parent.rglob("*") if p.is_file())
    assert len(files) == 1 + 6 * 3
    for rel in files:
        assert (path.parent / rel).read_bytes() == (again.parent / rel).read_bytes(), rel
    other = synthesize("mammogram", tmp_path / "c", n=6, seed=12, **SMALL)
    assert other.read_bytes() != path.read_bytes()
    ours = {p.read_bytes() for p in (path.parent / "images").iterdir()}
    theirs = {p.read_bytes() for p in (other.parent / "images").iterdir()}
    assert not ours & theirs


def test_datalist_keys_paths_and_coordinates(dataset: tuple[Path, dict]) -> None:
    path, content = dataset
    entries = _entries(content)
    assert len(entries) == 6
    required = {"image", "mask", "coarse_mask", "label", "boxes", "box_labels", "points", "spacing", "obscured", "fully_labelled", "patient_id", "laterality", "view", "vessel_boxes", "point_diameters_mm"}
    for e in entries:
        assert required <= set(e), required - set(e)
        for key in ("image", "mask", "coarse_mask"):
            assert (path.parent / e[key]).is_file()
        h, w = 512, 416
        for x0, y0, x1, y1 in e["boxes"] + e["vessel_boxes"] + e["cluster_boxes"]:
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        mask = np.asarray(Image.open(path.parent / e["mask"]))
        for (x, y) in e["points"]:
            assert 0 <= x < w and 0 <= y < h
            assert mask[int(round(y)), int(round(x))] == 3  # each point sits on its µC
        for box, label in zip(e["boxes"], e["box_labels"]):
            x0, y0, x1, y1 = box
            assert (mask[y0:y1, x0:x1] == label).any()
        assert e["label"][0] == int(2 in e["box_labels"] or 2 in e["cluster_labels"])
        assert e["label"][1] == int(1 in e["box_labels"] or 1 in e["cluster_labels"])
        assert len(e["obscured"]) == len(e["boxes"]) and e["spacing"] == [0.07, 0.07]
    # two views per patient, and no patient in two splits
    patients = [e["patient_id"] for e in entries]
    assert all(patients.count(p) == 2 for p in set(patients))
    splits = {k: {e["patient_id"] for e in content[k]} for k in ("training", "validation", "test")}
    assert not (splits["training"] & splits["validation"]) and not (splits["training"] & splits["test"])


def test_dicom_tags_decode_and_monochrome1_inverted(dataset: tuple[Path, dict]) -> None:
    path, content = dataset
    seen_syntax, seen_photometric = set(), set()
    for e in _entries(content):
        ds = pydicom.dcmread(path.parent / e["image"])
        assert ds.Modality == "MG" and ds.BitsStored == 14 and ds.BitsAllocated == 16
        assert ds.ImageLaterality == e["laterality"] and ds.ViewPosition == e["view"]
        assert float(ds.ImagerPixelSpacing[0]) == pytest.approx(0.07 * e["magnification_factor"], rel=1e-4)
        if "PixelSpacing" in ds:
            assert [float(v) for v in ds.PixelSpacing] == [0.07, 0.07]
        for keyword in ("Manufacturer", "EstimatedRadiographicMagnificationFactor", "WindowCenter", "WindowWidth", "PhotometricInterpretation"):
            assert keyword in ds, keyword
        pixels = ds.pixel_array
        assert pixels.shape == (512, 416) and pixels.max() <= 16383
        seen_syntax.add(ds.file_meta.TransferSyntaxUID.name)
        seen_photometric.add(ds.PhotometricInterpretation)
        # breast tissue is brighter than air after MONOCHROME1 inversion
        _, presentation = read_back(path.parent / e["image"])
        corner = presentation[-20:, :20] if e["laterality"] == "R" else presentation[-20:, -20:]
        assert np.median(presentation[256 - 20 : 256 + 20, 208 - 20 : 208 + 20]) > np.median(corner)
    assert len(seen_syntax) >= 2 and seen_photometric == {"MONOCHROME1", "MONOCHROME2"}


@pytest.mark.parametrize("syntax", ["explicit", "rle", "jpeg2000"])
@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_writer_round_trip(tmp_path: Path, syntax: str, photometric: str) -> None:
    image = (np.arange(64 * 48, dtype=np.uint32).reshape(64, 48) * 5 % 16384).astype(np.uint16)
    out = write_mammogram_dicom(tmp_path / "x.dcm", image, uid_key="k", patient_id="P1", laterality="L", view="CC", spacing_mm=0.07, photometric=photometric, syntax=syntax)
    ds = pydicom.dcmread(out)
    stored = ds.pixel_array
    expected = 16383 - image.astype(np.int32) if photometric == "MONOCHROME1" else image
    assert np.array_equal(stored.astype(np.int32), expected)  # MONOCHROME1 stored inverted, lossless
    assert ds.file_meta.TransferSyntaxUID.is_compressed == (syntax != "explicit")


def test_mass_sizes_in_range() -> None:
    spacing = 0.07
    rng = np.random.default_rng(0)
    for diameter_mm in (5.0, 12.0, 30.0):
        for malignant in (False, True):
            shape = sample_mass_shape(rng, diameter_mm / spacing, malignant)
            size = int(diameter_mm / spacing * 2.6) + 10
            _, _, mask = render_mass(shape, size / 2, size / 2, size, size)
            rows, cols = np.nonzero(mask)
            extent_mm = max(np.ptp(rows) + 1, np.ptp(cols) + 1) * spacing
            # the Feret diameter is the target; the axis-aligned extent is at most it (+1 px)
            assert 0.6 * diameter_mm <= extent_mm <= diameter_mm + 2 * spacing, (diameter_mm, malignant, extent_mm)


def test_lesion_statistics_in_dataset(dataset: tuple[Path, dict]) -> None:
    path, content = dataset
    entries = _entries(content)
    diameters = [d for e in entries for d in e["point_diameters_mm"]]
    assert diameters and min(diameters) >= 0.1 and max(diameters) <= 1.0
    for e in entries:
        assert all(5.0 <= d <= 12.0 for d in e["mass_diameters_mm"])
        for x0, y0, x1, y1 in e["boxes"]:
            assert max(x1 - x0, y1 - y0) * 0.07 <= 12.0 + 0.15
    # µC masks: 1-14 px across (0.1-1 mm at 70 µm)
    mask = np.asarray(Image.open(path.parent / entries[0]["mask"]))
    labels, count = ndimage.label(mask == 3)
    if count:
        sizes = ndimage.sum(np.ones_like(labels), labels, range(1, count + 1))
        assert sizes.min() >= 1 and sizes.max() <= np.pi * 8**2


def test_obscured_flag_follows_local_density(dataset: tuple[Path, dict]) -> None:
    _, content = dataset
    for e in _entries(content):
        for flag, density in zip(e["obscured"], e["obscuring_density"]):
            assert flag == (density >= 0.5)
    opts = MammogramOptions(image_size=(512, 416), p_mass=1.0, p_calc_cluster=0.0, p_vessel=0.0, mass_diameter_mm=(6.0, 10.0), marker_probability=0.0)
    plan = plan_patient(np.random.default_rng(3), opts)
    view = render_view(np.random.default_rng(4), plan, "CC", opts)
    gland = view.gland
    for box, density, label in zip(view.record["boxes"], view.record["obscuring_density"], view.record["box_labels"]):
        x0, y0, x1, y1 = box
        lesion = view.mask[y0:y1, x0:x1] == label
        assert density == pytest.approx(float(gland[y0:y1, x0:x1][lesion].mean()), abs=0.02)


def test_coarse_mask_encloses_lesion() -> None:
    opts = MammogramOptions(image_size=(512, 416), p_mass=1.0, p_calc_cluster=1.0, p_vessel=0.0, mass_diameter_mm=(5.0, 10.0), under_drawn_fraction=0.0, marker_probability=0.0)
    covered = []
    for i in range(4):
        view = render_view(np.random.default_rng([9, i]), plan_patient(np.random.default_rng([8, i]), opts), "CC", opts)
        lesion = view.mask > 0
        if lesion.any():
            covered.append(float((view.coarse_mask[lesion] > 0).mean()))
            # loose: the outline is larger than the lesion
            assert (view.coarse_mask > 0).sum() > lesion.sum()
    assert covered and min(covered) >= 0.97, covered
    # with under-drawing forced, outlines cut into lesions
    opts.under_drawn_fraction = 1.0
    view = render_view(np.random.default_rng([9, 0]), plan_patient(np.random.default_rng([8, 0]), opts), "CC", opts)
    assert float((view.coarse_mask[view.mask > 0] > 0).mean()) < 0.97


def test_ensure_phantoms_caches(tmp_path: Path) -> None:
    first = ensure_phantoms("mammogram", tmp_path, n=1, seed=0, image_size=(256, 208))
    stamp = first.stat().st_mtime_ns
    again = ensure_phantoms("mammogram", tmp_path, n=1, seed=0, image_size=(256, 208))
    assert again == first and again.stat().st_mtime_ns == stamp
    other = ensure_phantoms("mammogram", tmp_path, n=1, seed=1, image_size=(256, 208))
    assert other.parent != first.parent
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]
    # defaults spelled out give the same key as defaults left out
    assert phantom_cache_key("mammogram", 1, 0, spacing_mm=0.07) == phantom_cache_key("mammogram", 1, 0)


def test_bad_options_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="unknown option"):
        synthesize("mammogram", tmp_path, n=1, seed=0, imagesize=(64, 64))
    with pytest.raises(ValueError, match="unknown phantom kind"):
        synthesize("ct", tmp_path, n=1, seed=0)
    with pytest.raises(ValueError, match="image_size"):
        synthesize("mammogram", tmp_path, n=1, seed=0, image_size=(16, 16))


def test_unavailable_syntax_is_replaced_with_a_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Where no JPEG 2000 encoder exists (pydicom 2.4, MONAI Label's environment) the generator
    writes RLE instead, says so, and leaves every other draw unchanged."""
    from monai_mammo.data.phantoms import dicom_writer

    opts = dict(image_size=(128, 104), syntax_probs=(0, 0, 1))
    reference = json.loads(synthesize("mammogram", tmp_path / "with", n=2, seed=3, **opts).read_text())
    monkeypatch.setattr(dicom_writer, "available_syntaxes", lambda: {"explicit": "", "rle": "", "jpeg2000": "no encoder here"})
    with caplog.at_level("WARNING"):
        replaced = json.loads(synthesize("mammogram", tmp_path / "without", n=2, seed=3, **opts).read_text())
    assert "RLE Lossless instead of jpeg2000" in caplog.text and "no encoder here" in caplog.text
    items = [(a, b) for key in ("training", "validation", "test") for a, b in zip(reference[key], replaced[key])]
    assert items and all(a["transfer_syntax"] == "jpeg2000" and b["transfer_syntax"] == "rle" for a, b in items)
    for a, b in items:
        ds_a, ds_b = pydicom.dcmread(tmp_path / "with" / a["image"]), pydicom.dcmread(tmp_path / "without" / b["image"])
        assert ds_b.file_meta.TransferSyntaxUID == pydicom.uid.RLELossless
        assert ds_a.SOPInstanceUID == ds_b.SOPInstanceUID
        assert np.array_equal(ds_a.pixel_array, ds_b.pixel_array)


def test_writer_refuses_a_syntax_it_cannot_encode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from monai_mammo.data.phantoms import dicom_writer

    monkeypatch.setattr(dicom_writer, "available_syntaxes", lambda: {"explicit": "", "rle": "", "jpeg2000": "no encoder here"})
    with pytest.raises(ValueError, match=r"x\.dcm: cannot write 'jpeg2000': no encoder here"):
        write_mammogram_dicom(tmp_path / "x.dcm", np.zeros((8, 8), np.uint16), uid_key="k", patient_id="P", laterality="L", view="CC", spacing_mm=0.07, syntax="jpeg2000")
    assert not (tmp_path / "x.dcm").exists()
