"""Glue between MONAI and the LatentCADx bundle (An et al., Front. Big Data 2021), used by
``bundles/latentcadx``. What its configs call that MONAI and the library do not provide:

* batches: :class:`MaskTargetPrepareBatch` (the baselines: image -> coarse mask);
* validation: output transforms for ``IgniteMetricHandler`` (:func:`classification_output`,
  :func:`mask_output`) and :class:`ValidationLossMetric` (the loss on the validation set, for early
  stopping, Sec. 4.3: "early termination when validation loss did not change within 1e-6");
* evaluation (:func:`evaluate_bundle`): LatentCADx, the U-Net and FCN baselines, the ceiling where
  trained, and the floor references, each with bootstrap CIs, into ``metrics.json``;
* whole-image inference post-processing (:class:`LesionMapd`, :class:`SaveLesionMapd`,
  :class:`LesionMapInferer`): the patch masks times their classification probability as one
  probability map, back on the stored image's grid, thresholded into a label and per-lesion components;
* :class:`LoadLabelMapd`: the raw label values of a mask file (the phantoms' lesion types).

The configs import it as ``$import monai_mammo.engines.latentcadx as mm_lcx``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.engines.utils import PrepareBatch
from monai.metrics import CumulativeIterationMetric
from monai.transforms import MapTransform

from monai_mammo.atomic_io import atomic_write_bytes, atomic_write_json
from monai_mammo.inferers.breast_sliding_window import MaskedSlidingWindowInferer
from monai_mammo.metrics.classification import average_precision, f1_score, roc_auc
from monai_mammo.metrics.segmentation import dice_iou, overlap_measures, segmentation_average_precision

__all__ = [
    "MaskTargetPrepareBatch",
    "classification_output",
    "mask_output",
    "ValidationLossMetric",
    "patch_predictions",
    "patch_metrics",
    "evaluate_bundle",
    "LesionMapInferer",
    "LesionMapd",
    "SaveLesionMapd",
    "LoadLabelMapd",
]

logger = logging.getLogger(__name__)


def _plain(x: Any) -> torch.Tensor:
    if isinstance(x, MetaTensor):
        return x.as_tensor()
    return torch.as_tensor(x)


# --- batches and validation ------------------------------------------------------------------------
class MaskTargetPrepareBatch(PrepareBatch):
    """``prepare_batch`` giving ``(image, batch[target_key])``: a segmentation baseline trained on a mask.

    >>> image, target = MaskTargetPrepareBatch("coarse_mask")({"image": torch.zeros(1, 1, 2, 2), "coarse_mask": torch.ones(1, 1, 2, 2)})
    >>> float(target.sum())
    4.0
    """

    def __init__(self, target_key: str = "coarse_mask", image_key: str = "image") -> None:
        self.target_key, self.image_key = target_key, image_key

    def __call__(self, batchdata: Mapping[str, Any], device: str | torch.device | None = None, non_blocking: bool = False, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        image = _plain(batchdata[self.image_key]).to(device=device, non_blocking=non_blocking)
        target = _plain(batchdata[self.target_key]).to(device=device, non_blocking=non_blocking).float()
        return image, target


def classification_output(output: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(probability (B,), label (B,))`` of a (non-decollated) evaluator output."""
    pred, target = output["pred"], output["label"]
    logit = pred["logit"] if isinstance(pred, Mapping) else pred
    label = target["label"] if isinstance(target, Mapping) else target
    return torch.sigmoid(_plain(logit).reshape(-1).float()), _plain(label).reshape(-1)


def mask_output(output: Mapping[str, Any], target_key: str = "coarse_mask") -> tuple[torch.Tensor, torch.Tensor]:
    """``(mask probabilities (B, 1, H, W), target mask)`` of a (non-decollated) evaluator output."""
    pred, target = output["pred"], output["label"]
    mask = pred["mask"] if isinstance(pred, Mapping) else torch.sigmoid(_plain(pred))
    return _plain(mask).float(), _plain(target[target_key] if isinstance(target, Mapping) else target)


