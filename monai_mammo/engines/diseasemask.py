"""Glue of the ``diseasemask`` bundle (Kim, Jung, Lee): targets, stage preparation, validation,
evaluation of the four models and inference. The method itself lives in
:mod:`monai_mammo.alignment`, :mod:`monai_mammo.networks.diseasemask`,
:mod:`monai_mammo.losses.alignment`, :mod:`monai_mammo.disease_masks` and
:mod:`monai_mammo.metrics.localization`.

The training run (``bundles/diseasemask/configs/train.yaml``) shares one :class:`DiseaseMaskNet`
between its stages; each stage prepares it from the files the earlier stages wrote
(:func:`prepare_classifier`, :func:`prepare_aligner`), so a resumed or partial run never depends
on what happens to be in memory.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from monai.config import KeysCollection
from monai.engines import PrepareBatch
from monai.metrics import CumulativeIterationMetric
from monai.transforms import MapTransform
from monai.utils import min_version, optional_import

from monai_mammo.bundle_utils import SkippedInputs
from monai_mammo.alignment import build_anchor, corner_error, invert_affine, warp
from monai_mammo.atomic_io import atomic_write_json
from monai_mammo.checkpoints import load_checkpoint, load_network_weights, unwrap_network, unwrap_state_dict
from monai_mammo.disease_masks import DiseaseMaskAccumulator, load_masks, pseudo_disease_masks, save_masks, symmetric_flags
from monai_mammo.metrics.classification import bootstrap_auc, roc_auc
from monai_mammo.metrics.localization import LocalizationAccuracyMetric, cam_boxes
from monai_mammo.networks.diseasemask import DiseaseMaskNet

Events, _ = optional_import("ignite.engine", "0.4.11", min_version, "Events")

__all__ = [
    "CXR14_CLASSES",
    "BOX_CLASS_INDICES",
    "MultiHotLabeld",
    "BoxTargetsd",
    "AlignmentTargetd",
    "MeanAUCMetric",
    "cams_in_input_frame",
    "localization_output",
    "prepare_baseline",
    "prepare_classifier",
    "prepare_aligner",
    "AnchorPrepareBatch",
    "build_anchor_file",
    "perceptual_network",
    "DiseaseMaskStage",
    "StageSummary",
    "publish_model",
    "dataset_items",
    "flag",
    "DiseaseMaskInferer",
    "FindingsToLabeld",
    "findings_of",
    "infer_images",
    "SaveFindingsRecordd",
    "anatomy_files",
    "evaluate_models",
]

logger = logging.getLogger(__name__)

CXR14_CLASSES: tuple[str, ...] = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
)  # fmt: skip
#: the eight ChestX-ray14 classes with boxes (evaluation only)
BOX_CLASS_INDICES: tuple[int, ...] = tuple(range(8))
#: boxes per image in a batch (padded with class -1): ChestX-ray14 has at most a few per image
MAX_BOXES = 8


# --- targets -----------------------------------------------------------------------------------------
class MultiHotLabeld(MapTransform):
    """``label`` to a float multi-hot ``(K,)`` tensor: a list of K ints (the datalist), or a label
    image path (MONAI Label's datastore: pixel value c + 1 marks class c, as this bundle's
    inference writes).

    Example:
        >>> MultiHotLabeld(num_classes=3)({"label": [0, 1, 1]})["label"].tolist()
        [0.0, 1.0, 1.0]
    """

    def __init__(self, keys: KeysCollection = "label", num_classes: int = 14, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.num_classes = int(num_classes)

    def __call__(self, data: Mapping[Any, Any]) -> dict[Any, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            value = d[key]
            if isinstance(value, (str, os.PathLike)):
                from monai_mammo.transforms.io import LoadRadiographd

                label_image = np.asarray(LoadRadiographd(keys="label")({"label": value})["label"])
                present = {int(v) - 1 for v in np.unique(label_image) if 0 < int(v) <= self.num_classes}
                value = [1 if c in present else 0 for c in range(self.num_classes)]
            vector = torch.as_tensor(np.asarray(value, dtype=np.float32)).reshape(-1)
            if vector.numel() != self.num_classes:
                raise ValueError(f"MultiHotLabeld: {key!r} of {d.get('image', '?')} has {vector.numel()} entries, expected {self.num_classes}")
            d[key] = vector
        return d


class BoxTargetsd(MapTransform):
    """``boxes`` / ``box_labels`` (stored pixels) to ``box_targets`` ``(MAX_BOXES, 5)`` rows
    ``[class, x0, y0, x1, y1]`` in pixels of the resized network input (padding rows: class -1),
    so they collate. Reads the stored size from the image's meta (``spatial_shape``, rows first).

    Example:
        >>> import torch
        >>> from monai.data import MetaTensor
        >>> image = MetaTensor(torch.zeros(1, 64, 64), meta={"spatial_shape": [128, 128]})
        >>> out = BoxTargetsd(spatial_size=(64, 64))({"image": image, "boxes": [[10, 20, 30, 40]], "box_labels": [2]})
        >>> out["box_targets"][0].tolist(), out["box_targets"][1, 0].item()
        ([2.0, 5.0, 10.0, 15.0, 20.0], -1.0)
    """

    def __init__(self, spatial_size: Sequence[int], image_key: str = "image", max_boxes: int = MAX_BOXES) -> None:
        super().__init__([image_key], allow_missing_keys=True)
        self.spatial_size = tuple(int(s) for s in spatial_size)
        self.image_key = image_key
        self.max_boxes = int(max_boxes)

    def __call__(self, data: Mapping[Any, Any]) -> dict[Any, Any]:
        d = dict(data)
        rows = torch.full((self.max_boxes, 5), -1.0)
        boxes, labels = d.get("boxes") or [], d.get("box_labels") or []
        if len(boxes):
            meta = getattr(d[self.image_key], "meta", {}) or {}
            shape = meta.get("spatial_shape", self.spatial_size)
            shape = [int(s) for s in (shape.tolist() if hasattr(shape, "tolist") else shape)][-2:]
            sy, sx = self.spatial_size[0] / shape[0], self.spatial_size[1] / shape[1]
            for i, (box, c) in enumerate(list(zip(boxes, labels))[: self.max_boxes]):
                rows[i] = torch.tensor([float(c), box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy])
        d["box_targets"] = rows
        return d


class AlignmentTargetd(MapTransform):
    """``alignment_theta`` (the phantom's true misalignment, canonical -> image normalised) to a
    ``(2, 3)`` tensor under ``true_theta`` (NaN where the data has none: real X-rays), and the mm
    per pixel of the resized network input under ``input_spacing`` (NaN without a spacing)."""

    def __init__(self, spatial_size: Sequence[int], key: str = "alignment_theta", image_key: str = "image") -> None:
        super().__init__([key], allow_missing_keys=True)
        self.key, self.image_key = key, image_key
        self.spatial_size = tuple(int(s) for s in spatial_size)

    def __call__(self, data: Mapping[Any, Any]) -> dict[Any, Any]:
        d = dict(data)
        value = d.get(self.key)
        d["true_theta"] = torch.as_tensor(np.asarray(value, dtype=np.float32)).reshape(2, 3) if value is not None else torch.full((2, 3), float("nan"))
        spacing = d.get("spacing")
        meta = getattr(d.get(self.image_key), "meta", {}) or {}
        shape = meta.get("spatial_shape")
        if spacing is not None and shape is not None:
            shape = [int(v) for v in (shape.tolist() if hasattr(shape, "tolist") else shape)][-2:]
            sx, sy = (float(v) for v in np.asarray(spacing, dtype=np.float64).reshape(-1)[:2])
            d["input_spacing"] = torch.tensor([sx * shape[1] / self.spatial_size[1], sy * shape[0] / self.spatial_size[0]])
        else:
            d["input_spacing"] = torch.full((2,), float("nan"))
        return d


# --- validation --------------------------------------------------------------------------------------
def mean_auc(scores: np.ndarray, labels: np.ndarray) -> tuple[float, list[float]]:
    """Mean over classes of the per-class AUC (classes with one label value only are NaN and left
    out of the mean).

    Example:
        >>> mean_auc(np.array([[0.1, 0.5], [0.9, 0.5]]), np.array([[0, 0], [1, 0]]))
        (1.0, [1.0, nan])
    """
    per_class = [roc_auc(scores[:, c], labels[:, c]) for c in range(labels.shape[1])]
    valid = [v for v in per_class if not np.isnan(v)]
    return (float(np.mean(valid)) if valid else float("nan")), per_class


class MeanAUCMetric(CumulativeIterationMetric):
    """Multi-label mean AUC (NaN classes left out) as a ``CumulativeIterationMetric``: ``y_pred``
    scores ``(B, K)``, ``y`` labels ``(B, K)``."""

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None) -> Any:  # type: ignore[override]
        return y_pred.detach().float().cpu(), y.detach().float().cpu()

    def aggregate(self) -> torch.Tensor:  # type: ignore[override]
        scores, labels = self.get_buffer()
        return torch.tensor(mean_auc(scores.numpy(), labels.numpy())[0])


def cams_in_input_frame(cams: torch.Tensor, theta: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """CAMs ``(B, K, h, w)`` of the aligned image to the frame of the network input ``size``:
    bilinear up-sampling, then the inverse alignment (areas the aligned frame did not cover take the
    CAM's minimum, so they never form a component)."""
    up = F.interpolate(cams, size=tuple(size), mode="bilinear", align_corners=False)
    low = up.amin(dim=(-2, -1), keepdim=True)
    back = warp(up - low, invert_affine(theta).to(up.dtype))
    return back + low


def _output_items(output: Any) -> tuple[torch.Tensor, Any]:
    if isinstance(output, Sequence) and not isinstance(output, Mapping):  # decollated
        images = torch.stack([o["image"] for o in output])
        labels = [o["label"] for o in output]
        return images, labels
    return output["image"], output["label"]


def localization_output(network: torch.nn.Module) -> Any:
    """``output_transform`` for ``IgniteMetricHandler`` + :class:`LocalizationAccuracyMetric`: the
    evaluator's images run through ``network.predict`` (CAMs of the aligned image brought back to
    the input frame) and the ``boxes`` target (``box_targets`` rows)."""

    def transform(output: Any) -> tuple[torch.Tensor, list[torch.Tensor]]:
        images, targets = _output_items(output)
        model = unwrap_network(network)
        with torch.no_grad():
            out = model.predict(images)
        cams = cams_in_input_frame(out["cam"], out["theta"], images.shape[-2:])
        boxes = targets["boxes"] if isinstance(targets, Mapping) else torch.stack([t["boxes"] for t in targets])
        return cams, [b[b[:, 0] >= 0] for b in boxes]

    return transform


def auc_output(output: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``output_transform`` for :class:`MeanAUCMetric`: ``(sigmoid(pred), label)``."""
    if isinstance(output, Sequence) and not isinstance(output, Mapping):
        return torch.stack([torch.sigmoid(o["pred"]) for o in output]), torch.stack([o["label"]["label"] for o in output])
    return torch.sigmoid(output["pred"]), output["label"]["label"]


class StageSummary:
    """Log ``"<stage>: validation mean AUC x, localization accuracy IoU 0.3 y"`` from the
    evaluator's metrics when the trainer it is attached to completes (after its validation)."""

    def __init__(self, evaluator: Any, name: str) -> None:
        self.evaluator, self.name = evaluator, name

    def attach(self, engine: Any) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Any = None) -> None:
        metrics = getattr(getattr(self.evaluator, "state", None), "metrics", {}) or {}
        text = ", ".join(f"{k} {float(v):.4f}" for k, v in sorted(metrics.items()))
        logger.info("%s: validation %s", self.name, text or "(no validation ran)")


# --- stage preparation ----------------------------------------------------------------------------
def _load_part(network: DiseaseMaskNet, path: str | os.PathLike, prefix: str) -> None:
    state = unwrap_state_dict(load_checkpoint(path), str(path))
    part = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not part:
        raise ValueError(f"{path}: no '{prefix}*' weights (not a diseasemask checkpoint?)")
    module = network.aligner if prefix == "aligner." else network.classifier
    module.load_state_dict(part, strict=True)


def prepare_baseline(network: torch.nn.Module) -> torch.nn.Module:
    """Stage 1: the plain classifier on unaligned images (no alignment, no masks)."""
    net = unwrap_network(network)
    net.align = False
    net.classifier.disease_masks.zero_()
    net.set_trainable("classifier")
    return network


def prepare_classifier(
    network: torch.nn.Module,
    aligner: str | os.PathLike | None = None,
    classifier: str | os.PathLike | None = None,
    masks: str | os.PathLike | None = None,
    reset_seed: int | None = None,
) -> torch.nn.Module:
    """A classifier stage's network (the shared one, prepared in place and returned).

    Args:
        aligner: checkpoint whose ``aligner.*`` weights are used (None: no alignment).
        classifier: checkpoint whose ``classifier.*`` weights start the stage (stage 5: stage 3's).
        masks: a :func:`monai_mammo.disease_masks.save_masks` file (None: zeros, no attention).
        reset_seed: re-initialise the classifier with this torch seed (stage 3 trains from scratch,
            as the paper trains its classifier on aligned images anew).
    """
    net: DiseaseMaskNet = unwrap_network(network)
    if reset_seed is not None:
        torch.manual_seed(int(reset_seed))
        fresh = type(net.classifier)(**net.classifier.init_args)
        net.classifier.load_state_dict(fresh.state_dict())
    if classifier is not None:
        _load_part(net, classifier, "classifier.")
    net.align = aligner is not None
    if aligner is not None:
        _load_part(net, aligner, "aligner.")
    net.classifier.disease_masks.zero_()
    if masks is not None:
        values = load_masks(masks).to(net.classifier.disease_masks)
        if values.shape[0] != net.classifier.disease_masks.shape[0]:
            raise ValueError(f"{masks}: {values.shape[0]} masks for {net.classifier.disease_masks.shape[0]} classes")
        net.classifier.disease_masks.copy_(F.interpolate(values[None], size=net.classifier.disease_masks.shape[-2:], mode="area")[0] if values.shape[-2:] != net.classifier.disease_masks.shape[-2:] else values)
    net.set_trainable("classifier")
    return network


class _AlignerView(torch.nn.Module):
    """``x -> T·x`` of a :class:`DiseaseMaskNet` (its regressor only is registered, hence trained)."""

    def __init__(self, network: DiseaseMaskNet) -> None:
        super().__init__()
        self.aligner = network.aligner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return warp(x, self.aligner.theta(x))


def prepare_aligner(network: torch.nn.Module) -> torch.nn.Module:
    """Stage 2: the regressor of the shared network (from the identity), as ``x -> T·x``."""
    net: DiseaseMaskNet = unwrap_network(network)
    net.align = True
    net.set_trainable("aligner")
    return _AlignerView(net)


def build_anchor_file(dataset: Iterable[Mapping[str, Any]], path: str | os.PathLike, max_images: int = 2000) -> list[dict]:
    """Kim et al.: the anchor A = mean of (up to ``max_images``) normal training images; saved to
    ``path`` (a bundle artefact, ``{"anchor": (C, H, W)}``). Returns the training samples of the
    alignment stage (every training image)."""
    from monai_mammo.atomic_io import atomic_path

    samples, normals = [], []
    for item in dataset:
        image = torch.as_tensor(item["image"]).float()
        samples.append({"image": image})
        if float(torch.as_tensor(item["label"]).sum()) == 0 and len(normals) < max_images:
            normals.append(image)
    anchor = build_anchor(normals)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save({"anchor": anchor, "n_images": len(normals)}, tmp)
    logger.info("anchor: mean of %d normal training images -> %s", len(normals), path)
    return samples


class AnchorPrepareBatch(PrepareBatch):
    """``(image, anchor broadcast to the batch)``: the alignment loss's target (loaded from
    ``path`` when first needed: the stage writes it just before)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = path
        self._anchor: torch.Tensor | None = None

    def __call__(self, batchdata: Mapping[str, Any], device: Any = None, non_blocking: bool = False, **kwargs: Any) -> Any:
        if self._anchor is None:
            self._anchor = load_checkpoint(self.path)["anchor"].float()
        image = torch.as_tensor(batchdata["image"]).to(device=device, non_blocking=non_blocking)
        return image, self._anchor.to(image.device)[None].expand_as(image)


class _StageFeatures(torch.nn.Module):
    def __init__(self, network: DiseaseMaskNet) -> None:
        super().__init__()
        self.classifier = network.classifier

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.classifier.stage_features(x)


def perceptual_network(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module | None:
    """Kim et al.'s perceptual network F: the baseline classifier's four stages (loaded from
    ``path``, the stage-1 checkpoint); None when it was not trained (L_e only, logged)."""
    if not os.path.isfile(path):
        logger.warning("alignment: no baseline classifier at %s, perceptual loss off (L_e only)", path)
        return None
    from monai_mammo.checkpoints import load_network

    return _StageFeatures(load_network(path, device))


class DiseaseMaskStage:
    """Stage 4: Eq. 3 disease masks from the stage-3 classifier on the training images, and the
    pseudo disease masks from the anchor-frame anatomy; both written as mask files.

    Args:
        network: the shared network (prepared from ``classifier_checkpoint`` and ``aligner_checkpoint``).
        dataset: the training dataset (items with ``image`` and ``label``).
        classifier_checkpoint, aligner_checkpoint: stage 3's and stage 2's files.
        output: the disease-mask file. pdm_output: the pseudo-mask file (None: not made).
        anatomy: ``{"lungs": path, "heart": path}`` masks of the anchor frame (None: no PDM).
        class_names, threshold, mode, min_probability: Eq. 3's (see :mod:`monai_mammo.disease_masks`).
        batch_size, device.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        dataset: Any,
        classifier_checkpoint: str,
        aligner_checkpoint: str | None,
        output: str,
        pdm_output: str | None = None,
        anatomy: Mapping[str, str] | None = None,
        class_names: Sequence[str] = CXR14_CLASSES,
        threshold: float = 0.5,
        mode: str = "soft",
        min_probability: float = 0.8,
        batch_size: int = 16,
        device: str | torch.device = "cpu",
    ) -> None:
        self.network, self.dataset = network, dataset
        self.classifier_checkpoint, self.aligner_checkpoint = classifier_checkpoint, aligner_checkpoint
        self.output, self.pdm_output, self.anatomy = output, pdm_output, anatomy
        self.class_names, self.threshold, self.mode, self.min_probability = list(class_names), threshold, mode, min_probability
        self.batch_size, self.device = int(batch_size), device
        self.done = False

    def state_dict(self) -> dict[str, bool]:
        return {"done": self.done}

    def load_state_dict(self, state: Mapping[str, bool]) -> None:
        self.done = bool(state["done"])

    def __call__(self) -> torch.Tensor:
        from monai.data import DataLoader

        network = prepare_classifier(self.network, aligner=self.aligner_checkpoint, classifier=self.classifier_checkpoint)
        net: DiseaseMaskNet = unwrap_network(network)
        net.eval()
        grid = tuple(net.classifier.disease_masks.shape[-2:])
        accumulator = DiseaseMaskAccumulator(len(self.class_names), grid, symmetric_flags(self.class_names), self.min_probability, self.threshold, self.mode)
        loader = DataLoader(self.dataset, batch_size=self.batch_size, shuffle=False, num_workers=0)
        with torch.no_grad():
            for batch in loader:
                out = net.predict(torch.as_tensor(batch["image"]).to(self.device))
                accumulator.update(out["cam"], torch.as_tensor(batch["label"]), out["probabilities"])
        masks = accumulator.compute()
        save_masks(masks, self.output, self.class_names, counts=accumulator.count.tolist(), threshold=self.threshold, mode=self.mode)
        logger.info("disease masks (Eq. 3, %s, threshold %.2f): confident positives per class %s -> %s", self.mode, self.threshold, accumulator.count.tolist(), self.output)
        if self.pdm_output and self.anatomy:
            from monai_mammo.transforms.io import LoadRadiographd

            anatomy = {name: np.asarray(LoadRadiographd(keys="m")({"m": path})["m"])[0] for name, path in self.anatomy.items()}
            pdm = pseudo_disease_masks(anatomy, self.class_names, grid)
            save_masks(pdm, self.pdm_output, self.class_names, kind="pseudo")
            logger.info("pseudo disease masks (anatomy %s) -> %s", sorted(self.anatomy), self.pdm_output)
        self.done = True
        return masks


def anatomy_files(datalist_file: str | os.PathLike) -> dict[str, str] | None:
    """The datalist's ``anatomy`` masks (anchor frame; the phantoms write lungs and heart) as
    absolute paths, or None."""
    content = json.loads(Path(datalist_file).read_text())
    anatomy = content.get("anatomy")
    if not anatomy:
        return None
    base = Path(datalist_file).parent
    return {name: str(base / path) for name, path in anatomy.items()}


def publish_model(ckpt_dir: str | os.PathLike, candidates: Sequence[str]) -> str | None:
    """Make ``model.pt`` the last classifier trained: when the disease-mask stage (which writes it)
    was skipped, copy the first existing file of ``candidates`` (e.g. ``stages/align.pt``)."""
    target = Path(ckpt_dir) / "model.pt"
    for name in candidates:
        source = Path(ckpt_dir) / name
        if source.is_file():
            if source.resolve() != target.resolve() and (not target.is_file() or source.stat().st_mtime > target.stat().st_mtime):
                shutil.copyfile(source, target)
                logger.info("model.pt <- %s", source)
            return str(target)
    return None


# --- evaluation -------------------------------------------------------------------------------------
def _evaluate_one(net: DiseaseMaskNet, loader: Any, device: Any, class_names: Sequence[str], cam_threshold: float, cam_normalization: str = "minmax") -> dict[str, Any]:
    metric = LocalizationAccuracyMetric(num_classes=len(class_names), class_names=class_names, cam_threshold=cam_threshold, cam_normalization=cam_normalization)
    scores, labels, errors_before, errors_after = [], [], [], []
    net.eval()
    with torch.no_grad():
        for batch in loader:
            images = torch.as_tensor(batch["image"]).to(device)
            out = net.predict(images)
            scores.append(out["probabilities"].cpu().numpy())
            labels.append(torch.as_tensor(batch["label"]).numpy())
            cams = cams_in_input_frame(out["cam"], out["theta"], images.shape[-2:])
            boxes = torch.as_tensor(batch["box_targets"])
            metric(cams.cpu(), [b[b[:, 0] >= 0] for b in boxes])
            true = torch.as_tensor(batch["true_theta"]).double()
            ok = ~torch.isnan(true).flatten(1).any(1)
            if ok.any():
                size = images.shape[-2:]
                # mm per input pixel (isotropic in ChestX-ray14 and the phantoms); NaN without spacing
                factor = torch.as_tensor(batch["input_spacing"]).double()[ok].mean(dim=1).numpy()
                identity = torch.eye(2, 3, dtype=torch.float64).expand(int(ok.sum()), 2, 3)
                errors_before.extend((corner_error(identity, true[ok], size) * factor).tolist())
                errors_after.extend((corner_error(out["theta"].double().cpu()[ok], true[ok], size) * factor).tolist())
    scores_a, labels_a = np.concatenate(scores), np.concatenate(labels)
    from monai_mammo.distributed import is_distributed

    gathered_rows = None
    if is_distributed():  # multi_gpu_evaluate.yaml: every rank's shard, gathered (the order does not matter here)
        parts: list[Any] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(parts, (scores_a, labels_a, metric.local_rows(), errors_before, errors_after))
        scores_a = np.concatenate([p[0] for p in parts])
        labels_a = np.concatenate([p[1] for p in parts])
        errors_before = [e for p in parts for e in p[3]]
        errors_after = [e for p in parts for e in p[4]]
        gathered_rows = torch.cat([p[2] for p in parts])
    mean, per_class = mean_auc(scores_a, labels_a)
    loc = metric.aggregate_all(gathered_rows)
    box_classes = [class_names[c] for c in BOX_CLASS_INDICES if c < len(class_names)]
    box_aucs = [per_class[c] for c in BOX_CLASS_INDICES if c < len(per_class) and not np.isnan(per_class[c])]
    result: dict[str, Any] = {
        "mean_auc": mean,
        "mean_auc_box_classes": float(np.mean(box_aucs)) if box_aucs else float("nan"),
        "auc": {name: per_class[i] for i, name in enumerate(class_names)},
        "loc_acc_iou03": loc["mean"]["0.3"],
        "loc_acc_iou05": loc["mean"]["0.5"],
        "loc_acc_iou07": loc["mean"]["0.7"],
        "loc_acc": {name: loc["per_class"][name] for name in box_classes},
        "n_images": int(len(labels_a)),
    }
    if errors_after:
        result["alignment_error_mm"] = {"before": float(np.mean(errors_before)), "after": float(np.mean(errors_after)), "n": len(errors_after)}
    # CI of the mean AUC: bootstrap per class (n_bootstrap small: a rough interval)
    result["auc_ci"] = {name: {k: v for k, v in bootstrap_auc(scores_a[:, i], labels_a[:, i], n_bootstrap=200).items() if k in ("ci_low", "ci_high")} for i, name in enumerate(class_names)}
    return result


def evaluate_models(
    network: torch.nn.Module,
    dataloader: Any,
    models: Mapping[str, str],
    output_file: str | os.PathLike,
    device: str | torch.device = "cpu",
    class_names: Sequence[str] = CXR14_CLASSES,
    cam_threshold: float = 0.5,
    description: str = "",
    cam_normalization: str = "minmax",
) -> dict[str, Any]:
    """Evaluate every trained model (``{"baseline": path, "align": ..., "align_dm": ..., "pdm": ...}``;
    missing files are reported and skipped) on ``dataloader`` and write ``metrics.json``: per model
    the mean AUC and per-class AUCs, localization accuracy at IoU 0.3 / 0.5 / 0.7 (mean and per box
    class) and the alignment error before and after; the headline keys at the top level are the
    final model's (``align_dm``, else the last one evaluated)."""
    summary: dict[str, Any] = {"description": description, "cam_threshold": cam_threshold, "cam_normalization": cam_normalization, "models": {}}
    net: DiseaseMaskNet = unwrap_network(network)
    for name, path in models.items():
        if not os.path.isfile(path):
            logger.warning("evaluation: no %s model at %s (stage skipped?), left out", name, path)
            continue
        load_network_weights(net, path, device)
        net.align = name != "baseline"
        result = _evaluate_one(net, dataloader, device, class_names, cam_threshold, cam_normalization)
        result["checkpoint"] = str(path)
        summary["models"][name] = result
        logger.info(
            "%s: mean AUC %.4f, localization accuracy IoU 0.3 / 0.5 / 0.7: %.3f / %.3f / %.3f%s",
            name, result["mean_auc"], result["loc_acc_iou03"], result["loc_acc_iou05"], result["loc_acc_iou07"],
            "".join(f", alignment error {k} {v['before']:.2f} -> {v['after']:.2f}" for k, v in result.items() if k.startswith("alignment_error")),
        )  # fmt: skip
    if not summary["models"]:
        raise FileNotFoundError(f"evaluation: none of the models {dict(models)} exists (train first)")
    headline = summary["models"].get("align_dm") or list(summary["models"].values())[-1]
    for key in ("mean_auc", "auc", "loc_acc_iou03", "loc_acc_iou05", "loc_acc_iou07", "loc_acc", "alignment_error_mm"):
        if key in headline:
            summary[key] = headline[key]
    from monai_mammo.distributed import is_distributed

    if is_distributed() and torch.distributed.get_rank() > 0:
        return summary  # rank 0 writes
    atomic_write_json(output_file, summary, indent=1, default=float)
    logger.info("metrics written to %s", output_file)
    return summary


def boxes_of(cams: torch.Tensor, threshold: float = 0.5) -> list[np.ndarray]:
    """Per class, the component boxes of one image's CAMs ``(K, H, W)``."""
    return [cam_boxes(c, threshold) for c in cams]


def flag(value: Any) -> bool:
    """A config switch given as a bool or as the command line's text ("true", "false", "1", "0").

    Example:
        >>> flag("false"), flag(True), flag("Yes")
        (False, True, True)
    """
    return value.strip().lower() in ("true", "1", "yes") if isinstance(value, str) else bool(value)


def dataset_items(dataset: Any) -> Any:
    """A classifier stage's training samples: the (cached) stage-1 training dataset itself."""
    return dataset


# --- inference ----------------------------------------------------------------------------------------
class DiseaseMaskInferer:
    """``network.predict`` as a MONAI inferer: ``{"probabilities" (B, K), "cam" (B, K, H, W) in the
    frame of the network input (the alignment inverted), "aligned" (B, C, H, W), "theta" (B, 2, 3)}``."""

    def __call__(self, inputs: torch.Tensor, network: torch.nn.Module, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        out = unwrap_network(network).predict(inputs)
        return {
            "probabilities": out["probabilities"],
            "cam": cams_in_input_frame(out["cam"], out["theta"], inputs.shape[-2:]),
            "aligned": out["aligned"],
            "theta": out["theta"],
        }


def _stored_shape(image: Any) -> tuple[int, int]:
    meta = getattr(image, "meta", {}) or {}
    shape = meta.get("spatial_shape")
    if shape is not None:
        values = [int(v) for v in np.asarray(shape).reshape(-1)][-2:]
        if len(values) == 2:
            return values[0], values[1]
    return int(image.shape[-2]), int(image.shape[-1])


def findings_of(
    probabilities: torch.Tensor,
    cams: torch.Tensor,
    stored_shape: Sequence[int],
    class_names: Sequence[str],
    probability_threshold: float = 0.5,
    cam_threshold: float = 0.5,
    classes: Sequence[str] | None = None,
    cam_normalization: str = "minmax",
) -> list[dict[str, Any]]:
    """The localization boxes of one image: for each class above ``probability_threshold`` (or each
    class named in ``classes``), the component boxes of its CAM (input frame ``(K, h, w)``) scaled to
    the stored image ``(H, W)``: ``{"class", "index", "probability", "box" [x0, y0, x1, y1]}``.

    Example:
        >>> cams = torch.zeros(2, 4, 4); cams[1, 0:2, 2:4] = 1.0
        >>> findings_of(torch.tensor([0.1, 0.9]), cams, (8, 8), ["a", "b"])
        [{'class': 'b', 'index': 1, 'probability': 0.9, 'box': [4.0, 0.0, 8.0, 4.0]}]
    """
    sy, sx = stored_shape[0] / cams.shape[-2], stored_shape[1] / cams.shape[-1]
    wanted = set(classes) if classes is not None else None
    findings = []
    for index, name in enumerate(class_names):
        p = float(probabilities[index])
        if (wanted is not None and name not in wanted) or (wanted is None and p < probability_threshold):
            continue
        for box in cam_boxes(cams[index], cam_threshold, normalization=cam_normalization):
            findings.append({"class": name, "index": index, "probability": round(p, 6), "box": [float(box[0] * sx), float(box[1] * sy), float(box[2] * sx), float(box[3] * sy)]})
    return findings


class FindingsToLabeld(MapTransform):
    """The inferer's output (``pred`` dict) as MONAI Label wants it: a uint8 ``(1, H, W)`` label of the
    stored image size with ``c + 1`` inside the boxes of each class c above the threshold, and
    ``d["result"] = {"probabilities": {name: p}, "findings": [...], "coordinates": "original_pixels"}``.
    Follow it with ``monai_mammo.transforms.label_app.ToLabelAppLayoutd``.

    Example:
        >>> from monai.data import MetaTensor
        >>> cams = torch.zeros(2, 4, 4); cams[1, 0:2, 2:4] = 1.0
        >>> d = {"image": MetaTensor(torch.zeros(1, 4, 4), meta={"spatial_shape": (8, 8)}),
        ...      "pred": {"probabilities": torch.tensor([0.1, 0.9]), "cam": cams}}
        >>> out = FindingsToLabeld(keys="pred", class_names=["a", "b"])(d)
        >>> tuple(out["pred"].shape), int(out["pred"].max()), out["result"]["findings"][0]["box"]
        ((1, 8, 8), 2, [4.0, 0.0, 8.0, 4.0])
    """

    def __init__(
        self,
        keys: KeysCollection = "pred",
        class_names: Sequence[str] = CXR14_CLASSES,
        ref_key: str = "image",
        probability_threshold: float = 0.5,
        cam_threshold: float = 0.5,
        result_key: str = "result",
        cam_normalization: str = "minmax",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.class_names, self.ref_key = list(class_names), ref_key
        self.cam_normalization = cam_normalization
        self.probability_threshold, self.cam_threshold, self.result_key = float(probability_threshold), float(cam_threshold), result_key

    def __call__(self, data: Mapping[Any, Any]) -> dict[Any, Any]:
        from monai_mammo.writers import draw_boxes

        d = dict(data)
        for key in self.key_iterator(d):
            pred = d[key]
            shape = _stored_shape(d[self.ref_key])
            findings = findings_of(pred["probabilities"], pred["cam"], shape, self.class_names, self.probability_threshold, self.cam_threshold, cam_normalization=self.cam_normalization)
            label = np.zeros(shape, dtype=np.uint8)
            for f in sorted(findings, key=lambda f: f["probability"]):  # the most probable class drawn last
                draw_boxes(label, [f["box"]], value=f["index"] + 1)
            d[key] = torch.as_tensor(label)[None]
            d[self.result_key] = {
                "probabilities": {name: float(p) for name, p in zip(self.class_names, pred["probabilities"])},
                "findings": findings,
                "coordinates": "original_pixels",
            }
        return d


def infer_images(
    network: torch.nn.Module,
    inputs: Sequence[Any],
    preprocessing: Any,
    output_dir: str | os.PathLike,
    device: str | torch.device = "cpu",
    class_names: Sequence[str] = CXR14_CLASSES,
    probability_threshold: float = 0.5,
    cam_threshold: float = 0.5,
    cam_classes: Sequence[str] | None = None,
    save_overlay: bool = True,
    save_aligned: bool = False,
    save_cams: bool = True,
    cam_normalization: str = "minmax",
) -> list[dict[str, Any]]:
    """Run the model on each input (path or ``{"image": path, ...}``) and write, per image,
    ``<name>.json`` (the 14 probabilities, the localization boxes in original pixels, spacing, source)
    and on request ``<name>_overlay.png`` (boxes on the image), ``<name>_aligned.png`` and
    ``<name>_cam_<class>.png`` (heat maps in original pixels) for the classes above the threshold
    (or ``cam_classes``). An input that cannot be read is listed in ``skipped.json``; the others
    are still written."""
    from monai.transforms import Compose
    from PIL import Image

    from monai_mammo.writers import draw_boxes

    transform = preprocessing if callable(preprocessing) else Compose(list(preprocessing))
    net = unwrap_network(network).eval()
    inferer = DiseaseMaskInferer()
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results, skipped = [], SkippedInputs()
    for entry in inputs:
        item = dict(entry) if isinstance(entry, Mapping) else {"image": str(entry)}
        source = str(item["image"])
        try:
            data = transform(item)
        except Exception as exc:  # noqa: BLE001 - one bad file must not end the batch
            skipped.add(source, exc)
            continue
        image = data["image"]
        x = torch.as_tensor(image)[None].float().to(device)
        with torch.no_grad():
            out = inferer(x, net)
        shape = _stored_shape(image)
        findings = findings_of(out["probabilities"][0], out["cam"][0], shape, class_names, probability_threshold, cam_threshold, cam_normalization=cam_normalization)
        meta = getattr(image, "meta", {}) or {}
        spacing = meta.get("spacing")
        if spacing is None or not np.all(np.isfinite(np.asarray(spacing, dtype=np.float64))):
            spacing = item.get("spacing")  # a PNG has none: the datalist's, else null
        stem = Path(source).stem
        record: dict[str, Any] = {
            "source": source,
            "probabilities": {name: float(p) for name, p in zip(class_names, out["probabilities"][0])},
            "findings": findings,
            "coordinates": "original_pixels",
            "spacing": [float(s) for s in np.asarray(spacing).reshape(-1)[:2]] if spacing is not None else None,
            "alignment_theta": out["theta"][0].tolist(),
        }

        def to_png(array: torch.Tensor) -> np.ndarray:
            resized = F.interpolate(array[None, None].float(), size=shape, mode="bilinear", align_corners=False)[0, 0]
            low, high = float(resized.min()), float(resized.max())
            return ((resized - low) / (high - low if high > low else 1.0) * 255).round().byte().cpu().numpy()

        grey = to_png(x[0, 0].cpu())
        if save_overlay:
            rgb = np.repeat(grey[..., None], 3, axis=-1)
            for f in findings:
                outline = np.zeros(shape, dtype=np.uint8)
                draw_boxes(outline, [f["box"]], value=1)
                filled = outline.astype(bool)
                edge = filled & ~ndimage.binary_erosion(filled)  # the rectangle's border
                rgb[edge] = (255, 64, 64)
            Image.fromarray(rgb).save(out_dir / f"{stem}_overlay.png")
            record["overlay"] = f"{stem}_overlay.png"
        if save_aligned:
            Image.fromarray(to_png(out["aligned"][0, 0].cpu())).save(out_dir / f"{stem}_aligned.png")
            record["aligned"] = f"{stem}_aligned.png"
        if save_cams:
            names = list(cam_classes) if cam_classes is not None else sorted({f["class"] for f in findings})
            record["cams"] = {}
            for name in names:
                c = list(class_names).index(name)
                Image.fromarray(to_png(out["cam"][0, c].cpu())).save(out_dir / f"{stem}_cam_{name}.png")
                record["cams"][name] = f"{stem}_cam_{name}.png"
        atomic_write_json(out_dir / f"{stem}.json", record, indent=1, default=float)
        results.append(record)
    skipped.write(out_dir)
    logger.info("diseasemask inference: %d image(s) -> %s; %d skipped", len(results), out_dir, len(skipped))
    return results


class SaveFindingsRecordd(MapTransform):
    """Write the findings record of one image (``monai-mammo predict``'s ``writer`` step, after
    :class:`FindingsToLabeld`): ``<output_dir>/<name>.json`` with ``source``, ``image_size``
    ``[H, W]``, ``coordinates`` "original_pixels", the 14 ``probabilities`` and ``boxes``
    (``{"box", "label", "probability", "score"}``); its path goes to ``d[path_key]``."""

    def __init__(self, output_dir: str | os.PathLike, ref_key: str = "image", result_key: str = "result", path_key: str = "detections_file") -> None:
        super().__init__([ref_key], allow_missing_keys=True)
        self.output_dir, self.ref_key, self.result_key, self.path_key = Path(output_dir), ref_key, result_key, path_key

    def __call__(self, data: Mapping[Any, Any]) -> dict[Any, Any]:
        d = dict(data)
        image = d[self.ref_key]
        meta = getattr(image, "meta", {}) or {}
        source = str(meta.get("filename_or_obj", ""))
        result = d.get(self.result_key) or {}
        record = {
            "source": source,
            "image_size": list(_stored_shape(image)),
            "coordinates": "original_pixels",
            "probabilities": result.get("probabilities", {}),
            "boxes": [{"box": f["box"], "label": f["class"], "probability": f["probability"], "score": f["probability"]} for f in result.get("findings", [])],
        }
        self.output_dir.mkdir(parents=True, exist_ok=True)
        path = self.output_dir / f"{Path(source).stem or 'image'}.json"
        atomic_write_json(path, record, indent=1, default=float)
        d[self.path_key] = str(path)
        return d
