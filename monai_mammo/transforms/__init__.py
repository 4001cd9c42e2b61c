"""MONAI MapTransforms for 2D radiographs: loading, intensity, spacing, orientation, breast mask, sampling.

Geometry conventions and the ``pixel_to_original`` bookkeeping live in :mod:`.geometry`.
"""

from monai_mammo.transforms.geometry import boxes_to_original, points_to_original
from monai_mammo.transforms.io import LoadRadiographd, RadiographReader, RadiographReadError, spacing_of

__all__ = [
    "RadiographReader",
    "RadiographReadError",
    "LoadRadiographd",
    "spacing_of",
    "points_to_original",
    "boxes_to_original",
]
