"""DAB-Net's alpha-blending compositor: a clear mass pasted into dense glands through a Gaussian
alpha map centred on the mass's bounding box.

Paper: Wang et al., "Disentangling Disease-related Representation from Obscure for Disease
Prediction" (DAB-Net), ICML 2022, Sec. 3.2, Eq. (1). The interface every compositor follows is
documented in :mod:`monai_mammo.compositors`.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

__all__ = ["gaussian_alpha_map", "prepare_composite_inputs", "GaussianAlphaBlend"]


def _as_boxes(boxes: torch.Tensor | Sequence, device: torch.device | None = None) -> tuple[torch.Tensor, bool]:
    """``boxes`` as a float64 ``(B, 4)`` tensor, and whether the input was a single ``(4,)`` box."""
    box_tensor = torch.as_tensor(boxes, dtype=torch.float64, device=device)
    if box_tensor.ndim == 1:
        if box_tensor.shape[0] != 4:
            raise ValueError(f"box must be [x0, y0, x1, y1] (4 values), got shape {tuple(box_tensor.shape)}")
        return box_tensor[None], True
    if box_tensor.ndim != 2 or box_tensor.shape[1] != 4:
        raise ValueError(f"boxes must have shape (4,) or (B, 4) as [x0, y0, x1, y1], got {tuple(box_tensor.shape)}")
    return box_tensor, False


def _validate_and_clip(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Raise on empty, inverted, non-finite or fully outside boxes; clip the others to the patch."""
    if not torch.isfinite(boxes).all():
        raise ValueError(f"boxes must be finite, got {boxes.tolist()}")
    inverted = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    if inverted.any():
        index = int(inverted.nonzero()[0, 0])
        raise ValueError(
            f"box {index} {boxes[index].tolist()} is empty or inverted: need x1 > x0 and y1 > y0 "
            "([x0, y0, x1, y1], pixel edges)"
        )
    clipped = boxes.clone()
    clipped[:, 0::2] = clipped[:, 0::2].clamp(0, width)
    clipped[:, 1::2] = clipped[:, 1::2].clamp(0, height)
    outside = (clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1])
    if outside.any():
        index = int(outside.nonzero()[0, 0])
        raise ValueError(
            f"box {index} {boxes[index].tolist()} lies entirely outside the {height}x{width} (HxW) patch"
        )
    return clipped


