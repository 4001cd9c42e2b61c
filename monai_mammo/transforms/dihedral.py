"""The eight symmetries of a square (flips and 90° rotations) on batches of square 2D crops.

A µC crop has no preferred orientation, so all eight views are equally valid samples. These work on
whole ``(B, C, S, S)`` batches: random per-crop views for training (one call per batch instead of
three MONAI transforms per crop) and the mean over all eight views at test time.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["NUM_DIHEDRAL_VIEWS", "dihedral_view", "rand_dihedral_views", "dihedral_mean"]

NUM_DIHEDRAL_VIEWS = 8


def _check_square(x: torch.Tensor, name: str) -> None:
    if x.ndim < 3 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"{name}: expected a batch of square crops (..., S, S), got shape {tuple(x.shape)}")


def dihedral_view(x: torch.Tensor, index: int) -> torch.Tensor:
    """View ``index`` (0-7) of square crops ``x`` (..., S, S): bit 0 flips columns, bit 1 flips rows,
    bit 2 transposes. View 0 is ``x`` itself.

    Example::

        >>> import torch
        >>> x = torch.arange(4.0).reshape(1, 1, 2, 2)
        >>> dihedral_view(x, 1)[0, 0].tolist()
        [[1.0, 0.0], [3.0, 2.0]]
    """
    _check_square(x, "dihedral_view")
    if not 0 <= int(index) < NUM_DIHEDRAL_VIEWS:
        raise ValueError(f"dihedral_view: index must be in 0..7, got {index}")
    if index & 1:
        x = x.flip(-1)
    if index & 2:
        x = x.flip(-2)
    if index & 4:
        x = x.transpose(-1, -2)
    return x


def rand_dihedral_views(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each crop of the batch ``x`` (B, C, S, S) in one of the eight views, drawn uniformly and
    independently per crop (torch's global RNG unless ``generator`` is given, so
    ``monai.utils.set_determinism`` makes it repeatable)."""
    _check_square(x, "rand_dihedral_views")
    bits = torch.randint(0, 2, (3, x.shape[0]), generator=generator).to(x.device)
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    for bit, op in zip(bits, (lambda t: t.flip(-1), lambda t: t.flip(-2), lambda t: t.transpose(-1, -2))):
        x = torch.where(bit.view(shape).bool(), op(x), x)
    return x


def dihedral_mean(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Test-time augmentation: the mean of ``fn`` over the eight views of the crops ``x``.

    ``fn`` must return per-crop values that do not depend on orientation (e.g. probabilities).
    """
    return torch.stack([fn(dihedral_view(x, i)) for i in range(NUM_DIHEDRAL_VIEWS)]).mean(0)
