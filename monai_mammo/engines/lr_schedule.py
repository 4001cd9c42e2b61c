"""The learning-rate schedules a bundle config picks by name."""

from __future__ import annotations

import torch

__all__ = ["LR_SCHEDULES", "build_lr_scheduler"]

LR_SCHEDULES = ("cosine", "constant")


def build_lr_scheduler(name: str, optimizer: torch.optim.Optimizer, epochs: int) -> torch.optim.lr_scheduler.LRScheduler:
    """An epoch-level scheduler for MONAI's ``LrScheduleHandler``: ``"cosine"`` decays the lr to 0
    over ``epochs`` (``CosineAnnealingLR``), ``"constant"`` keeps it.

    Example::

        >>> import torch
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        >>> sched = build_lr_scheduler("cosine", opt, epochs=2)
        >>> opt.step(); sched.step(); round(opt.param_groups[0]["lr"], 3)
        0.5
    """
    key = str(name).lower()
    if key == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(int(epochs), 1))
    if key == "constant":
        return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    raise ValueError(f"build_lr_scheduler: unknown schedule {name!r}; known: {', '.join(LR_SCHEDULES)}")