def gaussian_alpha_map(
    boxes: torch.Tensor | Sequence,
    height: int,
    width: int,
    sigma_scale: float = 0.5,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """DAB-Net's alpha map (Wang et al., ICML 2022, Sec. 3.2, used in Eq. 1): a 2D Gaussian centred at
    the centre of each box, with ``sigma_x = sigma_scale * box_width`` and
    ``sigma_y = sigma_scale * box_height``, peak value 1 at the box centre.

    The map is evaluated at pixel centres ``(j + 0.5, i + 0.5)``, so a pixel whose centre coincides
    with the box centre holds exactly 1. Boxes partly outside the patch are clipped first (the
    centre and size are those of the visible part); all boxes are computed in one vectorised call.

    Args:
        boxes: ``[x0, y0, x1, y1]`` (pixel edges, x1/y1 exclusive) as ``(4,)`` or ``(B, 4)``.
        height: patch height H in pixels.
        width: patch width W in pixels.
        sigma_scale: Gaussian standard deviation as a fraction of the box size; default 0.5
            (METHODS.md: sigma = size / 2; the paper only says the covariance is set by the box).
        dtype: dtype of the returned map; default float32.
        device: device of the returned map; default: that of ``boxes`` (CPU for sequences).

    Returns:
        ``(H, W)`` for a single ``(4,)`` box, ``(B, H, W)`` for ``(B, 4)`` boxes, values in (0, 1].

    Example::

        >>> alpha = gaussian_alpha_map([2, 2, 7, 7], 9, 9)
        >>> float(alpha[4, 4])
        1.0
    """
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be positive, got {height}x{width}")
    if not sigma_scale > 0:
        raise ValueError(f"sigma_scale must be > 0, got {sigma_scale}")
    if device is None and isinstance(boxes, torch.Tensor):
        device = boxes.device
    box_tensor, single = _as_boxes(boxes, device=device)
    box_tensor = _validate_and_clip(box_tensor, height, width)
    # float64 for the exponent so the centre value is exactly 1 and batched == looped bit for bit
    centre_x = (box_tensor[:, 0] + box_tensor[:, 2]) / 2
    centre_y = (box_tensor[:, 1] + box_tensor[:, 3]) / 2
    sigma_x = sigma_scale * (box_tensor[:, 2] - box_tensor[:, 0])
    sigma_y = sigma_scale * (box_tensor[:, 3] - box_tensor[:, 1])
    xs = torch.arange(width, dtype=torch.float64, device=box_tensor.device) + 0.5
    ys = torch.arange(height, dtype=torch.float64, device=box_tensor.device) + 0.5
    # separable Gaussian: exp(-(dx^2/2sx^2 + dy^2/2sy^2)) = exp(-dy^2/2sy^2) * exp(-dx^2/2sx^2)
    gauss_x = torch.exp(-((xs[None, :] - centre_x[:, None]) ** 2) / (2 * sigma_x[:, None] ** 2))  # (B, W)
    gauss_y = torch.exp(-((ys[None, :] - centre_y[:, None]) ** 2) / (2 * sigma_y[:, None] ** 2))  # (B, H)
    alpha = (gauss_y[:, :, None] * gauss_x[:, None, :]).to(dtype)
    return alpha[0] if single else alpha


def prepare_composite_inputs(
    mass: torch.Tensor, glands: torch.Tensor, box: torch.Tensor | Sequence
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
    """Check the compositor inputs and bring them to batched form.

    Returns ``(mass (B,C,H,W), glands (B,C,H,W), boxes (B,4) float64, was_single)``; boxes are
    validated but not clipped (:func:`gaussian_alpha_map` clips). Raises ``ValueError`` naming the
    shapes it got.
    """
    if not isinstance(mass, torch.Tensor) or not isinstance(glands, torch.Tensor):
        raise TypeError(f"mass and glands must be torch tensors, got {type(mass).__name__}, {type(glands).__name__}")
    if mass.shape != glands.shape:
        raise ValueError(
            f"mass and glands must have the same shape, got mass {tuple(mass.shape)} and glands {tuple(glands.shape)}"
        )
    if mass.ndim not in (3, 4):
        raise ValueError(f"mass must be (C, H, W) or (B, C, H, W), got {tuple(mass.shape)}")
    single = mass.ndim == 3
    if single:
        mass, glands = mass[None], glands[None]
    boxes, single_box = _as_boxes(box, device=mass.device)
    if single and not single_box:
        if boxes.shape[0] != 1:
            raise ValueError(f"one (C, H, W) sample needs one box, got boxes of shape {tuple(boxes.shape)}")
    if not single:
        if single_box:
            boxes = boxes.expand(mass.shape[0], 4)
        elif boxes.shape[0] != mass.shape[0]:
            raise ValueError(
                f"batched mass {tuple(mass.shape)} needs boxes of shape ({mass.shape[0]}, 4), got {tuple(boxes.shape)}"
            )
    _validate_and_clip(boxes, mass.shape[-2], mass.shape[-1])
    return mass, glands, boxes, single


class GaussianAlphaBlend(nn.Module):
    """DAB-Net alpha-blending compositor (Wang et al., "Disentangling Disease-related Representation
    from Obscure for Disease Prediction", ICML 2022, Eq. 1)::

        x_c = x_g * (1 - A) + x_m * A

    with ``A`` the Gaussian alpha map of :func:`gaussian_alpha_map` (centred on the mass box,
    sigma proportional to the box size, peak 1). It has no learned parameters (paper Table 3).
    Interface: :mod:`monai_mammo.compositors`.

    Args:
        sigma_scale: Gaussian standard deviation as a fraction of the box width (x) and height (y);
            default 0.5 (METHODS.md default; the paper does not give the factor).

    Example::

        >>> import torch
        >>> blend = GaussianAlphaBlend(sigma_scale=0.5)
        >>> mass, glands = torch.ones(1, 32, 32), torch.zeros(1, 32, 32)
        >>> composite, alpha = blend(mass, glands, [8, 8, 24, 24])
        >>> composite.shape, alpha.shape
        (torch.Size([1, 32, 32]), torch.Size([1, 32, 32]))
    """

    def __init__(self, sigma_scale: float = 0.5) -> None:
        super().__init__()
        if not sigma_scale > 0:
            raise ValueError(f"sigma_scale must be > 0, got {sigma_scale}")
        self.sigma_scale = float(sigma_scale)

    def forward(
        self, mass: torch.Tensor, glands: torch.Tensor, box: torch.Tensor | Sequence
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Composite ``mass`` over ``glands``; see :mod:`monai_mammo.compositors` for shapes."""
        mass_b, glands_b, boxes, single = prepare_composite_inputs(mass, glands, box)
        alpha = gaussian_alpha_map(
            boxes, mass_b.shape[-2], mass_b.shape[-1], self.sigma_scale, dtype=mass_b.dtype, device=mass_b.device
        )[:, None]  # (B, 1, H, W), broadcasts over channels
        # DAB-Net Eq. (1): x_c = x_g (1 - A) + x_m A
        composite = glands_b * (1 - alpha) + mass_b * alpha
        if single:
            return composite[0], alpha[0]
        return composite, alpha

    def extra_repr(self) -> str:
        return f"sigma_scale={self.sigma_scale}"
