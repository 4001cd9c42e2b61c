"""One bundle's inference, one image at a time: the adapter between ``monai-mammo predict`` and a bundle.

:class:`BundlePredictor` parses the bundle's ``configs/inference.yaml`` with MONAI's
``ConfigParser`` once (networks built and weights loaded once) and, for one input item
(``{"image": path, **datalist fields}``), returns a :class:`Prediction`: the findings record (what
the bundle's own inference writes: points or boxes with scores, in the stored image's pixels) and,
where the bundle makes one, a label map on the stored image's grid.

**What a bundle must expose to plug in** (the contract; ``asn`` and ``dabnet`` follow it):

* ``configs/metadata.json``: ``name``, ``version``, the accepted modality
  ``network_data_format.inputs.image.modality``, the label names
  ``network_data_format.outputs.pred.channel_def`` (for masks), and a ``"predict"`` section with
  the fields of :class:`BundleProfile` (what the bundle outputs and how its results are read);
* ``configs/inference.yaml``: ``bundle_root``, ``device``; ``preprocessing`` (a list of
  transforms on ``{"image": path, ...}``), ``network`` (built with its trained weights, e.g.
  :func:`monai_mammo.checkpoints.load_network`), ``inferer``, ``postprocessing``; optionally
  ``initialize`` (run once), ``cpu_threads``, and a ``writer`` (e.g.
  :class:`monai_mammo.writers.SaveRegionsd`) writing one JSON per image under ``output_dir``.

Per item the adapter does what MONAI's ``SupervisedEvaluator`` does for a batch of one:
``preprocessing``, keep the tensor entries (what a ``DataLoader`` collates), collate, move
``image`` to the device, ``inferer(image, network)`` in eval mode without gradients, decollate,
then ``postprocessing`` (and ``writer``). The record is then

* ``record="writer"`` (ASN): the JSON the ``writer`` wrote (its path under ``record_key``), with
  ``output_dir`` pointed at a scratch folder: the same :class:`~monai_mammo.writers.SaveRegionsd`
  record that ``python -m monai.bundle run inferring`` writes;
* ``record="rois"`` (DAB-Net): the item is first expanded into one item per box by the
  ``roi_items`` function (``monai_mammo.engines.dabnet.roi_items``: a square of ``crop_scale`` x
  the box around it, cropped by the bundle's own ``CropRoiBoxd`` step; an item without boxes is a
  ROI crop), and each ROI gives one ``boxes`` entry whose ``probability`` is
  ``postprocessing``'s ``data[result_key][probability_key]``: the steps and values of the
  bundle's ``infer_rois``.

A label map (for ``--dicom-seg``) is ``postprocessing``'s ``mask_key`` entry, turned back from
MONAI Label's ``(W, H)`` layout when ``mask_layout="label_app"``. The weights fingerprint (written
in every output) hashes the files named by the ``weights`` config ids.
"""

from __future__ import annotations

import hashlib
import importlib
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

__all__ = ["BundleProfile", "Prediction", "BundlePredictor", "resolve_bundle_root"]

logger = logging.getLogger(__name__)

_RECORDS = ("writer", "rois")


