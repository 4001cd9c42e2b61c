"""Tests for monai_mammo.transforms.io: every DICOM path, raster/NIfTI inputs and every error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset, MetaTensor
from monai.transforms import LoadImaged
from PIL import Image

from dicom_fixtures import CT_SOP_CLASS, SR_SOP_CLASS, add_voi_lut, make_dataset, ramp, write_dicom
from monai_mammo.transforms.io import LoadRadiographd, RadiographReader, RadiographReadError, spacing_of


def load(path, **kwargs) -> MetaTensor:
    """Load through MONAI's own LoadImaged with our reader (the documented integration path)."""
    return LoadImaged(keys="image", reader=RadiographReader(**kwargs), image_only=True)({"image": str(path)})["image"]


def load_strict(path, **kwargs) -> MetaTensor:
    """Load through LoadRadiographd, which lets our RadiographReadError through unwrapped."""
    spacing = kwargs.pop("spacing", None)
    item = {"image": str(path)} if spacing is None else {"image": str(path), "spacing": spacing}
    return LoadRadiographd(keys="image", **kwargs)(item)["image"]


def test_loadimaged_wraps_our_message(tmp_path):
    """MONAI's LoadImage re-raises reader failures as RuntimeError; our message must be inside."""
    p = tmp_path / "x.dcm"
    p.write_bytes(b"not a dicom" * 20)
    with pytest.raises(RuntimeError, match=r"x\.dcm: not a DICOM file"):
        load(p)


@pytest.mark.parametrize("compress", [None, "rle", "j2k"])
@pytest.mark.parametrize("bits", [8, 12, 14, 16])
def test_dicom_lossless_paths_roundtrip(tmp_path, compress, bits):
    arr = ramp(32, 40, bits)
    path = write_dicom(tmp_path / "a.dcm", arr, compress=compress, bits_stored=bits, pixel_spacing=(0.085, 0.07))
    img = load(path)
    assert isinstance(img, MetaTensor) and img.shape == (1, 32, 40) and img.dtype == torch.float32
    np.testing.assert_array_equal(img[0].numpy(), arr.astype(np.float32))  # rows = y, no transposition
    meta = img.meta
    # DICOM PixelSpacing is [row, column] = [sy, sx]; our meta is [sx, sy].
    assert meta["spacing"] == [0.07, 0.085] and meta["spacing_source"] == "PixelSpacing"
    np.testing.assert_allclose(img.affine.numpy(), np.diag([0.085, 0.07, 1.0]))
    assert meta["bits_stored"] == bits and meta["modality"] == "MG" and meta["laterality"] == "L"
    assert meta["view"] == "CC" and meta["manufacturer"] == "monai-mammo-tests"
    assert meta["photometric_interpretation"] == "MONOCHROME2" and meta["original_size"] == [32, 40]
    assert meta["pixel_to_original"] == np.eye(3).tolist() and meta["filename_or_obj"] == str(path)
    assert np.isnan(meta["magnification_factor"])


def test_monochrome1_inverted_raw_and_full_range(tmp_path):
    arr = ramp(32, 40, 12)
    path = write_dicom(tmp_path / "m1.dcm", arr, bits_stored=12, photometric="MONOCHROME1", compress="rle")
    np.testing.assert_array_equal(load(path)[0].numpy(), 4095.0 - arr)
    full = load(path, intensity="full_range")[0].numpy()
    expected = 1.0 - (arr - arr.min()) / (arr.max() - arr.min())
    np.testing.assert_allclose(full, expected, atol=1e-6)
    np.testing.assert_array_equal(load(path, invert_monochrome1=False)[0].numpy(), arr)


def test_modality_lut_rescale(tmp_path):
    arr = ramp(16, 16, 12)
    path = write_dicom(tmp_path / "r.dcm", arr, bits_stored=12, RescaleSlope="0.5", RescaleIntercept="-100")
    np.testing.assert_allclose(load(path)[0].numpy(), arr * 0.5 - 100)


def test_window_center_width(tmp_path):
    arr = np.array([[0, 1000, 1500, 2000, 4095]] * 4, dtype=np.uint16)
    path = write_dicom(tmp_path / "w.dcm", arr, bits_stored=12, WindowCenter="1500", WindowWidth="1000")
    out = load(path, intensity="voi")[0].numpy()[0]
    # Linear windowing (PS3.3 C.11.2.1.2): below c-0.5-(w-1)/2 -> min, above -> max.
    assert out[0] == 0.0 and out[1] == 0.0 and out[4] == 1.0
    assert out[2] == pytest.approx(0.5 + 0.5 / 999, abs=1e-3)
    assert out[3] == pytest.approx(1.0, abs=1e-3)


