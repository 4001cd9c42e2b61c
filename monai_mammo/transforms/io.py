"""Loading of 2D projection radiographs (DICOM MG/DX/CR/SC, PNG/JPEG/TIFF, NIfTI) as MONAI MetaTensors.

MONAI's own ``PydicomReader`` ignores MONOCHROME1 and the VOI LUT and indexes x first; this reader
returns ``(1, H, W)`` float32 arrays with rows = y (HELPERS.md data contract) and fills the meta
keys every monai_mammo transform relies on (``spacing`` [sx, sy], ``laterality``, ``view``, ...,
``pixel_to_original``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import ImageReader, MetaTensor
from monai.transforms import MapTransform
from monai.utils import ensure_tuple

from monai_mammo.transforms.geometry import PIXEL_TO_ORIGINAL, identity

__all__ = [
    "RadiographReadError",
    "MissingSpacingError",
    "RadiographReader",
    "LoadRadiographd",
    "spacing_of",
    "INTENSITY_MODES",
    "DEFAULT_MODALITIES",
    "DICOM_SUFFIXES",
    "RASTER_SUFFIXES",
    "NIFTI_SUFFIXES",
]

INTENSITY_MODES = ("raw", "voi", "full_range")
# Secondary Capture objects usually carry Modality "OT", so both spellings are accepted.
DEFAULT_MODALITIES = ("MG", "DX", "CR", "SC", "OT")
DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
_SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"


class RadiographReadError(ValueError):
    """A radiograph could not be loaded; the message names the file and the reason."""

    def __init__(self, filename: str | os.PathLike | None, reason: str) -> None:
        self.filename = str(filename) if filename is not None else "<unknown>"
        self.reason = reason
        super().__init__(f"{self.filename}: {reason}")


class MissingSpacingError(RadiographReadError):
    """An image without pixel spacing where physical units are needed; the message names the image
    and the ``spacing`` parameter that supplies it (a datalist item's, or a MONAI Label request's
    params). Raised through :meth:`for_app`, it is also a FastAPI ``HTTPException`` (status
    :attr:`STATUS_CODE`) where FastAPI is importable: MONAI Label's server lets exceptions of its
    infer call propagate (HTTP 500 with no message), but answers this one with its status and
    message (``{"detail": ...}``), as the client's error it is.

    Example::

        >>> str(MissingSpacingError("case.dcm", "ResampleToSpacingd"))[:52]
        'case.dcm: no pixel spacing (ResampleToSpacingd needs'
    """

    STATUS_CODE = 422  # Unprocessable Entity: the request is well-formed, the image lacks what it needs

    def __init__(self, filename: str | os.PathLike | None, needed_by: str = "this bundle") -> None:
        super().__init__(
            filename,
            f"no pixel spacing ({needed_by} needs physical units): the file has no PixelSpacing / "
            'ImagerPixelSpacing (or header spacing). Give it in mm as the "spacing": [sx, sy] parameter: '
            'a datalist item\'s "spacing", or MONAI Label\'s request params, e.g. {"spacing": [0.07, 0.07]}',
        )

    @classmethod
    def for_app(cls, filename: str | os.PathLike | None, needed_by: str = "this bundle") -> MissingSpacingError:
        """The error to raise: under a FastAPI server (MONAI Label) also its ``HTTPException``."""
        from monai_mammo.app_errors import as_http_error

        return as_http_error(cls(filename, needed_by), cls.STATUS_CODE)  # type: ignore[return-value]


@dataclass
class _Radiograph:
    """What :meth:`RadiographReader.read` returns: the decoded (H, W) float32 array and its meta."""

    array: np.ndarray
    meta: dict = field(default_factory=dict)


def _suffix(path: str) -> str:
    name = path.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return Path(name).suffix


def _spacing_list(value: Any, filename: str, origin: str) -> list[float] | None:
    """Validate a user/datalist spacing: a number (isotropic) or [sx, sy] of positive finite floats."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().tolist()
    vals = [float(value)] * 2 if np.isscalar(value) else [float(v) for v in np.asarray(value).ravel()]
    if len(vals) != 2 or not all(np.isfinite(v) and v > 0 for v in vals):
        raise RadiographReadError(filename, f"{origin} spacing must be a positive number or [sx, sy] in mm, got {value!r}")
    return vals


