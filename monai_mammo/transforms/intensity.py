"""Intensity normalisations of the five methods: 8-bit levels (ASN), DDSM optical density (LatentCADx),
chest X-ray [-1, 1] (disease masks)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, ScaleIntensityRange

__all__ = ["ScaleToEightBitd", "OpticalDensityd", "ChestXrayNormalized", "DDSM_CALIBRATIONS"]

# DDSM per-scanner grey level (GL) -> optical density (OD) calibrations, published with the DDSM
# (Heath et al., "The Digital Database for Screening Mammography", IWDM 2000; DDSM calibration pages).
# ("linear", a, b): OD = a + b * GL;  ("log10", a, b): OD = a + b * log10(GL).
DDSM_CALIBRATIONS: dict[str, tuple[str, float, float]] = {
    # DBA M2100 ImageClear (MGH): OD = (log10(GL) - 4.80662) / -1.07553
    "DBA": ("log10", 4.80662 / 1.07553, -1.0 / 1.07553),
    # HOWTEK MultiRAD850 (MGH): OD = 3.789 - 0.00094568 * GL
    "HOWTEK_MGH": ("linear", 3.789, -0.00094568),
    # HOWTEK MultiRAD850 (ISMD): OD = 3.96604095240593 - 0.00099055807612 * GL
    "HOWTEK_ISMD": ("linear", 3.96604095240593, -0.00099055807612),
    # LUMISYS Laser (WFU): OD = (GL - 4096.99) / -1009.01
    "LUMISYS": ("linear", 4096.99 / 1009.01, -1.0 / 1009.01),
}


def _input_range(img: torch.Tensor, meta: Mapping, input_range: Any, key: Hashable) -> tuple[float, float]:
    if isinstance(input_range, str):
        if input_range == "minmax":
            return float(img.min()), float(img.max())
        if input_range == "bits":
            bits = meta.get("bits_stored")
            if not bits:
                raise ValueError(f"input_range='bits' needs meta['bits_stored'] for {key!r}; got none.")
            return 0.0, float(2 ** int(bits) - 1)
        raise ValueError(f"input_range must be 'minmax', 'bits' or (low, high), got {input_range!r}.")
    lo, hi = (float(v) for v in input_range)
    return lo, hi


class ScaleToEightBitd(MapTransform):
    """Map intensities linearly to 256 grey levels, then to [0, 1] floats (ASN preprocessing).

    Zhang et al., CVPR 2019: "DICOM is 12- or 14-bit: map raw pixels linearly to the 8-bit range
    (then to [0,1] floats)". ``out = round(255 * clip((x - lo) / (hi - lo), 0, 1)) / 255`` with
    (lo, hi) from ``input_range``; ``quantize=False`` skips the rounding (plain [0, 1] scaling).

    Example::

        >>> import torch
        >>> d = ScaleToEightBitd(keys="image", input_range=(0, 16383))({"image": torch.tensor([[[0.0, 8191.5, 16383.0]]])})
        >>> [round(v * 255) for v in d["image"].flatten().tolist()]  # 8-bit levels
        [0, 128, 255]

    Args:
        keys: image keys.
        input_range: "minmax" (per image, default), "bits" (0 .. 2**bits_stored - 1 from the meta) or (lo, hi).
        quantize: round to 8-bit levels before dividing by 255. Default True.
        allow_missing_keys: skip absent keys. Default False.
    """

    def __init__(
        self,
        keys: KeysCollection,
        input_range: str | Sequence[float] = "minmax",
        quantize: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.input_range = input_range
        self.quantize = bool(quantize)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            meta = img.meta if isinstance(img, MetaTensor) else {}
            lo, hi = _input_range(torch.as_tensor(img), meta, self.input_range, key)
            out = ScaleIntensityRange(a_min=lo, a_max=hi if hi > lo else lo + 1.0, b_min=0.0, b_max=255.0, clip=True)(img)
            if self.quantize:
                out = torch.round(out) if isinstance(out, torch.Tensor) else np.round(out)
            d[key] = out / 255.0
        return d


class OpticalDensityd(MapTransform):
    """DDSM grey levels -> optical density -> clip -> [0, 1] (LatentCADx, An et al., Front. Big Data 2021).

    Per-scanner calibration (``DDSM_CALIBRATIONS`` or explicit ``coefficients``) gives OD; OD below
    ``low`` (0.05) is set to 0 and above ``high`` (3.0) to ``high`` (METHODS.md §5), then OD / high
    gives [0, 1]. On film, more tissue means less exposure, i.e. *lower* OD, so tissue is dark;
    ``invert=True`` returns ``1 - OD/high`` (tissue bright) instead.

    Example::

        >>> import torch
        >>> t = OpticalDensityd(keys="image", scanner="HOWTEK_MGH")
        >>> t({"image": torch.tensor([[[0.0, 4000.0]]])})["image"].tolist()  # OD 3.789 -> 3.0 -> 1; 0.006 -> 0
        [[[1.0, 0.0]]]

    Args:
        keys: image keys (DDSM grey levels, e.g. 12- or 16-bit LJPEG decoded values).
        scanner: a ``DDSM_CALIBRATIONS`` name. Default "HOWTEK_MGH". Ignored when ``coefficients`` given.
        coefficients: (kind, a, b) with kind "linear" (OD = a + b GL) or "log10" (OD = a + b log10 GL).
        scanner_key: data key naming the scanner per item (overrides ``scanner``). Default None.
        low: OD below this becomes 0. Default 0.05.
        high: OD above this is clipped to it; also the normaliser. Default 3.0.
        invert: return 1 - normalised OD (tissue bright). Default False.
        allow_missing_keys: skip absent keys. Default False.
    """

    def __init__(
        self,
        keys: KeysCollection,
        scanner: str = "HOWTEK_MGH",
        coefficients: Sequence[Any] | None = None,
        scanner_key: Hashable | None = None,
        low: float = 0.05,
        high: float = 3.0,
        invert: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if coefficients is None and scanner not in DDSM_CALIBRATIONS:
            raise ValueError(f"unknown scanner {scanner!r}; known: {sorted(DDSM_CALIBRATIONS)} (or pass coefficients).")
        self.coefficients = self._check(coefficients) if coefficients is not None else DDSM_CALIBRATIONS[scanner]
        self.scanner_key = scanner_key
        if not 0 <= low < high:
            raise ValueError(f"need 0 <= low < high, got low={low}, high={high}.")
        self.low, self.high, self.invert = float(low), float(high), bool(invert)

    @staticmethod
    def _check(coefficients: Sequence[Any]) -> tuple[str, float, float]:
        kind, a, b = coefficients
        if kind not in ("linear", "log10"):
            raise ValueError(f"calibration kind must be 'linear' or 'log10', got {kind!r}.")
        return str(kind), float(a), float(b)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        coeffs = self.coefficients
        if self.scanner_key is not None and d.get(self.scanner_key):
            name = str(d[self.scanner_key])
            if name not in DDSM_CALIBRATIONS:
                raise ValueError(f"unknown scanner {name!r} in {self.scanner_key!r}; known: {sorted(DDSM_CALIBRATIONS)}.")
            coeffs = DDSM_CALIBRATIONS[name]
        kind, a, b = coeffs
        for key in self.key_iterator(d):
            img = d[key]
            x = img if isinstance(img, torch.Tensor) else torch.as_tensor(np.asarray(img))
            x = x.float()
            gl = torch.log10(torch.clamp(x, min=1.0)) if kind == "log10" else x  # log10(0) guarded
            od = a + b * gl
            od = torch.where(od < self.low, torch.zeros_like(od), torch.clamp(od, max=self.high))
            out = od / self.high
            d[key] = 1.0 - out if self.invert else out
        return d


class ChestXrayNormalized(MapTransform):
    """Scale chest X-rays to [-1, 1] and optionally repeat to 3 channels (Kim, Jung, Lee; disease masks).

    ``out = 2 * clip((x - lo) / (hi - lo), 0, 1) - 1`` with (lo, hi) from ``input_range``; METHODS.md §4:
    "3 channels normalised to [-1, 1]" for an ImageNet-style ResNet.

    Example::

        >>> import torch
        >>> ChestXrayNormalized(keys="image", channels=1)({"image": torch.tensor([[[0.0, 127.5, 255.0]]])})["image"].tolist()
        [[[-1.0, 0.0, 1.0]]]

    Args:
        keys: image keys, (1, H, W).
        input_range: (lo, hi) (default (0, 255), 8-bit ChestX-ray14 PNGs), "minmax" or "bits".
        channels: output channels, 1 or 3 (repeat). Default 3.
        allow_missing_keys: skip absent keys. Default False.
    """

    def __init__(
        self,
        keys: KeysCollection,
        input_range: str | Sequence[float] = (0.0, 255.0),
        channels: int = 3,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}.")
        self.input_range = input_range
        self.channels = int(channels)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            if img.ndim != 3 or img.shape[0] != 1:
                raise ValueError(f"ChestXrayNormalized: {key!r} must be (1, H, W), got shape {tuple(img.shape)}.")
            meta = img.meta if isinstance(img, MetaTensor) else {}
            lo, hi = _input_range(torch.as_tensor(img), meta, self.input_range, key)
            out = ScaleIntensityRange(a_min=lo, a_max=hi if hi > lo else lo + 1.0, b_min=-1.0, b_max=1.0, clip=True)(img)
            if self.channels == 3:
                out = out.repeat(3, 1, 1) if isinstance(out, torch.Tensor) else np.repeat(out, 3, axis=0)
            d[key] = out
        return d
