"""Kim, Jung, Lee (disease masks) library parts against hand-computed values: the affine of Eq. 5,
alignment recovering a known transform, Eq. 3 on hand-made CAMs, the attention, the image-level
weighted BCE with empty sets, the alignment loss, and the localization metric."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from monai_mammo.alignment import affine_matrix, build_anchor, corner_error, invert_affine, smooth, warp
from monai_mammo.disease_masks import DiseaseMaskAccumulator, load_masks, normalize_map, pseudo_disease_masks, save_masks, symmetric_flags
from monai_mammo.losses.alignment import AlignmentLoss
from monai_mammo.losses.weighted_bce import BatchWeightedBCELoss
from monai_mammo.metrics.localization import LocalizationAccuracyMetric, cam_boxes
from monai_mammo.networks.diseasemask import AlignmentRegressor, DiseaseMaskNet, ResNetCAMClassifier
from monai_mammo.registry import build_loss, build_metric

# --- Eq. 5 -------------------------------------------------------------------------------------------


def test_affine_identity_rotation_and_anisotropic_scale():
    identity = affine_matrix(torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0]]))
    assert torch.equal(identity, torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]]))
    angle = math.radians(30)
    rotation = affine_matrix(torch.tensor([[1.0, 1.0, 0.0, 0.0, angle]]))
    c, s = math.cos(angle), math.sin(angle)
    assert torch.allclose(rotation, torch.tensor([[[c, -s, 0.0], [s, c, 0.0]]]), atol=1e-7)
    # anisotropic scale, rotation and shift together: [[sx cos, -sy sin, tx], [sx sin, sy cos, ty]]
    full = affine_matrix(torch.tensor([[2.0, 0.5, 0.1, -0.2, angle]]))
    expected = torch.tensor([[[2 * c, -0.5 * s, 0.1], [2 * s, 0.5 * c, -0.2]]])
    assert torch.allclose(full, expected, atol=1e-6)
    with pytest.raises(ValueError, match=r"\(B, 5\)"):
        affine_matrix(torch.zeros(1, 4))


def test_warp_by_a_pure_shift_moves_pixels_and_inverse_restores():
    image = torch.zeros(1, 1, 8, 8)
    image[0, 0, 3, 2] = 1.0
    # T maps output to input coordinates: tx = +2 / 8 * 2 = 0.5 samples 2 pixels to the right
    shift = torch.tensor([[[1.0, 0.0, 0.5], [0.0, 1.0, 0.0]]])
    moved = warp(image, shift)
    assert moved[0, 0, 3, 0] == 1.0 and moved.sum() == 1.0
    back = warp(moved, invert_affine(shift))
    assert back[0, 0, 3, 2] == 1.0


def test_corner_error_by_hand():
    scale = torch.tensor([[1.1, 0.0, 0.0], [0.0, 1.0, 0.0]])  # x corners move 0.1 normalised = 5 px of 100
    assert corner_error(scale, torch.eye(2, 3), (100, 100)).tolist() == pytest.approx([5.0])
    assert corner_error(scale, torch.eye(2, 3), (100, 100), spacing=(0.2, 0.2)).tolist() == pytest.approx([1.0])


def test_smooth_and_anchor():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    pooled = smooth(x, pool=2)
    assert pooled.shape == x.shape and pooled.mean().item() == pytest.approx(x.mean().item())
    assert torch.equal(smooth(x, pool=1), x)
    assert torch.equal(build_anchor([torch.ones(1, 2, 2), 3 * torch.ones(1, 2, 2)]), 2 * torch.ones(1, 2, 2))
    with pytest.raises(ValueError, match="normal"):
        build_anchor([])


def test_regressor_starts_at_identity_and_is_bounded():
    regressor = AlignmentRegressor(layers=(1, 1, 1, 1), block_inplanes=(4, 4, 4, 4), input_size=32, max_scale=0.2, max_shift=0.3, max_rotation_deg=10)
    x = torch.rand(3, 1, 48, 48)
    assert torch.allclose(regressor(x), torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0]] * 3))
    with torch.no_grad():
        regressor.resnet.fc.bias.fill_(100.0)  # saturate: the bounds hold
    params = regressor(x)
    assert torch.allclose(params[0], torch.tensor([1.2, 1.2, 0.3, 0.3, math.radians(10)]), atol=1e-5)


def test_alignment_recovers_a_known_transform():
    """The regressor, trained with the L_e loss alone against the anchor, learns the shift that
    brings a moved blob back onto the anchor's."""
    torch.manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    # two blobs of different sizes: no rotation or flip maps the pattern onto itself
    anchor = (torch.exp(-((xx - 12) ** 2 + (yy - 14) ** 2) / 30.0) + 0.6 * torch.exp(-((xx - 21) ** 2 + (yy - 19) ** 2) / 8.0))[None, None]
    true = torch.tensor([[[1.0, 0.0, 0.25], [0.0, 1.0, -0.125]]])  # aligned -> moved coordinates
    moved = warp(anchor, invert_affine(true))  # the image a perfectly aligning T = true restores
    regressor = AlignmentRegressor(layers=(1, 1, 1, 1), block_inplanes=(4, 4, 4, 4), input_size=32, max_shift=0.5)
    optimizer = torch.optim.Adam(regressor.parameters(), lr=0.02)
    loss_fn = AlignmentLoss(pool=1)
    regressor.train()
    for _ in range(150):
        optimizer.zero_grad()
        loss = loss_fn(warp(moved, regressor.theta(moved)), anchor)
        loss.backward()
        optimizer.step()
    regressor.eval()
    with torch.no_grad():
        found = regressor.theta(moved)
    before = corner_error(torch.eye(2, 3), true, (32, 32))[0]
    after = corner_error(found, true, (32, 32))[0]
    assert after < 0.25 * before, (before, after, found)


