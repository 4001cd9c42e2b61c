"""FROC for point detections (µCs) with a hit radius in millimetres.

Zhang et al., "Cascaded Generative and Discriminative Learning for Microcalcification Detection in
Breast Mammograms", CVPR 2019, Sec. 4.4: recall at k false positives per image (R@k), k in
{1, 5, 10, 15, 20} for final models and {5, 10, 15, 20, 30} for proposals; "a µC is considered as
recalled if there is at least one prediction point within 1 mm of it".

Counting rule (standard, documented once here):

- at a score threshold t, the kept predictions are those with score >= t (ties kept together);
- a kept prediction within ``radius_mm`` of at least one ground-truth point is a true positive and
  never a false positive, even when that µC is already hit by another prediction (duplicates
  around one µC are not penalised) and even when it hits several µCs;
- every µC within ``radius_mm`` of some kept prediction is recalled (one prediction may recall
  several µCs);
- a kept prediction hitting no µC is a false positive.

So each µC is recalled from the threshold equal to the best score among the predictions that hit
it, and each non-hitting prediction counts as a false positive from its own score. Distances are
physical: ``sqrt((dx·sx)² + (dy·sy)²) <= radius_mm`` with that image's spacing ``[sx, sy]`` (mm
per pixel along x and y), i.e. an elliptical radius in pixels when sx != sy. Points are ``[x, y]``
in pixels of the image whose spacing is given.

R@k uses the step rule: the highest sensitivity over the curve's operating points whose mean
false positives per image is <= k (no interpolation between thresholds, which would describe
operating points that no threshold achieves). Beyond the curve's last point R@k is the curve's
maximum sensitivity. ``interpolation="linear"`` instead uses MONAI's
:func:`monai.metrics.froc.compute_froc_score` (linear interpolation, as in CAMELYON).

The curve agrees point for point with :func:`monai.metrics.froc.compute_froc_curve_data` (tested);
it is computed here by sorting (O(N log N)) because MONAI's loops over every threshold (O(N²) for
the thousands of candidates per full-field mammogram) and drops the lowest score as the
"undetected" marker.
"""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.metrics import CumulativeIterationMetric
from monai.metrics.froc import compute_froc_score
from monai.utils import evenly_divisible_all_gather

from monai_mammo.atomic_io import atomic_write_bytes

__all__ = [
    "PointFROCMetric",
    "FINAL_FPS_PER_IMAGE",
    "PROPOSAL_FPS_PER_IMAGE",
    "match_points",
    "image_froc_scores",
    "froc_curve",
    "recall_at_fps",
    "from_engine_points",
    "write_froc_csv",
    "plot_froc",
    "write_metrics_json",
    "save_froc_report",
]

#: Zhang et al. Sec. 4.4: k for final models (Tables 1-2) and for proposals (Tables 3-4)
FINAL_FPS_PER_IMAGE: tuple[float, ...] = (1, 5, 10, 15, 20)
PROPOSAL_FPS_PER_IMAGE: tuple[float, ...] = (5, 10, 15, 20, 30)
_FPS_PRESETS = {"final": FINAL_FPS_PER_IMAGE, "proposals": PROPOSAL_FPS_PER_IMAGE}


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def _spacing_pair(spacing: Any, what: str) -> tuple[float, float]:
    arr = _to_numpy(spacing).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, 2)
    if arr.size != 2 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{what}: spacing must be [sx, sy] mm per pixel, both > 0, got {spacing!r}")
    return float(arr[0]), float(arr[1])


def match_points(
    pred_xy: np.ndarray, gt_xy: np.ndarray, spacing: Sequence[float], radius_mm: float = 1.0
) -> np.ndarray:
    """Hit matrix (N, M): prediction i lies within ``radius_mm`` of ground-truth point j.

    ``pred_xy`` (N, 2) and ``gt_xy`` (M, 2) are ``[x, y]`` pixels; ``spacing`` is ``[sx, sy]`` mm per
    pixel. Distance = sqrt((dx·sx)² + (dy·sy)²) (physical, so anisotropic spacing gives an
    elliptical pixel radius); the boundary counts as a hit.
    """
    sx, sy = _spacing_pair(spacing, "match_points")
    pred_xy = np.asarray(pred_xy, dtype=np.float64).reshape(-1, 2)
    gt_xy = np.asarray(gt_xy, dtype=np.float64).reshape(-1, 2)
    dx = (pred_xy[:, None, 0] - gt_xy[None, :, 0]) * sx
    dy = (pred_xy[:, None, 1] - gt_xy[None, :, 1]) * sy
    # a relative tolerance so that a point exactly on the circle is a hit despite rounding
    return dx * dx + dy * dy <= (radius_mm * radius_mm) * (1 + 1e-9)


