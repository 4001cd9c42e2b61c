"""Intersection over Minimum (IoM) and the region labels it gives a tiled image.

Bakalo, Goldberger and Ben-Ari ("Weakly and semi supervised detection in medical imaging via deep
dual branch net", Neurocomputing 421, 2021) turn lesion outlines into region labels with the
Intersection over Minimum of a region ``r`` and a lesion ``c`` (their Eq. 6):

    IoM(r, c) = |r ∩ c| / min(|r|, |c|)

which is 1 when a small lesion lies inside the region *or* the region lies inside a large lesion.
A region is labelled (their Eq. 7) M when IoM ≥ α (α = 0.5) with some malignant lesion, BN when it
touches no malignant lesion, and is ignored in between. The same IoM ≥ 0.5 decides whether a
detection localizes a lesion in their FROC protocol (Sec. 5.3; :mod:`monai_mammo.metrics.localization_froc`).

Boxes are ``[x0, y0, x1, y1]`` pixel edges (:mod:`monai_mammo.coordinates`); masks are ``(H, W)``
label or boolean arrays. Label codes of :func:`region_labels` are :data:`IGNORE`, :data:`NORMAL`
(N, or BN in the malignant-only mode), :data:`BENIGN` and :data:`MALIGNANT`.

Example:
    >>> import numpy as np
    >>> regions = np.array([[0, 0, 4, 4], [4, 0, 8, 4], [8, 0, 12, 4]])
    >>> lesions = np.array([[3, 0, 7, 4]])                     # one malignant lesion across regions 0 and 1
    >>> box_iom(regions, lesions).ravel().tolist()
    [0.25, 0.75, 0.0]
    >>> region_labels(regions, lesions, [MALIGNANT]).tolist()   # ignored (0 < IoM < 0.5), M, BN
    [-1, 2, 0]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.data.box_utils import box_area

__all__ = [
    "IGNORE",
    "NORMAL",
    "BENIGN",
    "MALIGNANT",
    "box_intersection",
    "box_iom",
    "mask_iom",
    "region_labels",
    "region_labels_from_mask",
]

#: region label codes: ignored, normal (N; BN when only malignant lesions are annotated), benign, malignant
IGNORE, NORMAL, BENIGN, MALIGNANT = -1, 0, 1, 2


def _boxes(value: Sequence | np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value, dtype=np.float64)
    array = array.astype(np.float64).reshape(-1, 4) if array.size else np.zeros((0, 4))
    if (array[:, 2:] < array[:, :2]).any():
        raise ValueError(f"{name}: boxes must be [x0, y0, x1, y1] with x1 >= x0 and y1 >= y0, got {array.tolist()[:4]}")
    return array


def box_intersection(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """Pairwise intersection areas ``(N, M)`` of ``[x0, y0, x1, y1]`` boxes.

    >>> box_intersection(np.array([[0, 0, 4, 4]]), np.array([[2, 2, 6, 6], [4, 0, 6, 2]])).tolist()
    [[4.0, 0.0]]
    """
    a, b = _boxes(boxes1, "boxes1"), _boxes(boxes2, "boxes2")
    width = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    height = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    return np.clip(width, 0, None) * np.clip(height, 0, None)


def box_iom(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """Pairwise Intersection over Minimum ``(N, M)`` of boxes (Bakalo et al. 2021, Eq. 6).

    Areas come from ``monai.data.box_utils.box_area``; a pair whose smaller box is empty has IoM 0.

    >>> box_iom(np.array([[0, 0, 4, 4]]), np.array([[2, 2, 6, 6], [0, 0, 8, 8], [1, 1, 2, 2]])).tolist()
    [[0.25, 1.0, 1.0]]
    """
    a, b = _boxes(boxes1, "boxes1"), _boxes(boxes2, "boxes2")
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    area_a = np.asarray(box_area(a), dtype=np.float64)
    area_b = np.asarray(box_area(b), dtype=np.float64)
    smaller = np.minimum(area_a[:, None], area_b[None, :])
    inter = box_intersection(a, b)
    return np.where(smaller > 0, inter / np.maximum(smaller, 1e-12), 0.0)


def mask_iom(boxes: np.ndarray, lesion_mask: np.ndarray | torch.Tensor) -> np.ndarray:
    """IoM ``(N, L)`` of boxes with each connected lesion of a mask (Bakalo et al. 2021, Eq. 6).

    ``lesion_mask`` is ``(H, W)``; its nonzero pixels are split into 8-connected lesions
    (``scipy.ndimage.label``), numbered in scan order. A box's area counts its pixels inside the image.

    >>> m = np.zeros((8, 8), bool); m[1:3, 1:3] = True; m[4:8, 4:8] = True
    >>> mask_iom(np.array([[0, 0, 4, 4], [4, 4, 6, 6]]), m).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    from scipy import ndimage

    from monai_mammo.tiling import mask_fraction

    mask = lesion_mask.detach().cpu().numpy() if isinstance(lesion_mask, torch.Tensor) else np.asarray(lesion_mask)
    mask = np.squeeze(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask_iom: lesion_mask must be 2D (H, W), got shape {np.shape(lesion_mask)}")
    components, count = ndimage.label(mask != 0, structure=np.ones((3, 3)))
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    height, width = mask.shape
    clipped = np.stack([np.clip(boxes[:, 0], 0, width), np.clip(boxes[:, 1], 0, height), np.clip(boxes[:, 2], 0, width), np.clip(boxes[:, 3], 0, height)], 1)
    box_pixels = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    out = np.zeros((len(boxes), count))
    for index in range(count):
        lesion = components == index + 1
        inter = mask_fraction(lesion, clipped) * box_pixels  # the integral image counts the overlap
        smaller = np.minimum(box_pixels, lesion.sum())
        out[:, index] = np.where(smaller > 0, inter / np.maximum(smaller, 1), 0.0)
    return out


def _labels_from_iom(iom: np.ndarray, lesion_labels: np.ndarray, alpha: float, classes: str) -> np.ndarray:
    n_regions = iom.shape[0]
    if classes not in ("m_vs_bn", "nbm"):
        raise ValueError(f"region labels: classes must be 'm_vs_bn' or 'nbm', got {classes!r}")
    labels = np.full(n_regions, IGNORE, dtype=np.int64)
    # which lesions take part: malignant only (paper Eq. 7), or every finding (the fully supervised ceiling)
    considered = lesion_labels == MALIGNANT if classes == "m_vs_bn" else np.isin(lesion_labels, (BENIGN, MALIGNANT))
    iom = iom[:, considered]
    kinds = lesion_labels[considered]
    touches_none = ~(iom > 0).any(axis=1)
    labels[touches_none] = NORMAL
    # the more severe class wins where a region covers lesions of both classes (image label rule)
    for kind in (BENIGN, MALIGNANT):
        hit = (iom[:, kinds == kind] >= alpha - 1e-12).any(axis=1)
        labels[hit] = kind
    return labels


def region_labels(
    region_boxes: np.ndarray,
    lesion_boxes: np.ndarray,
    lesion_labels: Sequence[int] | np.ndarray,
    alpha: float = 0.5,
    classes: str = "m_vs_bn",
) -> np.ndarray:
    """Region labels from lesion boxes (Bakalo et al. 2021, Eq. 7).

    Args:
        region_boxes: ``(N, 4)`` region boxes.
        lesion_boxes: ``(L, 4)`` lesion boxes.
        lesion_labels: ``(L,)`` codes, :data:`BENIGN` (1) or :data:`MALIGNANT` (2).
        alpha: IoM threshold (paper: 0.5).
        classes: ``"m_vs_bn"`` (paper): only malignant lesions count; :data:`MALIGNANT` at IoM ≥ α,
            :data:`NORMAL` (BN) when a region touches no malignant lesion, :data:`IGNORE` in
            between. ``"nbm"``: every lesion counts (the fully supervised reference): the class of
            the most severe lesion with IoM ≥ α, :data:`NORMAL` when a region touches no lesion,
            :data:`IGNORE` in between.

    Returns:
        int64 ``(N,)`` codes.
    """
    regions = _boxes(region_boxes, "region_boxes")
    lesions = _boxes(lesion_boxes, "lesion_boxes")
    kinds = np.asarray(lesion_labels, dtype=np.int64).reshape(-1)
    if len(kinds) != len(lesions):
        raise ValueError(f"region labels: {len(lesions)} lesion boxes but {len(kinds)} lesion labels")
    return _labels_from_iom(box_iom(regions, lesions), kinds, alpha, classes)


def region_labels_from_mask(
    region_boxes: np.ndarray, label_mask: np.ndarray | torch.Tensor, alpha: float = 0.5, classes: str = "m_vs_bn"
) -> np.ndarray:
    """Region labels (Bakalo et al. 2021, Eq. 7) from a lesion label mask (1 benign, 2 malignant).

    Each connected component of each class is one lesion (the paper's contours).

    >>> m = np.zeros((8, 12), np.uint8); m[1:3, 1:3] = 2; m[0:4, 6:12] = 1
    >>> region_labels_from_mask(np.array([[0, 0, 4, 4], [4, 0, 8, 4], [8, 0, 12, 4]]), m, classes="nbm").tolist()
    [2, 1, 1]
    """
    mask = label_mask.detach().cpu().numpy() if isinstance(label_mask, torch.Tensor) else np.asarray(label_mask)
    mask = np.squeeze(mask)
    ioms, kinds = [], []
    for kind in (BENIGN, MALIGNANT):
        iom = mask_iom(region_boxes, mask == kind)
        ioms.append(iom)
        kinds += [kind] * iom.shape[1]
    return _labels_from_iom(np.concatenate(ioms, axis=1), np.asarray(kinds, dtype=np.int64), alpha, classes)
