"""Tests for monai_mammo.regions: map -> regions, re-scoring by a classifier, NMS, back to original pixels, records."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_mammo.inferers.breast_sliding_window import MaskedSlidingWindowInferer
from monai_mammo.regions import (
    Regions,
    candidate_map,
    classifier_probabilities,
    extract_crops,
    nms_regions,
    original_spacing,
    regions_from_map,
    rescore_regions,
)
from monai_mammo.transforms.geometry import compose_pixel_to_original, flip_matrix, scale_matrix


def _two_blobs(noise: bool = True) -> np.ndarray:
    rng = np.random.default_rng(0)
    m = rng.uniform(0.0, 0.3, size=(50, 60)) if noise else np.zeros((50, 60))
    m[10:13, 20:23] = 1.0  # blob A: 3x3, centre 2.0 -> sum 10, area 9, centre (x=21, y=11)
    m[11, 21] = 2.0
    m[30, 5] = 1.0  # blob B: two pixels -> sum 4, area 2, centroid x=5.5, weighted x=5.75
    m[30, 6] = 3.0
    m[40, 40] = 0.6  # diagonal pair: one component with 8-connectivity, two with 4
    m[41, 41] = 0.6
    return m


def test_two_blobs_exact_centres_sums_areas() -> None:
    c = regions_from_map(_two_blobs(), threshold=0.4)
    assert len(c) == 3
    np.testing.assert_allclose(c.scores["map"], [10.0, 4.0, 1.2])  # sorted by ASN score
    np.testing.assert_array_equal(c.area, [9, 2, 2])
    np.testing.assert_allclose(c.points, [[21.0, 11.0], [5.5, 30.0], [40.5, 40.5]])
    np.testing.assert_allclose(c.score, c.scores["map"])
    assert list(c.scores) == ["map"] and c.boxes is None


def test_centre_modes() -> None:
    w = regions_from_map(_two_blobs(), threshold=0.4, centre="weighted")
    np.testing.assert_allclose(w.points[:2], [[21.0, 11.0], [5.75, 30.0]])
    p = regions_from_map(_two_blobs(), threshold=0.4, centre="peak")
    np.testing.assert_allclose(p.points[:2], [[21.0, 11.0], [6.0, 30.0]])
    with pytest.raises(ValueError, match="centre"):
        regions_from_map(_two_blobs(), centre="middle")


def test_threshold_connectivity_cap_min_area() -> None:
    m = _two_blobs()
    high = regions_from_map(m, threshold=1.5)  # strictly greater: only the two peaks
    np.testing.assert_allclose(high.scores["map"], [3.0, 2.0])
    np.testing.assert_allclose(high.points, [[6.0, 30.0], [21.0, 11.0]])
    assert len(regions_from_map(m, threshold=3.0)) == 0  # nothing strictly above the max
    assert len(regions_from_map(m, threshold=0.4, connectivity=4)) == 4
    capped = regions_from_map(m, threshold=0.4, max_regions=1)
    np.testing.assert_allclose(capped.scores["map"], [10.0])
    big = regions_from_map(m, threshold=0.4, min_area=3)
    np.testing.assert_array_equal(big.area, [9])
    noisy = regions_from_map(m, threshold=0.0)  # all of the (positive) noise joins into one component
    assert len(noisy) == 1 and noisy.area[0] == 50 * 60


def test_mask_and_quantile_threshold() -> None:
    m = _two_blobs()
    mask = np.ones_like(m, dtype=bool)
    mask[25:, :] = False  # hides blob B and the diagonal pair
    c = regions_from_map(torch.from_numpy(m)[None, None], mask=torch.from_numpy(mask)[None], threshold=0.4)
    np.testing.assert_allclose(c.scores["map"], [10.0])
    ramp = np.arange(100, dtype=np.float64).reshape(10, 10)
    q = regions_from_map(ramp, threshold=0.9, threshold_mode="quantile")  # np.quantile -> 89.1
    np.testing.assert_array_equal(q.area, [10])
    np.testing.assert_allclose(q.scores["map"], [sum(range(90, 100))])
    np.testing.assert_allclose(q.points, [[4.5, 9.0]])
    qm = regions_from_map(ramp, mask=ramp < 50, threshold=0.9, threshold_mode="quantile")  # quantile of 0..49 = 44.1
    np.testing.assert_allclose(qm.scores["map"], [sum(range(45, 50))])
    with pytest.raises(ValueError, match="quantile"):
        regions_from_map(ramp, threshold=1.5, threshold_mode="quantile")


def test_bad_maps_raise() -> None:
    with pytest.raises(ValueError, match="NaN"):
        regions_from_map(np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match="shape"):
        regions_from_map(np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="mask shape"):
        regions_from_map(np.zeros((4, 4)), mask=np.ones((4, 5)))
    assert len(regions_from_map(np.zeros((4, 4)))) == 0


def test_crops_centre_and_border_padding() -> None:
    img = torch.arange(100, dtype=torch.float32).reshape(10, 10)  # value = 10 * row + col
    crops = extract_crops(img, [[5.0, 4.0], [0.0, 0.0]], crop_size=4)
    assert crops.shape == (2, 1, 4, 4)
    assert crops[0, 0, 2, 2] == 45  # the candidate pixel sits at index S // 2
    torch.testing.assert_close(crops[0, 0], img[2:6, 3:7])
    corner = crops[1, 0]
    assert torch.all(corner[:2, :] == 0) and torch.all(corner[:, :2] == 0)  # zero padding
    torch.testing.assert_close(corner[2:, 2:], img[:2, :2])
    refl = extract_crops(img.numpy(), [[0.0, 0.0]], crop_size=4, padding_mode="reflect")[0, 0]
    # rows -2, -1, 0, 1 -> 2, 1, 0, 1 (mirror without repeating the edge)
    torch.testing.assert_close(refl[:, 2], torch.tensor([20.0, 10.0, 0.0, 10.0]))
    rep = extract_crops(img, [[9.0, 9.0]], crop_size=4, padding_mode="replicate")[0, 0]
    torch.testing.assert_close(rep[3], torch.tensor([97.0, 98.0, 99.0, 99.0]))
    assert extract_crops(img, np.zeros((0, 2)), crop_size=4).shape == (0, 1, 4, 4)


class _CentreClassifier(torch.nn.Module):
    """Fake FPR: logit = the crop's centre pixel; records input shapes."""

    def __init__(self, two_class: bool = False) -> None:
        super().__init__()
        self.two_class = two_class
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape))
        s = x.shape[-1] // 2
        logit = x[:, :, s, s]  # (N, 1)
        return torch.cat([torch.zeros_like(logit), logit], dim=1) if self.two_class else logit