class ValidationLossMetric(CumulativeIterationMetric):
    """The training loss over the validation set (batch-size weighted mean), for early stopping.

    >>> m = ValidationLossMetric(torch.nn.MSELoss())
    >>> _ = m(torch.zeros(2, 1), torch.ones(2, 1)); _ = m(torch.zeros(1, 1), torch.zeros(1, 1))
    >>> round(float(m.aggregate()), 4)    # (2 * 1 + 1 * 0) / 3
    0.6667
    """

    def __init__(self, loss: torch.nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def __call__(self, y_pred: Any, y: Any = None, **kwargs: Any) -> torch.Tensor:  # type: ignore[override]
        with torch.no_grad():
            value = self.loss(y_pred, y).detach().float().reshape(())
        first = next(iter(y_pred.values())) if isinstance(y_pred, Mapping) else y_pred
        n = int(first.shape[0])
        self.extend(value.reshape(1, 1).expand(n, 1).clone())
        return value

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        raise NotImplementedError("ValidationLossMetric is called with whole batches")

    def aggregate(self) -> torch.Tensor:  # type: ignore[override]
        data = self.get_buffer()
        return torch.as_tensor(data).float().mean() if data is not None else torch.tensor(float("nan"))


# --- evaluation ------------------------------------------------------------------------------------
def _kind(network: torch.nn.Module) -> str:
    from monai_mammo.checkpoints import unwrap_network

    return "latentcadx" if hasattr(unwrap_network(network), "decoder_parameters") else "segmenter"


@torch.no_grad()
def patch_predictions(network: torch.nn.Module | str, dataloader: Any, device: str | torch.device = "cpu", threshold: float = 0.5) -> dict[str, np.ndarray]:
    """Per-patch scores and overlap figures of one model over a patch dataloader.

    ``network``: a LatentCADx network (score: its classification probability; mask: its mask), a
    segmenter returning mask logits (score: the mask's maximum), or a floor reference:
    ``"coarse_outline"`` (the annotation itself as the prediction; score: the mean intensity of the
    patch's central half minus the patch's mean, a classical contrast rule) or ``"intensity_rule"`` (the same score
    and, inside the patch, pixels above the patch's 95th intensity percentile).
    """
    rows: dict[str, list] = {k: [] for k in ("score", "label", "lesion_type", "iou", "iop", "ioa", "confused_pixels", "true_dice", "true_iou", "has_instance")}
    if isinstance(network, torch.nn.Module):
        network.eval()
    for batch in dataloader:
        image = _plain(batch["image"]).float().to(device)
        coarse = _plain(batch["coarse_mask"]).float()
        flat = image.flatten(1)
        h, w = image.shape[-2:]
        centre = image[..., h // 4 : h - h // 4, w // 4 : w - w // 4].flatten(1)
        contrast = (centre.mean(1) - flat.mean(1)).cpu()  # positives are centred on their lesion
        if network == "coarse_outline":
            score, mask = contrast, coarse
        elif network == "intensity_rule":
            score = contrast
            mask = (image > torch.quantile(flat, 0.95, dim=1)[:, None, None, None]).float().cpu()
        elif _kind(network) == "latentcadx":
            out = network(image)
            score, mask = torch.sigmoid(out["logit"]).reshape(-1).cpu(), out["mask"].cpu()
        else:
            mask = torch.sigmoid(network(image)).cpu()
            score = mask.flatten(1).amax(1)
        overlap = overlap_measures(mask, coarse, threshold)
        rows["score"].append(score.double().numpy())
        rows["label"].append(_plain(batch["label"]).reshape(-1).cpu().numpy().astype(int))
        rows["lesion_type"].append(np.asarray(list(batch["lesion_type"]), dtype=object))
        for key in ("iou", "iop", "ioa", "confused_pixels"):
            rows[key].append(overlap[key].numpy())
        if "mask" in batch:
            truth = dice_iou(mask, _plain(batch["mask"]).float(), threshold)
            rows["true_dice"].append(truth["dice"].numpy())
            rows["true_iou"].append(truth["iou"].numpy())
        else:
            rows["true_dice"].append(np.full(len(score), np.nan))
            rows["true_iou"].append(np.full(len(score), np.nan))
        rows["has_instance"].append((mask.flatten(1) > threshold).any(1).numpy())
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in rows.items()}


def patch_metrics(p: Mapping[str, np.ndarray], index: np.ndarray | None = None) -> dict[str, float]:
    """The headline figures of :func:`patch_predictions` (on the rows ``index``, for the bootstrap).

    Classification over all patches; iou / iop / ioa / confused pixels / true Dice over the positive
    patches (NaN-skipping: iop is undefined where nothing is predicted, counted in
    ``empty_prediction_fraction``); segmentation AP over all patches.
    """
    idx = np.arange(len(p["label"])) if index is None else index
    label, score = p["label"][idx], p["score"][idx]
    pos = label == 1

    def mean(key: str) -> float:
        values = p[key][idx][pos].astype(np.float64)
        values = values[~np.isnan(values)]
        return float(values.mean()) if len(values) else float("nan")

    out = {
        "roc_auc": roc_auc(score, label) if 0 < pos.sum() < len(label) else float("nan"),
        "ap": average_precision(score, label),
        "f1": f1_score(score, label, 0.5),
    }
    for t, name in ((0.3, "seg_ap_iou03"), (0.5, "seg_ap_iou05"), (0.7, "seg_ap_iou07")):
        out[name] = segmentation_average_precision(score, p["iou"][idx], pos, p["has_instance"][idx], t)
    for key in ("iou", "iop", "ioa", "confused_pixels", "true_dice", "true_iou"):
        out[key] = mean(key)
    out["empty_prediction_fraction"] = float((~p["has_instance"][idx][pos].astype(bool)).mean()) if pos.any() else float("nan")
    return out


def _with_ci(p: Mapping[str, np.ndarray], index: np.ndarray, n_bootstrap: int, seed: int) -> dict[str, Any]:
    point = patch_metrics(p, index)
    rng = np.random.default_rng(seed)
    samples = {k: [] for k in point}
    for _ in range(int(n_bootstrap)):
        draw = index[rng.integers(0, len(index), len(index))]
        for k, v in patch_metrics(p, draw).items():
            samples[k].append(v)
    out: dict[str, Any] = {}
    for k, v in point.items():
        values = np.asarray(samples[k], dtype=np.float64)
        values = values[~np.isnan(values)]
        out[k] = v
        out[f"{k}_ci"] = [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))] if len(values) else [float("nan")] * 2
    return out


