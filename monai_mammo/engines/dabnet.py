"""Glue between MONAI and the DAB-Net bundle (Wang et al., ICML 2022), used by ``bundles/dabnet``.

Wang et al., "Disentangling Disease-related Representation from Obscure for Disease Prediction",
ICML 2022. Evaluation with bootstrap confidence intervals (overall and obscured-only AUC), repeated
training, ROI inference (crops or full mammogram + boxes), disentanglement PNGs, and
:class:`MalignancyToLabeld` (the per-ROI probability as a label image for MONAI Label).

The bundle configs import it as ``$import monai_mammo.engines.dabnet as mm_dabnet`` and call
``mm_dabnet.evaluate_bundle(...)``, ``mm_dabnet.infer_rois(...)`` etc. Nothing here is
method-specific library code; it orchestrates monai_mammo and MONAI components.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.metrics import compute_roc_auc
from monai.transforms import MapTransform

from monai_mammo.atomic_io import atomic_write_json
from monai_mammo.engines.weights import load_network_weights

# the bundle in this source tree (monai_mammo/engines/dabnet.py -> <repo>/bundles/dabnet), which
# train_bundle() runs when a repeat retrains (as when this module lived in the bundle's scripts/)
BUNDLE_ROOT = Path(__file__).resolve().parents[2] / "bundles" / "dabnet"


# --- metrics -------------------------------------------------------------------------------------
def roc_auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve (MONAI's ``compute_roc_auc``); NaN, silently, with one class only
    (bootstrap resamples of a small subset hit that case often)."""
    labels_t = torch.as_tensor(np.asarray(labels).astype(np.int64))
    if labels_t.numel() == 0 or labels_t.min() == labels_t.max():
        return float("nan")
    return float(compute_roc_auc(torch.as_tensor(np.asarray(scores, dtype=np.float64)), labels_t))