def test_score_candidates_final_is_asn_times_fpr() -> None:
    img = np.zeros((64, 64), dtype=np.float32)
    # 5x5 constant blocks, so a bilinear resize of the crop keeps the centre value
    img[8:13, 8:13], img[48:53, 1:6] = 2.0, -1.0
    cands = Regions(points=[[10.0, 10.0], [3.0, 50.0], [62.0, 1.0]], scores={"asn": [1.0, 8.0, 4.0]}, area=[1, 2, 3])
    clf = _CentreClassifier()
    out = rescore_regions(cands, img, clf, name="fpr", crop_size=56, batch_size=2)
    assert clf.shapes == [(2, 1, 56, 56), (1, 1, 56, 56)]  # batched; border crops padded to full size
    p = 1.0 / (1.0 + np.exp(-np.array([2.0, -1.0, 0.0])))
    expected = {10.0: 1.0 * p[0], 3.0: 8.0 * p[1], 62.0: 4.0 * p[2]}
    for x, f, s, a in zip(out.x, out.scores["fpr"], out.score, out.scores["asn"]):
        assert s == pytest.approx(expected[x]) and s == pytest.approx(a * f)
    assert list(out.score) == sorted(out.score, reverse=True)
    rec = out.to_records()[0]
    assert list(rec) == ["x", "y", "score", "asn_score", "fpr_score", "area"]

    two = _CentreClassifier(two_class=True)
    out2 = rescore_regions(cands, torch.from_numpy(img)[None, None], two, name="fpr", resize_to=112)
    assert two.shapes == [(3, 1, 112, 112)]
    np.testing.assert_allclose(np.sort(out2.scores["fpr"]), np.sort(p), rtol=1e-5)  # softmax([0, z])[1] = sigmoid(z)


