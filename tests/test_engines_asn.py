"""ASN glue (monai_mammo.engines.asn): target transforms, dict-target batches, the loss contract,
detection and FPR mining, on hand-made data with hand-counted results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from PIL import Image

from monai_mammo.engines.asn import (
    ASNDetectd,
    LabelMaskToPointsd,
    MicrocalcificationMaskd,
    PointsToTensord,
    PositiveMaskLoss,
    candidate_map_kind,
    mine_fpr_samples,
    pixel_masks_loss,
    prepare_fpr_batch,
)
from monai_mammo.transforms.geometry import compose_pixel_to_original, flip_matrix

TRAIN = str(Path(__file__).resolve().parents[1] / "bundles" / "asn" / "configs" / "train.yaml")


# ----------------------------------------------------------------------------------------- targets


def test_microcalcification_mask_discs_by_hand() -> None:
    img = MetaTensor(torch.zeros(1, 12, 16), meta={"spacing": [0.1, 0.1]})
    points = [[3.0, 4.0], [12.0, 7.0], [15.0, 0.0]]
    # 0.2 mm at 0.1 mm: radius 1 px -> a 5-pixel cross; 0.5 mm -> radius 2.5 px (21 pixels);
    # the corner point: radius 1, clipped to 3 pixels
    d = MicrocalcificationMaskd()({"image": img, "points": points, "point_diameters_mm": [0.2, 0.5, 0.2]})
    mask = d["pos_mask"]
    assert isinstance(mask, MetaTensor) and mask.shape == (1, 12, 16) and mask.dtype == torch.float32
    assert mask.meta["spacing"] == [0.1, 0.1]
    m = mask[0].numpy()
    assert m[3:6, 2:5].tolist() == [[0, 1, 0], [1, 1, 1], [0, 1, 0]]  # rows 3..5 around y = 4
    assert int(m[5:10, 10:15].sum()) == 21 and m[5:10, 10:15][[0, -1]].sum() == 6  # rows 5..9: 3 + 5 + 5 + 5 + 3
    assert int(m[0:2, 14:16].sum()) == 3
    assert int(m.sum()) == 5 + 21 + 3


def test_microcalcification_mask_defaults_min_radius_and_anisotropy() -> None:
    img = torch.zeros(1, 9, 9)  # a plain tensor: no meta, fallback spacing 0.07 mm
    # no diameters: default 0.3 mm -> radius 0.15 / 0.07 = 2.14 px: 13 pixels ((dx, dy) with dx² + dy² <= 4.59)
    d = MicrocalcificationMaskd()({"image": img, "points": [[4.0, 4.0]]})
    assert not isinstance(d["pos_mask"], MetaTensor) and int(d["pos_mask"].sum()) == 13
    tiny = MicrocalcificationMaskd(min_radius_px=1.0)({"image": img, "points": [[4.0, 4.0]], "point_diameters_mm": [0.01]})
    assert int(tiny["pos_mask"].sum()) == 5  # a 0.01 mm µC still marks a cross
    aniso = MetaTensor(torch.zeros(1, 9, 9), meta={"spacing": [0.05, 0.1]})
    # 0.2 mm: rx = 2 px, ry = 1 px -> 5 pixels on the row, 1 above, 1 below
    m = MicrocalcificationMaskd()({"image": aniso, "points": [[4.0, 4.0]], "point_diameters_mm": [0.2]})["pos_mask"][0]
    assert int(m.sum()) == 7 and int(m[4].sum()) == 5 and int(m[:, 4].sum()) == 3
    empty = MicrocalcificationMaskd()({"image": img, "points": None})
    assert int(empty["pos_mask"].sum()) == 0
    with pytest.raises(ValueError, match=r"must be \(C, H, W\)"):
        MicrocalcificationMaskd()({"image": torch.zeros(9, 9), "points": []})


def test_label_mask_to_points_from_a_label_image(tmp_path) -> None:
    label = np.zeros((20, 30), dtype=np.uint8)
    label[2:5, 3:6] = 1  # 3x3 block: centroid (x 4, y 3), area 9
    label[10, 20:24] = 1  # 1x4 bar: centroid (x 21.5, y 10), area 4
    path = tmp_path / "label.png"
    Image.fromarray(label).save(path)
    image = MetaTensor(torch.zeros(1, 20, 30), meta={"spacing": [0.1, 0.1]})
    d = LabelMaskToPointsd()({"image": image, "label": str(path)})
    assert d["points"] == [[4.0, 3.0], [21.5, 10.0]]
    # equivalent-circle diameters: 2 sqrt(area / pi) pixels x 0.1 mm
    np.testing.assert_allclose(d["point_diameters_mm"], [0.2 * np.sqrt(9 / np.pi), 0.2 * np.sqrt(4 / np.pi)])
    assert "label" not in d
    # the mask drawn from those points covers the labelled pixels' centres
    mask = MicrocalcificationMaskd()(d)["pos_mask"][0]
    assert mask[3, 4] == 1 and mask[10, 21] == 1 and mask[10, 22] == 1
    # items with points (our datalists, where label is the image-level vector) pass through
    item = {"image": image, "points": [[1.0, 1.0]], "label": [0, 1]}
    assert LabelMaskToPointsd()(item) == item


def test_points_to_tensor() -> None:
    d = PointsToTensord(keys=["points", "other"])({"points": [[1, 2], [3, 4]]})
    assert d["points"].dtype == torch.float32 and d["points"].tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert d["other"].shape == (0, 2)


# --------------------------------------------------------------------------- batches and loss contract


def _bundle_prepare_batch():
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(TRAIN)
    return parser.get_parsed_content("train#prepare_batch")


def test_train_yaml_batch_is_image_and_a_dict_target() -> None:
    """The bundle's prepare_batch hands the loss {image, positive_mask, valid_mask}: no channel packing."""
    prepare = _bundle_prepare_batch()
    image = MetaTensor(torch.rand(2, 1, 8, 8))
    pos = torch.zeros(2, 1, 8, 8)
    pos[0, 0, 3, 3] = 1
    breast = torch.ones(2, 1, 8, 8, dtype=torch.bool)
    inputs, target, args, kwargs = prepare({"image": image, "pos_mask": pos, "breast_mask": breast, "points": [[0, 0]]}, "cpu")
    assert type(inputs) is torch.Tensor and torch.equal(inputs, image.as_tensor())
    assert sorted(target) == ["image", "positive_mask", "valid_mask"] and args == () and kwargs == {}
    assert target["positive_mask"] is not None and torch.equal(target["positive_mask"], pos)
    from monai_mammo.losses.ttest import TTestLoss

    recon = inputs + 0.1
    # the loss called as the trainer calls it equals the t-test computed by hand: r = 0.1 everywhere,
    # max(0.8 - 0.1, 0) + 0.1 + 0 + 0 (both variances 0)
    assert float(TTestLoss()(recon, target)) == pytest.approx(0.8, abs=1e-6)
    # a batch without the breast mask: every pixel valid
    _, target, _, _ = prepare({"image": image, "pos_mask": pos}, "cpu")
    assert "valid_mask" not in target