# --- classifier and attention ---------------------------------------------------------------------


def _tiny_classifier(**kwargs) -> ResNetCAMClassifier:
    return ResNetCAMClassifier(num_classes=2, block="basic", layers=(1, 1, 1, 1), block_inplanes=(4, 4, 4, 4), mask_size=2, **kwargs)


def test_attention_by_hand():
    net = _tiny_classifier().eval()
    x = torch.rand(1, 1, 64, 64)
    _, plain = net.forward_cam(x)
    psi = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.5]]])
    net.disease_masks.copy_(psi)
    logits, cams = net.forward_cam(x)
    assert torch.allclose(cams, plain * (1 + psi))  # Ŝ_c = (1 + ψ_c) ⊙ S_c
    assert torch.allclose(logits, cams.mean(dim=(-2, -1)) + net.bias)  # P_c = sigmoid(GAP(Ŝ_c) + b_c)
    net_max = _tiny_classifier(attention="max").eval()
    net_max.load_state_dict(net.state_dict())
    _, cams_max = net_max.forward_cam(x)
    shared = psi.amax(dim=0)  # ψ = max_c ψ_c, the same map for every class
    assert torch.allclose(cams_max, plain * (1 + shared))
    with pytest.raises(ValueError, match="attention"):
        _tiny_classifier(attention="sum")


def test_disease_mask_net_trains_one_part_and_gradients_flow():
    net = DiseaseMaskNet(num_classes=2, classifier_block="basic", classifier_layers=(1, 1, 1, 1), classifier_inplanes=(4, 4, 4, 4),
                         aligner_layers=(1, 1, 1, 1), aligner_inplanes=(4, 4, 4, 4), aligner_input_size=32, mask_size=2)  # fmt: skip
    net.set_trainable("classifier").train()
    assert not net.aligner.training and net.classifier.training
    net(torch.rand(2, 1, 64, 64)).sum().backward()
    assert net.classifier.cam_head.weight.grad is not None and net.aligner.resnet.fc.weight.grad is None
    net.set_trainable("aligner").train()
    assert net.aligner.training and not net.classifier.training


# --- Eq. 3 -------------------------------------------------------------------------------------------