def test_voi_lut_sequence_preferred_and_monochrome1(tmp_path):
    arr = ramp(16, 16, 12)
    ds = make_dataset(arr, bits_stored=12, photometric="MONOCHROME1", WindowCenter="100", WindowWidth="10")
    lut = (np.arange(4096) // 16).astype(np.uint16)  # 12 -> 8 bit LUT, values 0..255
    add_voi_lut(ds, lut, first_map=0, bits=16)
    path = tmp_path / "lut.dcm"
    ds.save_as(path, enforce_file_format=True)
    out = load(path, intensity="voi")[0].numpy()
    np.testing.assert_allclose(out, 1.0 - (arr // 16) / 255.0, atol=1e-6)


def test_voi_without_tags_falls_back_to_full_range(tmp_path):
    arr = ramp(16, 16, 14)
    path = write_dicom(tmp_path / "n.dcm", arr)
    out = load(path, intensity="voi")[0].numpy()
    assert out.min() == 0.0 and out.max() == 1.0


def test_imager_pixel_spacing_and_magnification(tmp_path):
    path = write_dicom(
        tmp_path / "i.dcm", ramp(8, 8), pixel_spacing=None, imager_spacing=(0.1, 0.05),
        EstimatedRadiographicMagnificationFactor="1.08", ImageLaterality="", Laterality="R",
    )
    meta = load(path).meta
    assert meta["spacing"] == [0.05, 0.1] and meta["spacing_source"] == "ImagerPixelSpacing"
    assert meta["magnification_factor"] == pytest.approx(1.08) and meta["laterality"] == "R"


def test_dx_cr_sc_accepted(tmp_path):
    for modality in ("DX", "CR", "OT"):
        sop = "1.2.840.10008.5.1.4.1.1.7" if modality == "OT" else "1.2.840.10008.5.1.4.1.1.1"
        assert load(write_dicom(tmp_path / f"{modality}.dcm", ramp(8, 8), modality=modality, sop_class=sop)).shape == (1, 8, 8)


def test_png_8_16_rgb_and_jpeg(tmp_path):
    a8 = (ramp(20, 30, 8)).astype(np.uint8)
    Image.fromarray(a8).save(tmp_path / "a8.png")
    img = load(tmp_path / "a8.png", spacing=0.1)
    np.testing.assert_array_equal(img[0].numpy(), a8) and None
    assert img.meta["bits_stored"] == 8 and img.meta["spacing"] == [0.1, 0.1]
    assert img.meta["spacing_source"] == "datalist"
    a16 = ramp(20, 30, 16)
    Image.fromarray(a16).save(tmp_path / "a16.png")
    img16 = load(tmp_path / "a16.png")
    np.testing.assert_array_equal(img16[0].numpy(), a16)
    assert img16.meta["bits_stored"] == 16 and spacing_of(img16.meta) is None
    rgb = np.stack([a8, a8 // 2, np.full_like(a8, 10)], -1)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    grey = load(tmp_path / "rgb.png")[0].numpy()
    np.testing.assert_allclose(grey, 0.299 * a8 + 0.587 * (a8 // 2) + 0.114 * 10, atol=1e-3)
    Image.fromarray(rgb).save(tmp_path / "rgb.jpg", quality=95)
    assert load(tmp_path / "rgb.jpg").shape == (1, 20, 30)


def test_nifti_rows_first_and_header_spacing(tmp_path):
    import nibabel as nib

    arr = ramp(12, 18, 12).astype(np.float32)
    img = nib.Nifti1Image(arr, np.diag([0.2, 0.1, 1.0, 1.0]))
    img.header.set_xyzt_units("mm")
    nib.save(img, tmp_path / "a.nii.gz")
    out = load(tmp_path / "a.nii.gz")
    np.testing.assert_array_equal(out[0].numpy(), arr)
    assert out.meta["spacing"] == pytest.approx([0.1, 0.2])  # axis 0 (rows) = y
    nib.save(nib.Nifti1Image(arr, np.eye(4)), tmp_path / "b.nii")  # default pixdim: no spacing
    assert spacing_of(load(tmp_path / "b.nii").meta) is None


def test_loadradiographd_datalist_spacing_masks_and_collate(tmp_path):
    a8 = ramp(20, 30, 8)
    Image.fromarray(a8).save(tmp_path / "img.png")
    mask = np.zeros((20, 30), np.uint8)
    mask[5:9, 3:7] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    item = {"image": str(tmp_path / "img.png"), "mask": str(tmp_path / "mask.png"), "spacing": [0.1, 0.2], "laterality": "r"}
    t = LoadRadiographd(keys=["image", "mask"], mask_keys="mask", require_spacing=True)
    d = t(item)
    assert d["image"].meta["spacing"] == [0.1, 0.2] and d["image"].meta["laterality"] == "R"
    assert set(np.unique(d["mask"].numpy())) == {0.0, 1.0} and d["mask"].meta["spacing"] == [0.1, 0.2]
    batch = next(iter(DataLoader(Dataset([item, item], transform=t), batch_size=2)))
    assert batch["image"].shape == (2, 1, 20, 30)
    with pytest.raises(RadiographReadError, match="missing pixel spacing"):
        t({"image": item["image"], "mask": item["mask"]})


# ------------------------------------------------------------------------------------------ errors
def test_error_not_dicom(tmp_path):
    p = tmp_path / "x.dcm"
    p.write_bytes(b"hello, this is not a DICOM file at all" * 10)
    with pytest.raises(RadiographReadError, match=r"x\.dcm: not a DICOM"):
        load_strict(p)


def test_error_missing_and_empty_file(tmp_path):
    with pytest.raises(RadiographReadError, match="file not found"):
        RadiographReader().read(tmp_path / "nope.dcm")
    (tmp_path / "e.dcm").write_bytes(b"")
    with pytest.raises(RadiographReadError, match="empty file"):
        RadiographReader().read(tmp_path / "e.dcm")


def test_error_truncated_pixel_data_native_and_j2k(tmp_path):
    arr = ramp(32, 40)
    ds = make_dataset(arr)
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    ds.save_as(tmp_path / "t.dcm", enforce_file_format=True)
    with pytest.raises(RadiographReadError, match=r"t\.dcm: truncated pixel data"):
        load_strict(tmp_path / "t.dcm")
    noisy = np.random.default_rng(0).integers(0, 2**14, (64, 64)).astype(np.uint16)
    path = write_dicom(tmp_path / "tj.dcm", noisy, compress="j2k")
    raw = path.read_bytes()
    assert len(raw) > 6000
    path.write_bytes(raw[: len(raw) - 3000])  # cut inside the JPEG 2000 codestream
    with pytest.raises(RadiographReadError, match=r"tj\.dcm: .*(truncated|not a readable|could not be decoded)"):
        load_strict(path)


@pytest.mark.parametrize("modality,sop", [("SR", SR_SOP_CLASS), ("RTPLAN", "1.2.840.10008.5.1.4.1.1.481.5")])
def test_error_no_pixel_data(tmp_path, modality, sop):
    path = write_dicom(tmp_path / "sr.dcm", None, modality=modality, sop_class=sop)
    with pytest.raises(RadiographReadError, match=rf"sr\.dcm: no pixel data \(Modality {modality}"):
        load_strict(path)


def test_error_unsupported_modality_and_flag(tmp_path):
    path = write_dicom(tmp_path / "ct.dcm", ramp(8, 8), modality="CT", sop_class=CT_SOP_CLASS)
    with pytest.raises(RadiographReadError, match="unsupported modality 'CT'.*allow_any_modality"):
        load_strict(path)
    assert load_strict(path, allow_any_modality=True).shape == (1, 8, 8)


def test_error_multiframe(tmp_path):
    arr = np.concatenate([ramp(8, 8)] * 3)
    ds = make_dataset(arr)
    ds.Rows, ds.NumberOfFrames = 8, 3
    ds.save_as(tmp_path / "mf.dcm", enforce_file_format=True)
    with pytest.raises(RadiographReadError, match="multi-frame image \\(3 frames"):
        load_strict(tmp_path / "mf.dcm")


def test_error_zero_size(tmp_path):
    ds = make_dataset(ramp(8, 8))
    ds.Rows, ds.Columns, ds.PixelData = 0, 0, b""
    ds.save_as(tmp_path / "z.dcm", enforce_file_format=True)
    with pytest.raises(RadiographReadError, match=r"z\.dcm: zero-size image"):
        load_strict(tmp_path / "z.dcm")


def test_error_nan(tmp_path):
    import nibabel as nib

    arr = np.ones((8, 8), np.float32)
    arr[2, 3] = np.nan
    nib.save(nib.Nifti1Image(arr, np.eye(4)), tmp_path / "nan.nii.gz")
    with pytest.raises(RadiographReadError, match=r"nan\.nii\.gz: image contains NaN \(1 pixels\)"):
        load_strict(tmp_path / "nan.nii.gz")


def test_error_missing_spacing_required(tmp_path):
    path = write_dicom(tmp_path / "ns.dcm", ramp(8, 8), pixel_spacing=None)
    assert spacing_of(load_strict(path).meta) is None
    with pytest.raises(RadiographReadError, match=r"ns\.dcm: missing pixel spacing"):
        load_strict(path, require_spacing=True)
    assert load_strict(path, require_spacing=True, spacing=[0.05, 0.06]).meta["spacing"] == [0.05, 0.06]


def test_error_is_valueerror_and_not_numpy_trace(tmp_path):
    p = tmp_path / "junk.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    with pytest.raises(ValueError, match=r"junk\.png: not a readable image"):
        load_strict(p)


def test_spacing_of_reads_pairs_scalars_and_unknowns():
    from monai_mammo.transforms.io import spacing_of

    assert spacing_of({"spacing": [0.07, 0.1]}) == [0.07, 0.1]
    assert spacing_of({"spacing": torch.tensor([0.05])}) == pytest.approx([0.05, 0.05])  # isotropic
    assert spacing_of({"spacing": [float("nan"), float("nan")]}) is None
    assert spacing_of({"spacing": [0.1, 0.1, 0.1]}) is None
    assert spacing_of({}) is None
