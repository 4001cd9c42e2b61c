"""One bundle's inference, one image at a time: the adapter between ``monai-mammo predict`` and a bundle.

:class:`BundlePredictor` parses the bundle's ``configs/inference.yaml`` with MONAI's
``ConfigParser`` once (network built and weights loaded once) and, for one input item
(``{"image": path, **datalist fields}``), returns a :class:`Prediction`: the findings record (what
the bundle's JSON writer writes: points or boxes with scores, in the stored image's pixels) and,
where the bundle makes one, a label map on the stored image's grid.

What it reads from each config today (the keys to rewire when the configs change):

* every bundle: ``configs/metadata.json`` (``name``, ``version``, the accepted modality
  ``network_data_format.inputs.image.modality``, the label names
  ``network_data_format.outputs.pred.channel_def``); in ``inference.yaml`` it sets ``bundle_root``
  (and ``device``, ``cpu_threads`` when given), runs ``initialize`` when present, and loads the
  weights by calling each ``CheckpointLoader`` of ``handlers`` once;
* ``"evaluator"`` runner (ASN): ``dataset#transform`` (``preprocessing`` + the item selection),
  ``evaluator#network``, ``evaluator#inferer`` and ``evaluator#postprocessing`` (``postprocessing`` +
  ``writer``), applied exactly as MONAI's ``SupervisedEvaluator`` does (default ``prepare_batch``,
  eval mode, decollation, ``engine_apply_transform``); ``output_dir`` is pointed at a scratch
  folder and the record is the JSON the writer wrote there (``detections_file``);
  ``write_overlay`` / ``write_residual`` are forced off; the mask is ``pred`` (the MONAI Label
  label: discs at the best detections) turned back from MONAI Label's ``(W, H)`` layout;
* ``"roi_classifier"`` runner (DAB-Net): ``network``, ``spatial_size``, ``crop_scale`` and
  ``monai_mammo.engines.dabnet.roi_items`` / ``load_roi``, exactly the steps of
  ``mm_dabnet.infer_rois`` (bilinear resize today) with the weights loaded once; the record has one
  ``boxes`` entry per box of the item (or the whole image for an item without boxes) with its
  malignancy ``probability``.

A bundle says what it outputs in a ``"predict"`` section of its ``metadata.json`` (the fields of
:class:`BundleProfile`); :data:`PROFILES` holds them for ``asn`` and ``dabnet`` until their metadata do.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["BundleProfile", "PROFILES", "Prediction", "BundlePredictor", "resolve_bundle_root"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BundleProfile:
    """What a bundle outputs and needs, for ``monai-mammo predict``.

    Attributes:
        findings: "points" or "boxes".
        finding_label: the label of findings that carry none (e.g. "microcalcification", "mass").
        requires_spacing: the bundle needs a pixel spacing (e.g. it resamples to 0.07 mm).
        runner: "evaluator" (preprocessing -> inferer -> postprocessing + writer) or
            "roi_classifier" (DAB-Net's box crops).
        record_key: evaluator runner: the data key holding the path of the JSON the writer wrote.
        mask_key: evaluator runner: the data key of a label map on the stored image's grid, or None.
        mask_layout: "hw", or "label_app" for the ``(W, H)`` layout ``ToLabelAppLayoutd`` leaves.
        config_overrides: config values the adapter sets (side outputs it does not want).
    """

    findings: str
    finding_label: str
    requires_spacing: bool
    runner: str
    record_key: str = "detections_file"
    mask_key: str | None = None
    mask_layout: str = "hw"
    config_overrides: Mapping[str, Any] = field(default_factory=dict)


PROFILES: dict[str, BundleProfile] = {
    "asn": BundleProfile(
        findings="points",
        finding_label="microcalcification",
        requires_spacing=True,
        runner="evaluator",
        mask_key="pred",
        mask_layout="label_app",
        config_overrides={"write_overlay": False, "write_residual": False},
    ),
    "dabnet": BundleProfile(findings="boxes", finding_label="mass", requires_spacing=False, runner="roi_classifier"),
}


@dataclass
class Prediction:
    """The result for one image.

    Attributes:
        record: the findings record (JSON-serialisable), coordinates in stored-image pixels.
        mask: ``(H, W)`` integer label map on the stored image's grid, or None.
        segments: label value -> name of the mask's labels (background excluded).
    """

    record: dict[str, Any]
    mask: np.ndarray | None = None
    segments: dict[int, str] = field(default_factory=dict)


def resolve_bundle_root(bundle: str | os.PathLike) -> Path:
    """A bundle folder from a folder path or a bundle name.

    A name is looked for like :func:`monai_mammo.bundle_utils.find_bundle_root` (working directory,
    ``./bundles/<name>``, beside ``--config_file`` paths), then in the source tree of this package.

    Raises:
        FileNotFoundError: naming where it looked.
    """
    from monai_mammo.bundle_utils import find_bundle_root

    path = Path(bundle).expanduser()
    if (path / "configs" / "metadata.json").is_file():
        return path.resolve()
    name = str(bundle)
    try:
        return Path(find_bundle_root(name, argv=[]))
    except FileNotFoundError as error:
        source_tree = Path(__file__).resolve().parents[1] / "bundles" / name
        if (source_tree / "configs" / "metadata.json").is_file():
            return source_tree
        raise FileNotFoundError(f"{error}; not in {source_tree} either; pass --bundle FOLDER") from None


def _sha256(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(set(paths)):
        digest.update(path.name.encode())
        with open(path, "rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


class BundlePredictor:
    """Run a bundle's inference on one image at a time (see the module docstring for what it reads).

    Example::

        >>> # predictor = BundlePredictor("asn", {"ckpt_path": "models/model.pt"})
        >>> # prediction = predictor.predict({"image": "case.dcm"}); prediction.record["points"][0]
        >>> # {'x': 1532.0, 'y': 2210.5, 'score': 0.81, 'asn_score': ..., 'fpr_score': ..., 'area': 6}

    Args:
        bundle: a bundle name (e.g. "asn") or folder.
        overrides: config overrides (``{"ckpt_path": ..., "network_def#channels": [...]}``).
        device: e.g. "cpu", "cuda:1"; None: the config's ``device``.
        cpu_threads: the config's ``cpu_threads`` (int, "auto" or None); None: the config's own.
    """

    def __init__(
        self,
        bundle: str | os.PathLike,
        overrides: Mapping[str, Any] | None = None,
        device: str | None = None,
        cpu_threads: int | str | None = None,
    ) -> None:
        from monai.bundle import ConfigParser

        self.root = resolve_bundle_root(bundle)
        self.metadata = json.loads((self.root / "configs" / "metadata.json").read_text())
        self.name = str(self.metadata.get("name", self.root.name))
        self.version = str(self.metadata.get("version", "0"))
        declared = self.metadata.get("predict")
        if declared is not None:
            self.profile = BundleProfile(**declared)
        elif self.name in PROFILES:
            self.profile = PROFILES[self.name]
        else:
            raise ValueError(
                f"bundle {self.name!r} ({self.root}) does not say what it outputs: add a 'predict' section to its "
                f"configs/metadata.json with the fields of monai_mammo.bundle_predictor.BundleProfile"
            )
        formats = self.metadata.get("network_data_format", {})
        modality = formats.get("inputs", {}).get("image", {}).get("modality")
        self.modalities: tuple[str, ...] | None = (modality,) if isinstance(modality, str) else (tuple(modality) if modality else None)
        channels = formats.get("outputs", {}).get("pred", {}).get("channel_def", {})
        self.segments = {int(k): str(v) for k, v in channels.items() if str(k).isdigit() and int(k) > 0}
        self._scratch = Path(tempfile.mkdtemp(prefix=f"monai-mammo-predict-{self.name}-"))

        parser = ConfigParser()
        parser.read_config(str(self.root / "configs" / "inference.yaml"))
        parser.update(dict(overrides or {}))
        forced: dict[str, Any] = {"bundle_root": str(self.root), **dict(self.profile.config_overrides)}
        if self.profile.runner == "evaluator":
            forced["output_dir"] = str(self._scratch)
        if device is not None:
            forced["device"] = f"$torch.device({str(device)!r})"
        if cpu_threads is not None and "cpu_threads" in parser:
            forced["cpu_threads"] = cpu_threads
        parser.update(forced)
        self.parser = parser
        if "initialize" in parser:
            parser.get_parsed_content("initialize")
        self.device = torch.device(parser.get_parsed_content("device"))
        self._weights: list[Path] = []
        if self.profile.runner == "evaluator":
            self._setup_evaluator()
        elif self.profile.runner == "roi_classifier":
            self._setup_roi_classifier()
        else:
            raise ValueError(f"bundle {self.name}: unknown runner {self.profile.runner!r}")
        uses_fpr = "fpr_path" in parser and ("use_fpr" not in parser or bool(parser.get_parsed_content("use_fpr")))
        if uses_fpr:
            fpr_file = Path(parser.get_parsed_content("fpr_path"))
            if fpr_file.is_file():
                self._weights.append(fpr_file)
        self.fingerprint = _sha256(self._weights) if self._weights else ""

    # ---------------------------------------------------------------------------------- set-up
    def _load_weights(self, handlers_id: str) -> None:
        """Call each CheckpointLoader of ``handlers_id`` once, as the evaluator does when it starts."""
        from ignite.engine import Engine
        from monai.handlers import CheckpointLoader

        handlers = self.parser.get_parsed_content(handlers_id)
        loaders = [h for h in handlers if isinstance(h, CheckpointLoader)]
        if not loaders:
            raise ValueError(f"bundle {self.name}: no CheckpointLoader in {handlers_id}; the weights would stay random")
        engine = Engine(lambda engine, batch: None)
        for loader in loaders:
            if not Path(loader.load_path).is_file():
                raise FileNotFoundError(f"bundle {self.name}: weights {loader.load_path} not found (train the bundle first)")
            loader(engine)
            self._weights.append(Path(loader.load_path))

    def _setup_evaluator(self) -> None:
        self._transform = self.parser.get_parsed_content("dataset#transform")
        self._network = self.parser.get_parsed_content("evaluator#network")
        self._inferer = self.parser.get_parsed_content("evaluator#inferer")
        self._postprocessing = self.parser.get_parsed_content("evaluator#postprocessing")
        self._load_weights("evaluator#val_handlers")

    def _setup_roi_classifier(self) -> None:
        self._network = self.parser.get_parsed_content("network")
        self._spatial_size = tuple(int(v) for v in self.parser.get_parsed_content("spatial_size"))
        self._crop_scale = float(self.parser.get_parsed_content("crop_scale"))
        self._load_weights("handlers")
        self._network.eval()

    # -------------------------------------------------------------------------------- predict
    def predict(self, item: Mapping[str, Any]) -> Prediction:
        """The findings (and mask) of one item ``{"image": path, **fields}``."""
        if self.profile.runner == "evaluator":
            return self._predict_evaluator(item)
        return self._predict_rois(item)

    def _predict_evaluator(self, item: Mapping[str, Any]) -> Prediction:
        from monai.data import decollate_batch, list_data_collate
        from monai.engines.utils import default_prepare_batch, engine_apply_transform
        from monai.networks.utils import eval_mode

        data = self._transform(dict(item))
        batch = list_data_collate([data])
        inputs, targets = default_prepare_batch(batch, self.device)[:2]
        with eval_mode(self._network):
            pred = self._inferer(inputs, self._network)
        output = {"image": inputs, "label": targets, "pred": pred}
        batch_item = decollate_batch(batch, detach=True)[0]
        output_item = decollate_batch(output, detach=True)[0]
        batch_item, output_item = engine_apply_transform(batch_item, output_item, self._postprocessing)
        result = {**batch_item, **output_item}
        record_file = Path(result[self.profile.record_key])
        record = json.loads(record_file.read_text())
        record_file.unlink()
        mask = None
        if self.profile.mask_key is not None and result.get(self.profile.mask_key) is not None:
            mask = np.asarray(torch.as_tensor(result[self.profile.mask_key]).detach().cpu())
            if self.profile.mask_layout == "label_app":
                mask = mask.reshape(mask.shape[-2:]).T
            mask = mask.reshape(mask.shape[-2:])
            size = record.get("image_size")
            if size is not None and tuple(mask.shape) != tuple(size):
                logger.warning("%s: mask %s does not match the image size %s; no mask", item["image"], mask.shape, size)
                mask = None
        return Prediction(record, mask, dict(self.segments) if mask is not None else {})

    @torch.no_grad()
    def _predict_rois(self, item: Mapping[str, Any]) -> Prediction:
        import torch.nn.functional as F

        from monai_mammo.engines import dabnet as mm_dabnet

        source = str(item["image"])
        entry = {"image": source, "boxes": item["boxes"]} if item.get("boxes") else source
        boxes = []
        for roi_item in mm_dabnet.roi_items([entry], crop_scale=self._crop_scale):
            roi = mm_dabnet.load_roi(roi_item)
            x = F.interpolate(roi[None], size=self._spatial_size, mode="bilinear", align_corners=False).to(self.device)
            out = self._network(x)
            logit = out["logit"] if isinstance(out, Mapping) else out
            box = roi_item.get("box")
            if roi_item.get("roi_box") is None:  # the whole image is the ROI
                h, w = roi.shape[-2:]
                box = [0.0, 0.0, float(w - 1), float(h - 1)]
            boxes.append(
                {
                    "box": [float(v) for v in box],
                    "label": self.profile.finding_label,
                    "probability": float(torch.sigmoid(logit).reshape(-1)[0]),
                    "roi_box": roi_item.get("roi_box"),
                }
            )
        return Prediction({"source": source, "coordinates": "original_pixels", "num_boxes": len(boxes), "boxes": boxes})

    def close(self) -> None:
        """Remove the scratch folder."""
        shutil.rmtree(self._scratch, ignore_errors=True)

    def __enter__(self) -> BundlePredictor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
