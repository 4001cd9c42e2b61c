"""Localization FROC of an image classifier with region scores (Bakalo et al. 2021, Sec. 5.3).

Bakalo, Goldberger and Ben-Ari (Neurocomputing 421, 2021) evaluate weakly supervised localization
on top of image classification:

1. the image classifier's operating point is fixed at sensitivity 0.85: the threshold τ is the
   highest score that classifies at least 85 % of the positive images as positive;
2. among the images classified as c (score ≥ τ), the regions whose score d_c(r_i) (their Eq. 13)
   is at least a threshold t are detections;
3. a detection is correct when its IoM (Eq. 6; :func:`monai_mammo.region_labels.box_iom`) with a
   class-c lesion of its image is at least 0.5;
4. sensitivity(t) = the fraction of the *true-positive* images (positive and classified as c) with
   at least one correct detection; false positives per image = the incorrect detections over the
   number of images classified as c. Sweeping t gives the FROC curve.

Choices the paper leaves open (stated here, tested in ``tests/test_clsdet_metrics.py``): a correct
detection is never a false positive, even when a second region localizes the same lesion (the
regions overlap by half, so a lesion is often covered twice); every detection in a false-positive
image (negative but classified as c) is a false positive; with ``n_pos`` positive images the
threshold τ is the ``ceil(0.85 n_pos)``-th highest positive score.

Example (three images; the test file works it by hand):
    >>> result = localization_froc(
    ...     image_scores=[0.9, 0.8, 0.1], image_labels=[1, 0, 1],
    ...     region_boxes=[[[0, 0, 10, 10], [20, 20, 30, 30]], [[0, 0, 10, 10]], [[0, 0, 10, 10]]],
    ...     region_scores=[[0.5, 0.7], [0.6], [0.9]],
    ...     lesion_boxes=[[[2, 2, 6, 6]], [], [[0, 0, 4, 4]]], operating_sensitivity=0.5)
    >>> result["threshold"], result["num_classified"], result["num_true_positive_images"]
    (0.9, 1, 1)
    >>> result["curve"]["fps_per_image"], result["curve"]["sensitivity"]
    ([0.0, 1.0, 1.0], [0.0, 0.0, 1.0])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import CumulativeIterationMetric

from monai_mammo.metrics.froc import froc_curve, recall_at_fps
from monai_mammo.region_labels import box_iom

__all__ = ["operating_threshold", "localization_froc", "image_localization_parts", "froc_from_parts", "LocalizationFROCMetric"]


def operating_threshold(scores: Sequence[float], labels: Sequence[int], sensitivity: float = 0.85) -> float:
    """The highest threshold τ at which ``scores >= τ`` finds at least ``sensitivity`` of the positives.

    >>> operating_threshold([0.9, 0.2, 0.7, 0.4, 0.3], [1, 0, 1, 1, 0], sensitivity=0.6)
    0.7
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1).astype(bool)
    if not 0.0 < sensitivity <= 1.0:
        raise ValueError(f"operating_threshold: sensitivity must be in (0, 1], got {sensitivity}")
    positives = np.sort(scores[labels])[::-1]
    if positives.size == 0:
        raise ValueError("operating_threshold: no positive image")
    needed = max(int(math.ceil(sensitivity * positives.size - 1e-9)), 1)
    return float(positives[needed - 1])


def localization_froc(
    image_scores: Sequence[float],
    image_labels: Sequence[int],
    region_boxes: Sequence[Any],
    region_scores: Sequence[Any],
    lesion_boxes: Sequence[Any],
    operating_sensitivity: float = 0.85,
    iom_threshold: float = 0.5,
    fps_per_image: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0),
) -> dict[str, Any]:
    """The localization FROC of Bakalo et al. 2021 (Sec. 5.3; see the module docstring).

    Args:
        image_scores: one image score per image (M vs BN: p(y_M); MB vs N: max(p(y_M), p(y_B))).
        image_labels: 1 for the positive images of the task.
        region_boxes: per image, ``(R_t, 4)`` region boxes.
        region_scores: per image, ``(R_t,)`` region scores d_c (Eq. 13).
        lesion_boxes: per image, ``(L_t, 4)`` boxes of the task's lesions (M vs BN: malignant ones).
        operating_sensitivity: the image classifier's sensitivity at the operating point (paper: 0.85).
        iom_threshold: IoM for a correct localization (paper: 0.5).
        fps_per_image: where the sensitivity is read off (step rule, :func:`monai_mammo.metrics.froc.recall_at_fps`).

    Returns:
        ``{"threshold", "num_classified", "num_true_positive_images", "sensitivity_at": {"1": ...},
        "curve": {"thresholds", "fps_per_image", "sensitivity"}}`` (lists; the first threshold is +inf).
    """
    n = len(image_scores)
    if not (len(image_labels) == len(region_boxes) == len(region_scores) == len(lesion_boxes) == n):
        raise ValueError("localization_froc: every argument needs one entry per image")
    labels = np.asarray(image_labels).astype(bool)
    parts = [
        image_localization_parts(region_boxes[t], region_scores[t], lesion_boxes[t] if labels[t] else [], iom_threshold, what=f"image {t}")
        for t in range(n)
    ]
    return froc_from_parts(image_scores, labels, parts, operating_sensitivity, fps_per_image)