def test_disease_masks_flip_sum_normalisation_threshold_and_cardiomegaly():
    names = ["Effusion", "Cardiomegaly"]
    assert symmetric_flags(names) == [True, False]
    acc = DiseaseMaskAccumulator(2, (1, 4), symmetric_flags(names), threshold=0.5, mode="soft")
    # image 1: both confident; effusion CAM at the right end, cardiomegaly at the second pixel
    cams1 = torch.tensor([[[[0.0, 0.0, 1.0, 3.0]], [[0.0, 2.0, 1.0, 0.0]]]])
    # image 2: effusion confident at the left end; cardiomegaly below 0.8 (dropped)
    cams2 = torch.tensor([[[[4.0, 0.0, 0.0, 0.0]], [[9.0, 0.0, 0.0, 0.0]]]])
    acc.update(cams1, torch.tensor([[1, 1]]), torch.tensor([[0.9, 0.8]]))
    acc.update(cams2, torch.tensor([[1, 1]]), torch.tensor([[0.95, 0.79]]))
    # effusion: flip-sums [3, 1, 1, 3] -> N [1, 0, 0, 1] and [4, 0, 0, 4] -> [1, 0, 0, 1]; mean [1, 0, 0, 1]
    # cardiomegaly (not mirrored): [0, 2, 1, 0] -> [0, 1, 0.5, 0]; one image
    assert acc.count.tolist() == [2, 1]
    masks = acc.compute()
    assert masks[0, 0].tolist() == [1.0, 0.0, 0.0, 1.0]
    assert masks[1, 0].tolist() == [0.0, 1.0, 0.5, 0.0]  # 0.5 kept (>= threshold), soft
    # a flip-sum is normalised as a whole: [1, 2] + flip -> [3, 3] is constant -> zeros
    assert normalize_map(torch.tensor([[3.0, 3.0]])).tolist() == [[0.0, 0.0]]
    binary = DiseaseMaskAccumulator(2, (1, 4), symmetric_flags(names), mode="binary")
    binary.update(cams1, torch.tensor([[1, 1]]), torch.tensor([[0.9, 0.9]]))
    assert binary.compute()[1, 0].tolist() == [0.0, 1.0, 1.0, 0.0]
    # soft threshold: values below 0.5 are zeroed: averaging [1, 0, 0, 1] with [0, 0, 0.4 ...]
    low = DiseaseMaskAccumulator(1, (1, 2), [False])
    low.update(torch.tensor([[[[1.0, 0.0]]], [[[0.0, 1.0]]]]), torch.ones(2, 1), torch.ones(2, 1))
    assert low.compute().tolist() == [[[0.5, 0.5]]]
    low.update(torch.tensor([[[[1.0, 0.0]]]]), torch.ones(1, 1), torch.ones(1, 1))  # mean [2/3, 1/3]
    assert low.compute()[0, 0].tolist() == pytest.approx([2 / 3, 0.0])


def test_disease_masks_pool_to_grid_and_file_round_trip(tmp_path):
    acc = DiseaseMaskAccumulator(1, (2, 2), [False])
    cam = torch.zeros(1, 1, 4, 4)
    cam[0, 0, :2, :2] = 4.0
    acc.update(cam, torch.ones(1, 1), torch.ones(1, 1))
    masks = acc.compute()
    assert masks.tolist() == [[[1.0, 0.0], [0.0, 0.0]]]
    path = save_masks(masks, tmp_path / "m.pt", ["Cardiomegaly"])
    assert torch.equal(load_masks(path), masks)
    with pytest.raises(FileNotFoundError, match="stage 4"):
        load_masks(tmp_path / "missing.pt")


def test_pseudo_masks_use_lungs_and_heart():
    lungs, heart = np.zeros((8, 8)), np.zeros((8, 8))
    lungs[:, :4] = 1
    heart[4:, 4:] = 1
    pdm = pseudo_disease_masks({"lungs": lungs, "heart": heart}, ["Nodule", "Cardiomegaly", "Effusion"], (2, 2))
    assert pdm.tolist() == [[[1, 0], [1, 0]], [[0, 0], [0, 1]], [[1, 0], [1, 0]]]
    with pytest.raises(KeyError, match="heart"):
        pseudo_disease_masks({"lungs": lungs}, ["Cardiomegaly"], (2, 2))


# --- losses ------------------------------------------------------------------------------------------


def test_image_level_weighted_bce_by_hand_and_empty_sets():
    loss = BatchWeightedBCELoss(weighting="image", reduction="sum")
    logits = torch.zeros(3, 2)  # every term ln 2
    ln2 = math.log(2.0)
    # images 0 and 1 have a disease (|P| = 2), image 2 none (|N| = 1): ω_P = 3/2, ω_N = 3
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    assert loss(logits, target).item() == pytest.approx((2 * 1.5 + 4 * 3.0) * ln2)
    # |P| = 0: no positive term, ω_N = 3/3 = 1
    assert loss(logits, torch.zeros(3, 2)).item() == pytest.approx(6 * ln2)
    # |N| = 0: every image diseased; ω_P = 1, negative terms take ω_N at |N| = 1: 3
    all_sick = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    assert loss(logits, all_sick).item() == pytest.approx((4 * 1.0 + 2 * 3.0) * ln2)
    assert torch.isfinite(loss(logits, all_sick))
    # the per-class option differs: class 0 all positive -> ω_P = 1, class 1: ω_P = 3, ω_N = 1.5
    per_class = BatchWeightedBCELoss(weighting="class", reduction="sum")(logits, all_sick)
    assert per_class.item() == pytest.approx((3 * 1.0 + 3.0 + 2 * 1.5) * ln2)
    with pytest.raises(ValueError, match="weighting"):
        BatchWeightedBCELoss(weighting="batch")