@dataclass(frozen=True)
class BundleProfile:
    """What a bundle outputs and how its results are read: the ``"predict"`` section of its
    ``configs/metadata.json``.

    Example::

        >>> p = BundleProfile("points", "microcalcification", requires_spacing=True, mask_key="pred")
        >>> p.record, p.record_key, p.mask_layout
        ('writer', 'detections_file', 'hw')
        >>> BundleProfile("boxes", "mass", requires_spacing=False, record="rois")
        Traceback (most recent call last):
        ...
        ValueError: predict profile: record='rois' needs roi_items (a dotted function name)

    Attributes:
        findings: "points" or "boxes".
        finding_label: the label of findings that carry none (e.g. "microcalcification", "mass").
        requires_spacing: the bundle needs a pixel spacing (e.g. it resamples to 0.07 mm).
        record: "writer" (the config's ``writer`` writes the record) or "rois" (one box per ROI).
        record_key: ``record="writer"``: the data key of the path of the JSON the writer wrote.
        roi_items: ``record="rois"``: dotted name of ``f(items, **kwargs) -> ROI items``.
        roi_items_args: ``record="rois"``: keyword -> config id of its value (e.g. ``crop_scale``).
        result_key, probability_key: ``record="rois"``: where postprocessing leaves the probability.
        mask_key: the data key of a label map on the stored image's grid after postprocessing, or None.
        mask_layout: "hw", or "label_app" for the ``(W, H)`` layout ``ToLabelAppLayoutd`` leaves.
        weights: config ids of the weight files -> config id of the flag that enables the file
            (None: always), for the fingerprint.
        config_overrides: config values the adapter sets (side outputs it does not want).
    """

    findings: str
    finding_label: str
    requires_spacing: bool
    record: str = "writer"
    record_key: str = "detections_file"
    roi_items: str | None = None
    roi_items_args: Mapping[str, str] = field(default_factory=dict)
    result_key: str = "result"
    probability_key: str = "probability"
    mask_key: str | None = None
    mask_layout: str = "hw"
    weights: Mapping[str, str | None] = field(default_factory=dict)
    config_overrides: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.findings not in ("points", "boxes"):
            raise ValueError(f"predict profile: findings must be 'points' or 'boxes', got {self.findings!r}")
        if self.record not in _RECORDS:
            raise ValueError(f"predict profile: record must be one of {_RECORDS}, got {self.record!r}")
        if self.record == "rois" and not self.roi_items:
            raise ValueError("predict profile: record='rois' needs roi_items (a dotted function name)")


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
    """Run a bundle's inference on one image at a time (the contract is in the module docstring).

    Example::

        >>> # predictor = BundlePredictor("asn", {"ckpt_dir": "models"})
        >>> # prediction = predictor.predict({"image": "case.dcm"}); prediction.record["points"][0]
        >>> # {'x': 1532.0, 'y': 2210.5, 'score': 0.81, 'asn_score': ..., 'fpr_score': ..., 'area': 6}

    Args:
        bundle: a bundle name (e.g. "asn") or folder.
        overrides: config overrides (``{"ckpt_dir": ..., "use_fpr": False}``).
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
        from monai.transforms import Compose

        self.root = resolve_bundle_root(bundle)
        self.metadata = json.loads((self.root / "configs" / "metadata.json").read_text())
        self.name = str(self.metadata.get("name", self.root.name))
        self.version = str(self.metadata.get("version", "0"))
        declared = self.metadata.get("predict")
        if declared is None:
            raise ValueError(
                f"bundle {self.name!r} ({self.root}) does not say what it outputs: add a 'predict' section to its "
                f"configs/metadata.json with the fields of monai_mammo.bundle_predictor.BundleProfile"
            )
        self.profile = BundleProfile(**declared)
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
        if "output_dir" in parser:
            forced["output_dir"] = str(self._scratch)  # the writer's JSON is read back, then removed
        if device is not None:
            forced["device"] = f"$torch.device({str(device)!r})"
        if cpu_threads is not None and "cpu_threads" in parser:
            forced["cpu_threads"] = cpu_threads
        parser.update(forced)
        self.parser = parser
        if "initialize" in parser:
            parser.get_parsed_content("initialize")
        self.device = torch.device(parser.get_parsed_content("device"))
        self._preprocessing = Compose(list(parser.get_parsed_content("preprocessing")))
        self._network = parser.get_parsed_content("network")
        self._inferer = parser.get_parsed_content("inferer")
        steps = [parser.get_parsed_content("postprocessing")] if "postprocessing" in parser else []
        if self.profile.record == "writer":
            if "writer" not in parser:
                raise ValueError(f"bundle {self.name}: predict profile record='writer' but inference.yaml has no 'writer'")
            steps.append(parser.get_parsed_content("writer"))
        self._postprocessing = Compose(steps)
        self._roi_items = None
        if self.profile.record == "rois":
            module, _, function = str(self.profile.roi_items).rpartition(".")
            self._roi_items = getattr(importlib.import_module(module), function)
            self._roi_args = {k: parser.get_parsed_content(v) for k, v in self.profile.roi_items_args.items()}
        weights = []
        for path_id, flag_id in self.profile.weights.items():
            if flag_id is None or bool(parser.get_parsed_content(flag_id)):
                weights.append(Path(parser.get_parsed_content(path_id)))
        self.fingerprint = _sha256([w for w in weights if w.is_file()]) if weights else ""

    # -------------------------------------------------------------------------------- predict
    def predict(self, item: Mapping[str, Any]) -> Prediction:
        """The findings (and mask) of one item ``{"image": path, **fields}``."""
        if self.profile.record == "rois":
            return self._predict_rois(item)
        result = self._run(item)
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
    def _run(self, item: Mapping[str, Any]) -> dict[str, Any]:
        """preprocessing -> inferer -> postprocessing (+ writer) on one item, as ``SupervisedEvaluator``
        runs a batch of one (default ``prepare_batch``, eval mode, decollation, ``engine_apply_transform``)."""
        from monai.data import decollate_batch, list_data_collate
        from monai.engines.utils import default_prepare_batch, engine_apply_transform
        from monai.networks.utils import eval_mode

        data = self._preprocessing(dict(item))
        # what a DataLoader would collate; datalist fields (lists of boxes, None) would not
        data = {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}
        batch = list_data_collate([data])
        inputs, targets = default_prepare_batch(batch, self.device)[:2]
        with eval_mode(self._network):
            pred = self._inferer(inputs, self._network)
        output = {"image": inputs, "label": targets, "pred": pred}
        batch_item = decollate_batch(batch, detach=True)[0]
        output_item = decollate_batch(output, detach=True)[0]
        batch_item, output_item = engine_apply_transform(batch_item, output_item, self._postprocessing)
        return {**batch_item, **output_item}

    def _predict_rois(self, item: Mapping[str, Any]) -> Prediction:
        source = str(item["image"])
        boxes = []
        for roi_item in self._roi_items([dict(item)], **self._roi_args):  # type: ignore[misc]
            result = self._run(roi_item)
            probability = float(result[self.profile.result_key][self.profile.probability_key])
            box = roi_item.get("box")
            if roi_item.get("roi_box") is None:  # a ROI crop is its own box (edge coordinates)
                h, w = (int(v) for v in result["image"].meta["original_size"])  # [H, W] as read
                box = [0.0, 0.0, float(w), float(h)]
            boxes.append(
                {
                    "box": [float(v) for v in box],
                    "label": self.profile.finding_label,
                    "probability": probability,
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
