"""The eight flip / 90° rotation views of square crops (training augmentation and FPR test-time averaging)."""

from __future__ import annotations

import pytest
import torch

from monai_mammo.transforms.dihedral import NUM_DIHEDRAL_VIEWS, dihedral_mean, dihedral_view, rand_dihedral_views


def _crop() -> torch.Tensor:
    return torch.arange(9.0).reshape(1, 1, 3, 3)  # [[0, 1, 2], [3, 4, 5], [6, 7, 8]]


def test_dihedral_views_are_the_eight_distinct_symmetries() -> None:
    x = _crop()
    views = [dihedral_view(x, i) for i in range(NUM_DIHEDRAL_VIEWS)]
    assert torch.equal(views[0], x)
    assert views[1][0, 0].tolist() == [[2.0, 1.0, 0.0], [5.0, 4.0, 3.0], [8.0, 7.0, 6.0]]  # columns flipped
    assert views[2][0, 0].tolist() == [[6.0, 7.0, 8.0], [3.0, 4.0, 5.0], [0.0, 1.0, 2.0]]  # rows flipped
    assert views[4][0, 0].tolist() == [[0.0, 3.0, 6.0], [1.0, 4.0, 7.0], [2.0, 5.0, 8.0]]  # transposed
    assert torch.equal(views[3], torch.rot90(x, 2, dims=(-2, -1)))
    assert len({tuple(v.flatten().tolist()) for v in views}) == 8
    assert all(v[0, 0, 1, 1] == 4.0 for v in views)  # the centre pixel stays put


def test_rand_dihedral_views_per_crop_and_repeatable() -> None:
    x = _crop().repeat(64, 1, 1, 1)
    torch.manual_seed(0)
    out = rand_dihedral_views(x)
    torch.manual_seed(0)
    assert torch.equal(out, rand_dihedral_views(x))
    allowed = {tuple(dihedral_view(_crop(), i).flatten().tolist()): i for i in range(8)}
    seen = {allowed[tuple(c.flatten().tolist())] for c in out}  # every crop is one of the views
    assert len(seen) >= 6  # drawn per crop: 64 crops hit (almost) all eight
    assert out.shape == x.shape


def test_dihedral_mean_averages_over_views() -> None:
    x = _crop()
    top_left = dihedral_mean(lambda t: t[:, 0, 0, 0], x)  # the corners visit (0,0) twice each
    assert top_left.item() == pytest.approx((0.0 + 2.0 + 6.0 + 8.0) * 2 / 8)
    with pytest.raises(ValueError, match="square"):
        dihedral_view(torch.zeros(1, 1, 3, 4), 1)
    with pytest.raises(ValueError, match="0..7"):
        dihedral_view(x, 8)
