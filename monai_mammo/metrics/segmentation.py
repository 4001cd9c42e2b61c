"""Segmentation metrics for masks learned from imprecise annotations (An et al., LatentCADx,
Front. Big Data 2021, Sec. 5.1-5.2). The classification AP / F1 reported with them live in
:mod:`monai_mammo.metrics.classification`.

Per patch, with P the prediction thresholded at 0.5 and A the annotation (the coarse hand-drawn mask):

* ``iou = |P∩A| / |P∪A|``; ``iop = |P∩A| / |P|`` (pixel specificity) and ``ioa = |P∩A| / |A|``
  (pixel sensitivity) (Sec. 5.2, Table 3; the equations are missing from the text, the names
  define them); undefined (NaN) where the denominator is empty;
* ``confused_pixels``: the number of predicted values in ``(0.5 − ε, 0.5 + ε)``, ε = 0.2 (Table 4);
* ``dice`` / ``iou`` against the **true** lesion mask, where the data has one (phantoms; the paper
  could not measure it);
* segmentation AP at an IoU threshold (Sec. 5.1, Table 1; COCO / VOC style): one instance per patch
  whose thresholded mask is non-empty, ranked by its score (the classifier probability), a true
  positive when the patch holds a lesion and the IoU with its annotation reaches the threshold;
  every other instance, those on negative patches included, is a false positive; recall is over
  the positive patches; AP is the area under the precision envelope (VOC 2010+ all points).

The metric classes are MONAI ``CumulativeIterationMetric`` s, so ``IgniteMetricHandler`` wraps them.

Example::

    >>> import torch
    >>> pred = torch.zeros(1, 1, 4, 4); pred[..., :2, :2] = 0.9            # 4 pixels predicted
    >>> coarse = torch.zeros(1, 1, 4, 4); coarse[..., :2, :] = 1          # 8 pixels annotated
    >>> {k: round(float(v[0]), 3) for k, v in overlap_measures(pred, coarse).items()}
    {'iou': 0.5, 'iop': 1.0, 'ioa': 0.5, 'confused_pixels': 0.0}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import CumulativeIterationMetric

__all__ = [
    "OVERLAP_MEASURES",
    "overlap_measures",
    "dice_iou",
    "segmentation_average_precision",
    "MaskOverlapMetric",
    "SegmentationAPMetric",
]

OVERLAP_MEASURES = ("iou", "iop", "ioa", "confused_pixels", "dice")


def _binary(x: Any, threshold: float) -> torch.Tensor:
    x = torch.as_tensor(x).detach().float()
    return (x.flatten(1) > threshold)


def overlap_measures(pred: Any, annotation: Any, threshold: float = 0.5, epsilon: float = 0.2) -> dict[str, torch.Tensor]:
    """Per-sample ``iou``, ``iop``, ``ioa`` (NaN where undefined) and ``confused_pixels``.

    Args:
        pred: ``(B, 1, H, W)`` predicted probabilities in [0, 1].
        annotation: ``(B, 1, H, W)`` binary annotation.
        threshold: prediction threshold (Sec. 5.2: 0.5).
        epsilon: half-width of the confused band around 0.5 (Table 4: 0.2, i.e. (0.3, 0.7)).
    """
    p = torch.as_tensor(pred).detach().float()
    if p.shape != torch.as_tensor(annotation).shape:
        raise ValueError(f"prediction {tuple(p.shape)} and annotation {tuple(torch.as_tensor(annotation).shape)} differ in shape")
    pb, ab = _binary(p, threshold), _binary(annotation, 0.5)
    inter = (pb & ab).sum(1).double()
    n_p, n_a, union = pb.sum(1).double(), ab.sum(1).double(), (pb | ab).sum(1).double()
    nan = torch.full_like(inter, float("nan"))
    confused = ((p.flatten(1) > 0.5 - epsilon) & (p.flatten(1) < 0.5 + epsilon)).sum(1).double()
    return {
        "iou": torch.where(union > 0, inter / union.clamp(min=1), nan),
        "iop": torch.where(n_p > 0, inter / n_p.clamp(min=1), nan),
        "ioa": torch.where(n_a > 0, inter / n_a.clamp(min=1), nan),
        "confused_pixels": confused,
    }


def dice_iou(pred: Any, truth: Any, threshold: float = 0.5) -> dict[str, torch.Tensor]:
    """Per-sample Dice and IoU of the thresholded prediction against a true mask (NaN when both are empty).

    >>> p = torch.zeros(1, 1, 2, 2); p[..., 0, :] = 1; t = torch.zeros(1, 1, 2, 2); t[..., 0, 0] = 1
    >>> {k: round(float(v[0]), 3) for k, v in dice_iou(p, t).items()}
    {'dice': 0.667, 'iou': 0.5}
    """
    pb, tb = _binary(pred, threshold), _binary(truth, 0.5)
    inter = (pb & tb).sum(1).double()
    total = (pb.sum(1) + tb.sum(1)).double()
    union = (pb | tb).sum(1).double()
    nan = torch.full_like(inter, float("nan"))
    return {"dice": torch.where(total > 0, 2 * inter / total.clamp(min=1), nan), "iou": torch.where(union > 0, inter / union.clamp(min=1), nan)}


def segmentation_average_precision(
    scores: Sequence[float], ious: Sequence[float], is_positive: Sequence[bool], has_instance: Sequence[bool], iou_threshold: float = 0.5
) -> float:
    """Segmentation AP at ``iou_threshold`` (An et al. Sec. 5.1; VOC all-points envelope).

    Args:
        scores: one score per patch (the classifier probability).
        ious: IoU of each patch's thresholded prediction with its annotation (anything on negatives).
        is_positive: the patch holds a lesion (its annotation is the ground-truth instance).
        has_instance: the patch's thresholded prediction is non-empty (an instance was predicted).

    >>> # three positives, one negative; the negative's prediction ranks second and is a false positive
    >>> segmentation_average_precision([0.9, 0.8, 0.7, 0.1], [0.6, 0.0, 0.7, 0.2], [1, 0, 1, 1], [1, 1, 1, 1], 0.5)
    0.5555555555555556
    """
    s = np.asarray(scores, np.float64).reshape(-1)
    iou = np.nan_to_num(np.asarray(ious, np.float64).reshape(-1), nan=0.0)
    positive = np.asarray(is_positive).reshape(-1).astype(bool)
    instance = np.asarray(has_instance).reshape(-1).astype(bool)
    n_gt = int(positive.sum())
    if n_gt == 0:
        return float("nan")
    keep = np.nonzero(instance)[0]
    order = keep[np.argsort(-s[keep], kind="mergesort")]
    tp = (positive[order] & (iou[order] >= iou_threshold - 1e-12)).astype(np.float64)
    if len(tp) == 0:
        return 0.0
    ctp = np.cumsum(tp)
    recall = ctp / n_gt
    precision = ctp / np.arange(1, len(tp) + 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * envelope))


class MaskOverlapMetric(CumulativeIterationMetric):
    """One of :data:`OVERLAP_MEASURES` per patch, averaged (NaN-skipping) over the patches it is
    defined on. ``y_pred``: ``(B, 1, H, W)`` probabilities; ``y``: ``(B, 1, H, W)`` binary mask (the
    coarse annotation for iou / iop / ioa / confused pixels, the true lesion for dice).

    Example::

        >>> m = MaskOverlapMetric("iop")
        >>> pred = torch.zeros(2, 1, 4, 4); pred[0, :, :2, :2] = 0.9        # sample 2 predicts nothing
        >>> coarse = torch.zeros(2, 1, 4, 4); coarse[:, :, :2, :] = 1
        >>> _ = m(pred, coarse); float(m.aggregate())
        1.0

    Args:
        measure: one of ``iou``, ``iop``, ``ioa``, ``confused_pixels``, ``dice``. Default ``"iop"``.
        threshold: prediction threshold. Default 0.5.
        positives_only: average over patches whose mask ``y`` is non-empty (the paper's Tables 3-4
            are over annotated lesions). Default True.
    """

    def __init__(self, measure: str = "iop", threshold: float = 0.5, positives_only: bool = True) -> None:
        super().__init__()
        if measure not in OVERLAP_MEASURES:
            raise ValueError(f"MaskOverlapMetric: measure must be one of {OVERLAP_MEASURES}, got {measure!r}")
        self.measure, self.threshold, self.positives_only = measure, float(threshold), bool(positives_only)

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        if y is None:
            raise ValueError("MaskOverlapMetric needs the mask y")
        y_pred, y = torch.as_tensor(y_pred), torch.as_tensor(y)
        if y_pred.ndim == 3:
            y_pred, y = y_pred[None], y[None]
        values = (dice_iou(y_pred, y, self.threshold)["dice"] if self.measure == "dice" else overlap_measures(y_pred, y, self.threshold)[self.measure])
        if self.positives_only:
            values = torch.where(_binary(y, 0.5).any(1), values, torch.full_like(values, float("nan")))
        return values.reshape(-1, 1)

    def aggregate(self) -> torch.Tensor:  # type: ignore[override]
        data = self.get_buffer()
        values = torch.as_tensor(data).reshape(-1).double() if data is not None else torch.zeros(0, dtype=torch.float64)
        values = values[~torch.isnan(values)]
        return values.mean() if values.numel() else torch.tensor(float("nan"), dtype=torch.float64)


class SegmentationAPMetric(CumulativeIterationMetric):
    """Segmentation AP at an IoU threshold (:func:`segmentation_average_precision`).

    ``y_pred``: ``(B, 2, H, W)``, channel 0 the mask probabilities and channel 1 the patch score
    broadcast over the patch (e.g. ``torch.cat([mask, prob.expand_as(mask)], 1)``), or ``(B, 1, H, W)``
    (the score is then the mask's maximum); ``y``: ``(B, 1, H, W)`` annotation (empty: a negative).
    """

    def __init__(self, iou_threshold: float = 0.5, threshold: float = 0.5) -> None:
        super().__init__()
        self.iou_threshold, self.threshold = float(iou_threshold), float(threshold)

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        y_pred, y = torch.as_tensor(y_pred).float(), torch.as_tensor(y)
        if y_pred.ndim == 3:
            y_pred, y = y_pred[None], y[None]
        mask = y_pred[:, :1]
        score = y_pred[:, 1].flatten(1).mean(1) if y_pred.shape[1] > 1 else mask.flatten(1).amax(1)
        iou = overlap_measures(mask, y, self.threshold)["iou"]
        return torch.stack(
            [score.double(), torch.nan_to_num(iou, nan=0.0), _binary(y, 0.5).any(1).double(), _binary(mask, self.threshold).any(1).double()], 1
        )

    def aggregate(self) -> float:  # type: ignore[override]
        data = torch.as_tensor(self.get_buffer()).reshape(-1, 4).cpu().numpy()
        return segmentation_average_precision(data[:, 0], data[:, 1], data[:, 2], data[:, 3], self.iou_threshold)
