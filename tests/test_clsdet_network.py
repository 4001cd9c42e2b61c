"""Cls-Det-RS network (Bakalo et al. 2021): region selection (Eq. 4), image probability (Eq. 3),
region scores (Eq. 13), the baseline modes, gradients, chunked full-image inference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from monai_mammo.networks.clsdet import MODES, ClsDetNet, masked_softmax, top_k_mask


def test_masked_softmax_hand_computed():
    # logits 0, ln 2, ln 3, ln 4; mask keeps regions 1 and 3: exp = 2, 4 -> 1/3, 2/3
    logits = torch.log(torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
    mask = torch.tensor([[False, True, False, True]])
    out = masked_softmax(logits, mask)
    assert torch.allclose(out, torch.tensor([[0.0, 1 / 3, 0.0, 2 / 3]]), atol=1e-6)


def test_masked_softmax_empty_mask_gives_zeros_not_nan():
    out = masked_softmax(torch.randn(2, 3), torch.zeros(2, 3, dtype=torch.bool))
    assert torch.equal(out, torch.zeros(2, 3))


def test_top_k_with_k_at_least_the_regions_selects_every_valid_region():
    scores = torch.tensor([[0.1, 0.5, 0.2], [0.3, 0.3, 0.9]])
    valid = torch.tensor([[True, True, True], [True, False, True]])
    assert top_k_mask(scores, k=3, valid=valid).tolist() == valid.tolist()
    assert top_k_mask(scores, k=50, valid=valid).tolist() == valid.tolist()
    # and the masked softmax then equals the plain softmax over the valid regions
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.5, 9.0, -1.0]])
    expected0 = torch.softmax(logits[0], 0)
    expected1 = torch.softmax(logits[1, [0, 2]], 0)
    out = masked_softmax(logits, top_k_mask(scores, 10, valid))
    assert torch.allclose(out[0], expected0) and torch.allclose(out[1, [0, 2]], expected1) and out[1, 1] == 0


def test_top_k_ties_are_broken_by_position():
    scores = torch.tensor([[0.4, 0.7, 0.7, 0.7, 0.1]])
    assert top_k_mask(scores, k=2).tolist() == [[False, True, True, False, False]]
    assert top_k_mask(scores, k=1).tolist() == [[False, True, False, False, False]]
    assert int(top_k_mask(scores, k=3).sum()) == 3


def _net(mode: str = "cls_det_rs", k: int = 2) -> ClsDetNet:
    torch.manual_seed(0)
    return ClsDetNet(mode=mode, k=k, encoder="none", feature_dim=4, hidden_dim=4, dropout=0.0, branch_init_std=1.0).eval()


@pytest.mark.parametrize("mode", ["cls_det_rs", "cls_det", "db_baseline"])
def test_image_probability_is_the_sum_of_products(mode):
    net = _net(mode, k=2)
    out = net(torch.randn(2, 5, 4))
    # Eq. 3 written out region by region, in label order (M, B); p_cls order N, B, M
    for b in range(2):
        for column, cls in ((0, 2), (1, 1)):
            expected = sum(float(out["p_det"][b, i, column]) * float(out["p_cls"][b, i, cls]) for i in range(5))
            assert math.isclose(float(out["image_prob"][b, column]), expected, rel_tol=1e-5)
    assert torch.allclose(out["region_scores"][..., 0], out["p_det"][..., 0] * out["p_cls"][..., 2])  # Eq. 13
    assert torch.allclose(out["p_det"].sum(1), torch.ones(2, 2))


def test_region_selection_keeps_the_k_most_malignant_regions():
    net = _net("cls_det_rs", k=2)
    out = net(torch.randn(1, 6, 4))
    selected = out["p_det"][0, :, 0] > 0
    top = torch.topk(out["p_cls"][0, :, 2], 2).indices
    assert sorted(torch.nonzero(selected).reshape(-1).tolist()) == sorted(top.tolist())


def test_db_baseline_has_no_normal_class_and_max_region_takes_the_max():
    out = _net("db_baseline")(torch.randn(1, 4, 4))
    assert torch.equal(out["p_cls"][..., 0], torch.zeros(1, 4))
    assert torch.allclose(out["p_cls"][..., 1:].sum(-1), torch.ones(1, 4))
    out = _net("max_region")(torch.randn(2, 4, 4), region_valid=torch.tensor([[True] * 4, [True, True, False, False]]))
    assert torch.allclose(out["image_prob"][:, 0], torch.stack([out["p_cls"][0, :, 2].max(), out["p_cls"][1, :2, 2].max()]))


def test_padded_regions_do_not_change_an_image():
    net = _net()
    x = torch.randn(1, 3, 4)
    padded = torch.cat([x, torch.randn(1, 2, 4)], dim=1)
    a = net(x)["image_prob"]
    b = net(padded, region_valid=torch.tensor([[True, True, True, False, False]]))["image_prob"]
    assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_gradients_reach_the_encoder(mode):
    net = ClsDetNet(mode=mode, k=2, window=8, channels=(2, 4), strides=(2, 2))
    out = net(torch.rand(2, 4, 1, 8, 8))
    out["image_prob"].sum().backward()
    assert net.encoder.parameters().__next__().grad is not None
    assert all(p.grad is not None for p in net.classification.parameters())


def test_shapes_are_checked():
    net = ClsDetNet(window=8, channels=(2,), strides=(2,))
    with pytest.raises(ValueError, match=r"\(B, M, C, h, w\)"):
        net(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="crops must be"):
        net(torch.rand(1, 2, 1, 6, 6))
    with pytest.raises(ValueError, match="mode"):
        ClsDetNet(mode="wsddn")


def test_predict_image_in_chunks_matches_the_batched_forward():
    from monai.networks import eval_mode

    from monai_mammo.tiling import iter_crops, tile_boxes

    torch.manual_seed(0)
    net = ClsDetNet(window=8, channels=(4, 4), strides=(2, 2), k=3)
    image = torch.rand(1, 24, 20)
    boxes = tile_boxes((24, 20), 8, 4)
    crops = torch.cat([c for _, c in iter_crops(image, boxes, chunk_size=len(boxes))])
    with eval_mode(net):
        whole = net(crops[None])
        chunked = net.predict_image(image, boxes, chunk_size=5)
    assert torch.allclose(whole["image_prob"], chunked["image_prob"], atol=1e-6)
    assert torch.allclose(whole["region_scores"], chunked["region_scores"], atol=1e-6)


def test_verify_net_in_out_and_network_spec_round_trip(tmp_path):
    from monai.networks import eval_mode

    from monai_mammo.checkpoints import load_network, save_network

    net = ClsDetNet(window=8, channels=(4,), strides=(2,), mode="cls_det")
    path = save_network(net, tmp_path / "model.pt")
    rebuilt = load_network(path)
    assert type(rebuilt) is ClsDetNet and rebuilt.mode == "cls_det"
    x = torch.rand(1, 3, 1, 8, 8)
    with eval_mode(net), eval_mode(rebuilt):
        assert torch.allclose(net(x)["image_prob"], rebuilt(x)["image_prob"])
    assert np.isfinite(rebuilt(x)["image_prob"].detach().numpy()).all()


def test_weak_training_finds_a_planted_lesion_from_image_labels_alone():
    """One region in 60 holds a disc (benign) or a cross (malignant); image labels only (Eq. 5).
    The dual branch with RS must learn both image decisions (a check of the whole weak path:
    region selection, masked detection, Eq. 3 and the loss)."""
    from monai_mammo.losses.dual_branch import DualBranchLoss
    from monai_mammo.metrics.classification import roc_auc

    generator = torch.Generator().manual_seed(0)

    def make(n: int, regions: int = 60, w: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.rand(n, regions, 1, w, w, generator=generator) * 0.5
        y = torch.zeros(n, 2)
        yy, xx = torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")
        disc = (((yy - w / 2) ** 2 + (xx - w / 2) ** 2) < (w / 4) ** 2).float()
        cross = (((yy - w // 2).abs() < 1) | ((xx - w // 2).abs() < 1)).float()
        for i in range(n):
            kind = i % 3  # 0 normal, 1 benign, 2 malignant
            if kind:
                j = int(torch.randint(regions, (1,), generator=generator))
                x[i, j, 0] += 0.5 * (disc if kind == 1 else cross)
                y[i, 0 if kind == 2 else 1] = 1.0  # label order (y_M, y_B)
        return x, y

    train_x, train_y = make(96)
    test_x, test_y = make(48)
    torch.manual_seed(0)
    net = ClsDetNet(window=12, channels=(8, 16), strides=(2, 2), k=5)
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    loss = DualBranchLoss()
    for _ in range(25):
        for b in range(0, 96, 16):
            value = loss(net(train_x[b : b + 16]), {"label": train_y[b : b + 16]})
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
    net.eval()
    with torch.no_grad():
        out = net(test_x)
    assert roc_auc(out["image_prob"][:, 0], test_y[:, 0]) > 0.95
    assert roc_auc(out["image_prob"].max(1).values, test_y.max(1).values) > 0.95
    # and the malignant region score d_M peaks on the planted cross
    malignant = torch.nonzero(test_y[:, 0]).reshape(-1)
    planted = (test_x[malignant, :, 0].amax(dim=(-1, -2)) > 0.6).float().argmax(1)
    assert (out["region_scores"][malignant, :, 0].argmax(1) == planted).float().mean() > 0.9
