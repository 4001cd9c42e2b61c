"""monai_mammo.coordinates: the one fallback spacing, spacing from meta, meta of an image, and the
point / box convention it writes down (checked against the geometry module that implements it)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_mammo import coordinates
from monai_mammo.coordinates import DEFAULT_SPACING_MM, meta_of, spacing_xy


def test_default_spacing_is_the_ffdm_pitch():
    assert DEFAULT_SPACING_MM == 0.07


@pytest.mark.parametrize(
    "meta, expected",
    [
        ({"spacing": [0.05, 0.1]}, (0.05, 0.1)),
        ({"spacing": (0.2,)}, (0.2, 0.2)),  # one value: isotropic
        ({"spacing": 0.3}, (0.3, 0.3)),
        ({"spacing": torch.tensor([0.1, 0.12], dtype=torch.float64)}, (0.1, 0.12)),
        ({"spacing": np.array([0.085, 0.085])}, (0.085, 0.085)),
    ],
)
def test_spacing_xy_reads_x_first(meta, expected):
    assert spacing_xy(meta) == pytest.approx(expected)
    assert all(type(v) is float for v in spacing_xy(meta))


@pytest.mark.parametrize(
    "meta",
    [None, {}, {"spacing": None}, {"spacing": [math.nan, math.nan]}, {"spacing": [0.0, 0.1]}, {"spacing": [-0.1, 0.1]}, {"spacing": [0.1, 0.1, 0.1]}],
)
def test_unknown_spacing_is_none_or_the_fallback_asked_for(meta):
    assert spacing_xy(meta) is None
    assert spacing_xy(meta, fallback=DEFAULT_SPACING_MM) == (0.07, 0.07)
    assert spacing_xy(meta, fallback=0.1) == (0.1, 0.1)


def test_a_known_spacing_ignores_the_fallback():
    assert spacing_xy({"spacing": [0.05, 0.06]}, fallback=DEFAULT_SPACING_MM) == (0.05, 0.06)


@pytest.mark.parametrize("fallback", [0, 0.0, -0.07, math.nan])
def test_a_fallback_that_is_not_a_spacing_is_an_error(fallback):
    # 0 used to mean "no fallback" silently
    with pytest.raises(ValueError, match="fallback spacing must be a positive number of mm"):
        spacing_xy({}, fallback=fallback)


def test_meta_of_copies_a_metatensor_meta_and_is_empty_otherwise():
    image = MetaTensor(torch.zeros(1, 4, 5), meta={"spacing": [0.1, 0.2], "filename_or_obj": "a.dcm"})
    meta = meta_of(image)
    assert meta["spacing"] == [0.1, 0.2] and meta["filename_or_obj"] == "a.dcm"
    meta["spacing"] = [9, 9]
    assert image.meta["spacing"] == [0.1, 0.2]  # a copy
    assert meta_of(torch.zeros(1, 4, 5)) == {} and meta_of(np.zeros((4, 5))) == {} and meta_of(None) == {}
    assert spacing_xy(meta_of(image)) == (0.1, 0.2)


def test_points_are_pixel_centres_and_boxes_pixel_edges_as_the_geometry_module_implements():
    from monai_mammo.transforms import geometry

    # a single bright pixel at (row 3, column 5) of a (5, 8) image: point [5, 3], box [5, 3, 6, 4]
    image = np.zeros((5, 8))
    image[3, 5] = 1.0
    rows, cols = np.nonzero(image)
    point = [float(cols[0]), float(rows[0])]
    box = [int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1]
    assert point == [5.0, 3.0] and box == [5, 3, 6, 4]
    assert box[2] - box[0] == 1  # x1 - x0 is the width in pixels
    # a 2x upsampling maps the new grid back to stored pixels the same way for both
    meta = geometry.compose_pixel_to_original({"pixel_to_original": geometry.identity().tolist()}, geometry.scale_matrix(2.0, 2.0))
    # in the 2x image, the pixel covers columns 10-11 and rows 6-7: centre (10.5, 6.5), box [10, 6, 12, 8]
    assert geometry.points_to_original([[10.5, 6.5]], meta).tolist() == [point]
    assert geometry.boxes_to_original([[10, 6, 12, 8]], meta).tolist() == [box]


def test_module_docstring_states_the_convention_once():
    doc = coordinates.__doc__
    assert "rows first" in doc.lower() and "[x0, y0, x1, y1]" in doc and "exclusive" in doc
    assert "meta[\"spacing\"] = [sx, sy]" in doc
