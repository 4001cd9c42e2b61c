"""Glue between MONAI and the DAB-Net bundle (Wang et al., ICML 2022), used by ``bundles/dabnet``.

Wang et al., "Disentangling Disease-related Representation from Obscure for Disease Prediction",
ICML 2022. What the bundle's configs call that MONAI and the library do not provide:

* evaluation (:func:`evaluate_bundle`): AUC overall / obscured-only / clear-only with percentile
  bootstrap CIs (:func:`monai_mammo.metrics.classification.bootstrap_auc`), optionally retraining
  ``repeats`` times through the command the evaluation was started with
  (:func:`repeat_training_command`);
* the clear-mass pool of a datalist (:func:`mass_pool`);
* ROI inference on crops or on full images with boxes (:func:`roi_items`, :class:`CropRoiBoxd`,
  :func:`infer_rois`), through the bundle's one preprocessing chain;
* :class:`MalignancyToLabeld`: the per-ROI probability as a label image for MONAI Label.

The configs import it as ``$import monai_mammo.engines.dabnet as mm_dabnet``. Coordinates (boxes
``[x0, y0, x1, y1]`` in stored pixels, arrays rows first) follow :mod:`monai_mammo.coordinates`.
"""

from __future__ import annotations

import ast
import json
import logging
import math
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import Compose, MapTransform, SpatialCrop

from monai_mammo.bundle_utils import SkippedInputs
from monai_mammo.atomic_io import atomic_write_json
from monai_mammo.bundle_utils import load_items
from monai_mammo.checkpoints import load_network_weights
from monai_mammo.metrics.classification import bootstrap_auc

__all__ = [
    "predict",
    "auc_metrics",
    "mass_pool",
    "log_best_validation",
    "repeat_training_command",
    "evaluate_bundle",
    "roi_items",
    "CropRoiBoxd",
    "infer_rois",
    "MalignancyToLabeld",
    "LabelImageToClassd",
]

logger = logging.getLogger(__name__)


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


def mass_pool(datalist_file: str | os.PathLike) -> list[dict]:
    """The clear-mass pool for compositing: the datalist's ``"masses"`` list when it has one, else
    its clear (not ``obscured``) ``"training"`` ROIs."""
    content = json.loads(Path(datalist_file).read_text())
    if "masses" in content:
        return load_items(datalist_file, "masses")
    return [item for item in load_items(datalist_file, "training") if not item.get("obscured")]


def log_best_validation(evaluator: Any, checkpoint: str | os.PathLike) -> float:
    """Log (and return) the best validation AUC of a finished training and where its model is."""
    state = evaluator.state
    logger.info("DAB-Net best validation AUC: %.4f (epoch %d); model: %s", state.best_metric, state.best_metric_epoch, checkpoint)
    return float(state.best_metric)


def _config_file_list(value: str) -> list[str]:
    """The files of a ``--config_file`` value: a Python list literal, a comma list or one path."""
    text = value.strip()
    if text.startswith("["):
        return [str(v) for v in ast.literal_eval(text)]
    return [part.strip() for part in text.split(",") if part.strip()]


def repeat_training_command(
    argv: Sequence[str], seed: int, ckpt_dir: str | os.PathLike, drop_prefixes: Sequence[str] = ("eval",)
) -> list[str]:
    """The training command behind an evaluation command, for one retraining repeat.

    ``argv`` is the evaluation's ``python -m monai.bundle run [run_id] --config_file FILES
    [--key value ...]`` (``sys.argv``). The repeat runs ``training`` on the same config files
    except ``evaluate.*`` (so an ablation file stays in), with the same overrides except those of
    keys starting with ``drop_prefixes`` (the evaluation's own) and with ``seed`` and ``ckpt_dir``
    set, so it trains exactly what the evaluated run trained, with another seed.

    Example::

        >>> cmd = repeat_training_command(
        ...     ["/x/monai/bundle/__main__.py", "run", "--config_file", "['t.yaml','a/simple.yaml','evaluate.yaml']",
        ...      "--epochs", "2", "--eval#repeats", "3", "--seed", "0"], seed=5, ckpt_dir="/r/run_1")
        >>> cmd[1:]
        ['-m', 'monai.bundle', 'run', 'training', '--config_file', "['t.yaml', 'a/simple.yaml']", '--epochs', '2', '--seed', '5', '--ckpt_dir', '/r/run_1']

    Raises:
        ValueError: ``argv`` is not a ``monai.bundle run`` command with ``--config_file``.
    """
    args = list(argv[1:])
    if not args or args[0] != "run" or not any(a == "--config_file" or a.startswith("--config_file=") for a in args):
        raise ValueError(
            "eval#repeats > 1 retrains through the command the evaluation was started with "
            "(python -m monai.bundle run --config_file ...), but this process was started as "
            f"{' '.join(argv)!r}; from Python, use benchmarks/dabnet_ablation.py --seeds N"
        )
    args = args[1:]
    if args and not args[0].startswith("--"):
        args = args[1:]  # the evaluation's run id
    files: list[str] = []
    overrides: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        key, has_value, value = arg[2:].partition("=")
        if not has_value and index + 1 < len(args) and not args[index + 1].startswith("--"):
            value, index = args[index + 1], index + 1
        index += 1
        if key == "config_file":
            files += [f for f in _config_file_list(value) if not Path(f).name.startswith("evaluate.")]
        elif key in ("seed", "ckpt_dir", "run_id") or key.startswith(tuple(drop_prefixes)):
            continue
        else:
            overrides += [f"--{key}", value] if (has_value or value) else [f"--{key}"]
    return [
        sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", str(files),
        *overrides, "--seed", str(seed), "--ckpt_dir", str(ckpt_dir),
    ]  # fmt: skip


