"""DAB-Net's "Simple" blending ablation: a fixed-weight mix of mass and glands, no alpha map.

Paper: Wang et al., "Disentangling Disease-related Representation from Obscure for Disease
Prediction" (DAB-Net), ICML 2022, Sec. 4.3 / Table 2 row "Simple" (blending after Zhang et al.,
2018, mixup-style, without the alpha map as pixel weight).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from monai_mammo.compositors.alpha_blend import prepare_composite_inputs

__all__ = ["FixedWeightBlend"]


class FixedWeightBlend(nn.Module):
    """Fixed-weight blend, the DAB-Net ablation without an alpha map (Wang et al., ICML 2022, Table 2
    "Simple")::

        x_c = glands_weight * x_g + mass_weight * x_m

    The same weights hold at every pixel, so the mass is mixed into the whole patch, not only
    around its box. ``mass_weight=1, glands_weight=1`` is the paper's "simple add" (the result is
    not clipped, values may exceed the input range). The returned ``alpha`` is the constant map
    ``mass_weight`` (shape ``(1, H, W)`` or ``(B, 1, H, W)``), so callers can treat every
    compositor alike. The box is validated (interface contract) but does not affect the result.
    Interface: :mod:`monai_mammo.compositors`.

    Args:
        mass_weight: weight of the mass at every pixel; default 0.5.
        glands_weight: weight of the glands at every pixel; default ``None`` = ``1 - mass_weight``
            (a convex mix that keeps the intensity range).

    Example::

        >>> import torch
        >>> blend = FixedWeightBlend(mass_weight=0.5)
        >>> composite, alpha = blend(torch.ones(1, 8, 8), torch.zeros(1, 8, 8), [2, 2, 6, 6])
        >>> float(composite.mean()), float(alpha.mean())
        (0.5, 0.5)
    """

    def __init__(self, mass_weight: float = 0.5, glands_weight: float | None = None) -> None:
        super().__init__()
        if glands_weight is None:
            if not 0.0 <= mass_weight <= 1.0:
                raise ValueError(f"mass_weight must be in [0, 1] when glands_weight is None, got {mass_weight}")
            glands_weight = 1.0 - mass_weight
        if mass_weight < 0 or glands_weight < 0:
            raise ValueError(f"weights must be >= 0, got mass_weight={mass_weight}, glands_weight={glands_weight}")
        self.mass_weight = float(mass_weight)
        self.glands_weight = float(glands_weight)

    def forward(
        self, mass: torch.Tensor, glands: torch.Tensor, box: torch.Tensor | Sequence
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix ``mass`` and ``glands``; see :mod:`monai_mammo.compositors` for shapes."""
        mass_b, glands_b, _, single = prepare_composite_inputs(mass, glands, box)
        composite = self.glands_weight * glands_b + self.mass_weight * mass_b
        alpha = torch.full(
            (mass_b.shape[0], 1, *mass_b.shape[-2:]), self.mass_weight, dtype=mass_b.dtype, device=mass_b.device
        )
        if single:
            return composite[0], alpha[0]
        return composite, alpha

    def extra_repr(self) -> str:
        return f"mass_weight={self.mass_weight}, glands_weight={self.glands_weight}"