def image_froc_scores(
    pred: np.ndarray, gt_xy: np.ndarray, spacing: Sequence[float], radius_mm: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Per image: (scores of the false-positive predictions, best hitting score per µC).

    ``pred`` is (N, 3) ``[x, y, score]``; ``gt_xy`` (M, 2). A µC hit by no prediction gets -inf
    (never recalled). See the module docstring for the counting rule.
    """
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 3)
    gt_xy = np.asarray(gt_xy, dtype=np.float64).reshape(-1, 2)
    hits = match_points(pred[:, :2], gt_xy, spacing, radius_mm)
    fp_scores = pred[~hits.any(axis=1), 2]
    masked = np.where(hits, pred[:, 2:3], -np.inf)
    gt_best = masked.max(axis=0) if len(pred) else np.full(len(gt_xy), -np.inf)
    return fp_scores, gt_best


def froc_curve(fp_scores: np.ndarray, gt_best_scores: np.ndarray, num_images: int) -> dict[str, np.ndarray]:
    """The FROC curve over every distinct score threshold, in order of increasing false positives.

    Returns ``{"thresholds", "fps_per_image", "sensitivity", "false_positives", "true_positives"}``;
    the first point is threshold +inf (nothing kept: 0 FP, sensitivity 0). Sensitivity is NaN when
    there is no µC at all.
    """
    if num_images <= 0:
        raise ValueError(f"froc_curve: num_images must be > 0, got {num_images}")
    fp = np.sort(np.asarray(fp_scores, dtype=np.float64).reshape(-1))
    gt = np.asarray(gt_best_scores, dtype=np.float64).reshape(-1)
    num_targets = gt.size
    tp = np.sort(gt[np.isfinite(gt)])
    thresholds = np.unique(np.concatenate([fp, tp]))[::-1]
    # count of scores >= t for each t, by binary search on the sorted scores
    false_positives = fp.size - np.searchsorted(fp, thresholds, side="left")
    true_positives = tp.size - np.searchsorted(tp, thresholds, side="left")
    thresholds = np.concatenate([[np.inf], thresholds])
    false_positives = np.concatenate([[0], false_positives])
    true_positives = np.concatenate([[0], true_positives])
    with np.errstate(invalid="ignore", divide="ignore"):
        sensitivity = true_positives / float(num_targets) if num_targets else np.full(len(thresholds), np.nan)
    return {
        "thresholds": thresholds,
        "fps_per_image": false_positives / float(num_images),
        "sensitivity": sensitivity,
        "false_positives": false_positives,
        "true_positives": true_positives,
    }


def recall_at_fps(
    fps_per_image: np.ndarray,
    sensitivity: np.ndarray,
    ks: Sequence[float],
    interpolation: str = "step",
) -> dict[str, float]:
    """``{"R@k": recall}`` for each k (see the module docstring for the step rule)."""
    fps_per_image = np.asarray(fps_per_image, dtype=np.float64)
    sensitivity = np.asarray(sensitivity, dtype=np.float64)
    out: dict[str, float] = {}
    for k in ks:
        if interpolation == "step":
            ok = fps_per_image <= k
            value = float(sensitivity[ok].max()) if ok.any() else 0.0
        elif interpolation == "linear":
            # MONAI expects the arrays in decreasing-FP order (as compute_froc_curve_data returns them)
            value = float(compute_froc_score(fps_per_image[::-1], sensitivity[::-1], [k]))
        else:
            raise ValueError(f"recall_at_fps: interpolation must be 'step' or 'linear', got {interpolation!r}")
        out[f"R@{k:g}"] = value
    return out


def _pred_array(entry: Any, score_key: str, what: str) -> tuple[np.ndarray, Any]:
    """(N, 3) [x, y, score] from an array, a list of point dicts, or a dict with "points"."""
    spacing = None
    if isinstance(entry, Mapping):
        spacing = entry.get("spacing")
        if "points" not in entry:
            raise ValueError(f"{what}: a prediction dict needs a 'points' field, got keys {sorted(entry)}")
        entry = entry["points"]
    if isinstance(entry, (list, tuple)) and entry and isinstance(entry[0], Mapping):
        try:
            rows = [[p["x"], p["y"], p[score_key]] for p in entry]
        except KeyError as exc:
            raise ValueError(f"{what}: a predicted point lacks field {exc}; expected 'x', 'y', {score_key!r}") from exc
        return np.asarray(rows, dtype=np.float64).reshape(-1, 3), spacing
    arr = _to_numpy(entry)
    if arr.size == 0:
        return np.zeros((0, 3)), spacing
    if arr.ndim != 2 or arr.shape[1] < 3:
        raise ValueError(f"{what}: predictions must be (N, 3) [x, y, score] rows, got shape {arr.shape}")
    arr = arr[:, :3]
    return arr[~np.isnan(arr).any(axis=1)], spacing  # NaN rows: padding of batch-first tensors


def _gt_array(entry: Any, what: str) -> tuple[np.ndarray, Any]:
    """(M, 2) [x, y] from an array, a list of [x, y], or a dict with "points" (and "spacing")."""
    spacing = getattr(entry, "meta", {}).get("spacing") if hasattr(entry, "meta") else None
    if isinstance(entry, Mapping):
        spacing = entry.get("spacing")
        if "points" not in entry:
            raise ValueError(f"{what}: a ground-truth dict needs a 'points' field, got keys {sorted(entry)}")
        entry = entry["points"]
    arr = _to_numpy(entry if entry is not None else [])
    if arr.size == 0:
        return np.zeros((0, 2)), spacing
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise ValueError(f"{what}: ground-truth points must be (M, 2) [x, y] rows, got shape {arr.shape}")
    arr = arr[:, :2]
    return arr[~np.isnan(arr).any(axis=1)], spacing


class PointFROCMetric(CumulativeIterationMetric):
    """FROC and recall at k false positives per image for point detections, radius in mm.

    Zhang et al., CVPR 2019, Sec. 4.4 (R@k, 1 mm hit radius). Counting rule, step interpolation
    and distances: see :mod:`monai_mammo.metrics.froc`. Registered as the metric ``"froc"``.

    Call it once per batch with per-image entries (any mix of the accepted forms)::

        metric(y_pred=[pred_img1, pred_img2], y=[gt_img1, gt_img2], spacing=[[sx, sy], [sx, sy]])

    - a prediction entry: an (N, 3) array/tensor ``[x, y, score]``, a list of dicts with "x", "y"
      and ``score_key``, or a dict ``{"points": [...], "spacing": [sx, sy]}`` (the inference JSON,
      so ``score_key="asn_score"`` evaluates proposals and ``"score"`` the final ASN × FPR score);
    - a ground-truth entry: an (M, 2) array ``[x, y]`` or a dict ``{"points": ..., "spacing": ...}``
      (a datalist item works as is);
    - spacing, first found of: the ``spacing`` argument (one [sx, sy] for all, or one per
      image), the ground-truth dict, the prediction dict, ``default_spacing``.

    A batch-first (B, N, 3) prediction tensor with (B, M, 2) targets is accepted too; rows with
    NaN are padding. ``aggregate()`` returns the key metric (R@``key_fps_per_image``) as a scalar
    tensor; :meth:`compute_details` returns R@k for every k, the curve and the counts.

    With Ignite: ``monai.handlers.IgniteMetricHandler(metric_fn=PointFROCMetric(...),
    output_transform=from_engine_points(...))`` logs the key metric, so
    ``key_metric_name``-based checkpointing keeps the best recall; after ``compute`` the full
    results are in ``handler.metric_fn.last_details`` (for a CSV / JSON / PNG writer).

    Args:
        radius_mm: hit radius in mm. Default 1.0 (paper).
        fps_per_image: the k of R@k: "final" (1, 5, 10, 15, 20; default), "proposals"
            (5, 10, 15, 20, 30) or a sequence of floats.
        key_fps_per_image: k (or ks, averaged) of the value ``aggregate()`` returns. Default 5.
        interpolation: "step" (default; see the module docstring) or "linear" (MONAI's
            ``compute_froc_score``).
        score_key: score field read from prediction dicts. Default "score".
        default_spacing: spacing [sx, sy] used when none is given. Default None (then spacing
            is required).
        gather: under ``torch.distributed``, gather the images of every rank when aggregating
            (each rank evaluated a shard; a collective call every rank must make). False: this
            rank's images only, for an evaluation that runs on one rank. Default True.

    Example::

        >>> import numpy as np
        >>> from monai_mammo.metrics.froc import PointFROCMetric
        >>> metric = PointFROCMetric(radius_mm=1.0)
        >>> _ = metric([np.array([[10.0, 10.0, 0.9], [80.0, 80.0, 0.5]])], [np.array([[12.0, 10.0]])],
        ...            spacing=[0.1, 0.1])
        >>> float(metric.aggregate())  # R@5: the µC is found with 1 FP on 1 image
        1.0
    """

    def __init__(
        self,
        radius_mm: float = 1.0,
        fps_per_image: str | Sequence[float] = "final",
        key_fps_per_image: float | Sequence[float] = 5.0,
        interpolation: str = "step",
        score_key: str = "score",
        default_spacing: Sequence[float] | None = None,
        gather: bool = True,
    ) -> None:
        super().__init__()
        if radius_mm <= 0:
            raise ValueError(f"PointFROCMetric: radius_mm must be > 0, got {radius_mm}")
        if isinstance(fps_per_image, str):
            if fps_per_image not in _FPS_PRESETS:
                raise ValueError(
                    f"PointFROCMetric: fps_per_image must be 'final', 'proposals' or a list of numbers, got {fps_per_image!r}"
                )
            fps_per_image = _FPS_PRESETS[fps_per_image]
        if interpolation not in ("step", "linear"):
            raise ValueError(f"PointFROCMetric: interpolation must be 'step' or 'linear', got {interpolation!r}")
        self.radius_mm = float(radius_mm)
        self.fps_per_image = tuple(float(k) for k in fps_per_image)
        keys = [key_fps_per_image] if isinstance(key_fps_per_image, (int, float)) else list(key_fps_per_image)
        self.key_fps_per_image = tuple(float(k) for k in keys)
        self.interpolation = interpolation
        self.score_key = score_key
        self.default_spacing = None if default_spacing is None else _spacing_pair(default_spacing, "default_spacing")
        self.gather = bool(gather)
        self.last_details: dict[str, Any] | None = None

    # buffers: 0 = scores of false-positive predictions, 1 = best hitting score per µC (-inf: missed),
    # 2 = per image [num predictions, num false positives, num µCs, num µCs hit at the lowest threshold]
    _BUFFER_WIDTHS = (1, 1, 4)

    def __call__(self, y_pred: Any, y: Any = None, spacing: Any = None, **kwargs: Any) -> torch.Tensor:  # type: ignore[override]
        stats = self._compute_tensor(y_pred, y, spacing=spacing, **kwargs)
        return stats

    def _compute_tensor(self, y_pred: Any, y: Any = None, spacing: Any = None, **kwargs: Any) -> torch.Tensor:  # type: ignore[override]
        """Match one batch, add it to the buffers, return per image [N pred, N FP, N µC, N hit]."""
        if y is None:
            raise ValueError("PointFROCMetric: ground-truth points y are required")
        preds = list(y_pred) if isinstance(y_pred, (list, tuple, torch.Tensor, np.ndarray)) else None
        gts = list(y) if isinstance(y, (list, tuple, torch.Tensor, np.ndarray)) else None
        if preds is None or gts is None or len(preds) != len(gts):
            raise ValueError(
                "PointFROCMetric: y_pred and y must be sequences with one entry per image of the same length, got "
                f"{type(y_pred).__name__} ({len(preds) if preds is not None else '?'}) and "
                f"{type(y).__name__} ({len(gts) if gts is not None else '?'})"
            )
        spacings = self._spacing_list(spacing, len(preds))
        if self._buffers is None:
            self._buffers = [[] for _ in self._BUFFER_WIDTHS]
        stats = []
        for i, (pred_entry, gt_entry) in enumerate(zip(preds, gts)):
            what = f"PointFROCMetric image {i} of the batch"
            pred, pred_spacing = _pred_array(pred_entry, self.score_key, what)
            gt_xy, gt_spacing = _gt_array(gt_entry, what)
            image_spacing = next(
                (s for s in (spacings[i], gt_spacing, pred_spacing, self.default_spacing) if s is not None), None
            )
            if image_spacing is None:
                raise ValueError(
                    f"{what}: no pixel spacing (pass spacing=..., a 'spacing' field, or default_spacing)"
                )
            fp_scores, gt_best = image_froc_scores(pred, gt_xy, _spacing_pair(image_spacing, what), self.radius_mm)
            self._buffers[0].extend(torch.as_tensor(fp_scores, dtype=torch.float64).reshape(-1, 1).unbind(0))
            self._buffers[1].extend(torch.as_tensor(gt_best, dtype=torch.float64).reshape(-1, 1).unbind(0))
            row = torch.tensor(
                [len(pred), len(fp_scores), len(gt_xy), int(np.isfinite(gt_best).sum())], dtype=torch.float64
            )
            self._buffers[2].append(row)
            stats.append(row)
        self._synced = False
        return torch.stack(stats) if stats else torch.zeros((0, 4), dtype=torch.float64)

    @staticmethod
    def _spacing_list(spacing: Any, n: int) -> list[Any]:
        if spacing is None:
            return [None] * n
        arr = _to_numpy(spacing)
        if arr.ndim <= 1 and arr.size in (1, 2):
            return [arr] * n  # one spacing for the whole batch
        if arr.ndim == 2 and arr.shape == (n, 2):
            return list(arr)
        raise ValueError(f"PointFROCMetric: spacing must be [sx, sy] or ({n}, 2), got shape {arr.shape}")

    def _sync(self) -> None:
        # Cumulative._sync cannot stack an empty buffer (no false positive at all, or no µC)
        if self._synced or self._buffers is None:
            return
        local = [torch.stack(b) if b else torch.zeros((0, w), dtype=torch.float64) for b, w in zip(self._buffers, self._BUFFER_WIDTHS)]
        self._synced_tensors = [evenly_divisible_all_gather(t, concat=True) if self.gather else t for t in local]
        self._synced = True

    def compute_details(self) -> dict[str, Any]:
        """Everything: R@k, the key metric, the counts and the full curve (lists, JSON-friendly
        apart from the first threshold, +inf)."""
        buffers = self.get_buffer()
        if buffers is None or len(buffers[2]) == 0:
            raise ValueError("PointFROCMetric: no image was evaluated; call the metric on a batch first")
        fp_scores, gt_best, per_image = (b.numpy() for b in buffers)
        num_images = len(per_image)
        num_targets = len(gt_best)
        if num_targets == 0:
            warnings.warn("PointFROCMetric: no ground-truth point in any image; recall is undefined (NaN)", stacklevel=2)
        curve = froc_curve(fp_scores[:, 0], gt_best[:, 0], num_images)
        recalls = recall_at_fps(curve["fps_per_image"], curve["sensitivity"], self.fps_per_image, self.interpolation)
        key = recall_at_fps(curve["fps_per_image"], curve["sensitivity"], self.key_fps_per_image, self.interpolation)
        details = {
            "recall_at": recalls,
            "key_metric": float(np.mean(list(key.values()))),
            "key_fps_per_image": list(self.key_fps_per_image),
            "num_images": num_images,
            "num_targets": num_targets,
            "num_predictions": int(per_image[:, 0].sum()),
            "num_targets_hit_at_lowest_threshold": int(per_image[:, 3].sum()),
            "radius_mm": self.radius_mm,
            "interpolation": self.interpolation,
            "curve": {name: curve[name].tolist() for name in ("thresholds", "fps_per_image", "sensitivity")},
        }
        self.last_details = details
        return details

    def aggregate(self) -> torch.Tensor:  # type: ignore[override]
        """The key metric: R@``key_fps_per_image`` (mean over the ks if several), a scalar tensor."""
        return torch.tensor(self.compute_details()["key_metric"], dtype=torch.float64)


def from_engine_points(
    pred_key: str = "pred_points", points_key: str = "points", spacing_key: str = "spacing"
) -> Callable[[Any], tuple[list[Any], list[dict[str, Any]]]]:
    """``output_transform`` for ``IgniteMetricHandler`` wrapping :class:`PointFROCMetric`.

    Takes an engine output that is a list of per-image dicts (MONAI's decollated output) or a dict
    of per-batch lists, and returns ``(predictions, [{"points", "spacing"}, ...])``.
    """

    def transform(output: Any) -> tuple[list[Any], list[dict[str, Any]]]:
        items = output if isinstance(output, (list, tuple)) else [
            {k: output[k][i] for k in (pred_key, points_key, spacing_key) if k in output}
            for i in range(len(output[pred_key]))
        ]
        preds = [item[pred_key] for item in items]
        gts = [{"points": item.get(points_key, []), "spacing": item.get(spacing_key)} for item in items]
        return preds, gts

    return transform


# ----------------------------------------------------------------------------------------- writers


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_json_safe(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None  # strict JSON has no inf / NaN
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, torch.Tensor):
        return _json_safe(value.tolist())
    return value


def write_metrics_json(path: str | Path, metrics: Mapping[str, Any]) -> Path:
    """Write ``metrics`` as JSON atomically; non-finite numbers become null."""
    text = json.dumps(_json_safe(metrics), indent=2, sort_keys=False) + "\n"
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_froc_csv(path: str | Path, curve: Mapping[str, Sequence[float]]) -> Path:
    """Write a curve (``thresholds``, ``fps_per_image``, ``sensitivity``) as CSV, atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["threshold", "fps_per_image", "sensitivity"])
    for t, f, s in zip(curve["thresholds"], curve["fps_per_image"], curve["sensitivity"]):
        writer.writerow([repr(float(t)), repr(float(f)), repr(float(s))])
    return atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))