def test_classifier_probabilities_activations() -> None:
    z = torch.tensor([[0.0], [2.0]])
    torch.testing.assert_close(classifier_probabilities(z), torch.sigmoid(z[:, 0]))
    torch.testing.assert_close(classifier_probabilities(torch.tensor([0.3, 0.9]), activation="none"), torch.tensor([0.3, 0.9]))
    three = torch.tensor([[0.0, 0.0, 0.0]])
    torch.testing.assert_close(classifier_probabilities(three, positive_index=2), torch.tensor([1 / 3]))
    with pytest.raises(ValueError):
        classifier_probabilities(torch.zeros(2, 1), activation="relu")


def test_points_back_to_original_through_resample_and_flip() -> None:
    # Original 100 x 80 (W x H) -> resampled x0.5 to 50 x 40 -> left-right flipped.
    meta: dict = {}
    compose_pixel_to_original(meta, scale_matrix(0.5, 0.5))
    compose_pixel_to_original(meta, flip_matrix(width=50))
    cands = Regions(points=[[10.0, 5.0], [49.0, 0.0]], scores={"asn": [1.0, 2.0]}, area=[1, 1])
    out = cands.to_original(meta)
    # undo flip: x = 49 - x; undo resample (pixel centres): x0 = (x + 0.5) / 0.5 - 0.5
    np.testing.assert_allclose(out.points, [[78.5, 10.5], [0.5, 0.5]])
    np.testing.assert_allclose(out.scores["asn"], cands.scores["asn"])
    # the same with a hand-written matrix on a MetaTensor
    hand = [[-2.0, 0.0, 98.5], [0.0, 2.0, 0.5], [0.0, 0.0, 1.0]]
    mt = MetaTensor(torch.zeros(1, 40, 50), meta={"pixel_to_original": hand})
    np.testing.assert_allclose(cands.to_original(mt).points, out.points)
    np.testing.assert_allclose(cands.to_original(None).points, cands.points)


def test_end_to_end_masked_residual_to_original() -> None:
    """Inferer -> residual -> candidates -> original coordinates on a flipped image."""
    img = torch.zeros(1, 1, 64, 48)
    img[..., 20, 30] = 1.0  # one bright "µC"
    mask = torch.zeros(1, 1, 64, 48, dtype=torch.bool)
    mask[..., 8:56, 20:48] = True
    blur = torch.nn.AvgPool2d(3, stride=1, padding=1)  # a "reconstruction" that removes dots
    with torch.no_grad():
        rec = MaskedSlidingWindowInferer(roi_size=32, overlap=0.25)(img, blur, mask=mask)
    residual = (rec - img).abs() * mask
    cands = regions_from_map(residual, mask=mask, threshold=0.5)
    np.testing.assert_allclose(cands.points, [[30.0, 20.0]])
    meta = compose_pixel_to_original({}, flip_matrix(width=48))  # image had been flipped
    np.testing.assert_allclose(cands.to_original(meta).points, [[17.0, 20.0]])