def bootstrap_auc(
    scores: Sequence[float], labels: Sequence[int], n_bootstrap: int = 1000, seed: int = 0, level: float = 0.95
) -> dict[str, Any]:
    """AUC with a percentile bootstrap confidence interval (cases resampled with replacement;
    resamples with one class only are skipped)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(int)
    auc = roc_auc(scores, labels)
    result: dict[str, Any] = {"auc": auc, "n": int(len(labels)), "n_positive": int(labels.sum())}
    if math.isnan(auc) or n_bootstrap <= 0:
        result.update({"ci_low": float("nan"), "ci_high": float("nan"), "n_bootstrap": 0})
        return result
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(int(n_bootstrap)):
        index = rng.integers(0, len(labels), len(labels))
        value = roc_auc(scores[index], labels[index])
        if not math.isnan(value):
            values.append(value)
    tail = (1 - level) / 2 * 100
    result.update(
        {
            "ci_low": float(np.percentile(values, tail)),
            "ci_high": float(np.percentile(values, 100 - tail)),
            "ci_level": level,
            "n_bootstrap": len(values),
        }
    )
    return result


# --- prediction / evaluation ---------------------------------------------------------------------
@torch.no_grad()
def predict(network: torch.nn.Module, dataloader: Iterable[Mapping[str, Any]], device: torch.device | str) -> dict[str, np.ndarray]:
    """Malignancy probabilities, labels and obscured flags over a dataloader."""
    network.eval()
    probs, labels, obscured = [], [], []
    for batch in dataloader:
        logit = network(torch.as_tensor(batch["image"]).to(device))
        probs.append(torch.sigmoid(logit).reshape(-1).float().cpu().numpy())
        labels.append(torch.as_tensor(batch["label"]).reshape(-1).cpu().numpy())
        flags = batch.get("obscured")
        n = logit.shape[0]
        obscured.append(np.zeros(n, bool) if flags is None else torch.as_tensor(flags).reshape(-1).cpu().numpy().astype(bool))
    return {
        "prob": np.concatenate(probs),
        "label": np.concatenate(labels).astype(int),
        "obscured": np.concatenate(obscured),
    }


def auc_metrics(predictions: Mapping[str, np.ndarray], n_bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    """``{"overall": ..., "obscured": ..., "clear": ...}`` AUCs with bootstrap CIs."""
    prob, label, obscured = predictions["prob"], predictions["label"], predictions["obscured"]
    out = {"overall": bootstrap_auc(prob, label, n_bootstrap, seed)}
    out["obscured"] = bootstrap_auc(prob[obscured], label[obscured], n_bootstrap, seed)
    out["clear"] = bootstrap_auc(prob[~obscured], label[~obscured], n_bootstrap, seed)
    return out


def train_bundle(overrides: Mapping[str, Any], config_files: Sequence[str | os.PathLike] | None = None) -> dict[str, Any]:
    """Run the bundle's training workflow in-process with ``overrides``; return its checkpoint path,
    best validation AUC and wall time."""
    from monai.bundle import ConfigWorkflow

    files = [str(f) for f in (config_files or [BUNDLE_ROOT / "configs" / "train.yaml"])]
    start = time.perf_counter()
    workflow = ConfigWorkflow(
        config_file=files,
        meta_file=str(BUNDLE_ROOT / "configs" / "metadata.json"),
        logging_file=str(BUNDLE_ROOT / "configs" / "logging.conf"),
        workflow_type="train",
        run_id="run",
        **dict(overrides),
    )
    workflow.initialize()
    workflow.run()
    best = workflow.parser.get_parsed_content("validate#evaluator").state.best_metric
    ckpt = os.path.join(workflow.parser.get_parsed_content("ckpt_dir"), "model.pt")
    workflow.finalize()
    return {"checkpoint": ckpt, "best_val_auc": float(best), "train_seconds": time.perf_counter() - start}


def evaluate_bundle(
    network: torch.nn.Module,
    dataloader: Iterable[Mapping[str, Any]],
    device: torch.device | str,
    checkpoint: str | os.PathLike,
    output_file: str | os.PathLike,
    n_bootstrap: int = 1000,
    repeats: int = 1,
    repeat_overrides: Mapping[str, Any] | None = None,
    seed: int = 0,
    eval_description: str = "",
) -> dict[str, Any]:
    """Evaluate the trained model (``repeats=1``) or retrain ``repeats`` times with seeds
    ``seed .. seed+repeats-1`` and average (paper: mean of 10 runs); write ``metrics.json``."""
    runs = []
    if repeats <= 1:
        load_network_weights(network, checkpoint, device)
        runs.append({"checkpoint": str(checkpoint), "metrics": auc_metrics(predict(network, dataloader, device), n_bootstrap, seed)})
    else:
        out_dir = Path(output_file).parent
        for k in range(int(repeats)):
            overrides = {**dict(repeat_overrides or {}), "seed": seed + k, "ckpt_dir": str(out_dir / f"run_{k}")}
            trained = train_bundle(overrides)
            load_network_weights(network, trained["checkpoint"], device)
            metrics = auc_metrics(predict(network, dataloader, device), n_bootstrap, seed)
            runs.append({**trained, "seed": seed + k, "metrics": metrics})
            print(f"run {k}: AUC {metrics['overall']['auc']:.4f}, obscured AUC {metrics['obscured']['auc']:.4f}")
    summary: dict[str, Any] = {"description": eval_description, "repeats": len(runs), "runs": runs}
    for subset in ("overall", "obscured", "clear"):
        values = np.array([r["metrics"][subset]["auc"] for r in runs], dtype=np.float64)
        summary[subset] = (
            runs[0]["metrics"][subset]
            if len(runs) == 1
            else {"auc_mean": float(np.nanmean(values)), "auc_std": float(np.nanstd(values)), "aucs": values.tolist()}
        )
    atomic_write_json(output_file, summary, default=float)
    key = "auc" if len(runs) == 1 else "auc_mean"
    print(
        f"DAB-Net test AUC {summary['overall'][key]:.4f} "
        + (f"[{summary['overall']['ci_low']:.3f}, {summary['overall']['ci_high']:.3f}] " if len(runs) == 1 else "")
        + f"obscured-only AUC {summary['obscured'][key]:.4f}; written to {output_file}"
    )
    return summary


def phantom_eval_data(datalist_file: str | os.PathLike, splits: Sequence[str] = ("training", "validation", "test")) -> list[dict]:
    """All real ROIs of a (different-seed) phantom set, for evaluation."""
    from monai.data import load_decathlon_datalist

    data: list[dict] = []
    for split in splits:
        data += load_decathlon_datalist(str(datalist_file), data_list_key=split)
    return data


# --- inference -------------------------------------------------------------------------------------
def roi_items(
    inputs: Sequence[Mapping[str, Any] | str], crop_scale: float = 2.0, min_crop: int = 32
) -> list[dict[str, Any]]:
    """Expand inputs into ROI items: a path or ``{"image": path}`` is a ROI crop; ``{"image": path,
    "boxes": [[x0, y0, x1, y1], ...]}`` is a full image whose boxes are cropped as squares of side
    ``crop_scale * max(w, h)`` centred on each box (clipped to the image), like the radiologists'
    ROIs the model is trained on."""
    items = []
    for entry in inputs:
        entry = {"image": entry} if isinstance(entry, (str, os.PathLike)) else dict(entry)
        boxes = entry.get("boxes")
        if not boxes:
            items.append({"image": str(entry["image"]), "roi_box": None, "source": str(entry["image"])})
            continue
        for index, box in enumerate(boxes):
            x0, y0, x1, y1 = (float(v) for v in box)
            if x1 <= x0 or y1 <= y0:
                raise ValueError(f"{entry['image']}: box {index} {box} is empty or inverted ([x0, y0, x1, y1])")
            side = max(min_crop, crop_scale * max(x1 - x0, y1 - y0))
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            items.append(
                {
                    "image": str(entry["image"]),
                    "box": [x0, y0, x1, y1],
                    "roi_box": [cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2],
                    "source": f"{entry['image']}#box{index}",
                }
            )
    return items


def load_roi(item: Mapping[str, Any]) -> torch.Tensor:
    """Read an item's image (PNG/DICOM/NIfTI through monai_mammo's radiograph reader), crop its
    ``roi_box`` if any, scale to [0, 1]; returns ``(1, H, W)``."""
    from monai_mammo.transforms.io import LoadRadiographd

    path = item["image"]
    image = LoadRadiographd(keys="image")({"image": path})["image"]
    image = torch.as_tensor(np.asarray(image), dtype=torch.float32)
    if image.ndim == 2:
        image = image[None]
    if item.get("roi_box") is not None:
        height, width = image.shape[-2:]
        x0, y0, x1, y1 = item["roi_box"]
        c0, r0 = max(0, int(math.floor(x0))), max(0, int(math.floor(y0)))
        c1, r1 = min(width, int(math.ceil(x1))), min(height, int(math.ceil(y1)))
        if c1 <= c0 or r1 <= r0:
            raise ValueError(f"{path}: ROI {item['roi_box']} lies outside the {height}x{width} image")
        image = image[:, r0:r1, c0:c1]
    low, high = image.min(), image.max()
    return (image - low) / (high - low).clamp(min=1e-8)


@torch.no_grad()
def infer_rois(
    network: torch.nn.Module,
    inputs: Sequence[Mapping[str, Any] | str],
    checkpoint: str | os.PathLike,
    output_dir: str | os.PathLike,
    spatial_size: Sequence[int],
    device: torch.device | str = "cpu",
    save_png: bool = False,
    crop_scale: float = 2.0,
) -> list[dict[str, Any]]:
    """Probability of malignancy per ROI, written to ``output_dir/predictions.json``; with
    ``save_png`` also ``<name>_disentangled.png`` (input | x̂_m | x̂_g) beside it."""
    import torch.nn.functional as F

    load_network_weights(network, checkpoint, device)
    network.eval()
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for index, item in enumerate(roi_items(inputs, crop_scale=crop_scale)):
        roi = load_roi(item)
        x = F.interpolate(roi[None], size=tuple(spatial_size), mode="bilinear", align_corners=False).to(device)
        wants_png = save_png and getattr(network, "decoders", "none") != "none"
        out = network(x, return_reconstructions=True) if wants_png else network(x)
        logit = out["logit"] if isinstance(out, Mapping) else out
        record = {"source": item["source"], "probability": float(torch.sigmoid(logit).reshape(-1)[0])}
        if item.get("roi_box") is not None:
            record.update({"box": item["box"], "roi_box": item["roi_box"]})
        if wants_png:
            from PIL import Image

            panels = [x[0, 0]] + [
                (out[k][0, 0] if out[k] is not None else torch.zeros_like(x[0, 0])) for k in ("rec_mass", "rec_glands")
            ]
            strip = torch.cat([p.clamp(0, 1) for p in panels], dim=1).cpu().numpy()
            name = f"{index:04d}_{Path(item['image']).stem}_disentangled.png"
            Image.fromarray((strip * 255).round().astype(np.uint8)).save(out_dir / name)
            record["png"] = name
        results.append(record)
    atomic_write_json(out_dir / "predictions.json", results, default=float)
    print(f"DAB-Net inference: {len(results)} ROI(s) -> {out_dir / 'predictions.json'}")
    return results


# --- MONAI Label -----------------------------------------------------------------------------------
class MalignancyToLabeld(MapTransform):
    """The per-ROI malignancy probability of DAB-Net (Wang et al., ICML 2022) as a label image.

    MONAI Label's stock bundle app handles a bundle as a segmentation model: it writes ``pred`` as a
    label image of the input's size and returns ``data["result"]`` as the JSON part of the reply.
    This transform fills a uint8 ``(1, H, W)`` label of the input's *original* spatial size with
    1 (benign, ``p < threshold``) or 2 (malignant) and stores
    ``d["result"] = {"malignancy_probability": p, "label": "benign" | "malignant"}``. Follow it
    with ``monai_mammo.transforms.label_app.ToLabelAppLayoutd`` for the layout MONAI Label writes.

    Example::

        >>> image = MetaTensor(torch.zeros(1, 64, 64), meta={"spatial_shape": (40, 30)})  # read as W=40, H=30
        >>> d = MalignancyToLabeld(keys="pred", ref_key="image")({"image": image, "pred": torch.tensor([0.8])})
        >>> tuple(d["pred"].shape), int(d["pred"].max()), d["result"]["label"]
        ((1, 30, 40), 2, 'malignant')

    Args:
        keys: the probability keys, each a one-element tensor (shape ``(1,)`` or ``(1, 1)``, after
            the sigmoid).
        ref_key: the input image key; the label gets the size in its ``meta["spatial_shape"]`` (the
            size as read, before resizing), else its current spatial size. Default ``"image"``.
        spatial_shape_order: ``"wh"`` (default) or ``"hw"``: the order of ``spatial_shape``. MONAI's
            ``PILReader`` writes ``(W, H)`` (``img.size``) even with ``reverse_indexing=False``,
            which the bundle uses for arrays ``(1, H, W)``; ``"hw"`` for readers that write rows first.
        threshold: probabilities ``>= threshold`` are malignant. Default 0.5.
        result_key: where the JSON result goes; default ``"result"`` (what MONAI Label returns).
        allow_missing_keys: skip absent keys instead of raising.
    """

    BENIGN = 1
    MALIGNANT = 2

    def __init__(
        self,
        keys: KeysCollection,
        ref_key: str = "image",
        threshold: float = 0.5,
        result_key: str = "result",
        spatial_shape_order: str = "wh",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if spatial_shape_order not in ("wh", "hw"):
            raise ValueError(f"MalignancyToLabeld: spatial_shape_order must be 'wh' or 'hw', got {spatial_shape_order!r}")
        self.spatial_shape_order = spatial_shape_order
        self.ref_key = ref_key
        self.threshold = float(threshold)
        self.result_key = result_key

    def _spatial_shape(self, d: Mapping[Any, Any]) -> tuple[int, int]:
        if self.ref_key not in d:
            raise KeyError(f"MalignancyToLabeld: reference key {self.ref_key!r} not in the data ({list(d)})")
        reference = d[self.ref_key]
        shape = None
        if isinstance(reference, MetaTensor) and reference.meta.get("spatial_shape") is not None:
            shape = [int(v) for v in np.asarray(reference.meta["spatial_shape"]).reshape(-1)]
            if len(shape) == 2 and self.spatial_shape_order == "wh":
                shape = shape[::-1]
        if shape is None or len(shape) != 2:
            shape = [int(v) for v in reference.shape[-2:]]
        return shape[0], shape[1]

    def __call__(self, data: Mapping[Any, Any]) -> dict[Any, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            prob = torch.as_tensor(d[key])
            if prob.numel() != 1:
                raise ValueError(f"{key}: expected one malignancy probability (shape (1,) or (1, 1)), got shape {tuple(prob.shape)}")
            p = float(prob.reshape(-1)[0])
            malignant = p >= self.threshold
            height, width = self._spatial_shape(d)
            value = self.MALIGNANT if malignant else self.BENIGN
            d[key] = torch.full((1, height, width), value, dtype=torch.uint8)
            d[self.result_key] = {"malignancy_probability": p, "label": "malignant" if malignant else "benign"}
        return d