def image_localization_parts(
    region_boxes: Any, region_scores: Any, lesion_boxes: Any, iom_threshold: float = 0.5, what: str = "image"
) -> tuple[np.ndarray, float]:
    """One image's share of the FROC: the scores of its incorrect regions and the best score of a
    correct one (-inf: none), a region being correct at IoM >= ``iom_threshold`` with a lesion.

    >>> fp, best = image_localization_parts([[0, 0, 4, 4], [8, 0, 12, 4]], [0.3, 0.6], [[1, 1, 2, 2]])
    >>> fp.tolist(), best
    ([0.6], 0.3)
    """
    boxes = np.asarray(region_boxes, dtype=np.float64).reshape(-1, 4)
    d = np.asarray(region_scores, dtype=np.float64).reshape(-1)
    if len(d) != len(boxes):
        raise ValueError(f"localization_froc: {what} has {len(boxes)} region boxes but {len(d)} scores")
    lesions = np.asarray(lesion_boxes, dtype=np.float64).reshape(-1, 4)
    correct = (box_iom(boxes, lesions) >= iom_threshold - 1e-12).any(axis=1) if len(lesions) else np.zeros(len(boxes), bool)
    return d[~correct], float(d[correct].max()) if correct.any() else -np.inf


def froc_from_parts(
    image_scores: Sequence[float],
    image_labels: Sequence[int],
    parts: Sequence[tuple[np.ndarray, float]],
    operating_sensitivity: float = 0.85,
    fps_per_image: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0),
) -> dict[str, Any]:
    """:func:`localization_froc` from each image's :func:`image_localization_parts` (computed once,
    so bootstrap resamples of the images cost a concatenation each)."""
    scores = np.asarray(image_scores, dtype=np.float64)
    labels = np.asarray(image_labels).astype(bool)
    tau = operating_threshold(scores, labels, operating_sensitivity)
    classified = np.flatnonzero(scores >= tau)
    fp_scores = np.concatenate([parts[t][0] for t in classified]) if len(classified) else np.zeros(0)
    best_correct = np.array([parts[t][1] for t in classified if labels[t]], dtype=np.float64)
    curve = froc_curve(fp_scores, best_correct, max(len(classified), 1))
    at = recall_at_fps(curve["fps_per_image"], curve["sensitivity"], fps_per_image, "step")
    return {
        "threshold": tau,
        "operating_sensitivity": float(operating_sensitivity),
        "num_images": len(scores),
        "num_classified": int(len(classified)),
        "num_true_positive_images": int(len(best_correct)),
        "sensitivity_at": {key[2:]: value for key, value in at.items()},
        "curve": {name: curve[name].tolist() for name in ("thresholds", "fps_per_image", "sensitivity")},
    }


class LocalizationFROCMetric(CumulativeIterationMetric):
    """:func:`localization_froc` accumulated over batches, for ``IgniteMetricHandler``.

    ``metric(y_pred, y)``: ``y_pred`` a list (one per image) of dicts ``{"score": image score,
    "boxes": (R, 4), "region_scores": (R,)}``; ``y`` a list of dicts ``{"label": 0/1, "boxes":
    (L, 4)}`` (the task's lesions). ``aggregate()`` gives the sensitivity at ``key_fps_per_image``;
    :meth:`compute_details` the whole result.

    Example::

        >>> metric = LocalizationFROCMetric(operating_sensitivity=1.0)
        >>> _ = metric([{"score": 0.9, "boxes": [[0, 0, 4, 4]], "region_scores": [0.5]}], [{"label": 1, "boxes": [[1, 1, 3, 3]]}])
        >>> float(metric.aggregate())
        1.0
    """

    def __init__(self, operating_sensitivity: float = 0.85, iom_threshold: float = 0.5, key_fps_per_image: float = 1.0) -> None:
        super().__init__()
        self.operating_sensitivity = float(operating_sensitivity)
        self.iom_threshold = float(iom_threshold)
        self.key_fps_per_image = float(key_fps_per_image)
        self._records: list[tuple[float, int, np.ndarray, np.ndarray, np.ndarray]] = []

    def reset(self) -> None:
        super().reset()
        self._records = []

    def __call__(self, y_pred: Any, y: Any = None, **kwargs: Any) -> torch.Tensor:  # type: ignore[override]
        if y is None or len(y_pred) != len(y):
            raise ValueError("LocalizationFROCMetric: y_pred and y must be lists with one entry per image")
        for pred, target in zip(y_pred, y):
            self._records.append(
                (
                    float(torch.as_tensor(pred["score"]).reshape(-1)[0]),
                    int(torch.as_tensor(target["label"]).reshape(-1)[0]),
                    np.asarray(torch.as_tensor(pred["boxes"]).cpu(), dtype=np.float64).reshape(-1, 4),
                    np.asarray(torch.as_tensor(pred["region_scores"]).cpu(), dtype=np.float64).reshape(-1),
                    np.asarray(torch.as_tensor(target["boxes"]).cpu(), dtype=np.float64).reshape(-1, 4),
                )
            )
        return torch.zeros(len(y_pred))

    def _compute_tensor(self, y_pred: Any, y: Any = None, **kwargs: Any) -> torch.Tensor:  # type: ignore[override]
        return self(y_pred, y)

    def compute_details(self) -> dict[str, Any]:
        if not self._records:
            raise ValueError("LocalizationFROCMetric: no image was evaluated")
        columns = list(zip(*self._records))
        return localization_froc(
            columns[0], columns[1], columns[2], columns[3], columns[4],
            self.operating_sensitivity, self.iom_threshold, (self.key_fps_per_image,),
        )  # fmt: skip

    def aggregate(self) -> torch.Tensor:  # type: ignore[override]
        details = self.compute_details()
        return torch.tensor(details["sensitivity_at"][f"{self.key_fps_per_image:g}"], dtype=torch.float64)