def test_component_score_sum_max_mean_by_hand():
    # a 2x2 block of 0.5 (sum 2.0, peak 0.5, mean 0.5) and a single pixel of 0.9
    m = np.zeros((8, 8))
    m[1:3, 1:3] = 0.5
    m[6, 6] = 0.9
    by_sum = regions_from_map(m, threshold=0.1, score="sum")
    by_max = regions_from_map(m, threshold=0.1, score="max")
    by_mean = regions_from_map(m, threshold=0.1, score="mean")
    assert by_sum.scores["map"].tolist() == pytest.approx([2.0, 0.9])  # the block first: size wins
    assert by_sum.points.tolist() == [[1.5, 1.5], [6.0, 6.0]]
    assert by_max.scores["map"].tolist() == pytest.approx([0.9, 0.5])  # the bright pixel first
    assert by_max.points.tolist() == [[6.0, 6.0], [1.5, 1.5]]
    assert by_mean.scores["map"].tolist() == pytest.approx([0.9, 0.5])
    with pytest.raises(ValueError, match="score must be one of"):
        regions_from_map(m, threshold=0.1, score="median")


def test_score_candidates_dihedral_tta_averages_the_eight_views() -> None:
    img = np.zeros((32, 32), dtype=np.float32)
    img[10, 11] = 1.0  # one pixel right of the candidate: a classifier reading one side sees it in 2 of 8 views
    cands = Regions(points=[[10.0, 10.0]], scores={"asn": [2.0]}, area=[1])

    def right_neighbour(crops: torch.Tensor) -> torch.Tensor:
        c = crops.shape[-1] // 2
        return crops[:, :, c, c + 1] * 100.0 - 50.0  # logit +50 when the right neighbour is bright

    plain = rescore_regions(cands, img, right_neighbour, name="fpr", crop_size=7)
    tta = rescore_regions(cands, img, right_neighbour, name="fpr", crop_size=7, dihedral_tta=True)
    assert plain.scores["fpr"][0] == pytest.approx(1.0)
    # the bright pixel sits right of the centre in the identity view and in the row flip; the
    # other six views move it left, above or below
    assert tta.scores["fpr"][0] == pytest.approx(2 / 8, abs=1e-6)
    assert tta.score[0] == pytest.approx(2.0 * 2 / 8, abs=1e-6)


def test_candidate_map_kinds() -> None:
    image = torch.rand(2, 1, 8, 8)
    recon = image + 0.25
    torch.testing.assert_close(candidate_map(recon, image, "residual"), torch.full_like(image, 0.25))
    logits = torch.tensor([[[[0.0, 2.0]]]])
    torch.testing.assert_close(candidate_map(logits, None, "probability"), torch.sigmoid(logits))
    with pytest.raises(ValueError, match="unknown kind"):
        candidate_map(recon, image, "ttest")  # loss names are no map kinds
    with pytest.raises(ValueError, match="needs the input image"):
        candidate_map(recon, None, "residual")
    with pytest.raises(ValueError, match="differs"):
        candidate_map(recon, image[..., :1], "residual")


def test_component_boxes_by_hand() -> None:
    m = np.zeros((10, 12))
    m[2:5, 3:7] = 1.0  # rows 2..4, columns 3..6: box [3, 2, 7, 5], area 12
    m[8, 10] = 0.5  # one pixel: box [10, 8, 11, 9]
    r = regions_from_map(m, threshold=0.1, boxes=True, score_name="cam")
    assert r.boxes.tolist() == [[3.0, 2.0, 7.0, 5.0], [10.0, 8.0, 11.0, 9.0]]
    assert r.area.tolist() == [12, 1] and r.scores["cam"].tolist() == [12.0, 0.5]
    np.testing.assert_allclose(r.points, [[4.5, 3.0], [10.0, 8.0]])
    empty = regions_from_map(np.zeros((4, 4)), boxes=True, score_name="cam")
    assert len(empty) == 0 and empty.boxes.shape == (0, 4) and list(empty.scores) == ["cam"]