def test_alignment_loss_terms_by_hand_and_gradients():
    anchor = torch.zeros(1, 2, 2, 2)
    image = torch.full((1, 2, 2, 2), 3.0)
    image[0, 1] = 4.0  # per-pixel norm over channels: sqrt(9 + 16) = 5
    assert AlignmentLoss(pool=1)(image, anchor).item() == pytest.approx(5.0)
    assert AlignmentLoss(pool=1, edge_normalization="sum")(image, anchor).item() == pytest.approx(20.0)

    class Features(torch.nn.Module):
        def forward(self, x):
            return [x, 2 * x]

    # L_p = ||x - a|| / numel + ||2x - 2a|| / numel with numel = 8: ||·|| = sqrt(4 * 9 + 4 * 16) = 10
    loss = AlignmentLoss(feature_network=Features(), pool=1, edge_weight=0.0)
    assert loss(image, anchor).item() == pytest.approx(10 / 8 + 20 / 8)
    lazy = AlignmentLoss(feature_network=lambda: Features(), pool=1)
    x = image.clone().requires_grad_(True)
    lazy(x, anchor).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert build_loss("alignment", accept_families=["tensor"], pool=4).pool == 4


# --- localization ---------------------------------------------------------------------------------


def test_cam_boxes_normalise_and_split_components():
    cam = np.full((10, 10), -2.0)
    cam[1:4, 1:5] = 5.0  # 12 px, x 1..5, y 1..4
    cam[7:9, 6:9] = 4.0
    cam[5, 0] = 1.0  # normalised (1 + 2) / 7 = 0.43 < 0.5: dropped
    assert sorted(cam_boxes(cam).tolist()) == [[1.0, 1.0, 5.0, 4.0], [6.0, 7.0, 9.0, 9.0]]
    assert cam_boxes(np.zeros((4, 4))).shape == (0, 4)


def test_localization_metric_by_hand():
    cams = torch.zeros(2, 3, 10, 10)
    cams[0, 0, 0:4, 0:4] = 1.0  # class 0: box [0, 0, 4, 4]
    cams[0, 1, 5:10, 5:10] = 1.0  # class 1: box [5, 5, 10, 10]
    cams[1, 0, 0:2, 0:2] = 1.0  # image 2, class 0: small box [0, 0, 2, 2]
    cams[1, 0, 6:10, 6:10] = 1.0  # and a second component [6, 6, 10, 10]
    y = [
        torch.tensor([[0, 0, 0, 4, 4], [1, 5, 5, 10, 8]]),  # IoU 1; IoU 15 / 25 = 0.6
        torch.tensor([[0, 6, 6, 10, 10], [2, 0, 0, 1, 1]]),  # second component hits (IoU 1); class 2: flat CAM, miss
    ]
    metric = build_metric("localization_accuracy", num_classes=3, class_names=["a", "b", "c"])
    rows = metric(cams, y)
    assert rows.tolist() == [[0, 1, 1, 1], [1, 1, 1, 0], [0, 1, 1, 1], [2, 0, 0, 0]]
    result = metric.aggregate_all()
    assert result["per_class"]["a"] == {"0.3": 1.0, "0.5": 1.0, "0.7": 1.0, "n": 2}
    assert result["per_class"]["b"]["0.7"] == 0.0 and result["per_class"]["c"]["n"] == 1
    assert result["mean"] == pytest.approx({"0.3": 2 / 3, "0.5": 2 / 3, "0.7": 1 / 3})
    assert metric.aggregate().item() == pytest.approx(2 / 3)
    assert metric.aggregate_all(metric.local_rows()) == result  # rows gathered by a caller summarise alike
    metric.reset()
    metric(cams[:1], [torch.zeros(0, 5)])  # an image without boxes adds nothing
    assert np.isnan(metric.aggregate_all()["mean"]["0.3"])
    with pytest.raises(ValueError, match="class 5"):
        LocalizationAccuracyMetric()(cams[:1], [torch.tensor([[5, 0, 0, 1, 1]])])


def test_positive_normalisation_keeps_the_zero_level_out():
    cam = np.zeros((6, 6))
    cam[0:2, 0:2] = 4.0  # the class's evidence
    cam[4:6, 4:6] = -6.0  # strong evidence against it
    # min-max: the zero level maps to 0.6 > 0.5, so everything but the negative patch is one component
    assert cam_boxes(cam).tolist() == [[0.0, 0.0, 6.0, 6.0]]
    assert cam_boxes(cam, normalization="positive").tolist() == [[0.0, 0.0, 2.0, 2.0]]
    assert cam_boxes(-np.ones((3, 3)) - np.eye(3), normalization="positive").shape == (0, 4)
    with pytest.raises(ValueError, match="normalization"):
        LocalizationAccuracyMetric(cam_normalization="sigmoid")
