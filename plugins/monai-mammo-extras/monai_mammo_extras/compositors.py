"""A max-intensity compositor for DAB-Net-style alpha blending."""

from __future__ import annotations

import torch


class MaxIntensityBlend:
    """Keep the brighter of the glands and the Gaussian-weighted mass at each pixel.

        x_c = max(x_g, A · x_m)

    with A the Gaussian alpha map of monai-mammo's ``alpha_blend`` (centred on the mass box, σ set by
    the box size). Where dense glands are brighter than the mass they stay in front, so the mass
    margin is hidden the way overlapping fibroglandular tissue hides it in a mammogram.

    Example::

        >>> blend = MaxIntensityBlend(sigma_scale=0.5)
        >>> composite, alpha = blend(torch.ones(1, 64, 64), torch.full((1, 64, 64), 0.3), [16, 16, 48, 48])
        >>> round(composite[0, 32, 32].item(), 3), round(composite[0, 0, 0].item(), 3)  # mass in front, glands
        (0.999, 0.3)

    Args:
        sigma_scale: σ_x = sigma_scale · box width and σ_y = sigma_scale · box height (default 0.5).
    """

    def __init__(self, sigma_scale: float = 0.5) -> None:
        self.sigma_scale = sigma_scale

    def __call__(self, mass: torch.Tensor, glands: torch.Tensor, box) -> tuple[torch.Tensor, torch.Tensor]:
        from monai_mammo.compositors.alpha_blend import gaussian_alpha_map

        if mass.shape != glands.shape:
            raise ValueError(f"mass and glands must have the same shape, got {tuple(mass.shape)} and {tuple(glands.shape)}")
        batched = mass.ndim == 4
        boxes = torch.as_tensor(box, dtype=torch.float32).reshape(-1, 4)
        alpha = gaussian_alpha_map(boxes, mass.shape[-2], mass.shape[-1], self.sigma_scale).to(mass)
        alpha = alpha.reshape(alpha.shape[0], 1, *alpha.shape[-2:])  # (B, 1, H, W)
        if not batched:
            alpha = alpha[0]
        composite = torch.maximum(glands, alpha * mass)
        return composite, alpha