def evaluate_bundle(
    network: torch.nn.Module,
    dataloader: Iterable[Mapping[str, Any]],
    device: torch.device | str,
    checkpoint: str | os.PathLike,
    output_file: str | os.PathLike,
    n_bootstrap: int = 1000,
    repeats: int = 1,
    seed: int = 0,
    eval_description: str = "",
    command: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Evaluate the trained model (``repeats=1``), or retrain ``repeats`` times with seeds
    ``seed .. seed+repeats-1`` and average (paper: mean of 10 runs); write ``metrics.json``.

    Weights load strictly (:func:`monai_mammo.checkpoints.load_network_weights`: a checkpoint with a
    ``network_spec`` must match ``network``; a plain state dict of an older checkpoint loads too). A
    repeat runs :func:`repeat_training_command` of ``command`` (default ``sys.argv``) in a
    subprocess and writes its model to ``<output dir>/run_<k>/model.pt``.

    Under ``torch.distributed`` (``multi_gpu_evaluate.yaml``: each rank's loader holds its
    ``DistributedSampler(shuffle=False)`` shard) the predictions of every rank are gathered back
    into dataset order (:func:`monai_mammo.distributed.gather_interleaved`) and rank 0 writes.
    """
    from monai_mammo.distributed import gather_interleaved, is_distributed

    runs = []
    if repeats <= 1:
        load_network_weights(network, checkpoint, device)
        predictions = gather_interleaved(predict(network, dataloader, device))
        runs.append({"checkpoint": str(checkpoint), "metrics": auc_metrics(predictions, n_bootstrap, seed)})
    elif is_distributed():
        raise ValueError("eval#repeats > 1 retrains in subprocesses: run it in one process, not under torchrun")
    else:
        out_dir = Path(output_file).parent
        for k in range(int(repeats)):
            run_dir = out_dir / f"run_{k}"
            cmd = repeat_training_command(sys.argv if command is None else command, seed + k, run_dir)
            logger.info("repeat %d/%d: %s", k + 1, repeats, " ".join(cmd))
            result = subprocess.run(cmd, check=False)
            if result.returncode != 0:
                raise RuntimeError(f"repeat {k}: training failed (exit code {result.returncode}): {' '.join(cmd)}")
            trained = str(run_dir / "model.pt")
            load_network_weights(network, trained, device)
            metrics = auc_metrics(predict(network, dataloader, device), n_bootstrap, seed)
            runs.append({"checkpoint": trained, "seed": seed + k, "metrics": metrics})
            logger.info("run %d: AUC %.4f, obscured AUC %.4f", k, metrics["overall"]["auc"], metrics["obscured"]["auc"])
    summary: dict[str, Any] = {"description": eval_description, "repeats": len(runs), "runs": runs}
    for subset in ("overall", "obscured", "clear"):
        values = np.array([r["metrics"][subset]["auc"] for r in runs], dtype=np.float64)
        summary[subset] = (
            runs[0]["metrics"][subset]
            if len(runs) == 1
            else {"auc_mean": float(np.nanmean(values)), "auc_std": float(np.nanstd(values)), "aucs": values.tolist()}
        )
    if is_distributed() and torch.distributed.get_rank() > 0:
        return summary  # rank 0 writes
    atomic_write_json(output_file, summary, default=float)
    key = "auc" if len(runs) == 1 else "auc_mean"
    ci = f"[{summary['overall']['ci_low']:.3f}, {summary['overall']['ci_high']:.3f}] " if len(runs) == 1 else ""
    logger.info(
        "DAB-Net test AUC %.4f %sobscured-only AUC %.4f; written to %s",
        summary["overall"][key], ci, summary["obscured"][key], output_file,
    )  # fmt: skip
    return summary


# --- inference -------------------------------------------------------------------------------------
def roi_items(
    inputs: Sequence[Mapping[str, Any] | str | os.PathLike], crop_scale: float = 2.0, min_crop: int = 32
) -> list[dict[str, Any]]:
    """Expand inference inputs into ROI items for the bundle's preprocessing.

    A path or ``{"image": path}`` is a ROI crop (item without ``roi_box``).
    ``{"image": path, "boxes": [[x0, y0, x1, y1], ...]}`` is a full image: one item per box, whose
    ``roi_box`` is the square of side ``max(min_crop, crop_scale * max(w, h))`` centred on the box
    (like the radiologists' ROIs the model is trained on), cropped by :class:`CropRoiBoxd`.

    Example::

        >>> items = roi_items([{"image": "a.png", "boxes": [[10, 20, 30, 30]]}, "roi.png"])
        >>> items[0]["roi_box"], items[1]["roi_box"]
        ([0.0, 5.0, 40.0, 45.0], None)
    """
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


class CropRoiBoxd(MapTransform):
    """Crop an item's ``roi_box`` ``[x0, y0, x1, y1]`` (stored pixels, pixel edges) out of the image.

    The step of the dabnet bundle's preprocessing that turns a full image with a box into the ROI
    crop the network was trained on (:func:`roi_items` computes the box); items without a box (ROI
    crops: training, evaluation, MONAI Label) pass unchanged. The box is widened to whole pixels
    (floor / ceil) and clipped to the image; MONAI's ``SpatialCrop`` does the crop.

    Example::

        >>> d = CropRoiBoxd(keys="image")({"image": torch.arange(48.0).reshape(1, 6, 8), "roi_box": [1.5, 2, 4, 9]})
        >>> tuple(d["image"].shape)  # rows 2..6 (clipped), columns 1..4
        (1, 4, 3)

    Args:
        keys: the image keys.
        box_key: the item key holding the box; default ``"roi_box"``.
        allow_missing_keys: skip absent image keys instead of raising.
    """

    def __init__(self, keys: KeysCollection, box_key: str = "roi_box", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.box_key = box_key

    def __call__(self, data: Mapping[Any, Any]) -> dict[Any, Any]:
        d = dict(data)
        box = d.get(self.box_key)
        if box is None:
            return d
        x0, y0, x1, y1 = (float(v) for v in box)
        for key in self.key_iterator(d):
            height, width = d[key].shape[-2:]
            c0, r0 = max(0, math.floor(x0)), max(0, math.floor(y0))
            c1, r1 = min(width, math.ceil(x1)), min(height, math.ceil(y1))
            if c1 <= c0 or r1 <= r0:
                source = d[key].meta.get("filename_or_obj", key) if isinstance(d[key], MetaTensor) else key
                raise ValueError(f"{source}: {self.box_key} {list(box)} lies outside the {height}x{width} image")
            d[key] = SpatialCrop(roi_start=(r0, c0), roi_end=(r1, c1))(d[key])
        return d


@torch.no_grad()
def infer_rois(
    network: torch.nn.Module,
    inputs: Sequence[Mapping[str, Any] | str | os.PathLike],
    preprocessing: Sequence[Callable] | Callable,
    output_dir: str | os.PathLike,
    device: torch.device | str = "cpu",
    save_png: bool = False,
    crop_scale: float = 2.0,
) -> list[dict[str, Any]]:
    """Probability of malignancy per ROI, written to ``output_dir/predictions.json``.

    ``inputs`` go through :func:`roi_items` and then ``preprocessing``, the bundle's one chain (the
    same transforms as training and evaluation; a full image's box is cropped by its
    :class:`CropRoiBoxd` step). With ``save_png`` also ``<name>_disentangled.png`` (input | x̂_m |
    x̂_g) beside it. An input that cannot be read is skipped and listed, with the reason, in
    ``output_dir/skipped.json``; the others are still written.
    """
    transform = preprocessing if callable(preprocessing) else Compose(list(preprocessing))
    network.eval()
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    wants_png = save_png and getattr(network, "decoders", "none") != "none"
    results, skipped = [], SkippedInputs()
    for index, item in enumerate(roi_items(inputs, crop_scale=crop_scale)):
        try:
            image = transform(dict(item))["image"]
        except Exception as exc:  # noqa: BLE001 - one bad file must not end the batch
            skipped.add(item["source"], exc)
            continue
        x = (image.as_tensor() if isinstance(image, MetaTensor) else torch.as_tensor(image))[None].to(device)
        out = network(x, return_reconstructions=True) if wants_png else network(x)
        logit = out["logit"] if isinstance(out, Mapping) else out
        record: dict[str, Any] = {"source": item["source"], "probability": float(torch.sigmoid(logit).reshape(-1)[0])}
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
    skipped.write(out_dir)
    logger.info("DAB-Net inference: %d ROI(s) -> %s; %d skipped", len(results), out_dir / "predictions.json", len(skipped))
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

        >>> image = MetaTensor(torch.zeros(1, 64, 64), meta={"spatial_shape": (30, 40)})  # read as H=30, W=40
        >>> d = MalignancyToLabeld(keys="pred", ref_key="image")({"image": image, "pred": torch.tensor([0.8])})
        >>> tuple(d["pred"].shape), int(d["pred"].max()), d["result"]["label"]
        ((1, 30, 40), 2, 'malignant')

    Args:
        keys: the probability keys, each a one-element tensor (shape ``(1,)`` or ``(1, 1)``, after
            the sigmoid).
        ref_key: the input image key; the label gets the size in its ``meta["spatial_shape"]`` (the
            size as read, before resizing), else its current spatial size. Default ``"image"``.
        spatial_shape_order: ``"hw"`` (default) or ``"wh"``: the order of ``spatial_shape``. The
            project's reader (:class:`monai_mammo.transforms.io.RadiographReader`, which the bundle
            uses) writes rows first, ``(H, W)``; MONAI's ``PILReader`` writes ``(W, H)``
            (``img.size``) even with ``reverse_indexing=False``.
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
        spatial_shape_order: str = "hw",
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


class LabelImageToClassd(MapTransform):
    """A label given as a label-image path (MONAI Label's datastore) -> the class DAB-Net trains on.

    MONAI Label trains a bundle through run id ``run`` with datalist items ``{"image": path,
    "label": path}``: the label is the image an annotator saved (or :class:`MalignancyToLabeld`
    wrote at inference), uniform :attr:`MalignancyToLabeld.BENIGN` (1) or
    :attr:`MalignancyToLabeld.MALIGNANT` (2) on its non-zero pixels (0 pixels are ignored). It is
    read and replaced by the class (0 benign, 1 malignant). A label that is already a number
    passes unchanged; an image that is empty or mixes values is an error naming the file.

    Example::

        >>> import tempfile
        >>> from PIL import Image
        >>> path = tempfile.mkdtemp() + "/roi.png"
        >>> Image.fromarray(np.full((8, 6), 2, np.uint8)).save(path)
        >>> t = LabelImageToClassd(keys="label")
        >>> t({"label": path})["label"], t({"label": 0})["label"]
        (1, 0)

    Args:
        keys: the label keys. Default ``"label"``.
        allow_missing_keys: skip absent keys instead of raising.
    """

    CLASSES = {MalignancyToLabeld.BENIGN: 0, MalignancyToLabeld.MALIGNANT: 1}

    def __init__(self, keys: KeysCollection = "label", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Any, Any]) -> dict[Any, Any]:
        from monai_mammo.transforms.io import RadiographReader

        d = dict(data)
        for key in self.key_iterator(d):
            value = d[key]
            if not isinstance(value, (str, os.PathLike)):
                continue
            array = np.asarray(RadiographReader().read(value).array)
            values = np.unique(array[array != 0]).astype(int).tolist()
            if len(values) != 1 or values[0] not in self.CLASSES:
                raise ValueError(
                    f"{value}: a DAB-Net label image must be uniform {MalignancyToLabeld.BENIGN} (benign) or "
                    f"{MalignancyToLabeld.MALIGNANT} (malignant) on its non-zero pixels, found values {values[:8]}"
                )
            d[key] = self.CLASSES[values[0]]
        return d
