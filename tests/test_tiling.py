"""Region tiling: window grid, mask share, chunked crops."""

import numpy as np
import pytest
import torch

from monai_mammo.tiling import iter_crops, mask_fraction, tile_boxes, window_starts


def test_window_starts_cover_axis_and_end_flush():
    assert window_starts(10, 4, 3).tolist() == [0, 3, 6]
    assert window_starts(11, 4, 3).tolist() == [0, 3, 6, 7]  # last window flush with the edge
    assert window_starts(4, 4, 2).tolist() == [0]
    assert window_starts(2, 4, 2).tolist() == [0]  # window larger than the axis


def test_paper_grid_on_full_mammogram_size():
    boxes = tile_boxes((4096, 3328), window=224, stride=112)
    ys, xs = window_starts(4096, 224, 112), window_starts(3328, 224, 112)
    assert len(boxes) == len(ys) * len(xs)
    assert (boxes[:, 2] - boxes[:, 0] == 224).all() and (boxes[:, 3] - boxes[:, 1] == 224).all()
    assert boxes[:, 2].max() == 3328 and boxes[:, 3].max() == 4096 and boxes.min() == 0


def test_mask_fraction_hand_worked():
    mask = np.zeros((6, 6), bool)
    mask[0:3, 0:3] = True  # 9 pixels
    boxes = np.array([[0, 0, 3, 3], [0, 0, 6, 6], [3, 3, 6, 6], [2, 2, 4, 4], [4, 4, 8, 8]])
    np.testing.assert_allclose(mask_fraction(mask, boxes), [1.0, 9 / 36, 0.0, 1 / 4, 0.0])
    # a box partly outside the image is judged on its in-image part
    np.testing.assert_allclose(mask_fraction(np.ones((4, 4)), [[2, 2, 6, 6]]), [1.0])


def test_min_fraction_filter_and_mask_shape_check():
    mask = np.zeros((8, 8), bool)
    mask[:, :3] = True
    kept = tile_boxes((8, 8), window=4, stride=2, mask=mask, min_fraction=0.5)
    # windows starting at x=0 have 3/4 inside, x=2 have 1/4, x=4 none
    assert sorted(set(kept[:, 0].tolist())) == [0]
    assert len(tile_boxes((8, 8), window=4, stride=2, mask=mask, min_fraction=0.25)) == 6
    assert len(tile_boxes((8, 8), 4, 2, mask=np.zeros((8, 8)), min_fraction=0.1)) == 0
    with pytest.raises(ValueError, match="does not match"):
        tile_boxes((8, 8), 4, 2, mask=np.ones((8, 9)))
    with pytest.raises(ValueError, match="window"):
        tile_boxes((8, 8), window=0)


def test_iter_crops_contents_padding_and_chunks():
    image = torch.arange(2 * 5 * 6, dtype=torch.float32).reshape(2, 5, 6)
    boxes = tile_boxes((5, 6), window=4, stride=4)
    chunks = list(iter_crops(image, boxes, chunk_size=3, pad_value=-1.0))
    assert [len(b) for b, _ in chunks] == [3, 1]
    crops = torch.cat([c for _, c in chunks])
    for box, crop in zip(np.concatenate([b for b, _ in chunks]), crops):
        x0, y0, x1, y1 = box.tolist()
        torch.testing.assert_close(crop, image[:, y0:y1, x0:x1])
    # a window larger than the image is padded
    (box, crop), = iter_crops(image[0].numpy(), tile_boxes((5, 6), window=8, stride=8), chunk_size=8, pad_value=-1.0)
    assert crop.shape == (1, 1, 8, 8)
    assert (crop[0, 0, 5:, :] == -1).all() and (crop[0, 0, :5, 6:] == -1).all()
    torch.testing.assert_close(crop[0, 0, :5, :6], image[0])


def test_iter_crops_rejects_mixed_sizes():
    with pytest.raises(ValueError, match="same positive size"):
        list(iter_crops(np.zeros((4, 4)), np.array([[0, 0, 2, 2], [0, 0, 3, 3]])))
