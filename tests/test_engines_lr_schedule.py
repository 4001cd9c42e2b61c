"""Learning-rate schedules picked by name in the bundle configs."""

from __future__ import annotations

import math

import pytest
import torch

from monai_mammo.engines.lr_schedule import build_lr_scheduler


def _lrs(name: str, epochs: int) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_lr_scheduler(name, opt, epochs)
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_cosine_follows_the_half_cosine_by_hand():
    assert _lrs("cosine", 4) == pytest.approx([0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)])


def test_constant_keeps_the_rate():
    assert _lrs("constant", 3) == [1.0, 1.0, 1.0]


def test_unknown_schedule_lists_the_known_ones():
    with pytest.raises(ValueError, match="cosine, constant"):
        build_lr_scheduler("step", torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), 3)
