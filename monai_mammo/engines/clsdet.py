"""Glue between MONAI and the Cls-Det-RS bundle (Bakalo et al., Neurocomputing 2021), used by ``bundles/clsdet``.

Bakalo, Goldberger and Ben-Ari, "Weakly and semi supervised detection in medical imaging via deep
dual branch net", Neurocomputing 421, 2021. What the bundle's configs call that MONAI and the
library (:mod:`monai_mammo.tiling`, :mod:`monai_mammo.region_labels`,
:mod:`monai_mammo.networks.clsdet`, :mod:`monai_mammo.losses.dual_branch`,
:mod:`monai_mammo.metrics.localization_froc`) do not provide:

* transforms: :class:`TileRegionsd` (an image -> its breast regions as crops and boxes),
  :class:`RegionLabelsd` (Eq. 7 region labels of the annotated images), :class:`RandRegionDihedrald`
  (augmentation), :class:`ImageScoresd` (validation scores), :class:`RegionDetectionsd` and
  :class:`LabelImageToFindingsd` (inference and MONAI Label);
* batches of whole images with all their regions: :func:`collate_regions`, :class:`RegionPrepareBatch`;
* :func:`evaluate_bundle` (metrics.json with bootstrap CIs, both FROC curves), :func:`infer_images`.

Two-vectors are in the datalist's label order ``(y_M, y_B)``. Boxes are ``[x0, y0, x1, y1]`` pixel
edges (:mod:`monai_mammo.coordinates`).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor, list_data_collate
from monai.engines.utils import PrepareBatch
from monai.transforms import Compose, MapTransform, Randomizable

from monai_mammo.bundle_utils import SkippedInputs
from monai_mammo.atomic_io import atomic_write_json
from monai_mammo.region_labels import BENIGN, IGNORE, MALIGNANT, region_labels
from monai_mammo.tiling import iter_crops, tile_boxes

__all__ = [
    "breast_region_boxes",
    "BreastRegionInferer",
    "TileRegionsd",
    "RegionLabelsd",
    "RandRegionDihedrald",
    "collate_regions",
    "RegionPrepareBatch",
    "ImageScoresd",
    "RegionDetectionsd",
    "LabelImageToFindingsd",
    "annotated",
    "predict",
    "evaluate_bundle",
    "infer_images",
    "log_best_validation",
]

logger = logging.getLogger(__name__)

#: keys that hold one tensor per region and are padded to the batch's largest region count
REGION_KEYS = ("regions", "region_boxes", "region_labels")


def _meta(value: Any) -> dict[str, Any]:
    return dict(value.meta) if isinstance(value, MetaTensor) else {}


def breast_region_boxes(
    size: Sequence[int], mask: Any, window: int, stride: int, min_fraction: float, source: Any = "image"
) -> np.ndarray:
    """The region boxes ``(M, 4)`` of an image of ``size`` (H, W): windows of ``window`` pixels every
    ``stride`` pixels with at least ``min_fraction`` of the window in ``mask``
    (:func:`monai_mammo.tiling.tile_boxes`); every window, with a warning naming ``source``, when
    none lies in the mask. :class:`TileRegionsd` and :class:`BreastRegionInferer` tile with it.

    >>> mask = torch.zeros(1, 8, 12); mask[:, :, :6] = 1
    >>> breast_region_boxes((8, 12), mask, 4, 4, 0.5).tolist()
    [[0, 0, 4, 4], [4, 0, 8, 4], [0, 4, 4, 8], [4, 4, 8, 8]]
    """
    height, width = int(size[0]), int(size[1])
    boxes = tile_boxes((height, width), int(window), int(stride), mask, float(min_fraction))
    if len(boxes) == 0:
        logger.warning("%s: no %d-pixel window lies in the breast mask; using every window", source, window)
        boxes = tile_boxes((height, width), int(window), int(stride))
    return np.asarray(boxes, dtype=np.int64).reshape(-1, 4)


class BreastRegionInferer:
    """The bundle's inferer, ``inferer(images, network)``: each preprocessed image ``(C, H, W)`` of the
    batch ``(B, C, H, W)`` gets a breast mask (:class:`~monai_mammo.transforms.breast.BreastMaskd`,
    as in the preprocessing), is tiled into its breast regions (:func:`breast_region_boxes`, as
    :class:`TileRegionsd` tiles for training) and goes through
    :meth:`monai_mammo.networks.clsdet.ClsDetNet.predict_image`, ``chunk_size`` regions per encoder
    call, so the crops never exist all at once. ``inference.yaml``'s ``run``, its ``evaluator`` and
    ``monai-mammo predict`` all infer through it.

    Returns the network's dict for the batch, region counts padded to the largest: ``image_prob``
    ``(B, 2)``, ``region_scores`` ``(B, R, 2)``, ``region_valid`` ``(B, R)`` and ``region_boxes``
    ``(B, R, 4)`` (the boxes on the preprocessed grid; :class:`RegionDetectionsd` maps them back).

    Example::

        >>> from monai_mammo.networks.clsdet import ClsDetNet
        >>> net = ClsDetNet(window=8, channels=(4,), strides=(2,)).eval()
        >>> image = torch.zeros(1, 1, 32, 24); image[..., 4:28, :12] = 1.0
        >>> out = BreastRegionInferer(window=8, stride=8, chunk_size=2)(image, net)
        >>> tuple(out["image_prob"].shape), out["region_boxes"].shape[1] == out["region_scores"].shape[1] > 0
        ((1, 2), True)

    Args:
        window, stride, min_fraction: as :class:`TileRegionsd` (the training values).
        chunk_size: regions per encoder call. Default 64.
        breast_mask: compute the breast mask (True, default) or tile the whole image.
    """

    def __init__(self, window: int = 28, stride: int = 14, min_fraction: float = 0.5, chunk_size: int = 64, breast_mask: bool = True) -> None:
        from monai_mammo.transforms.breast import BreastMaskd

        self.window, self.stride, self.min_fraction, self.chunk_size = int(window), int(stride), float(min_fraction), int(chunk_size)
        self.masker = BreastMaskd(keys="image") if breast_mask else None

    @torch.no_grad()
    def __call__(self, inputs: torch.Tensor, network: torch.nn.Module, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        outputs, all_boxes = [], []
        for i in range(inputs.shape[0]):
            image = inputs[i]
            source = _meta(image).get("filename_or_obj", f"image {i}")
            mask = None
            if self.masker is not None:
                cpu = image.detach().cpu()
                cpu = cpu if isinstance(cpu, MetaTensor) else MetaTensor(cpu)
                mask = self.masker({"image": MetaTensor(cpu.as_tensor().float(), meta=dict(cpu.meta))})["breast_mask"]
            boxes = breast_region_boxes(image.shape[-2:], mask, self.window, self.stride, self.min_fraction, source)
            tensor = image.as_tensor() if isinstance(image, MetaTensor) else torch.as_tensor(image)
            outputs.append(network.predict_image(tensor.float(), boxes, chunk_size=self.chunk_size))
            all_boxes.append(torch.as_tensor(boxes, dtype=torch.int64, device=tensor.device))
        most = max((len(b) for b in all_boxes), default=0)
        device = inputs.device
        scores, valid, boxes = [], [], []
        for out, box in zip(outputs, all_boxes):
            r = len(box)
            score = out["region_scores"][0]
            scores.append(torch.cat([score, score.new_zeros(most - r, *score.shape[1:])]))
            valid.append(torch.arange(most, device=device) < r)
            boxes.append(torch.cat([box, box.new_zeros(most - r, 4)]))
        return {
            "image_prob": torch.cat([out["image_prob"] for out in outputs]),
            "region_scores": torch.stack(scores),
            "region_valid": torch.stack(valid),
            "region_boxes": torch.stack(boxes),
        }


class TileRegionsd(MapTransform):
    """An image's regions (Bakalo et al. 2021, Sec. 3 "Region extraction"): windows of ``window``
    pixels every ``stride`` pixels, kept where at least ``min_fraction`` of the window lies in the
    breast mask (:func:`monai_mammo.tiling.tile_boxes`).

    Writes ``regions_key``: ``(R, C, window, window)`` crops (a MetaTensor with the image's meta, so
    boxes map back to the stored image), and ``boxes_key``: ``(R, 4)`` boxes on the image's current
    pixel grid. An image with no window in its mask (an empty or missing mask) keeps every window,
    with a warning naming the file.

    Example::

        >>> image = MetaTensor(torch.rand(1, 8, 12)); mask = torch.zeros(1, 8, 12); mask[:, :, :6] = 1
        >>> d = TileRegionsd(keys="image", window=4, stride=4)({"image": image, "breast_mask": mask})
        >>> tuple(d["regions"].shape), d["region_boxes"].tolist()
        ((4, 1, 4, 4), [[0, 0, 4, 4], [4, 0, 8, 4], [0, 4, 4, 8], [4, 4, 8, 8]])

    Args:
        keys: the image key (one).
        window: window size in pixels (paper: 224 at 70 µm).
        stride: stride in pixels (paper: 112).
        min_fraction: share of the window in the breast (default 0.5).
        mask_key: the breast mask key (``BreastMaskd``); None or absent: every window.
        regions_key: output crops. Default ``"regions"``.
        boxes_key: output boxes. Default ``"region_boxes"``.
    """

    def __init__(
        self,
        keys: KeysCollection,
        window: int = 28,
        stride: int = 14,
        min_fraction: float = 0.5,
        mask_key: str | None = "breast_mask",
        regions_key: str = "regions",
        boxes_key: str = "region_boxes",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.window, self.stride, self.min_fraction = int(window), int(stride), float(min_fraction)
        self.mask_key, self.regions_key, self.boxes_key = mask_key, regions_key, boxes_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            height, width = image.shape[-2:]
            mask = d.get(self.mask_key) if self.mask_key else None
            boxes = breast_region_boxes((height, width), mask, self.window, self.stride, self.min_fraction, _meta(image).get("filename_or_obj", key))
            tensor = image.as_tensor() if isinstance(image, MetaTensor) else torch.as_tensor(image)
            crops = torch.cat([c for _, c in iter_crops(tensor.float(), boxes, chunk_size=len(boxes))], dim=0)
            d[self.regions_key] = MetaTensor(crops, meta=_meta(image)) if isinstance(image, MetaTensor) else crops
            d[self.boxes_key] = torch.as_tensor(boxes, dtype=torch.int64)
        return d


def annotated(item_id: str, share: float, seed: int = 0) -> bool:
    """Whether an image (by patient id or path) belongs to the annotated share of the fully
    labelled images: a hash, so the choice is the same in every epoch and process, and the 25 %
    images are among the 50 % ones (nested shares, as the paper's settings add annotations).

    >>> [annotated("P%05d" % i, 0.5) for i in range(6)]
    [False, True, True, False, False, True]
    >>> all(annotated("P%05d" % i, 1.0) for i in range(6)), any(annotated("P%05d" % i, 0.0) for i in range(6))
    (True, False)
    """
    digest = hashlib.sha256(f"{seed}/{item_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < float(share)


class RegionLabelsd(MapTransform):
    """Region labels (Bakalo et al. 2021, Eq. 7) for the annotated images, ``IGNORE`` elsewhere.

    An image is in the fully labelled set F when its ``fully_labelled`` flag is true, it is
    malignant (``label[0]``, when ``malignant_only``: the paper annotates M images only) and it is
    in the ``annotated_share`` (:func:`annotated`, by ``id_key``). Its regions get
    :func:`monai_mammo.region_labels.region_labels` from ``boxes`` / ``box_labels``; the others get
    :data:`~monai_mammo.region_labels.IGNORE`. Writes ``labels_key`` ``(R,)`` int64 and
    ``flag_key`` (bool: in F).

    Example::

        >>> t = RegionLabelsd(annotated_share=1.0)
        >>> d = t({"region_boxes": torch.tensor([[0., 0, 4, 4], [4, 0, 8, 4]]), "boxes": [[0, 0, 3, 3]], "box_labels": [2],
        ...        "label": [1, 0], "fully_labelled": True, "patient_id": "P1"})
        >>> d["region_labels"].tolist(), d["in_f"]
        ([2, 0], True)

    Args:
        annotated_share: share of the eligible images annotated (paper: 0.25 to 1.0).
        alpha: IoM threshold (paper: 0.5).
        classes: ``"m_vs_bn"`` (paper) or ``"nbm"`` (every finding: the fully supervised reference).
        malignant_only: F holds malignant images only (paper). False: every image with the flag.
        seed: seed of the annotated-share hash.
    """

    def __init__(
        self,
        annotated_share: float = 0.5,
        alpha: float = 0.5,
        classes: str = "m_vs_bn",
        malignant_only: bool = True,
        seed: int = 0,
        boxes_key: str = "region_boxes",
        lesion_boxes_key: str = "boxes",
        lesion_labels_key: str = "box_labels",
        labels_key: str = "region_labels",
        flag_key: str = "in_f",
        id_key: str = "patient_id",
    ) -> None:
        super().__init__(keys=[boxes_key])
        self.annotated_share, self.alpha, self.classes = float(annotated_share), float(alpha), classes
        self.malignant_only, self.seed = bool(malignant_only), int(seed)
        self.boxes_key, self.lesion_boxes_key, self.lesion_labels_key = boxes_key, lesion_boxes_key, lesion_labels_key
        self.labels_key, self.flag_key, self.id_key = labels_key, flag_key, id_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        boxes = np.asarray(torch.as_tensor(d[self.boxes_key]).cpu(), dtype=np.float64).reshape(-1, 4)
        label = np.asarray(torch.as_tensor(d.get("label", [0, 0])).cpu()).reshape(-1)
        item_id = str(d.get(self.id_key) or _meta(d.get("image")).get("filename_or_obj", ""))
        eligible = bool(d.get("fully_labelled", False)) and (not self.malignant_only or bool(label[0]))
        in_f = eligible and annotated(item_id, self.annotated_share, self.seed)
        labels = np.full(len(boxes), IGNORE, dtype=np.int64)
        if in_f:
            lesion_boxes = d.get(self.lesion_boxes_key)
            lesion_boxes = np.zeros((0, 4)) if lesion_boxes is None else np.asarray(lesion_boxes, dtype=np.float64).reshape(-1, 4)
            lesion_labels = d.get(self.lesion_labels_key)
            lesion_labels = np.zeros(0, np.int64) if lesion_labels is None else np.asarray(lesion_labels, dtype=np.int64).reshape(-1)
            labels = region_labels(boxes, lesion_boxes, lesion_labels, self.alpha, self.classes)
        d[self.labels_key] = torch.as_tensor(labels)
        d[self.flag_key] = bool(in_f)
        return d


class RandRegionDihedrald(Randomizable, MapTransform):
    """Each region crop in one of its 8 flips / 90° turns, at random (the paper's rotations and flips).

    The network sees an image as a bag of regions with no positions, so flipping or turning every
    crop is the whole-image flip / k·90° rotation of Bakalo et al. (Sec. 5.1; their 45° turns are not
    reproduced), up to the order of the bag, and the region labels stay valid.

    Example::

        >>> t = RandRegionDihedrald(keys="regions", prob=1.0).set_random_state(0)
        >>> tuple(t({"regions": torch.rand(5, 1, 4, 4)})["regions"].shape)
        (5, 1, 4, 4)
    """

    def __init__(self, keys: KeysCollection, prob: float = 1.0, allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.prob = float(prob)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        from monai_mammo.transforms.dihedral import dihedral_view

        d = dict(data)
        for key in self.key_iterator(d):
            crops = d[key]
            tensor = crops.as_tensor() if isinstance(crops, MetaTensor) else torch.as_tensor(crops)
            views = self.R.randint(0, 8, size=len(tensor))
            views[self.R.random_sample(len(tensor)) >= self.prob] = 0
            out = tensor.clone()
            for index in range(1, 8):
                chosen = np.flatnonzero(views == index)
                if chosen.size:
                    out[chosen] = dihedral_view(tensor[chosen], index)
            d[key] = out
        return d


def collate_regions(batch: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Collate whole images with different region counts: the :data:`REGION_KEYS` are padded to the
    batch's largest count (regions with zeros, boxes with zeros, labels with ``IGNORE``) and
    ``region_valid`` ``(B, R)`` marks the real regions; keys of varying length (``boxes``,
    ``box_labels``) stay lists; the rest goes through MONAI's ``list_data_collate``.

    >>> batch = collate_regions([{"regions": torch.ones(2, 1, 2, 2), "label": torch.tensor([1., 0.])},
    ...                          {"regions": torch.ones(3, 1, 2, 2), "label": torch.tensor([0., 1.])}])
    >>> tuple(batch["regions"].shape), batch["region_valid"].tolist(), tuple(batch["label"].shape)
    ((2, 3, 1, 2, 2), [[True, True, False], [True, True, True]], (2, 2))
    """
    batch = [dict(item) for item in batch]
    counts = [len(item["regions"]) for item in batch]
    most = max(counts) if counts else 0
    out: dict[str, Any] = {}
    for key in REGION_KEYS:
        if key not in batch[0]:
            continue
        fill = IGNORE if key == "region_labels" else 0
        padded = []
        for item in batch:
            value = item.pop(key)
            tensor = value.as_tensor() if isinstance(value, MetaTensor) else torch.as_tensor(value)
            pad = tensor.new_full((most - len(tensor), *tensor.shape[1:]), fill)
            padded.append(torch.cat([tensor, pad], dim=0))
        out[key] = torch.stack(padded)
    out["region_valid"] = torch.arange(most)[None, :] < torch.as_tensor(counts)[:, None]
    ragged = {key: [item.pop(key, None) for item in batch] for key in ("boxes", "box_labels", "image", "breast_mask") if key in batch[0]}
    rest = list_data_collate(batch) if batch and batch[0] else {}
    out.update(rest)
    out.update(ragged)
    return out


class RegionPrepareBatch(PrepareBatch):
    """``(regions, targets, (), {"region_valid": ...})`` for MONAI's engines (a batch from
    :func:`collate_regions`); targets are the batch keys named in ``target_keys`` that are present.

    >>> prepare = RegionPrepareBatch()
    >>> x, y, args, kwargs = prepare({"regions": torch.zeros(1, 2, 1, 4, 4), "region_valid": torch.ones(1, 2).bool(), "label": torch.ones(1, 2)})
    >>> tuple(x.shape), sorted(y), sorted(kwargs)
    ((1, 2, 1, 4, 4), ['label'], ['region_valid'])
    """

    def __init__(self, target_keys: Mapping[str, str] | None = None, regions_key: str = "regions") -> None:
        self.target_keys = dict(target_keys or {"label": "label", "region_labels": "region_labels", "fully_labelled": "in_f"})
        self.regions_key = regions_key

    def __call__(
        self, batchdata: Mapping[str, Any], device: str | torch.device | None = None, non_blocking: bool = False, **kwargs: Any
    ) -> tuple[torch.Tensor, dict[str, Any], tuple, dict[str, Any]]:
        def move(value: Any) -> Any:
            value = value.as_tensor() if isinstance(value, MetaTensor) else value
            return torch.as_tensor(value).to(device=device, non_blocking=non_blocking) if value is not None else None

        if self.regions_key not in batchdata:
            raise KeyError(f"RegionPrepareBatch: batch has no {self.regions_key!r}; keys: {sorted(batchdata)}")
        targets = {name: move(batchdata[key]) for name, key in self.target_keys.items() if batchdata.get(key) is not None}
        valid = batchdata.get("region_valid")
        regions = move(batchdata[self.regions_key])
        if valid is None:
            valid = torch.ones(regions.shape[:2], dtype=torch.bool)
        return regions, targets, (), {"region_valid": move(valid)}


class ImageScoresd(MapTransform):
    """Validation scores: ``score_m`` = p(y_M = 1 | x) and ``y_m`` from the decollated ``pred`` dict
    and ``label`` target (M vs BN, the bundle's key metric), plus ``score_mb`` = max(p(y_M), p(y_B))
    and ``y_mb`` (MB vs N).

    >>> d = ImageScoresd()({"pred": {"image_prob": torch.tensor([0.2, 0.7])}, "label": {"label": torch.tensor([0., 1.])}})
    >>> [round(float(d[k]), 2) for k in ("score_m", "y_m", "score_mb", "y_mb")]
    [0.2, 0.0, 0.7, 1.0]
    """

    def __init__(self, pred_key: str = "pred", label_key: str = "label") -> None:
        super().__init__(keys=[pred_key])
        self.pred_key, self.label_key = pred_key, label_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        prob = torch.as_tensor(d[self.pred_key]["image_prob"]).reshape(-1)
        label = d.get(self.label_key)
        label = label.get("label") if isinstance(label, Mapping) else label
        d["score_m"], d["score_mb"] = prob[:1], prob.max().reshape(1)
        if label is not None:
            label = torch.as_tensor(label).reshape(-1).float()
            d["y_m"], d["y_mb"] = label[:1], label.max().reshape(1)
        return d


def _detections(scores: np.ndarray, boxes: np.ndarray, meta: Mapping[str, Any], max_per_class: int, min_score: float, iou: float) -> list[dict[str, Any]]:
    """The best regions of each class by d_c (Eq. 13; ``scores`` ``(R, 2)`` = d_M, d_B), NMS per
    class (:func:`monai_mammo.regions.nms_regions`), boxes mapped to the stored image's pixels."""
    from monai_mammo.regions import Regions, nms_regions

    records: list[dict[str, Any]] = []
    if len(boxes) == 0:
        return records
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    for column, name, value in ((0, "malignant", MALIGNANT), (1, "benign", BENIGN)):
        regions = Regions(points=centres, scores={"d": scores[:, column]}, boxes=boxes)
        regions = regions.select(regions.score > min_score)  # d_c = 0 outside the selected regions: not a finding
        for record in nms_regions(regions, iou_threshold=iou, max_regions=max_per_class).to_original(meta).to_records([]):
            record["class"], record["label"], record["label_value"] = name, name, value
            records.append(record)
    return sorted(records, key=lambda r: -r["score"])


class RegionDetectionsd(MapTransform):
    """Inference output of one image: the two image probabilities and the region detections.

    ``pred_key`` holds the network's dict for this image (decollated: no batch dimension;
    ``image_prob`` ``(2,)``, ``region_scores`` ``(R, 2)``, ``region_valid`` ``(R,)``; ``region_boxes`` ``(R, 4)`` when
    :class:`BreastRegionInferer` tiled the image), else ``boxes_key`` holds its region boxes. Writes
    ``spacing_key`` (the stored image's spacing, for :class:`~monai_mammo.writers.SaveRegionsd`), ``result_key`` = ``{"malignant_probability": p(y_M), "benign_probability":
    p(y_B)}`` and ``findings_key``: ``{"x", "y", "box", "score" (d_c, Eq. 13), "class" and "label"
    ("malignant" / "benign"), "label_value" (1 benign, 2 malignant)}`` in the stored image's pixels (the meta's
    ``pixel_to_original``), the ``max_per_class`` best of each class with d_c > ``min_score`` after NMS (IoU ``nms_iou``).

    Example::

        >>> pred = {"image_prob": torch.tensor([0.9, 0.1]), "region_scores": torch.tensor([[0.8, 0.0], [0.1, 0.2]]),
        ...         "region_valid": torch.tensor([True, True])}
        >>> d = RegionDetectionsd(max_per_class=1)({"pred": pred, "region_boxes": torch.tensor([[0., 0, 4, 4], [4, 0, 8, 4]])})
        >>> [(f["class"], f["box"], round(f["score"], 2)) for f in d["pred_regions"]], d["probabilities"]["malignant_probability"]
        ([('malignant', [0.0, 0.0, 4.0, 4.0], 0.8), ('benign', [4.0, 0.0, 8.0, 4.0], 0.2)], 0.8999999761581421)
    """

    def __init__(
        self,
        pred_key: str = "pred",
        boxes_key: str = "region_boxes",
        ref_key: str = "image",
        findings_key: str = "pred_regions",
        result_key: str = "probabilities",
        max_per_class: int = 3,
        min_score: float = 0.0,
        nms_iou: float = 0.3,
        spacing_key: str = "pred_spacing",
    ) -> None:
        super().__init__(keys=[pred_key])
        self.pred_key, self.boxes_key, self.ref_key, self.spacing_key = pred_key, boxes_key, ref_key, spacing_key
        self.findings_key, self.result_key = findings_key, result_key
        self.max_per_class, self.min_score, self.nms_iou = int(max_per_class), float(min_score), float(nms_iou)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        pred = d[self.pred_key]
        source = pred["region_boxes"] if "region_boxes" in pred else d[self.boxes_key]  # BreastRegionInferer's
        boxes = np.asarray(torch.as_tensor(source).cpu(), dtype=np.float64).reshape(-1, 4)
        scores = torch.as_tensor(pred["region_scores"]).detach().cpu().double().numpy().reshape(-1, 2)[: len(boxes)]
        valid = torch.as_tensor(pred.get("region_valid", torch.ones(len(scores), dtype=torch.bool))).cpu().numpy().astype(bool)[: len(boxes)]
        prob = torch.as_tensor(pred["image_prob"]).reshape(-1).tolist()
        from monai_mammo.regions import original_spacing

        meta = _meta(d.get(self.ref_key))
        d[self.findings_key] = _detections(scores[valid], boxes[valid], meta, self.max_per_class, self.min_score, self.nms_iou)
        d[self.result_key] = {"malignant_probability": float(prob[0]), "benign_probability": float(prob[1])}
        d[self.spacing_key] = original_spacing(meta) if meta else None
        return d


class LabelImageToFindingsd(MapTransform):
    """MONAI Label trains through run id ``run`` with ``{"image": path, "label": label-image path}``:
    a label image painted 1 (benign) / 2 (malignant) on the findings, as this bundle's inference
    writes it. This reads it and sets ``label`` = (y_M, y_B), ``boxes`` / ``box_labels`` (the
    bounding box of each connected component of each value) and ``fully_labelled`` True. A label
    that is already a pair passes unchanged.

    >>> import tempfile
    >>> from PIL import Image
    >>> path = tempfile.mkdtemp() + "/label.png"
    >>> a = np.zeros((10, 12), np.uint8); a[1:3, 2:5] = 2; Image.fromarray(a).save(path)
    >>> d = LabelImageToFindingsd()({"label": path})
    >>> d["label"], d["boxes"], d["box_labels"]
    ([1, 0], [[2, 1, 5, 3]], [2])
    """

    def __init__(self, keys: KeysCollection = "label", allow_missing_keys: bool = True) -> None:
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        from scipy import ndimage

        from monai_mammo.transforms.io import RadiographReader

        d = dict(data)
        for key in self.key_iterator(d):
            value = d[key]
            if not isinstance(value, (str, os.PathLike)):
                continue
            array = np.asarray(RadiographReader().read(value).array)
            boxes, labels = [], []
            for code in (BENIGN, MALIGNANT):
                components, _ = ndimage.label(array == code)
                for rows, cols in ndimage.find_objects(components):
                    boxes.append([cols.start, rows.start, cols.stop, rows.stop])
                    labels.append(code)
            unknown = sorted(set(np.unique(array).tolist()) - {0, BENIGN, MALIGNANT})
            if unknown:
                raise ValueError(f"{value}: a Cls-Det label image holds 0, 1 (benign) and 2 (malignant), found {unknown[:8]}")
            d[key] = [int(MALIGNANT in labels), int(BENIGN in labels)]
            d["boxes"], d["box_labels"], d["fully_labelled"] = boxes, labels, True
        return d


# --- evaluation ------------------------------------------------------------------------------------
@torch.no_grad()
def predict(network: torch.nn.Module, dataloader: Iterable[Mapping[str, Any]], device: torch.device | str) -> list[dict[str, Any]]:
    """Per image: ``prob`` (p(y_M), p(y_B)), ``label``, region ``boxes`` (original pixels),
    ``scores`` ``(R, 2)`` (d_M, d_B) and the lesion ``lesions`` / ``lesion_labels`` (original pixels)."""
    from monai_mammo.transforms.geometry import boxes_to_original

    network.eval()
    prepare = RegionPrepareBatch()
    records = []
    for batch in dataloader:
        regions, targets, _, kwargs = prepare(batch, device)
        out = network(regions, **kwargs)
        valid = kwargs["region_valid"].cpu().numpy()
        for i in range(regions.shape[0]):
            meta = _meta(batch["image"][i]) if "image" in batch else {}
            boxes = batch["region_boxes"][i].cpu().numpy()[valid[i]]
            lesions = np.asarray(batch["boxes"][i] if "boxes" in batch else [], dtype=np.float64).reshape(-1, 4)
            records.append(
                {
                    "prob": out["image_prob"][i].cpu().numpy().astype(np.float64),
                    "label": np.asarray(torch.as_tensor(targets["label"][i]).cpu()).astype(int).reshape(-1),
                    "boxes": np.asarray(boxes_to_original(boxes, meta), dtype=np.float64).reshape(-1, 4),
                    "scores": out["region_scores"][i].cpu().numpy()[valid[i]].astype(np.float64),
                    "lesions": np.asarray(boxes_to_original(lesions, meta), dtype=np.float64).reshape(-1, 4),
                    "lesion_labels": np.asarray(batch["box_labels"][i] if "box_labels" in batch else [], dtype=int).reshape(-1),
                    "source": str(meta.get("filename_or_obj", "")),
                }
            )
    return records


def _image_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    from monai_mammo.metrics.classification import partial_auc_ratio, roc_auc, specificity_at_sensitivity

    if labels.min() == labels.max():
        return {"auroc": float("nan"), "pauc_ratio": float("nan"), "spec_at_sens_085": float("nan"), "spec_at_sens_090": float("nan")}
    return {
        "auroc": roc_auc(scores, labels),
        "pauc_ratio": partial_auc_ratio(scores, labels, 0.8),
        "spec_at_sens_085": specificity_at_sensitivity(scores, labels, 0.85),
        "spec_at_sens_090": specificity_at_sensitivity(scores, labels, 0.90),
    }


def task_inputs(records: Sequence[Mapping[str, Any]], task: str) -> dict[str, Any]:
    """Image scores, labels, region scores and lesions of a task: ``"m_vs_bn"`` (p(y_M), d_M,
    malignant lesions) or ``"mb_vs_n"`` (max of the two, max(d_M, d_B), every lesion)."""
    if task == "m_vs_bn":
        scores = np.array([r["prob"][0] for r in records])
        labels = np.array([r["label"][0] for r in records])
        region_scores = [r["scores"][:, 0] for r in records]
        lesions = [r["lesions"][r["lesion_labels"] == MALIGNANT] for r in records]
    elif task == "mb_vs_n":
        scores = np.array([max(r["prob"]) for r in records])
        labels = np.array([max(r["label"]) for r in records])
        region_scores = [r["scores"].max(axis=1) if len(r["scores"]) else np.zeros(0) for r in records]
        lesions = [r["lesions"] for r in records]
    else:
        raise ValueError(f"task must be 'm_vs_bn' or 'mb_vs_n', got {task!r}")
    return {"scores": scores, "labels": labels, "region_scores": region_scores, "lesions": lesions, "boxes": [r["boxes"] for r in records]}


def compute_metrics(records: Sequence[Mapping[str, Any]], n_bootstrap: int = 1000, seed: int = 0, operating_sensitivity: float = 0.85) -> dict[str, Any]:
    """The bundle's figures (keys as issue 14 names them) with percentile bootstrap 95 % CIs over
    images, and both localization FROC curves (:func:`monai_mammo.metrics.localization_froc.localization_froc`)."""
    from monai_mammo.metrics.localization_froc import froc_from_parts, image_localization_parts

    metrics: dict[str, Any] = {"n_images": len(records)}
    curves: dict[str, Any] = {}
    rng = np.random.default_rng(seed)
    resamples = [rng.integers(0, len(records), len(records)) for _ in range(int(n_bootstrap))]
    for task in ("m_vs_bn", "mb_vs_n"):
        inputs = task_inputs(records, task)
        labels = inputs["labels"]
        parts = [
            image_localization_parts(inputs["boxes"][t], inputs["region_scores"][t], inputs["lesions"][t] if labels[t] else [], 0.5)
            for t in range(len(records))
        ]

        def figures(index: np.ndarray) -> dict[str, float]:
            values = _image_metrics(inputs["scores"][index], labels[index])
            if labels[index].max() == 0:
                return {**values, "froc_sensitivity_at_1fp": float("nan")}
            froc = froc_from_parts(inputs["scores"][index], labels[index], [parts[i] for i in index], operating_sensitivity)
            values["froc_sensitivity_at_1fp"] = froc["sensitivity_at"]["1"]
            if len(index) == len(records) and np.array_equal(index, np.arange(len(records))):
                curves[task] = froc
            return values

        point = figures(np.arange(len(records)))
        boot = [figures(index) for index in resamples]
        metrics[f"n_positive_{task}"] = int(labels.sum())
        for name, value in point.items():
            key = f"{name}_{task}" if name != "froc_sensitivity_at_1fp" else f"froc_{task}_sensitivity_at_1fp"
            samples = np.array([b[name] for b in boot], dtype=np.float64)
            samples = samples[np.isfinite(samples)]
            metrics[key] = value
            metrics[f"{key}_ci"] = [float(np.percentile(samples, 2.5)), float(np.percentile(samples, 97.5))] if samples.size else [None, None]
    metrics["froc_curves"] = {task: {k: v for k, v in c.items() if k != "curve"} for task, c in curves.items()}
    return {"metrics": metrics, "curves": curves}


def write_report(output_dir: str | os.PathLike, result: Mapping[str, Any], description: str = "") -> dict[str, Path]:
    """``metrics.json``, ``froc_<task>.csv`` per task and ``froc.png`` (both curves)."""
    from monai_mammo.metrics.froc import plot_froc, write_froc_csv, write_metrics_json

    out = Path(output_dir)
    written = {"metrics": write_metrics_json(out / "metrics.json", {"description": description, **result["metrics"]})}
    for task, froc in result["curves"].items():
        written[f"csv_{task}"] = write_froc_csv(out / f"froc_{task}.csv", froc["curve"])
    names = {"m_vs_bn": "M vs BN (malignant lesions)", "mb_vs_n": "MB vs N (all lesions)"}
    png = plot_froc(out / "froc.png", {names[t]: c["curve"] for t, c in result["curves"].items()}, title="Localization FROC at sensitivity 0.85")
    if png is not None:
        written["plot"] = png
    return written


def gather_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every rank's per-image records in dataset order (``DistributedSampler(shuffle=False,
    even_divisible=False)`` gives rank r the images r, r + W, ...); unchanged outside a process group.

    >>> len(gather_records([{"prob": 1}, {"prob": 2}]))
    2
    """
    from monai_mammo.distributed import is_distributed

    if not is_distributed():
        return records
    world = torch.distributed.get_world_size()
    shards: list[Any] = [None] * world
    torch.distributed.all_gather_object(shards, records)
    longest = max(len(shard) for shard in shards)
    return [shard[i] for i in range(longest) for shard in shards if i < len(shard)]


def evaluate_bundle(
    network: torch.nn.Module,
    dataloader: Iterable[Mapping[str, Any]],
    device: torch.device | str,
    checkpoint: str | os.PathLike,
    output_dir: str | os.PathLike,
    n_bootstrap: int = 1000,
    seed: int = 0,
    eval_description: str = "",
) -> dict[str, Any]:
    """Load ``checkpoint`` strictly, predict the evaluation set and write the report (:func:`write_report`)."""
    from monai_mammo.checkpoints import load_network_weights
    from monai_mammo.distributed import is_distributed

    load_network_weights(network, checkpoint, device)
    records = gather_records(predict(network, dataloader, device))
    if is_distributed() and torch.distributed.get_rank() > 0:
        return {}  # rank 0 computes and writes
    result = compute_metrics(records, n_bootstrap, seed)
    write_report(output_dir, result, eval_description)
    m = result["metrics"]

    def f(value: Any) -> float:  # an undefined metric (one class in the test set: None) logs as nan
        return float("nan") if value is None else float(value)

    def ci(key: str) -> list[float]:
        return [f(v) for v in (m.get(key) or [None, None])]

    logger.info(
        "Cls-Det test (%d images): AUROC M vs BN %.3f [%.3f, %.3f], MB vs N %.3f [%.3f, %.3f]; pAUCR %.3f; "
        "spec@.85 %.3f, spec@.90 %.3f; FROC sens @1 FP/image M vs BN %.3f, MB vs N %.3f -> %s",
        m["n_images"], f(m["auroc_m_vs_bn"]), *ci("auroc_m_vs_bn_ci"), f(m["auroc_mb_vs_n"]), *ci("auroc_mb_vs_n_ci"),
        f(m["pauc_ratio_m_vs_bn"]), f(m["spec_at_sens_085_m_vs_bn"]), f(m["spec_at_sens_090_m_vs_bn"]),
        f(m["froc_m_vs_bn_sensitivity_at_1fp"]), f(m["froc_mb_vs_n_sensitivity_at_1fp"]), output_dir,
    )  # fmt: skip
    return m


def log_best_validation(evaluator: Any, checkpoint: str | os.PathLike) -> float:
    """Log (and return) the best validation M vs BN AUROC of a finished training."""
    state = evaluator.state
    logger.info("Cls-Det best validation AUROC M vs BN: %.4f (epoch %d); model: %s", state.best_metric, state.best_metric_epoch, checkpoint)
    return float(state.best_metric)


# --- inference -------------------------------------------------------------------------------------
@torch.no_grad()
def infer_images(
    network: torch.nn.Module,
    inputs: Sequence[str | os.PathLike | Mapping[str, Any]],
    preprocessing: Sequence[Callable] | Callable,
    output_dir: str | os.PathLike,
    inferer: Callable[[torch.Tensor, torch.nn.Module], Mapping[str, torch.Tensor]],
    device: torch.device | str = "cpu",
    max_per_class: int = 3,
    min_score: float = 0.0,
    save_png: bool = False,
    writer: Callable | None = None,
) -> list[dict[str, Any]]:
    """Full mammograms in; per image ``<output_dir>/<name>.json`` with the two image probabilities
    and the detections (boxes in original pixels, class, d_c score), an overlay PNG with
    ``save_png``; ``predictions.json`` lists them all and ``skipped.json`` the unreadable inputs
    with the reason. Each image goes through ``inferer(image, network)`` (the bundle's
    :class:`BreastRegionInferer`: tiling and chunked regions), then :class:`RegionDetectionsd` and
    ``writer`` (default: a :class:`~monai_mammo.writers.SaveRegionsd` as the bundle's ``writer``).
    """
    from monai_mammo.bundle_utils import strip_image_suffix
    from monai_mammo.writers import SaveRegionsd

    transform = preprocessing if callable(preprocessing) else Compose(list(preprocessing))
    network.eval()
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if writer is None:
        writer = SaveRegionsd(out_dir, regions_key="pred_regions", field="boxes", extra_key="probabilities", write_overlay=save_png, overlay_top_k=2 * max_per_class)
    detector = RegionDetectionsd(max_per_class=max_per_class, min_score=min_score)
    results, skipped = [], SkippedInputs()
    for entry in inputs:
        item = {"image": str(entry)} if isinstance(entry, (str, os.PathLike)) else dict(entry)
        try:
            d = transform(item)
        except Exception as exc:  # noqa: BLE001 - one bad file must not end the batch
            skipped.add(item.get("image"), exc)
            continue
        image = d["image"]
        out = inferer(image[None].to(device), network)
        d["pred"] = {k: v[0] for k, v in out.items()}
        d = detector(d)
        d = writer(d)
        meta = _meta(image)
        num_regions = int(torch.as_tensor(d["pred"]["region_valid"]).sum())
        record = {"source": str(meta.get("filename_or_obj", item.get("image"))), **d["probabilities"], "num_regions": num_regions, "findings": d["pred_regions"], "json": d["detections_file"]}
        if save_png:
            record["png"] = str(out_dir / f"{strip_image_suffix(Path(record['source']).name)}_overlay.png")
        results.append(record)
    atomic_write_json(out_dir / "predictions.json", results, default=float)
    skipped.write(out_dir)
    logger.info("Cls-Det inference: %d image(s) -> %s; %d skipped", len(results), out_dir / "predictions.json", len(skipped))
    return results