def test_candidate_map_kind_and_the_loss_adapter() -> None:
    from monai_mammo.registry import IncompatibleComponentError, build_loss

    assert candidate_map_kind("ttest") == "residual"
    assert candidate_map_kind("mse_reconstruction") == "residual"
    assert candidate_map_kind("segmentation_ce") == "probability"
    assert candidate_map_kind("weighted_bce") == "probability"  # a "tensor" loss makes a segmenter
    with pytest.raises(IncompatibleComponentError, match="'disentangle' \\(family 'multitask'.*pixel_masks"):
        candidate_map_kind("disentangle")
    ttest = build_loss("ttest")
    assert pixel_masks_loss(ttest, "ttest") is ttest
    wrapped = pixel_masks_loss(build_loss("weighted_bce"), "weighted_bce")
    assert isinstance(wrapped, PositiveMaskLoss) and wrapped.candidate_map == "probability"
    logits = torch.zeros(1, 1, 2, 2)
    target = {"image": torch.rand(1, 1, 2, 2), "positive_mask": torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])}
    bce = PositiveMaskLoss(torch.nn.BCEWithLogitsLoss())(logits, target)
    assert float(bce) == pytest.approx(np.log(2), abs=1e-6)  # logit 0 against 1 and 0: ln 2 each
    with pytest.raises(ValueError, match="positive_mask"):
        PositiveMaskLoss(torch.nn.BCEWithLogitsLoss())(logits, torch.zeros(1, 1, 2, 2))


# ------------------------------------------------------------------------------------ detection


class _CentreLogit(torch.nn.Module):
    """Fake FPR: the crop's centre pixel as the logit (bright candidates score high)."""

    crop_size = 5

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        c = crops.shape[-1] // 2
        return crops[:, :, c, c] * self.weight


def _dots(h: int = 24, w: int = 32) -> torch.Tensor:
    img = torch.zeros(1, h, w)
    img[0, 5, 6] = 1.0  # dot A
    img[0, 12, 20] = 0.5  # dot B
    img[0, 20, 10:12] = 0.75  # dot C: two pixels, ASN score 1.5
    return img


