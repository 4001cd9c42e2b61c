"""monai_mammo.writers: the rasteriser against hand-counted pixels, the MONAI Label label layout and
the JSON writer's round trip through original pixels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_mammo.regions import Regions
from monai_mammo.transforms.geometry import compose_pixel_to_original, flip_matrix, get_pixel_to_original, scale_matrix
from monai_mammo.writers import RegionsToLabeld, SaveRegionsd, draw_boxes, draw_discs


def test_discs_hand_counted() -> None:
    # radius 2.5 around (5, 5): rows dy = 0, ±1 have |dx| <= 2 (5 each), dy = ±2 has |dx| <= 1 (3 each)
    assert int(draw_discs(np.zeros((11, 11)), [[5, 5]], 2.5).sum()) == 5 + 2 * 5 + 2 * 3
    # rx = 2, ry = 1: the row has 5 pixels, the rows above and below 1 each
    ellipse = draw_discs(np.zeros((5, 7), np.uint8), [[3, 2]], [[2.0, 1.0]], value=7)
    assert ellipse.tolist() == [[0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 7, 0, 0, 0], [0, 7, 7, 7, 7, 7, 0], [0, 0, 0, 7, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0]]
    # clipped at the corner: the cross keeps 3 of its 5 pixels; a disc outside draws nothing
    assert int(draw_discs(np.zeros((4, 4)), [[0, 0], [10, 10]], 1.0).sum()) == 3
    # a sub-pixel centre: (1.5, 1.5) with radius 1 covers the 4 pixels at distance 0.71
    assert draw_discs(np.zeros((3, 3)), [[1.5, 1.5]], 1.0).tolist() == [[0, 0, 0], [0, 1, 1], [0, 1, 1]]
    with pytest.raises(ValueError, match="radii must be > 0"):
        draw_discs(np.zeros((3, 3)), [[1, 1]], 0.0)
    with pytest.raises(ValueError, match=r"canvas must be \(H, W\)"):
        draw_discs(np.zeros((1, 3, 3)), [[1, 1]], 1.0)


def test_boxes_hand_counted() -> None:
    canvas = draw_boxes(np.zeros((6, 8), np.uint8), [[1, 2, 4, 5]], value=3)
    assert canvas.sum() == 3 * 3 * 3 and canvas[2:5, 1:4].min() == 3  # image[y0:y1, x0:x1]
    # edge coordinates: pixel c is inside when c + 0.5 lies in [x0, x1): columns 0, 1 and row 1
    frac = draw_boxes(np.zeros((4, 4), np.uint8), [[0.4, 0.6, 2.5, 2.4]])
    assert np.argwhere(frac).tolist() == [[1, 0], [1, 1]]
    assert draw_boxes(np.zeros((4, 4)), [[-3, -3, 1, 1], [9, 9, 12, 12]]).sum() == 1  # clipped, outside


def _label_input() -> dict:
    image = MetaTensor(torch.zeros(1, 10, 12), meta={"spacing": [0.5, 0.5], "original_size": [20, 24], "filename_or_obj": "a.dcm"})
    records = [
        {"x": 4.0, "y": 5.0, "score": 0.9},  # radius 0.5 mm at 0.25 mm: 2 px -> 13 pixels
        {"x": 18.0, "y": 15.0, "score": 0.1},
        {"x": 0.0, "y": 0.0, "box": [20, 2, 23, 4], "score": 0.5},  # 3 x 2 rectangle
    ]
    return {"image": image, "pred_points": records, "pred_spacing": [0.25, 0.25]}


def test_regions_to_label_in_the_label_app_layout() -> None:
    d = RegionsToLabeld(radius_mm=0.5, max_regions=2)(_label_input())
    label = d["pred"]
    assert label.dtype == torch.uint8 and tuple(label.shape) == (24, 20)  # original W x H: MONAI Label's layout
    assert tuple(d["image"].meta["spatial_shape"]) == (24, 20)
    plain = label.T.numpy()  # back to rows first
    assert int(plain.sum()) == 13 + 6  # the low-scoring third region is not drawn (max_regions 2)
    assert plain[5, 4] == 1 and plain[15, 18] == 0 and plain[2:4, 20:23].min() == 1
    assert label.meta["spacing"] == [0.25, 0.25]
    rows_first = RegionsToLabeld(radius_mm=0.5, min_score=0.6, label_app_layout=False, label_value=2)(_label_input())["pred"]
    assert tuple(rows_first.shape) == (1, 20, 24) and int(rows_first.sum()) == 2 * 13


def test_json_round_trip_in_original_pixels(tmp_path: Path) -> None:
    # stored image 40 x 30 (W x H) at 0.1 mm, resampled to 0.2 mm (20 x 15) and flipped left-right
    image = MetaTensor(torch.rand(1, 15, 20), meta={"filename_or_obj": "/data/case7.dic", "spacing": [0.2, 0.2],
                                                     "original_size": [30, 40], "laterality": "R", "view": "CC"})
    compose_pixel_to_original(image.meta, scale_matrix(0.5, 0.5))
    compose_pixel_to_original(image.meta, flip_matrix(width=20))
    current = Regions(points=[[3.0, 4.0], [10.0, 7.0]], scores={"asn": [2.0, 1.0], "fpr": [0.5, 0.8]}, area=[3, 1])
    records = current.to_original(image.meta).to_records(["asn", "fpr"])
    writer = SaveRegionsd(tmp_path, write_overlay=True, map_key="residual_map")
    d = writer({"image": image, "pred_points": records, "pred_spacing": [0.1, 0.1], "residual_map": image})
    assert Path(d["detections_file"]).name == "case7.json"
    saved = json.loads(Path(d["detections_file"]).read_text())
    assert saved["coordinates"] == "original_pixels" and saved["image_size"] == [30, 40]
    assert saved["spacing"] == [0.1, 0.1] and saved["num_points"] == 2 and (saved["laterality"], saved["view"]) == ("R", "CC")
    # unflip: 19 - x, unscale (pixel centres): (x + 0.5) * 2 - 0.5
    assert [(p["x"], p["y"]) for p in saved["points"]] == [(32.5, 8.5), (18.5, 14.5)]
    assert saved["points"][0]["score"] == pytest.approx(1.0) and saved["points"][1]["fpr_score"] == pytest.approx(0.8)
    back = Regions.from_records(saved["points"])
    inverse = np.linalg.inv(get_pixel_to_original(image.meta))
    mapped = back.points @ inverse[:2, :2].T + inverse[:2, 2]
    np.testing.assert_allclose(mapped, current.points)
    assert (tmp_path / "case7_overlay.png").is_file() and (tmp_path / "case7_residual.nii.gz").is_file()
    import nibabel as nib

    assert nib.load(str(tmp_path / "case7_residual.nii.gz")).shape == (15, 20)


def test_json_writer_boxes_in_preprocessed_pixels(tmp_path: Path) -> None:
    image = MetaTensor(torch.zeros(1, 8, 8), meta={"filename_or_obj": "x.png"})
    records = Regions(points=[[2.0, 3.0]], scores={"cam": [0.7]}, boxes=[[1, 2, 4, 5]]).to_records()
    writer = SaveRegionsd(tmp_path, field="boxes", original_coordinates=False, write_overlay=True)
    saved = json.loads(Path(writer({"image": image, "pred_points": records})["detections_file"]).read_text())
    assert saved["coordinates"] == "preprocessed_pixels" and saved["image_size"] == [8, 8]
    assert saved["num_boxes"] == 1 and saved["boxes"][0]["box"] == [1.0, 2.0, 4.0, 5.0] and saved["boxes"][0]["cam_score"] == 0.7
    assert (tmp_path / "x_overlay.png").is_file()