def plot_froc(
    path: str | Path, curves: Mapping[str, Mapping[str, Sequence[float]]], title: str = "FROC"
) -> Path | None:
    """Plot one or more curves (label -> curve) on a log FP axis like the paper's Figs. 4-5.

    Returns the PNG path, or None (with a warning) when matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        warnings.warn("plot_froc: matplotlib is not installed; no FROC plot written", stacklevel=2)
        return None
    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    for label, curve in curves.items():
        fps = np.asarray(curve["fps_per_image"], dtype=np.float64)
        sens = np.asarray(curve["sensitivity"], dtype=np.float64)
        keep = fps > 0  # a log axis cannot show 0 FP
        ax.step(fps[keep], sens[keep], where="post", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("False positives per image")
    ax.set_ylabel("Recall")
    ax.set_ylim(0, 1.02)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(title)
    if curves:
        ax.legend(loc="lower right")
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def save_froc_report(
    out_dir: str | Path, results: Mapping[str, Mapping[str, Any]], plot: bool = True, title: str = "FROC"
) -> dict[str, Path]:
    """Write an evaluation's outputs: ``metrics.json``, ``froc_<name>.csv`` per result, ``froc.png``.

    ``results`` maps a name (e.g. "proposals", "final") to :meth:`PointFROCMetric.compute_details`.
    ``metrics.json`` holds, per name, R@k, the key metric and the counts (the curves go to CSV).
    Returns the written paths by role.
    """
    out_dir = Path(out_dir)
    written: dict[str, Path] = {}
    summary: dict[str, Any] = {}
    for name, details in results.items():
        summary[name] = {k: v for k, v in details.items() if k != "curve"}
        written[f"csv_{name}"] = write_froc_csv(out_dir / f"froc_{name}.csv", details["curve"])
    written["metrics"] = write_metrics_json(out_dir / "metrics.json", summary)
    if plot:
        png = plot_froc(out_dir / "froc.png", {name: d["curve"] for name, d in results.items()}, title=title)
        if png is not None:
            written["plot"] = png
    return written