def test_regions_final_score_and_validation() -> None:
    r = Regions(points=[[0, 0], [1, 1]], scores={"a": [2.0, 3.0], "b": [0.5, 0.1]})
    np.testing.assert_allclose(r.score, [1.0, 0.3])  # product of the named scores
    assert Regions(points=[[0, 0]]).score.tolist() == [1.0]
    replaced = r.with_score("b", [0.9, 0.2], combine="replace")
    np.testing.assert_allclose(replaced.score, [0.9, 0.2])
    np.testing.assert_allclose(replaced.scores["b"], [0.9, 0.2])
    with pytest.raises(ValueError, match="scores\\['a'\\] has 1 entries"):
        Regions(points=[[0, 0], [1, 1]], scores={"a": [1.0]})
    with pytest.raises(ValueError, match="combine"):
        r.with_score("c", [1, 1], combine="sum")
    assert r.sorted().points.tolist() == [[0.0, 0.0], [1.0, 1.0]]
    assert r.select([1]).scores["a"].tolist() == [3.0]


def test_records_round_trip_with_boxes_and_missing_stage() -> None:
    r = Regions(points=[[4.5, 3.0]], scores={"asn": [12.0]}, boxes=[[3, 2, 7, 5]], area=[12])
    records = r.to_records(["asn", "fpr"])
    assert records == [
        {"x": 4.5, "y": 3.0, "box": [3.0, 2.0, 7.0, 5.0], "score": 12.0, "asn_score": 12.0, "fpr_score": None, "area": 12}
    ]
    back = Regions.from_records(records)
    assert back.to_records() == [{k: v for k, v in records[0].items() if k != "fpr_score"}]
    assert len(Regions.from_records([])) == 0


def test_boxes_back_to_original_through_resample_and_flip() -> None:
    meta: dict = {}
    compose_pixel_to_original(meta, scale_matrix(0.5, 0.5))  # 100 x 80 -> 50 x 40
    compose_pixel_to_original(meta, flip_matrix(width=50))
    r = Regions(points=[[10.0, 5.0]], scores={"s": [1.0]}, boxes=[[8, 4, 12, 6]])
    out = r.to_original(meta)
    # edges: unflip x -> 50 - x (38..42), unscale x2: 76..84; rows 8..12
    np.testing.assert_allclose(out.boxes, [[76.0, 8.0, 84.0, 12.0]])
    np.testing.assert_allclose(out.points, [[78.5, 10.5]])


def test_nms_boxes_and_points() -> None:
    boxes = Regions(points=[[5, 5], [6, 6], [30, 30]], scores={"s": [0.5, 0.9, 0.7]}, boxes=[[0, 0, 10, 10], [1, 1, 11, 11], [25, 25, 35, 35]])
    kept = nms_regions(boxes, iou_threshold=0.5)  # IoU of the first two: 81 / 119 = 0.68
    assert kept.score.tolist() == [0.9, 0.7]
    assert len(nms_regions(boxes, iou_threshold=0.7)) == 3
    points = Regions(points=[[5, 5], [7, 5], [5, 40]], scores={"s": [0.9, 0.8, 0.7]})
    assert nms_regions(points, iou_threshold=0.3, point_radius=2).points.tolist() == [[5.0, 5.0], [5.0, 40.0]]
    with pytest.raises(ValueError, match="point_radius"):
        nms_regions(points)
    assert len(nms_regions(Regions.empty(["s"]), point_radius=1)) == 0


def test_original_spacing_from_resampling() -> None:
    meta: dict = {"spacing": [0.1, 0.2]}
    compose_pixel_to_original(meta, scale_matrix(0.5, 0.25))  # stored at 0.05 mm, resampled to 0.1 x 0.2 mm
    compose_pixel_to_original(meta, flip_matrix(width=50))
    assert original_spacing(meta) == pytest.approx([0.05, 0.05])
    assert original_spacing({}) is None