def evaluate_bundle(
    checkpoints: Mapping[str, str | os.PathLike],
    dataloader: Any,
    device: str | torch.device,
    output_file: str | os.PathLike,
    n_bootstrap: int = 1000,
    seed: int = 0,
    floors: Sequence[str] = ("coarse_outline", "intensity_rule"),
    eval_description: str = "",
    required: Sequence[str] = ("latentcadx",),
) -> dict[str, Any]:
    """Evaluate every model of ``checkpoints`` (name -> checkpoint with its network spec; a missing
    file is skipped with a warning unless its name is ``required``) and the ``floors`` on the same
    patches; write ``metrics.json``: per model, overall and per lesion type (mass / calcification
    positives against all negatives), each figure with a percentile bootstrap 95 % CI."""
    from monai_mammo.checkpoints import load_network

    models: dict[str, Any] = {}
    for name, path in checkpoints.items():
        if not Path(path).is_file():
            if name in required:
                raise FileNotFoundError(f"{path}: no trained {name} model; train the bundle first")
            logger.warning("evaluation: %s not found (%s), skipped", name, path)
            continue
        models[name] = load_network(path, device)
    models.update({name: name for name in floors})
    summary: dict[str, Any] = {"description": eval_description, "n_bootstrap": int(n_bootstrap), "models": {}}
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    for name, network in models.items():
        p = patch_predictions(network, dataloader, device)
        if distributed:  # multi_gpu_evaluate.yaml: each rank predicted its shard; every rank gets all rows
            shards: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(shards, p)
            p = {k: np.concatenate([shard[k] for shard in shards]) for k in p}
        entry: dict[str, Any] = {"n_patches": int(len(p["label"])), "n_positive": int(p["label"].sum())}
        entry["overall"] = _with_ci(p, np.arange(len(p["label"])), n_bootstrap, seed)
        for lesion_type in ("mass", "calcification"):
            index = np.nonzero((p["label"] == 0) | (p["lesion_type"] == lesion_type))[0]
            if (p["lesion_type"][index] == lesion_type).any():
                entry[lesion_type] = _with_ci(p, index, n_bootstrap, seed)
        summary["models"][name] = entry
        o = entry["overall"]
        logger.info(
            "%s: ROC AUC %.3f, AP %.3f, seg AP@0.5 %.3f, IoP %.3f, IoA %.3f, confused %.1f, true Dice %.3f",
            name, o["roc_auc"], o["ap"], o["seg_ap_iou05"], o["iop"], o["ioa"], o["confused_pixels"], o["true_dice"],
        )  # fmt: skip
    if "latentcadx" in summary["models"]:  # the headline keys at the top level (the bundle issue's names)
        summary.update({k: v for k, v in summary["models"]["latentcadx"]["overall"].items()})
    if distributed and torch.distributed.get_rank() > 0:
        return summary  # rank 0 writes
    atomic_write_json(output_file, summary, default=float)
    logger.info("LatentCADx evaluation written to %s", output_file)
    return summary