class RadiographReader(ImageReader):
    """MONAI ImageReader for 2D projection radiographs (mammograms, chest X-rays).

    Works with ``monai.transforms.LoadImaged(keys="image", reader=RadiographReader())`` and returns a
    ``(1, H, W)`` float32 array (rows = y, columns = x; no x-first reversal) with these meta keys:
    ``spacing`` [sx, sy] mm ([nan, nan] when unknown; read it with :func:`spacing_of`) (DICOM ``PixelSpacing`` / ``ImagerPixelSpacing`` are [row, column] =
    [sy, sx] and are reordered), ``spacing_source``, ``magnification_factor``
    (``EstimatedRadiographicMagnificationFactor``, noted, not applied; nan when absent), ``laterality``
    (``ImageLaterality`` or ``Laterality``), ``view`` (``ViewPosition``), ``modality``,
    ``manufacturer``, ``bits_stored``, ``photometric_interpretation``, ``intensity_mode``,
    ``filename_or_obj``, ``original_size`` [H, W], ``pixel_to_original`` (identity) and an ``affine``
    ``diag(sy, sx, 1)`` (MONAI affine over the array's spatial dims, rows first).

    DICOM intensity pipeline: decode (pydicom pixel-data plugins: native, RLE, JPEG baseline/lossless,
    JPEG-LS, JPEG 2000 through pylibjpeg) -> Modality LUT / rescale
    (``pydicom.pixels.apply_modality_lut``) -> ``intensity``:

    * ``"raw"``: modality-LUT values unchanged (e.g. 0..16383 for 14-bit);
    * ``"voi"``: the VOI LUT sequence or window centre/width (``pydicom.pixels.apply_voi_lut``,
      ``voi_index`` selects among several), scaled to [0, 1]; falls back to ``"full_range"`` when the
      file has neither;
    * ``"full_range"``: the image's own min..max scaled to [0, 1].

    MONOCHROME1 images are inverted so that tissue is bright (``raw`` keeps its value range:
    ``v -> lo + hi - v`` over the modality output range). Raster files (PNG/JPEG/TIFF, 8 or 16 bit,
    RGB reduced to grey with ITU-R 601 luma) and NIfTI (array axis 0 = rows) carry no DICOM tags; their
    spacing comes from ``spacing`` (reader argument or per-call ``read(..., spacing=...)``, e.g. from
    the datalist) or, for NIfTI, from the header when its units are set.

    Example::

        >>> from monai.transforms import LoadImaged
        >>> load = LoadImaged(keys="image", reader=RadiographReader(intensity="raw"), image_only=True)
        >>> # d = load({"image": "case.dcm"}); d["image"].shape -> (1, H, W); d["image"].meta["spacing"]

    Args:
        intensity: ``"raw"`` (default), ``"voi"`` or ``"full_range"``, see above.
        voi_index: which VOI LUT / window of several to apply in ``"voi"`` mode. Default 0.
        invert_monochrome1: invert MONOCHROME1 images so tissue is bright. Default True.
        allowed_modalities: DICOM Modality values accepted. Default MG, DX, CR, SC, OT.
        allow_any_modality: accept any modality (e.g. a CT scout) instead of refusing it. Default False.
        require_spacing: raise when no pixel spacing is found (file or ``spacing``). Default False.
        spacing: fallback spacing in mm (number or [sx, sy]) for files without one. Default None.
        prefer_pixel_spacing: DICOM: use ``PixelSpacing`` before ``ImagerPixelSpacing`` when both are
            present (PixelSpacing is calibrated to the object plane where given). Default True.
        dtype: output dtype. Default float32.
    """

    def __init__(
        self,
        intensity: str = "raw",
        voi_index: int = 0,
        invert_monochrome1: bool = True,
        allowed_modalities: Sequence[str] = DEFAULT_MODALITIES,
        allow_any_modality: bool = False,
        require_spacing: bool = False,
        spacing: float | Sequence[float] | None = None,
        prefer_pixel_spacing: bool = True,
        dtype: np.dtype | type = np.float32,
    ) -> None:
        super().__init__()
        if intensity not in INTENSITY_MODES:
            raise ValueError(f"intensity must be one of {INTENSITY_MODES}, got {intensity!r}.")
        self.intensity = intensity
        self.voi_index = int(voi_index)
        self.invert_monochrome1 = bool(invert_monochrome1)
        self.allowed_modalities = tuple(m.upper() for m in allowed_modalities)
        self.allow_any_modality = bool(allow_any_modality)
        self.require_spacing = bool(require_spacing)
        self.spacing = _spacing_list(spacing, "<RadiographReader>", "reader") if spacing is not None else None
        self.prefer_pixel_spacing = bool(prefer_pixel_spacing)
        self.dtype = np.dtype(dtype)

    # ------------------------------------------------------------------ ImageReader API
    def verify_suffix(self, filename: Sequence[str | os.PathLike] | str | os.PathLike) -> bool:
        """True for DICOM (including extension-less files), PNG/JPEG/TIFF and NIfTI names."""
        for name in ensure_tuple(filename):
            suffix = _suffix(str(name))
            if suffix and suffix not in DICOM_SUFFIXES + RASTER_SUFFIXES + NIFTI_SUFFIXES:
                return False
        return True

    def read(self, data: Sequence[str | os.PathLike] | str | os.PathLike, **kwargs: Any) -> _Radiograph:
        """Decode one file. ``kwargs``: ``spacing`` (per-file fallback, e.g. from the datalist),
        ``require_spacing`` (overrides the reader's flag)."""
        names = ensure_tuple(data)
        if len(names) != 1:
            raise RadiographReadError(
                ", ".join(map(str, names)), f"RadiographReader reads one 2D image per call, got {len(names)} files"
            )
        filename = str(names[0])
        fallback = kwargs.get("spacing")
        fallback = _spacing_list(fallback, filename, "datalist") if fallback is not None else self.spacing
        require = bool(kwargs.get("require_spacing", self.require_spacing))
        if not os.path.isfile(filename):
            raise RadiographReadError(filename, "file not found")
        if os.path.getsize(filename) == 0:
            raise RadiographReadError(filename, "empty file (0 bytes)")
        suffix = _suffix(filename)
        if suffix in RASTER_SUFFIXES:
            arr, meta = self._read_raster(filename)
        elif suffix in NIFTI_SUFFIXES:
            arr, meta = self._read_nifti(filename)
        else:
            arr, meta = self._read_dicom(filename)
        return self._finish(filename, arr, meta, fallback, require)

    def get_data(self, img: _Radiograph | Sequence[_Radiograph]) -> tuple[np.ndarray, dict]:
        """Return ``((1, H, W) array, meta)`` for what :meth:`read` returned."""
        if isinstance(img, (list, tuple)):
            if len(img) != 1:
                raise ValueError(f"RadiographReader.get_data expects one image, got {len(img)}.")
            img = img[0]
        meta = dict(img.meta)
        meta[PIXEL_TO_ORIGINAL] = [list(r) for r in meta[PIXEL_TO_ORIGINAL]]
        return img.array[None], meta

    # ------------------------------------------------------------------ DICOM
    def _read_dicom(self, filename: str) -> tuple[np.ndarray, dict]:
        import pydicom
        from pydicom.errors import InvalidDicomError

        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                ds = pydicom.dcmread(filename)
            eof = [str(w.message) for w in caught if "end of file" in str(w.message).lower()]
            if eof or (len(ds) == 0 and len(getattr(ds, "file_meta", ())) > 0):
                detail = eof[0] if eof else "no data elements after the file meta header"
                raise RadiographReadError(filename, f"truncated DICOM file ({detail})")
        except InvalidDicomError:
            ds = None
        except RadiographReadError:
            raise
        except Exception as e:  # noqa: BLE001 - a corrupt header must become our error, not a traceback
            raise RadiographReadError(filename, f"not a readable DICOM file ({type(e).__name__}: {e})") from None
        if ds is None:
            # Files without the 128-byte preamble are still legal DICOM; accept them only if forcing
            # the parse yields an image header, otherwise it is not a DICOM at all.
            try:
                ds = pydicom.dcmread(filename, force=True)
                if "Rows" not in ds and "PixelData" not in ds and "SOPClassUID" not in ds:
                    ds = None
            except Exception:  # noqa: BLE001
                ds = None
        if ds is None:
            raise RadiographReadError(filename, "not a DICOM file (no DICM preamble and no readable DICOM header)")

        modality = str(ds.get("Modality", "") or "").upper()
        sop_class = str(ds.get("SOPClassUID", "") or "")
        if not any(t in ds for t in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
            kind = modality or "unknown modality"
            name = getattr(ds.get("SOPClassUID"), "name", sop_class) if "SOPClassUID" in ds else "unknown SOP class"
            raise RadiographReadError(filename, f"no pixel data (Modality {kind}, SOP class {name}): not an image")
        is_sc = sop_class.startswith(_SECONDARY_CAPTURE_PREFIX)
        if not self.allow_any_modality and modality not in self.allowed_modalities and not is_sc:
            raise RadiographReadError(
                filename,
                f"unsupported modality {modality or '<missing>'!r} (accepted: {', '.join(self.allowed_modalities)}; "
                "pass allow_any_modality=True to load it anyway)",
            )
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        if frames > 1:
            raise RadiographReadError(
                filename, f"multi-frame image ({frames} frames, e.g. tomosynthesis) is not supported; export one 2D frame"
            )
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        if rows == 0 or cols == 0:
            raise RadiographReadError(filename, f"zero-size image (Rows={rows}, Columns={cols})")
        photometric = str(ds.get("PhotometricInterpretation", "") or "").upper()
        if "PixelData" in ds and not ds.file_meta.get("TransferSyntaxUID", None) is None:
            tsyntax = ds.file_meta.TransferSyntaxUID
            if not tsyntax.is_compressed:
                samples = int(ds.get("SamplesPerPixel", 1) or 1)
                expected = rows * cols * samples * int(ds.get("BitsAllocated", 16)) // 8
                got = len(ds.PixelData)
                if got < expected:
                    raise RadiographReadError(
                        filename, f"truncated pixel data: {got} bytes, expected {expected} for {rows}x{cols}"
                    )
        try:
            arr = _pydicom_pixel_functions()[0](ds)
        except Exception as e:  # noqa: BLE001 - decoder errors (truncated codestream, missing plugin)
            tsname = getattr(ds.file_meta.get("TransferSyntaxUID"), "name", "unknown transfer syntax")
            raise RadiographReadError(
                filename, f"pixel data could not be decoded ({tsname}; truncated or corrupt?): {type(e).__name__}: {e}"
            ) from None
        if arr.ndim == 3 and arr.shape[-1] in (3, 4):
            arr = _rgb_to_grey(arr)
            photometric = "MONOCHROME2"
        if arr.ndim != 2:
            raise RadiographReadError(filename, f"expected a 2D image, decoded pixel array has shape {arr.shape}")
        if arr.size == 0:
            raise RadiographReadError(filename, "zero-size image")
        arr = self._dicom_intensity(ds, arr, photometric, filename)
        meta = {
            "spacing": None,
            "spacing_source": "",
            "magnification_factor": _float_or_nan(ds.get("EstimatedRadiographicMagnificationFactor")),
            "laterality": _laterality(ds),
            "view": str(ds.get("ViewPosition", "") or "").upper(),
            "modality": modality,
            "manufacturer": str(ds.get("Manufacturer", "") or ""),
            "bits_stored": int(ds.get("BitsStored", 8 * arr.itemsize) or 0),
            "photometric_interpretation": photometric,
            "intensity_mode": self.intensity,
            "transfer_syntax": str(ds.file_meta.get("TransferSyntaxUID", "")),
        }
        order = ("PixelSpacing", "ImagerPixelSpacing")
        if not self.prefer_pixel_spacing:
            order = order[::-1]
        for tag in order:
            value = ds.get(tag)
            if value is not None and len(value) == 2:
                sy, sx = float(value[0]), float(value[1])  # DICOM: [row spacing, column spacing]
                if sx > 0 and sy > 0:
                    meta["spacing"], meta["spacing_source"] = [sx, sy], tag
                    break
        return arr, meta

    def _dicom_intensity(self, ds: Any, arr: np.ndarray, photometric: str, filename: str) -> np.ndarray:
        _, apply_modality_lut, apply_voi_lut = _pydicom_pixel_functions()

        lo, hi = _modality_range(ds)
        slope, intercept = ds.get("RescaleSlope", None), ds.get("RescaleIntercept", None)
        identity_rescale = (slope is None or float(slope) == 1.0) and (intercept is None or float(intercept) == 0.0)
        if ds.get("ModalityLUTSequence") or not identity_rescale:
            arr = apply_modality_lut(arr, ds)
        # else: pydicom would only upcast to float64; skip the copy.
        monochrome1 = photometric == "MONOCHROME1" and self.invert_monochrome1
        mode = self.intensity
        if mode == "voi":
            has_voi = bool(ds.get("VOILUTSequence")) or ("WindowCenter" in ds and "WindowWidth" in ds)
            if has_voi:
                try:
                    out = apply_voi_lut(arr, ds, index=self.voi_index, prefer_lut=True)
                except Exception as e:  # noqa: BLE001
                    raise RadiographReadError(filename, f"VOI LUT / window could not be applied: {e}") from None
                if ds.get("VOILUTSequence"):
                    vlo, vhi = _lut_range(ds.VOILUTSequence[self.voi_index])
                else:
                    vlo, vhi = lo, hi  # pydicom's windowing output range is the modality range
                out = _scale01(out, vlo, vhi)
                return (1.0 - out) if monochrome1 else out
            mode = "full_range"
        if mode == "full_range":
            out = _scale01(arr, float(arr.min()), float(arr.max()))
            return (1.0 - out) if monochrome1 else out
        out = arr.astype(np.float32, copy=False)
        if monochrome1:
            out = np.float32(lo + hi) - out
        return out

    # ------------------------------------------------------------------ raster and NIfTI
    def _read_raster(self, filename: str) -> tuple[np.ndarray, dict]:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(filename) as im:
                im.load()
                mode = im.mode
                if mode == "P":
                    im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                    mode = im.mode
                arr = np.asarray(im)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise RadiographReadError(filename, f"not a readable image file ({type(e).__name__}: {e})") from None
        if arr.ndim == 3:
            if arr.shape[-1] in (3, 4):
                arr = _rgb_to_grey(arr)
            elif arr.shape[-1] in (1, 2):  # grey (+ alpha)
                arr = arr[..., 0]
        if arr.ndim != 2:
            raise RadiographReadError(filename, f"expected a 2D image, got array shape {arr.shape}")
        bits = 16 if mode.startswith("I;16") or arr.dtype == np.uint16 else 8 * arr.dtype.itemsize
        if mode in ("I", "F"):
            bits = 16 if float(np.nanmax(arr)) < 65536 else 32
        meta = _blank_meta(bits, "MONOCHROME2")
        return self._raster_intensity(arr), meta

    def _raster_intensity(self, arr: np.ndarray) -> np.ndarray:
        out = arr.astype(np.float32, copy=False)
        if self.intensity in ("voi", "full_range") and out.size:
            finite = np.isfinite(out)
            if finite.all():
                out = _scale01(out, float(out.min()), float(out.max()))
        return out

    def _read_nifti(self, filename: str) -> tuple[np.ndarray, dict]:
        import nibabel as nib

        try:
            img = nib.load(filename)
            arr = np.asarray(img.dataobj)
        except Exception as e:  # noqa: BLE001
            raise RadiographReadError(filename, f"not a readable NIfTI file ({type(e).__name__}: {e})") from None
        while arr.ndim > 2 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.ndim != 2:
            raise RadiographReadError(filename, f"expected a 2D NIfTI image, got shape {arr.shape}")
        meta = _blank_meta(8 * arr.dtype.itemsize, "MONOCHROME2")
        zooms = [float(z) for z in img.header.get_zooms()[:2]]
        space_unit = img.header.get_xyzt_units()[0]
        # pixdim 1.0 with unknown units is nibabel's default, not a measurement.
        if len(zooms) == 2 and all(z > 0 for z in zooms) and (space_unit not in (None, "unknown") or zooms != [1.0, 1.0]):
            factor = {"meter": 1000.0, "micron": 0.001}.get(space_unit, 1.0)
            meta["spacing"] = [zooms[1] * factor, zooms[0] * factor]  # axis 0 = rows (y), axis 1 = columns (x)
            meta["spacing_source"] = "nifti_header"
        return self._raster_intensity(arr), meta

    # ------------------------------------------------------------------ common checks and meta
    def _finish(
        self, filename: str, arr: np.ndarray, meta: dict, fallback: list[float] | None, require: bool
    ) -> _Radiograph:
        if arr.size == 0 or 0 in arr.shape:
            raise RadiographReadError(filename, f"zero-size image (shape {arr.shape})")
        arr = np.ascontiguousarray(arr, dtype=self.dtype)
        if np.issubdtype(arr.dtype, np.floating):
            bad = ~np.isfinite(arr)
            if bad.any():
                kind = "NaN" if np.isnan(arr).any() else "infinite values"
                raise RadiographReadError(filename, f"image contains {kind} ({int(bad.sum())} pixels)")
        if spacing_of(meta) is None and fallback is not None:
            meta["spacing"], meta["spacing_source"] = list(fallback), "datalist"
        if spacing_of(meta) is None and require:
            raise RadiographReadError(
                filename,
                "missing pixel spacing: the file has no PixelSpacing/ImagerPixelSpacing (or header spacing) and no "
                "'spacing' was given in the datalist or to the reader, but physical units are required",
            )
        h, w = arr.shape
        if meta.get("spacing") is None:
            # None would break DataLoader collation of the meta dict; NaN marks "unknown".
            meta["spacing"] = [float("nan"), float("nan")]
        sx, sy = meta["spacing"] if spacing_of(meta) is not None else (1.0, 1.0)
        meta.update(
            {
                "filename_or_obj": filename,
                "original_size": [int(h), int(w)],
                "spatial_shape": np.asarray([h, w]),
                "original_channel_dim": 0,
                # MONAI affine over (row, column): rows step sy, columns step sx.
                "affine": np.diag([sy, sx, 1.0]).astype(np.float64),
                "original_affine": np.diag([sy, sx, 1.0]).astype(np.float64),
                PIXEL_TO_ORIGINAL: identity().tolist(),
            }
        )
        return _Radiograph(arr, meta)


def spacing_of(meta: Mapping[str, Any] | None) -> list[float] | None:
    """``meta["spacing"]`` as [sx, sy] floats (a single value means isotropic), or None when unknown
    (absent, None or NaN).

    The reader stores an unknown spacing as [nan, nan] (and an unknown magnification factor as nan)
    rather than None, because MONAI's DataLoader collation cannot batch None meta values.
    """
    if meta is None:
        return None
    value = meta.get("spacing")
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().tolist()
    vals = [float(v) for v in np.asarray(value, dtype=np.float64).ravel()]
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2 or not all(np.isfinite(v) and v > 0 for v in vals):
        return None
    return vals


def _blank_meta(bits: int, photometric: str) -> dict:
    return {
        "spacing": None,
        "spacing_source": "",
        "magnification_factor": float("nan"),
        "laterality": "",
        "view": "",
        "modality": "",
        "manufacturer": "",
        "bits_stored": int(bits),
        "photometric_interpretation": photometric,
        "intensity_mode": "",
    }


def _rgb_to_grey(arr: np.ndarray) -> np.ndarray:
    # ITU-R BT.601 luma, the weights PIL's convert("L") uses, computed in float to avoid rounding.
    weights = np.asarray([0.299, 0.587, 0.114], dtype=np.float32)
    return arr[..., :3].astype(np.float32) @ weights


def _scale01(arr: np.ndarray, lo: float, hi: float) -> np.ndarray:
    out = np.asarray(arr, dtype=np.float32)
    if hi <= lo:
        return np.zeros_like(out)
    out = (out - np.float32(lo)) * np.float32(1.0 / (hi - lo))
    return np.clip(out, 0.0, 1.0, out=out)


def _lut_range(item: Any) -> tuple[float, float]:
    """Min and max entry of a LUT item (LUTData may be US values or OW bytes)."""
    data = item.LUTData
    if isinstance(data, (bytes, bytearray)):
        depth = int(item.LUTDescriptor[2])
        lut = np.frombuffer(data, dtype=np.uint8 if depth == 8 else "<u2")
    else:
        lut = np.asarray(data if not np.isscalar(data) else [data], dtype=np.float64)
    return float(lut.min()), float(lut.max())


def _modality_range(ds: Any) -> tuple[float, float]:
    """Output range of the Modality LUT stage for this dataset (same rule pydicom's windowing uses)."""
    if ds.get("ModalityLUTSequence"):
        depth = int(ds.ModalityLUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2**depth - 1)
    bits = int(ds.get("BitsStored", 16) or 16)
    if int(ds.get("PixelRepresentation", 0) or 0) == 0:
        lo, hi = 0.0, float(2**bits - 1)
    else:
        lo, hi = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    slope, intercept = ds.get("RescaleSlope", None), ds.get("RescaleIntercept", None)
    if slope is not None and intercept is not None:
        lo, hi = lo * float(slope) + float(intercept), hi * float(slope) + float(intercept)
    return min(lo, hi), max(lo, hi)


def _laterality(ds: Any) -> str:
    for tag in ("ImageLaterality", "Laterality"):
        value = str(ds.get(tag, "") or "").strip().upper()
        if value in ("L", "R", "B", "U"):
            return value if value in ("L", "R") else ""
    return ""


def _pydicom_pixel_functions() -> tuple[Callable[[Any], np.ndarray], Callable, Callable]:
    """``(pixel_array, apply_modality_lut, apply_voi_lut)`` for the installed pydicom.

    pydicom 3 moved them to ``pydicom.pixels``; MONAI Label 0.8.5 still needs pydicom < 3 (its
    ``pydicom_seg`` dependency imports pydicom 2 internals), so both layouts are supported.
    """
    try:
        from pydicom.pixels import apply_modality_lut, apply_voi_lut, pixel_array
    except ImportError:  # pydicom 2.x
        from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi_lut

        def pixel_array(ds: Any) -> np.ndarray:
            return ds.pixel_array

    return pixel_array, apply_modality_lut, apply_voi_lut


def _float_or_nan(value: Any) -> float:
    try:
        return float("nan") if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return float("nan")


class LoadRadiographd(MapTransform):
    """Load radiographs (and their masks) into ``(1, H, W)`` float32 MetaTensors with :class:`RadiographReader`.

    Unlike ``LoadImaged`` it passes the datalist's per-item ``spacing`` (and ``laterality`` / ``view``)
    to the reader so PNG/NIfTI inputs get physical units, and lets later keys (masks) inherit the
    first key's spacing and laterality.

    Example::

        >>> load = LoadRadiographd(keys=["image", "mask"], mask_keys=["mask"], require_spacing=True)
        >>> # d = load({"image": "a.dcm", "mask": "a_mask.png"}); d["image"].meta["spacing"]

    Args:
        keys: keys holding file paths; the first is the reference image.
        mask_keys: subset of ``keys`` loaded as binary {0, 1} masks (any value > 0 is foreground). Default ().
        spacing_key: datalist key with [sx, sy] mm used when the file has none. Default "spacing".
        meta_from_data: datalist keys copied into meta when the file leaves them empty. Default
            ("laterality", "view").
        require_spacing: raise :class:`RadiographReadError` when the reference image has no spacing.
            Default False.
        allow_missing_keys: skip absent keys. Default False.
        reader_kwargs: forwarded to :class:`RadiographReader` (intensity, allow_any_modality, ...).
    """

    def __init__(
        self,
        keys: KeysCollection,
        mask_keys: KeysCollection = (),
        spacing_key: str | None = "spacing",
        meta_from_data: Sequence[str] = ("laterality", "view"),
        require_spacing: bool = False,
        allow_missing_keys: bool = False,
        **reader_kwargs: Any,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mask_keys = set(ensure_tuple(mask_keys))
        self.spacing_key = spacing_key
        self.meta_from_data = tuple(meta_from_data)
        self.require_spacing = bool(require_spacing)
        self.reader = RadiographReader(**reader_kwargs)
        self.mask_reader = RadiographReader(**{**reader_kwargs, "intensity": "raw", "allow_any_modality": True})

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        ref_meta: dict | None = None
        for i, key in enumerate(self.key_iterator(d)):
            path = d[key]
            spacing = d.get(self.spacing_key) if self.spacing_key else None
            if spacing is None and ref_meta is not None:
                spacing = spacing_of(ref_meta)
            is_mask = key in self.mask_keys
            reader = self.mask_reader if is_mask else self.reader
            img = reader.read(path, spacing=spacing, require_spacing=self.require_spacing and ref_meta is None)
            arr, meta = reader.get_data(img)
            if is_mask:
                arr = (arr > 0).astype(np.float32)
            for mk in self.meta_from_data:
                if not meta.get(mk) and d.get(mk):
                    meta[mk] = str(d[mk]).upper()
            if ref_meta is not None:
                for mk in ("laterality", "view"):
                    if not meta.get(mk):
                        meta[mk] = ref_meta.get(mk, "")
            d[key] = MetaTensor(torch.from_numpy(arr), meta=meta)
            if ref_meta is None:
                ref_meta = meta
        return d
