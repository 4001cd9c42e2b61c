"""MONAI MapTransforms for 2D radiographs: loading, intensity, spacing, orientation, breast mask, sampling.

Geometry conventions and the ``pixel_to_original`` bookkeeping live in :mod:`.geometry`. The package
stays import-light: the public names below are resolved lazily (PEP 562) from their modules, so
``import monai_mammo.transforms`` does not import MONAI until a name is used. Configs should use the
fully qualified module paths (``monai_mammo.transforms.spacing.ResampleToSpacingd``).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    # io
    "RadiographReader": "io",
    "RadiographReadError": "io",
    "LoadRadiographd": "io",
    "spacing_of": "io",
    # intensity
    "ScaleToEightBitd": "intensity",
    "OpticalDensityd": "intensity",
    "ChestXrayNormalized": "intensity",
    "DDSM_CALIBRATIONS": "intensity",
    # spacing / orientation / breast
    "ResampleToSpacingd": "spacing",
    "CanonicalOrientationd": "orientation",
    "chest_wall_side": "orientation",
    "BreastMaskd": "breast",
    "CropToBreastd": "breast",
    "breast_mask": "breast",
    "mask_bbox": "breast",
    # sampling
    "PositiveNegativePatchSamplerd": "sampling",
    "BreastRegionTilerd": "sampling",
    "tile_boxes": "sampling",
    "crop_sample": "sampling",
    # geometry
    "RandMassCompositingd": "compositing",
    "ToLabelAppLayoutd": "label_app",
    "points_to_original": "geometry",
    "boxes_to_original": "geometry",
    "compose_pixel_to_original": "geometry",
    "get_pixel_to_original": "geometry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'monai_mammo.transforms' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"monai_mammo.transforms.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