def test_detector_scores_asn_times_fpr_and_maps_back() -> None:
    img = MetaTensor(_dots(), meta={"spacing": [0.1, 0.1]})
    compose_pixel_to_original(img.meta, flip_matrix(width=32))  # the stored image was flipped
    pred = torch.zeros_like(img)  # a "reconstruction" without the dots: the residual is the dots
    det = ASNDetectd(map_kind="residual", threshold=0.1, mask_key=None, fpr_network=_CentreLogit(), to_original=True,
                     gt_key="points", map_key="cmap")
    d = det({"image": img, "pred": pred, "points": [[6.0, 5.0]]})
    records = d["pred_points"]
    sig = torch.sigmoid(torch.tensor([1.0, 0.5, 0.75])).tolist()
    expected = sorted([(31 - 6.0, 5.0, 1.0 * sig[0]), (31 - 20.0, 12.0, 0.5 * sig[1]), (31 - 10.5, 20.0, 1.5 * sig[2])],
                      key=lambda t: -t[2])
    assert [(r["x"], r["y"]) for r in records] == [(x, y) for x, y, _ in expected]
    assert [r["score"] for r in records] == pytest.approx([s for _, _, s in expected])
    assert all(r["score"] == pytest.approx(r["asn_score"] * r["fpr_score"]) for r in records)
    assert list(records[0]) == ["x", "y", "score", "asn_score", "fpr_score", "area"]
    assert d["pred_spacing"] == pytest.approx([0.1, 0.1])
    assert d["gt_points"].tolist() == [[6.0, 5.0]]
    assert torch.equal(d["cmap"].as_tensor(), img.as_tensor())
    probability = ASNDetectd(map_kind="probability", threshold=0.6, mask_key=None)({"image": img, "pred": pred + 5 * img})
    assert [r["fpr_score"] for r in probability["pred_points"]] == [None] * 3
    with pytest.raises(ValueError, match="map_kind"):
        ASNDetectd(map_kind="ttest")


def test_fpr_mining_counts_positives_and_negatives() -> None:
    """Dots A and B are µCs (A on its point, B 9 px = 0.9 mm from its point: within 1 mm), dot C is not;
    a third µC has no candidate."""
    img = MetaTensor(_dots(), meta={"spacing": [0.1, 0.1]})
    item = {"image": img, "points": torch.tensor([[6.0, 5.0], [20.0, 3.0], [28.0, 2.0]]), "breast_mask": torch.ones(1, 24, 32)}
    network = torch.nn.Conv2d(1, 1, 1, bias=False)
    torch.nn.init.zeros_(network.weight)  # reconstruction 0: the residual is the image
    detector = ASNDetectd(map_kind="residual", threshold=0.1, mask_key="breast_mask")

    def inferer(x, net):
        return net(x)

    samples = mine_fpr_samples(network, [item], inferer, detector, crop_size=5, radius_mm=1.0)
    labels = [float(s["label"]) for s in samples]
    # candidates: A (positive), C (negative), B (positive) by ASN score 1.5 (C), 1.0 (A), 0.5 (B);
    # then the three ground-truth points (positives)
    assert len(samples) == 6 and labels.count(1.0) == 5 and labels.count(0.0) == 1
    assert all(s["image"].shape == (1, 5, 5) for s in samples)
    centres = sorted(float(s["image"][0, 2, 2]) for s in samples)
    assert centres == pytest.approx([0.0, 0.0, 0.5, 0.75, 1.0, 1.0])  # gt (20, 3) and (28, 2) lie on background
    negatives = [s for s in samples if float(s["label"]) == 0]
    assert float(negatives[0]["image"][0, 2, 2]) == pytest.approx(0.75)  # the negative is dot C
    with pytest.warns(UserWarning, match="only one class"):
        capped = mine_fpr_samples(network, [item], inferer, detector, crop_size=5, max_negatives_per_image=0,
                                  include_ground_truth=False)
    assert [float(s["label"]) for s in capped] == [1.0, 1.0]
    with pytest.raises(ValueError, match="no samples"):
        mine_fpr_samples(network, [{"image": torch.zeros(1, 8, 8), "points": [], "breast_mask": torch.ones(1, 8, 8)}],
                         inferer, detector, crop_size=5)


def test_prepare_fpr_batch_views_and_labels() -> None:
    from monai_mammo.transforms.dihedral import dihedral_view

    crops = torch.arange(9.0).reshape(1, 1, 3, 3).repeat(16, 1, 1, 1)
    batch = {"image": crops, "label": torch.ones(16, 1)}
    x, y = prepare_fpr_batch(batch, torch.device("cpu"), augment=False)
    assert torch.equal(x, crops) and y.shape == (16, 1) and y.dtype == torch.float32
    torch.manual_seed(1)
    x, _ = prepare_fpr_batch(batch, torch.device("cpu"))
    views = [dihedral_view(crops[:1], i) for i in range(8)]
    assert all(any(torch.equal(c[None], v) for v in views) for c in x)
    assert not all(torch.equal(c, crops[0]) for c in x)  # augmented
