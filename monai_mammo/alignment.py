"""Affine image alignment to an anchor (Kim, Jung, Lee: thoracic disease localization via disease masks).

The alignment module of Kim et al. regresses five parameters ``(s_x, s_y, t_x, t_y, θ)`` and warps
the X-ray with (their Eq. 5)::

    T = [[s_x cos θ, -s_y sin θ, t_x],
         [s_x sin θ,  s_y cos θ, t_y]]

``T`` maps output (aligned) normalised coordinates to input normalised coordinates, the convention
of ``torch.nn.functional.affine_grid`` with ``align_corners=False`` (x to the right, y down, both
in [-1, 1]); the chest phantoms record their misalignment as exactly such a ``T``
(``alignment_theta``), so a perfect regressor returns it.

* :func:`affine_matrix`: Eq. 5, ``(B, 5) -> (B, 2, 3)``;
* :func:`warp`: ``T · I`` through ``affine_grid`` / ``grid_sample`` (bilinear, zero padding);
* :func:`invert_affine`: the 2x3 inverse (aligned frame -> original frame);
* :func:`smooth`: Kim et al.'s φ = B(G(·)), G an average pooling (16 x 16 at 512 px), B bilinear
  up-sampling back to size;
* :func:`build_anchor`: the anchor image A, the mean of normal training images;
* :func:`corner_error`: the mean displacement of the aligned frame's four corners between two
  transforms, in pixels or mm (how far an alignment is from the ground truth).

Example:
    >>> import math, torch
    >>> theta = affine_matrix(torch.tensor([[1.0, 1.0, 0.0, 0.0, math.pi / 2]]))
    >>> (theta.round(decimals=4) + 0.0).tolist()
    [[[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]]]
    >>> image = torch.arange(16.0).reshape(1, 1, 4, 4)
    >>> torch.equal(warp(image, affine_matrix(torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0]]))), image)
    True
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["IDENTITY_PARAMETERS", "affine_matrix", "warp", "invert_affine", "smooth", "build_anchor", "corner_error", "compose_affine"]

#: (s_x, s_y, t_x, t_y, θ) of the identity
IDENTITY_PARAMETERS = (1.0, 1.0, 0.0, 0.0, 0.0)


def affine_matrix(parameters: torch.Tensor) -> torch.Tensor:
    """Kim et al. Eq. 5: ``(B, 5)`` parameters ``(s_x, s_y, t_x, t_y, θ)`` (θ in radians) to ``(B, 2, 3)``.

    Args:
        parameters: ``(B, 5)`` tensor.

    Returns:
        ``(B, 2, 3)`` matrices ``[[s_x cos θ, -s_y sin θ, t_x], [s_x sin θ, s_y cos θ, t_y]]``.
    """
    if parameters.ndim != 2 or parameters.shape[1] != 5:
        raise ValueError(f"affine_matrix: expected (B, 5) parameters (s_x, s_y, t_x, t_y, theta), got {tuple(parameters.shape)}")
    sx, sy, tx, ty, angle = parameters.unbind(dim=1)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # Kim et al. Eq. 5
    row0 = torch.stack([sx * cos, -sy * sin, tx], dim=1)
    row1 = torch.stack([sx * sin, sy * cos, ty], dim=1)
    return torch.stack([row0, row1], dim=1)


def warp(image: torch.Tensor, theta: torch.Tensor, size: Sequence[int] | None = None, mode: str = "bilinear") -> torch.Tensor:
    """``T · I``: resample ``image`` (B, C, H, W) on the grid ``theta`` (B, 2, 3) maps the output to.

    Args:
        image: ``(B, C, H, W)``.
        theta: ``(B, 2, 3)`` output -> input normalised coordinates (``align_corners=False``).
        size: output ``(H, W)``. Default the input's.
        mode: ``grid_sample`` interpolation. Default "bilinear". Outside the input: zeros.
    """
    if image.ndim != 4 or theta.ndim != 3 or theta.shape[1:] != (2, 3) or theta.shape[0] != image.shape[0]:
        raise ValueError(f"warp: expected image (B, C, H, W) and theta (B, 2, 3), got {tuple(image.shape)} and {tuple(theta.shape)}")
    h, w = (int(s) for s in (size or image.shape[-2:]))
    grid = F.affine_grid(theta.to(image.dtype), [image.shape[0], image.shape[1], h, w], align_corners=False)
    return F.grid_sample(image, grid, mode=mode, padding_mode="zeros", align_corners=False)


def _homogeneous(theta: torch.Tensor) -> torch.Tensor:
    bottom = torch.tensor([0.0, 0.0, 1.0], dtype=theta.dtype, device=theta.device).expand(theta.shape[0], 1, 3)
    return torch.cat([theta, bottom], dim=1)


def invert_affine(theta: torch.Tensor) -> torch.Tensor:
    """The inverse of ``(B, 2, 3)`` affine maps: warping an aligned map by it returns it to the
    original frame (up to what fell outside).

    Example:
        >>> theta = torch.tensor([[[2.0, 0.0, 0.5], [0.0, 1.0, 0.0]]])
        >>> invert_affine(theta).tolist()
        [[[0.5, 0.0, -0.25], [0.0, 1.0, 0.0]]]
    """
    return torch.linalg.inv(_homogeneous(theta))[:, :2]


def compose_affine(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """``first ∘ second`` of two ``(B, 2, 3)`` maps (apply ``second``, then ``first``)."""
    return (_homogeneous(first) @ _homogeneous(second))[:, :2]


def smooth(image: torch.Tensor, pool: int = 16) -> torch.Tensor:
    """Kim et al.'s φ = B(G(·)): ``pool x pool`` average pooling with stride ``pool`` (G), then
    bilinear up-sampling back to the input size (B). The paper uses 16 at 512 px; the bundle scales
    ``pool`` with the image size so that the pooled grid stays 32 x 32.

    Example:
        >>> smooth(torch.ones(1, 1, 8, 8), pool=4).shape
        torch.Size([1, 1, 8, 8])
    """
    if pool <= 1:
        return image
    pooled = F.avg_pool2d(image, kernel_size=int(pool), stride=int(pool), ceil_mode=True)
    return F.interpolate(pooled, size=image.shape[-2:], mode="bilinear", align_corners=False)


def build_anchor(images: Iterable[torch.Tensor]) -> torch.Tensor:
    """Kim et al.: the anchor A is the mean of (2000 random) normal training images, each ``(C, H, W)``
    of one size. Returns ``(C, H, W)``.

    Example:
        >>> build_anchor([torch.zeros(1, 2, 2), torch.ones(1, 2, 2)]).tolist()
        [[[0.5, 0.5], [0.5, 0.5]]]
    """
    total, count = None, 0
    for image in images:
        image = torch.as_tensor(image, dtype=torch.float32)
        total = image.clone() if total is None else total + image
        count += 1
    if total is None:
        raise ValueError("build_anchor: no normal training image (the anchor is the mean of normal images)")
    return total / count


def corner_error(
    theta: torch.Tensor | np.ndarray,
    reference: torch.Tensor | np.ndarray,
    size: Sequence[int],
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """Mean displacement of the aligned frame's four corners between ``theta`` and ``reference``
    (both ``(B, 2, 3)`` or ``(2, 3)``, output -> input normalised coordinates), in pixels of an
    image of ``size`` ``(H, W)``, or in mm with ``spacing`` ``(sx, sy)``. With ``theta`` the
    identity this is the misalignment before alignment.

    Example:
        >>> shift = torch.tensor([[1.0, 0.0, 0.5], [0.0, 1.0, 0.0]])   # a quarter of the width
        >>> corner_error(shift, torch.eye(2, 3), size=(100, 100)).tolist()
        [25.0]
    """
    theta = torch.as_tensor(np.asarray(theta, dtype=np.float64) if not isinstance(theta, torch.Tensor) else theta, dtype=torch.float64)
    reference = torch.as_tensor(np.asarray(reference, dtype=np.float64) if not isinstance(reference, torch.Tensor) else reference, dtype=torch.float64)
    theta = theta.reshape(-1, 2, 3)
    reference = reference.reshape(-1, 2, 3).expand_as(theta)
    corners = torch.tensor([[-1.0, -1.0, 1.0], [1.0, -1.0, 1.0], [-1.0, 1.0, 1.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    delta = (corners @ theta.transpose(1, 2)) - (corners @ reference.transpose(1, 2))  # (B, 4, 2), normalised
    h, w = (float(s) for s in size)
    scale = torch.tensor([w / 2, h / 2], dtype=torch.float64)
    if spacing is not None:
        scale = scale * torch.tensor([float(spacing[0]), float(spacing[1])], dtype=torch.float64)
    return torch.linalg.norm(delta * scale, dim=-1).mean(dim=1).numpy()