# --- whole-image inference -------------------------------------------------------------------------
class LesionMapInferer(MaskedSlidingWindowInferer):
    """The project's breast-masked sliding window calling the network with ``network_kwargs``
    (LatentCADx: ``{"output": "map"}``, each tile's mask times its classification probability).

    >>> from monai_mammo.networks.latentcadx import LatentCADxNet
    >>> net = LatentCADxNet(block_inplanes=(4, 4, 8, 8), decoder_channels=(8, 4, 4, 4, 4)).eval()
    >>> with torch.no_grad():
    ...     out = LesionMapInferer(roi_size=64, network_kwargs={"output": "map"})(torch.rand(1, 1, 100, 70), net)
    >>> tuple(out.shape)
    (1, 1, 100, 70)
    """

    def __init__(self, *args: Any, network_kwargs: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.network_kwargs = dict(network_kwargs or {})

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> torch.Tensor:  # type: ignore[override]
        return super().__call__(inputs, network, *args, **{**self.network_kwargs, **kwargs})


class LesionMapd(MapTransform):
    """Post-processing of the whole-image probability map (An et al. Sec. 3: "aggregate the
    predictions from different patches"): back on the stored image's grid, thresholded, and split
    into per-lesion components in original pixels.

    Writes ``prob_key`` (``(1, H, W)`` float on the stored image's grid, bilinear from the working
    grid: the preprocessing only resamples, so the grids span the same field of view),
    ``regions_key`` (records ``x, y, box, score`` (peak probability), ``area`` in original pixels),
    ``spacing_key``, ``result_key`` (the same records for MONAI Label's JSON reply) and, with
    ``label_to_pred``, replaces ``pred`` with the uint8 ``(1, H, W)`` label (1 = lesion) that
    MONAI Label writes.

    Example::

        >>> img = MetaTensor(torch.zeros(1, 4, 4), meta={"original_size": [8, 8], "spacing": [0.2, 0.2],
        ...     "pixel_to_original": [[2.0, 0, 0.5], [0, 2.0, 0.5], [0, 0, 1]]})   # as ResampleToSpacingd records a x0.5 resample
        >>> pred = torch.zeros(1, 1, 4, 4); pred[..., 1:3, 1:3] = 0.9
        >>> d = LesionMapd()({"image": img, "pred": pred})
        >>> tuple(d["pred"].shape), d["pred"].dtype, [r["box"] for r in d["pred_lesions"]]
        ((1, 8, 8), torch.uint8, [[2.0, 2.0, 6.0, 6.0]])
    """

    def __init__(
        self,
        pred_key: str = "pred",
        image_key: str = "image",
        prob_key: str = "prob_map",
        regions_key: str = "pred_lesions",
        spacing_key: str = "pred_spacing",
        threshold: float = 0.5,
        min_area: int = 4,
        label_to_pred: bool = True,
        result_key: str | None = "result",
    ) -> None:
        super().__init__(keys=[pred_key])
        self.result_key = result_key
        self.pred_key, self.image_key, self.prob_key, self.regions_key, self.spacing_key = pred_key, image_key, prob_key, regions_key, spacing_key
        self.threshold, self.min_area, self.label_to_pred = float(threshold), int(min_area), bool(label_to_pred)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        from monai_mammo.regions import original_spacing, regions_from_map

        d = dict(data)
        pred = _plain(d[self.pred_key]).float().detach().cpu()
        pred = pred.reshape(1, 1, *pred.shape[-2:])
        image = d.get(self.image_key)
        meta = dict(image.meta) if isinstance(image, MetaTensor) else {}
        size = meta.get("original_size")
        size = [int(v) for v in np.asarray(size).reshape(-1)[:2]] if size is not None else list(pred.shape[-2:])
        full = pred if list(pred.shape[-2:]) == size else F.interpolate(pred, size=size, mode="bilinear", align_corners=False)
        regions = regions_from_map(pred[0, 0].numpy(), threshold=self.threshold, min_area=self.min_area, score="max", score_name="probability", boxes=True)
        d[self.regions_key] = regions.to_original(meta).to_records()
        d[self.spacing_key] = original_spacing(meta) if meta else None
        if self.result_key:  # MONAI Label returns it as the JSON part of an infer reply
            d[self.result_key] = {"boxes": d[self.regions_key], "spacing": d[self.spacing_key], "coordinates": "original_pixels"}
        d[self.prob_key] = full[0]
        if self.label_to_pred:
            d[self.pred_key] = (full[0] > self.threshold).to(torch.uint8)
        return d


class SaveLesionMapd(MapTransform):
    """Write ``<name>_prob.nii.gz`` (the probability map on the stored grid; NIfTI axis 0 = rows) and
    ``<name>_label.png`` (0 / 255) beside the JSON that :class:`monai_mammo.writers.SaveRegionsd` writes."""

    def __init__(self, output_dir: str | os.PathLike, prob_key: str = "prob_map", image_key: str = "image", threshold: float = 0.5, write_nifti: bool = True, write_png: bool = True) -> None:
        super().__init__(keys=[prob_key])
        self.output_dir, self.prob_key, self.image_key = Path(output_dir), prob_key, image_key
        self.threshold, self.write_nifti, self.write_png = float(threshold), bool(write_nifti), bool(write_png)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        import gzip
        import io

        import nibabel as nib
        from PIL import Image

        from monai_mammo.bundle_utils import strip_image_suffix
        from monai_mammo.regions import original_spacing

        d = dict(data)
        image = d.get(self.image_key)
        meta = dict(image.meta) if isinstance(image, MetaTensor) else {}
        stem = strip_image_suffix(Path(str(meta.get("filename_or_obj", "image"))).name)
        prob = _plain(d[self.prob_key]).float().cpu().numpy().reshape(_plain(d[self.prob_key]).shape[-2:])
        self.output_dir.mkdir(parents=True, exist_ok=True)
        if self.write_nifti:
            sp = original_spacing(meta) or [1.0, 1.0]
            nii = nib.Nifti1Image(prob.astype(np.float32), np.diag([sp[1], sp[0], 1.0, 1.0]))
            atomic_write_bytes(self.output_dir / f"{stem}_prob.nii.gz", gzip.compress(nii.to_bytes(), mtime=0))
        if self.write_png:
            buf = io.BytesIO()
            Image.fromarray(((prob > self.threshold) * 255).astype(np.uint8)).save(buf, format="PNG")
            atomic_write_bytes(self.output_dir / f"{stem}_label.png", buf.getvalue())
        return d


class LoadLabelMapd(MapTransform):
    """Read the raw values of a label-image path into ``output_key`` (``(1, H, W)`` float32), before
    a loader binarises it (the phantoms' coarse masks hold 1 / 2 for masses and 3 for µC clusters:
    the lesion type of each outline).

    Args:
        keys: the path keys. output_key: where the values go ("{key}" filled in). Default "coarse_label".
    """

    def __init__(self, keys: KeysCollection, output_key: str = "coarse_label", allow_missing_keys: bool = True) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_key = output_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        from monai_mammo.transforms.io import RadiographReader

        d = dict(data)
        for key in self.key_iterator(d):
            if not isinstance(d[key], (str, os.PathLike)):
                continue
            reader = RadiographReader(intensity="raw", allow_any_modality=True)
            array, _ = reader.get_data(reader.read(d[key]))
            d[self.output_key.format(key=key)] = torch.from_numpy(np.asarray(array, dtype=np.float32).reshape(1, *np.shape(array)[-2:]))
        return d
