"""CAM localization accuracy at IoU thresholds (Wang et al. CVPR 2017's protocol, as Kim, Jung, Lee use it).

For each ground-truth box of class c, the class activation map of c (normalised to [0, 1]: min-max,
or with ``normalization="positive"`` its positive part divided by its maximum, as Grad-CAM keeps
only the evidence for the class; a CAM whose negative evidence is strong puts its zero level, e.g.
the image background, above 0.5 after min-max and boxes the whole image) is
binarised at a fixed threshold (default 0.5), every connected component is boxed
(:func:`monai_mammo.regions.regions_from_map`), and the box counts as localised at T(IoU) when
**any** component box has IoU ≥ T(IoU) with it. The accuracy of a class is the fraction of its
boxes localised; the mean is over the classes that have boxes.

Example:
    >>> import torch
    >>> cam = torch.zeros(1, 1, 8, 8); cam[0, 0, 2:6, 2:6] = 1.0
    >>> metric = LocalizationAccuracyMetric(num_classes=1)
    >>> _ = metric(cam, [torch.tensor([[0, 2.0, 2.0, 6.0, 8.0]])])   # IoU 16 / 24 = 0.67
    >>> metric.aggregate_all()["mean"]
    {'0.3': 1.0, '0.5': 1.0, '0.7': 0.0}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.data.box_utils import box_iou
from monai.metrics import CumulativeIterationMetric

from monai_mammo.regions import regions_from_map

__all__ = ["cam_boxes", "normalize_cam", "LocalizationAccuracyMetric", "boxes_tensor", "DEFAULT_IOU_THRESHOLDS", "CAM_NORMALIZATIONS"]

#: how a CAM is brought to [0, 1] before the threshold
CAM_NORMALIZATIONS = ("minmax", "positive")

#: Kim et al. Table 1 (after Wang et al. 2017)
DEFAULT_IOU_THRESHOLDS = (0.3, 0.5, 0.7)


def normalize_cam(cam: np.ndarray, normalization: str = "minmax") -> np.ndarray | None:
    """A CAM in [0, 1]: ``"minmax"`` ((cam - min) / (max - min)) or ``"positive"``
    (max(cam, 0) / max); None for a flat map (min-max) or one without positive value (positive).

    Example:
        >>> normalize_cam(np.array([-2.0, 0.0, 2.0])).tolist(), normalize_cam(np.array([-2.0, 0.0, 2.0]), "positive").tolist()
        ([0.0, 0.5, 1.0], [0.0, 0.0, 1.0])
    """
    if normalization not in CAM_NORMALIZATIONS:
        raise ValueError(f"normalize_cam: normalization must be one of {CAM_NORMALIZATIONS}, got {normalization!r}")
    low, high = float(cam.min()), float(cam.max())
    if normalization == "positive":
        return np.maximum(cam, 0.0) / high if high > 0 else None
    return (cam - low) / (high - low) if high > low else None


def cam_boxes(cam: torch.Tensor | np.ndarray, threshold: float = 0.5, min_area: int = 1, normalization: str = "minmax") -> np.ndarray:
    """Boxes ``(n, 4)`` ``[x0, y0, x1, y1]`` (pixel edges) of the connected components of a CAM
    normalised to [0, 1] (:func:`normalize_cam`) and thresholded at ``threshold`` (a pixel must
    exceed it).

    Example:
        >>> cam = np.zeros((6, 6)); cam[1:3, 1:4] = 2.0; cam[4, 5] = 1.5
        >>> cam_boxes(cam).tolist()
        [[1.0, 1.0, 4.0, 3.0], [5.0, 4.0, 6.0, 5.0]]
    """
    m = cam.detach().cpu().numpy() if isinstance(cam, torch.Tensor) else np.asarray(cam)
    m = np.squeeze(m).astype(np.float64)
    if m.ndim != 2:
        raise ValueError(f"cam_boxes: expected a 2D map, got shape {m.shape}")
    normalized = normalize_cam(m, normalization)
    if normalized is None:
        return np.zeros((0, 4))
    regions = regions_from_map(normalized, threshold=threshold, min_area=min_area, boxes=True)
    return np.asarray(regions.boxes, dtype=np.float64).reshape(-1, 4)


def boxes_tensor(boxes: Sequence[Sequence[float]], box_labels: Sequence[int], scale: Sequence[float] = (1.0, 1.0)) -> torch.Tensor:
    """``(M, 5)`` rows ``[class, x0, y0, x1, y1]`` (boxes scaled by ``(sx, sy)``), the metric's ``y``.

    Example:
        >>> boxes_tensor([[0, 0, 10, 20]], [3], scale=(0.5, 0.5)).tolist()
        [[3.0, 0.0, 0.0, 5.0, 10.0]]
    """
    rows = [[float(c), b[0] * scale[0], b[1] * scale[1], b[2] * scale[0], b[3] * scale[1]] for b, c in zip(boxes, box_labels)]
    return torch.tensor(rows, dtype=torch.float64).reshape(-1, 5)


class LocalizationAccuracyMetric(CumulativeIterationMetric):
    """Fraction of ground-truth boxes hit by a component box of their class's CAM, at IoU thresholds.

    Called as ``metric(y_pred, y)`` with ``y_pred`` the CAMs ``(B, K, H, W)`` (or a list of
    ``(K, H, W)``) at the resolution of the boxes, and ``y`` a list with one ``(M, 5)`` tensor of
    ``[class, x0, y0, x1, y1]`` rows per image (:func:`boxes_tensor`; M may be 0). Each box adds a
    row ``[class, hit@T1, hit@T2, ...]``. :meth:`aggregate` returns the mean over classes at the
    first threshold (the key metric, as a scalar tensor); :meth:`aggregate_all` everything.
    Registered as the metric ``"localization_accuracy"``.

    Args:
        num_classes: K (per-class entries for 0..K-1). Default None (the classes seen).
        iou_thresholds: T(IoU) values. Default (0.3, 0.5, 0.7).
        cam_threshold: the binarisation threshold of the normalised CAM. Default 0.5.
        class_names: names used as keys of the per-class results. Default the indices.
        cam_normalization: "minmax" (default) or "positive" (:func:`normalize_cam`).
    """

    def __init__(
        self,
        num_classes: int | None = None,
        iou_thresholds: Sequence[float] = DEFAULT_IOU_THRESHOLDS,
        cam_threshold: float = 0.5,
        class_names: Sequence[str] | None = None,
        cam_normalization: str = "minmax",
    ) -> None:
        super().__init__()
        normalize_cam(np.zeros(1), cam_normalization)  # validates the name
        self.cam_normalization = cam_normalization
        self.num_classes = num_classes
        self.iou_thresholds = tuple(float(t) for t in iou_thresholds)
        self.cam_threshold = float(cam_threshold)
        self.class_names = list(class_names) if class_names is not None else None

    def hits(self, cam: torch.Tensor | np.ndarray, box: Sequence[float]) -> list[bool]:
        """For one CAM and one box: localised at each IoU threshold."""
        predicted = cam_boxes(cam, self.cam_threshold, normalization=self.cam_normalization)
        if len(predicted) == 0:
            return [False] * len(self.iou_thresholds)
        best = float(np.max(box_iou(predicted, np.asarray([box], dtype=np.float64))))
        return [best >= t for t in self.iou_thresholds]

    def __call__(self, y_pred: Any, y: Any = None, **kwargs: Any) -> torch.Tensor:  # type: ignore[override]
        if y is None:
            raise ValueError("LocalizationAccuracyMetric: ground-truth boxes y are required")
        maps = list(y_pred)
        targets = list(y)
        if len(maps) != len(targets):
            raise ValueError(f"LocalizationAccuracyMetric: {len(maps)} CAM sets for {len(targets)} box sets")
        rows = []
        for cams, boxes in zip(maps, targets):
            boxes = torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 5)
            for row in boxes:
                c = int(row[0])
                if c < 0 or c >= cams.shape[0]:
                    raise ValueError(f"LocalizationAccuracyMetric: box class {c} outside the {cams.shape[0]} CAMs")
                rows.append([float(c)] + [float(h) for h in self.hits(cams[c], row[1:].tolist())])
        out = torch.tensor(rows, dtype=torch.float64).reshape(-1, 1 + len(self.iou_thresholds))
        if len(out):
            self.extend(out)
        return out

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError("LocalizationAccuracyMetric is called directly (see __call__)")

    def _rows(self) -> np.ndarray:
        buffer = self.get_buffer() if self._buffers is not None else None
        if buffer is None or (isinstance(buffer, torch.Tensor) and buffer.numel() == 0):
            return np.zeros((0, 1 + len(self.iou_thresholds)))
        return torch.as_tensor(buffer).reshape(-1, 1 + len(self.iou_thresholds)).numpy()

    def local_rows(self) -> torch.Tensor:
        """This process's ``[class, hits...]`` rows (no gathering across ranks)."""
        if not self._buffers or not self._buffers[0]:
            return torch.zeros(0, 1 + len(self.iou_thresholds), dtype=torch.float64)
        return torch.stack(list(self._buffers[0]))

    def aggregate_all(self, rows: Any = None) -> dict[str, Any]:
        """``{"mean": {"0.3": acc, ...}, "per_class": {name: {"0.3": acc, ..., "n": boxes}}}``;
        the mean is over the classes with boxes (NaN when there are none). ``rows``: summarise
        these rows instead of the buffer (e.g. gathered by the caller)."""
        rows = self._rows() if rows is None else torch.as_tensor(rows).reshape(-1, 1 + len(self.iou_thresholds)).numpy()
        classes = range(self.num_classes) if self.num_classes is not None else sorted({int(c) for c in rows[:, 0]})
        per_class: dict[str, Mapping[str, Any]] = {}
        for c in classes:
            sel = rows[rows[:, 0] == c]
            name = self.class_names[c] if self.class_names is not None and c < len(self.class_names) else str(c)
            values: dict[str, Any] = {f"{t:g}": (float(sel[:, 1 + i].mean()) if len(sel) else float("nan")) for i, t in enumerate(self.iou_thresholds)}
            values["n"] = int(len(sel))
            per_class[name] = values
        mean = {}
        for i, t in enumerate(self.iou_thresholds):
            present = [v[f"{t:g}"] for v in per_class.values() if v["n"] > 0]
            mean[f"{t:g}"] = float(np.mean(present)) if present else float("nan")
        return {"mean": mean, "per_class": per_class}

    def aggregate(self) -> torch.Tensor:  # type: ignore[override]
        """Mean localization accuracy over classes at the first IoU threshold (scalar tensor)."""
        return torch.tensor(self.aggregate_all()["mean"][f"{self.iou_thresholds[0]:g}"], dtype=torch.float64)
