"""ASN glue for ``bundles/asn`` (Zhang et al., CVPR 2019): what the config needs that is particular to µCs.

Zhang et al., "Cascaded Generative and Discriminative Learning for Microcalcification Detection in
Breast Mammograms", CVPR 2019. Everything a second bundle could use lives in the library: the
networks (:mod:`monai_mammo.networks.asn`), the losses (:mod:`monai_mammo.losses.ttest`,
:mod:`monai_mammo.losses.reconstruction`), regions and FPR re-scoring (:mod:`monai_mammo.regions`),
label images and JSON (:mod:`monai_mammo.writers`), dict-target batches
(:mod:`monai_mammo.multitask`), the cascade (:mod:`monai_mammo.handlers.stage`), checkpoints
(:mod:`monai_mammo.checkpoints`) and the FROC (:mod:`monai_mammo.metrics.froc`). What is left:

* targets: :class:`LabelMaskToPointsd` (a MONAI Label label image -> µC points),
  :class:`MicrocalcificationMaskd` (points -> the positive pixels of the t-test loss, discs of each
  µC's diameter), :class:`PointsToTensord`;
* the loss contract: :func:`candidate_map_kind` (which map the trained network gives candidates
  from, as the loss declares it) and :func:`pixel_masks_loss` (a MONAI-contract "tensor" loss
  trains the U-Net as a µC segmenter on the positive mask);
* :class:`ASNDetectd`: network output -> candidate map -> candidates (ASN score) -> FPR score ->
  final = ASN × FPR (Sec. 3.2) -> optionally the stored image's pixels;
* the FPR stage's data: :func:`mine_fpr_samples` (ASN candidates on the training images = hard
  negatives, ground-truth µCs = positives, Sec. 3.2) and :func:`prepare_fpr_batch` (each crop in a
  random flip / 90° view).

Coordinates follow :mod:`monai_mammo.coordinates`.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.engines.utils import default_prepare_batch
from monai.transforms import MapTransform
from scipy import ndimage
from torch.nn.modules.loss import _Loss

from monai_mammo.checkpoints import NetworkFile, load_network_weights, unwrap_network
from monai_mammo.coordinates import DEFAULT_SPACING_MM, meta_of, spacing_xy
from monai_mammo.regions import (
    CANDIDATE_MAP_KINDS,
    Regions,
    candidate_map,
    extract_crops,
    original_spacing,
    regions_from_map,
    rescore_regions,
)
from monai_mammo.transforms.dihedral import rand_dihedral_views
from monai_mammo.transforms.geometry import as_points
from monai_mammo.writers import draw_discs

__all__ = [
    "DEFAULT_THRESHOLD",
    "LabelMaskToPointsd",
    "MicrocalcificationMaskd",
    "PointsToTensord",
    "candidate_map_kind",
    "PositiveMaskLoss",
    "pixel_masks_loss",
    "ASNDetectd",
    "mine_fpr_samples",
    "prepare_fpr_batch",
]

logger = logging.getLogger(__name__)

#: Absolute threshold on an ASN residual map: half the t-test margin β = 0.8 (METHODS.md section 1,
#: Zhang et al. Eq. 6). The t-test loss pushes mean µC residuals above β and normal residuals
#: towards 0, so β / 2 separates the two; the paper does not state its threshold.
DEFAULT_THRESHOLD: float = 0.4

#: names of the per-stage scores in the candidates and in the JSON (``asn_score``, ``fpr_score``)
SCORE_NAMES = ("asn", "fpr")


def _plain(x: Any) -> torch.Tensor:
    return x.as_tensor() if isinstance(x, MetaTensor) else torch.as_tensor(x)


# ------------------------------------------------------------------------------------------ targets


class LabelMaskToPointsd(MapTransform):
    """Turn a label *image* path in ``label_key`` (MONAI Label's datalists) into µC ``points``.

    MONAI Label trains bundles on items ``{"image": path, "label": path}`` whose label image marks
    µCs with ``label_value`` (the inference label has discs of value 1). When ``points_key`` is
    absent and ``label_key`` holds a file path, the label is read with
    :class:`~monai_mammo.transforms.io.RadiographReader`, each 8-connected component becomes a
    point (its centroid) and its equivalent-circle diameter in mm goes to ``diameters_key``. Items
    that already have points (our datalists, where ``label`` is the image-level label vector) pass
    through unchanged. Run it after loading the image (its spacing converts areas to mm; without
    one, :data:`~monai_mammo.coordinates.DEFAULT_SPACING_MM`).

    Example::

        >>> t = LabelMaskToPointsd(ref_key="image")
        >>> t({"image": None, "points": [[1.0, 2.0]], "label": [0, 1]})["points"]
        [[1.0, 2.0]]

    Args:
        ref_key: loaded image key (spacing source). Default "image".
        label_key: key that may hold a label image path. Default "label".
        points_key: output points key. Default "points".
        diameters_key: output diameters key (mm). Default "point_diameters_mm".
        label_value: label value of µC pixels; None: any value > 0. Default None.
    """

    def __init__(
        self,
        ref_key: str = "image",
        label_key: str = "label",
        points_key: str = "points",
        diameters_key: str = "point_diameters_mm",
        label_value: int | None = None,
    ) -> None:
        super().__init__(keys=[ref_key], allow_missing_keys=True)
        self.ref_key, self.label_key = ref_key, label_key
        self.points_key, self.diameters_key = points_key, diameters_key
        self.label_value = label_value

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        label = d.get(self.label_key)
        if d.get(self.points_key) is not None or not isinstance(label, (str, os.PathLike)):
            return d
        from monai_mammo.transforms.io import RadiographReader

        reader = RadiographReader(intensity="raw", allow_any_modality=True)
        arr, _ = reader.get_data(reader.read(str(label)))
        m = arr[0] > 0 if self.label_value is None else np.rint(arr[0]) == self.label_value
        labels, n = ndimage.label(m, structure=np.ones((3, 3), dtype=bool))
        sx, sy = spacing_xy(meta_of(d.get(self.ref_key)), DEFAULT_SPACING_MM)  # type: ignore[misc]
        points, diameters = [], []
        if n:
            idx = np.arange(1, n + 1)
            centres = ndimage.center_of_mass(m, labels, idx)
            areas = ndimage.sum(m, labels, idx)
            for (cy, cx), area in zip(centres, areas):
                points.append([float(cx), float(cy)])
                diameters.append(float(2.0 * np.sqrt(area / np.pi) * np.sqrt(sx * sy)))
        d[self.points_key] = points
        d[self.diameters_key] = diameters
        d.pop(self.label_key)  # a path would break collation; the points replace it
        return d


class MicrocalcificationMaskd(MapTransform):
    """Positive-pixel mask of the t-test loss: a disc of each µC's diameter around its point.

    Zhang et al. CVPR 2019 Sec. 3.1.2 (Eq. 6) needs the set of positive (µC) pixels P+ of a patch;
    datalists give µC centres (``points``) and, where known, diameters in mm. The disc radius is
    ``max(diameter / 2 / spacing, min_radius_px)`` along each axis; points without a diameter use
    ``default_diameter_mm``. Points must be in the current pixels of ``ref_key`` (run after
    resampling with the points as ``point_keys``). The mask is a ``(1, H, W)`` float32 {0, 1}
    (a MetaTensor sharing the image's meta when the image is one), drawn by
    :func:`monai_mammo.writers.draw_discs`.

    Example::

        >>> img = MetaTensor(torch.zeros(1, 20, 20), meta={"spacing": [0.1, 0.1]})
        >>> d = MicrocalcificationMaskd()({"image": img, "points": [[5.0, 5.0]], "point_diameters_mm": [0.5]})
        >>> int(d["pos_mask"].sum())   # radius 2.5 px
        21

    Args:
        ref_key: image key giving the shape and spacing. Default "image".
        points_key: µC points ``[[x, y], ...]``. Default "points".
        diameters_key: per-point diameters in mm (optional in the data). Default "point_diameters_mm".
        mask_key: output key. Default "pos_mask".
        default_diameter_mm: diameter of points without one. Default 0.3 mm.
        min_radius_px: smallest disc radius in pixels. Default 1.0 (a 3x3 cross at least).
        fallback_spacing_mm: spacing when the image meta has none. Default
            :data:`~monai_mammo.coordinates.DEFAULT_SPACING_MM`.
    """

    def __init__(
        self,
        ref_key: str = "image",
        points_key: str = "points",
        diameters_key: str = "point_diameters_mm",
        mask_key: str = "pos_mask",
        default_diameter_mm: float = 0.3,
        min_radius_px: float = 1.0,
        fallback_spacing_mm: float = DEFAULT_SPACING_MM,
    ) -> None:
        super().__init__(keys=[ref_key])
        self.ref_key, self.points_key, self.diameters_key, self.mask_key = ref_key, points_key, diameters_key, mask_key
        self.default_diameter_mm = float(default_diameter_mm)
        self.min_radius_px = float(min_radius_px)
        self.fallback_spacing_mm = float(fallback_spacing_mm)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        img = d[self.ref_key]
        if img.ndim != 3:
            raise ValueError(f"MicrocalcificationMaskd: {self.ref_key!r} must be (C, H, W), got {tuple(img.shape)}")
        h, w = (int(s) for s in img.shape[-2:])
        sx, sy = spacing_xy(meta_of(img), self.fallback_spacing_mm)  # type: ignore[misc]
        pts = as_points(d.get(self.points_key) if d.get(self.points_key) is not None else [], self.points_key)
        diam = d.get(self.diameters_key)
        diam = np.asarray(diam, dtype=np.float64).reshape(-1) if diam is not None and len(diam) == len(pts) else None
        diameters = diam if diam is not None else np.full(len(pts), self.default_diameter_mm)
        radii = [[max(dmm / 2.0 / sx, self.min_radius_px), max(dmm / 2.0 / sy, self.min_radius_px)] for dmm in diameters]
        mask = draw_discs(np.zeros((h, w), dtype=np.float32), pts, np.asarray(radii).reshape(-1, 2), 1.0)
        t = torch.from_numpy(mask[None])
        d[self.mask_key] = MetaTensor(t, meta=img.meta) if isinstance(img, MetaTensor) else t
        return d


class PointsToTensord(MapTransform):
    """Points lists -> float32 tensors (N, 2), so a batch of one image collates and decollates cleanly.

    Example::

        >>> PointsToTensord()({"points": [[1, 2]]})["points"]
        tensor([[1., 2.]])

    Args:
        keys: point keys. Missing keys become empty (0, 2) tensors.
    """

    def __init__(self, keys: KeysCollection = "points") -> None:
        super().__init__(keys, allow_missing_keys=True)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.keys:
            value = d.get(key)
            d[key] = torch.as_tensor(as_points(value if value is not None else [], str(key)), dtype=torch.float32)
        return d


# --------------------------------------------------------------------------------- loss contract


def candidate_map_kind(loss_name: str, accept_families: Sequence[str] = ("pixel_masks", "tensor")) -> str:
    """Which map the network trained with registry loss ``loss_name`` gives candidates from.

    A "pixel_masks" loss says it in its class attribute ``candidate_map`` ("residual" for a
    reconstruction, "probability" for a segmenter); a "tensor" loss (MONAI's contract, trained on
    the positive mask through :class:`PositiveMaskLoss`) makes the U-Net a segmenter: "probability".
    A loss of another family is rejected with the registry's message.

    Example::

        >>> candidate_map_kind("ttest"), candidate_map_kind("segmentation_ce"), candidate_map_kind("weighted_bce")
        ('residual', 'probability', 'probability')
    """
    from monai_mammo.registry import get_registry

    registry = get_registry()
    family = registry.check_family("loss", loss_name, accept_families)
    if family == "tensor":
        return "probability"
    kind = getattr(registry.get("loss", loss_name), "candidate_map", None)
    if kind not in CANDIDATE_MAP_KINDS:
        raise ValueError(
            f"loss {loss_name!r} (family {family!r}) does not declare which map its network outputs "
            f"(class attribute candidate_map, one of {CANDIDATE_MAP_KINDS}); set --candidates#map"
        )
    return kind


class PositiveMaskLoss(_Loss):
    """A MONAI-contract loss ``loss(logits, target_tensor)`` on the positive mask of a "pixel_masks" target.

    The U-Net is then a µC segmenter trained against ``target["positive_mask"]`` (the image and
    the valid mask are not used: a "tensor" loss takes none), and candidates come from its sigmoid
    map (:attr:`candidate_map` = "probability").

    Example::

        >>> loss = PositiveMaskLoss(torch.nn.BCEWithLogitsLoss())
        >>> round(float(loss(torch.zeros(1, 1, 2, 2), {"positive_mask": torch.ones(1, 1, 2, 2)})), 4)
        0.6931
    """

    candidate_map = "probability"

    def __init__(self, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, prediction: torch.Tensor, target: Mapping[str, Any]) -> torch.Tensor:
        if not isinstance(target, Mapping) or target.get("positive_mask") is None:
            raise ValueError("PositiveMaskLoss: the target must be a dict with a 'positive_mask'")
        positive = target["positive_mask"]
        return self.loss(prediction, positive.to(dtype=prediction.dtype, device=prediction.device))


def pixel_masks_loss(loss: Callable[..., torch.Tensor], loss_name: str) -> Callable[..., torch.Tensor]:
    """The ASN trainer's ``loss_function``: registry loss ``loss`` (named ``loss_name``) as it is
    when its family is "pixel_masks", wrapped in :class:`PositiveMaskLoss` when it is "tensor"."""
    from monai_mammo.registry import component_family

    return PositiveMaskLoss(loss) if component_family("loss", loss_name) == "tensor" else loss


# ---------------------------------------------------------------------------------------- detection


class ASNDetectd(MapTransform):
    """Postprocessing: network output -> candidate map -> scored µC candidates (Zhang et al. Sec. 3.2).

    Steps: :func:`~monai_mammo.regions.candidate_map` (residual ``|f(I) − I|``, Eq. 1, or a
    segmenter's probability) -> :func:`~monai_mammo.regions.regions_from_map` (threshold,
    connected components, centre, ASN score = summed residual) inside the breast mask -> with an
    FPR classifier, :func:`~monai_mammo.regions.rescore_regions` (crop, final = ASN × FPR) ->
    optionally back to the stored image's pixels. Writes ``output_key`` (records ``x, y, score,
    asn_score, fpr_score, area``; ``fpr_score`` None without FPR), ``spacing_key`` (the spacing of
    the points' pixel grid) and, when ``gt_key`` is set, copies the image's ground truth to
    ``gt_out_key`` for FROC handlers (new keys land in the engine output).

    Example::

        >>> det = ASNDetectd(map_kind="residual", threshold=0.4, mask_key=None)
        >>> img = torch.zeros(1, 16, 16); pred = img.clone(); pred[0, 4, 6] = 1.0
        >>> [(p["x"], p["y"], p["asn_score"], p["fpr_score"]) for p in det({"image": img, "pred": pred})["pred_points"]]
        [(6.0, 4.0, 1.0, None)]

    Args:
        image_key: network input key. Default "image".
        pred_key: network output key. Default "pred".
        mask_key: breast mask key restricting candidates; None: whole image. Default "breast_mask".
        output_key: output records key. Default "pred_points".
        map_kind: "residual" (a reconstruction) or "probability" (a segmenter), see
            :func:`candidate_map_kind`. Default "residual".
        threshold: see ``regions_from_map``. Default :data:`DEFAULT_THRESHOLD` (β / 2 of the t-test loss).
        threshold_mode: "absolute" (default) or "quantile".
        centre: "centroid" (default, the paper's "center"), "weighted" or "peak".
        min_area: smallest component in pixels. Default 1.
        max_candidates: keep the highest ASN scores only. Default 200.
        score: ASN score of a component: "sum" (default, paper), "max" or "mean".
        fpr_network: FPR classifier, a :class:`~monai_mammo.checkpoints.NetworkFile` (loaded again
            whenever its file changes: a server picks up a newly trained stage without a restart)
            or None (FPR off: final score = ASN score). Default None.
        fpr_crop_size: crop side. Default: the classifier's ``crop_size`` or 56 (paper).
        fpr_batch_size: crops per classifier call. Default 64.
        fpr_dihedral_tta: average the FPR probability over the crop's eight flip / 90° rotation
            views (not in the paper). Default False.
        to_original: map points to the stored image's pixels (``pixel_to_original``). Default False.
        spacing_key: output key of the points' spacing [sx, sy]. Default "pred_spacing".
        gt_key: ground-truth points key copied to ``gt_out_key`` (None: skip). Default None.
        gt_out_key: default "gt_points".
        map_key: if set, the candidate map is stored under this key (for writers). Default None.
    """

    def __init__(
        self,
        image_key: str = "image",
        pred_key: str = "pred",
        mask_key: str | None = "breast_mask",
        output_key: str = "pred_points",
        map_kind: str = "residual",
        threshold: float = DEFAULT_THRESHOLD,
        threshold_mode: str = "absolute",
        centre: str = "centroid",
        min_area: int = 1,
        max_candidates: int | None = 200,
        score: str = "sum",
        fpr_network: torch.nn.Module | None = None,
        fpr_crop_size: int | None = None,
        fpr_batch_size: int = 64,
        fpr_dihedral_tta: bool = False,
        to_original: bool = False,
        spacing_key: str = "pred_spacing",
        gt_key: str | None = None,
        gt_out_key: str = "gt_points",
        map_key: str | None = None,
    ) -> None:
        super().__init__(keys=[pred_key])
        if map_kind not in CANDIDATE_MAP_KINDS:
            raise ValueError(f"ASNDetectd: map_kind must be one of {CANDIDATE_MAP_KINDS}, got {map_kind!r}")
        self.image_key, self.pred_key, self.mask_key, self.output_key = image_key, pred_key, mask_key, output_key
        self.map_kind = map_kind
        self.extract_kwargs = {
            "threshold": float(threshold),
            "threshold_mode": threshold_mode,
            "centre": centre,
            "min_area": int(min_area),
            "max_regions": max_candidates,
            "score": score,
        }
        self.fpr_network = fpr_network
        self._fpr_crop_size = fpr_crop_size
        self.fpr_batch_size = int(fpr_batch_size)
        self.fpr_dihedral_tta = bool(fpr_dihedral_tta)
        self.to_original = bool(to_original)
        self.spacing_key, self.gt_key, self.gt_out_key, self.map_key = spacing_key, gt_key, gt_out_key, map_key

    def fpr(self) -> torch.nn.Module | None:
        """The FPR classifier now (a ``NetworkFile``'s current network)."""
        net = self.fpr_network
        return net.get() if isinstance(net, NetworkFile) else net

    @property
    def fpr_crop_size(self) -> int:
        return int(self._fpr_crop_size or getattr(self.fpr(), "crop_size", None) or 56)

    def detect(self, image: torch.Tensor, pred: torch.Tensor, mask: Any = None) -> tuple[Regions, torch.Tensor]:
        """Candidates (current pixels) and the candidate map for one ``(C, H, W)`` image and output."""
        if image.ndim != 3 or pred.ndim != 3 or image.shape[-2:] != pred.shape[-2:]:
            raise ValueError(
                f"ASNDetectd: image and pred must be (C, H, W) of the same size, got {tuple(image.shape)} and {tuple(pred.shape)}"
            )
        img, out = _plain(image).float(), _plain(pred).float()
        cmap = candidate_map(out[None], img[None], self.map_kind)[0]
        m = _plain(mask).cpu() if mask is not None else None
        regions = regions_from_map(cmap.detach().cpu(), mask=m, score_name=SCORE_NAMES[0], **self.extract_kwargs)
        fpr = self.fpr() if len(regions) else None
        if fpr is not None:
            was_training = fpr.training
            fpr.eval()
            regions = rescore_regions(
                regions,
                img[:1],
                fpr,
                name=SCORE_NAMES[1],
                crop_size=self.fpr_crop_size,
                batch_size=self.fpr_batch_size,
                device=next(fpr.parameters()).device,
                dihedral_tta=self.fpr_dihedral_tta,
            )
            fpr.train(was_training)
        return regions, cmap

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        image, pred = d[self.image_key], d[self.pred_key]
        mask = d.get(self.mask_key) if self.mask_key else None
        regions, cmap = self.detect(image, pred, mask)
        meta = meta_of(image)
        if self.to_original:
            regions = regions.to_original(meta)
            spacing = original_spacing(meta)
        else:
            sp = spacing_xy(meta)
            spacing = list(sp) if sp else None
        d[self.output_key] = regions.to_records(SCORE_NAMES)
        d[self.spacing_key] = spacing
        if self.gt_key is not None:
            gt = d.get(self.gt_key)
            d[self.gt_out_key] = as_points(gt if gt is not None else [], self.gt_key)
        if self.map_key is not None:
            d[self.map_key] = MetaTensor(cmap, meta=image.meta) if isinstance(image, MetaTensor) else cmap
        return d


# --------------------------------------------------------------------------------------- FPR stage


def mine_fpr_samples(
    network: torch.nn.Module,
    dataset: Sequence[Mapping[str, Any]],
    inferer: Callable[..., torch.Tensor],
    detector: ASNDetectd,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_not_before: float | None = None,
    crop_size: int = 56,
    radius_mm: float = 1.0,
    include_ground_truth: bool = True,
    max_negatives_per_image: int | None = None,
    device: str | torch.device = "cpu",
    image_key: str = "image",
    points_key: str = "points",
    mask_key: str | None = "breast_mask",
) -> list[dict[str, torch.Tensor]]:
    """FPR training samples: crops of ASN candidates (hard negatives) and of ground-truth µCs.

    Zhang et al. CVPR 2019 Sec. 3.2: the FPR ResNet-50 is trained on all ASN predictions (hard
    negatives) plus the ground-truth µCs, without extra sampling. A candidate within ``radius_mm``
    of a µC (the evaluation radius, 1 mm) is a positive, any other a negative. ``dataset`` yields
    preprocessed items (the deterministic training transforms, no patch sampling); ``checkpoint``
    (if given) is loaded into ``network`` first, strictly (the best ASN checkpoint of the run).
    With ``checkpoint_not_before`` (a ``time.time()`` taken when the run started), a checkpoint
    written before it (a previous run's: this run saved none) is not loaded and the network's
    current weights (this run's last) are mined instead, with a warning, so a cascade stage is
    never mined with stale weights. A DDP-wrapped ``network`` is looked through (the stage runs
    on one rank).

    Returns:
        list of ``{"image": (1, S, S) float32 crop, "label": (1,) float32}``; the counts are logged.
    """
    from monai_mammo.metrics.froc import match_points

    if checkpoint is not None and checkpoint_not_before is not None and (
        not os.path.isfile(checkpoint) or os.path.getmtime(checkpoint) < checkpoint_not_before
    ):
        warnings.warn(
            f"FPR mining: {checkpoint} was not written by this run; mining with the ASN's last weights of the run",
            stacklevel=2,
        )
        checkpoint = None
    if checkpoint is not None:
        load_network_weights(network, checkpoint, device)
        logger.info("FPR mining with the ASN weights of %s", checkpoint)
    net = unwrap_network(network)
    net.eval()
    samples: list[dict[str, torch.Tensor]] = []
    n_pos = n_neg = n_gt = n_hit = 0
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for item in dataset:
            image = item[image_key]
            x = _plain(image).float()[None].to(device)
            pred = inferer(x, net)[0].cpu()
            mask = item.get(mask_key) if mask_key else None
            regions, _ = detector.detect(_plain(image), pred, mask)
            gt = as_points(item.get(points_key) if item.get(points_key) is not None else [], points_key)
            sp = spacing_xy(meta_of(image), DEFAULT_SPACING_MM)
            if len(regions) and len(gt):
                hits = match_points(regions.points, gt, sp, radius_mm)  # type: ignore[arg-type]
            else:
                hits = np.zeros((len(regions), len(gt)), bool)
            is_pos = hits.any(axis=1)
            n_gt += len(gt)
            n_hit += int(hits.any(axis=0).sum()) if hits.size else 0
            neg_idx = np.flatnonzero(~is_pos)
            if max_negatives_per_image is not None and len(neg_idx) > max_negatives_per_image:
                neg_idx = np.sort(rng.choice(neg_idx, size=int(max_negatives_per_image), replace=False))
            keep = np.concatenate([np.flatnonzero(is_pos), neg_idx])
            pts = regions.points[keep]
            labels = np.concatenate([np.ones(int(is_pos.sum())), np.zeros(len(neg_idx))])
            if include_ground_truth and len(gt):
                pts = np.concatenate([pts, gt])
                labels = np.concatenate([labels, np.ones(len(gt))])
            if len(pts) == 0:
                continue
            crops = extract_crops(_plain(image).float()[:1], pts, crop_size)
            for crop, y in zip(crops, labels):
                samples.append({"image": crop.clone(), "label": torch.tensor([float(y)])})
            n_pos += int(labels.sum())
            n_neg += int(len(labels) - labels.sum())
    recall = n_hit / n_gt if n_gt else float("nan")
    logger.info(
        "FPR mining: %d images, %d µCs, candidate recall %.3f; %d positive and %d negative crops of %dx%d",
        len(dataset), n_gt, recall, n_pos, n_neg, crop_size, crop_size,
    )
    if not samples:
        raise ValueError("FPR mining produced no samples: no ASN candidate and no ground-truth µC in the training data")
    if n_pos == 0 or n_neg == 0:
        warnings.warn(f"FPR mining: only one class ({n_pos} positive, {n_neg} negative crops)", stacklevel=2)
    return samples


def prepare_fpr_batch(
    batchdata: Mapping[str, Any],
    device: str | torch.device | None = None,
    non_blocking: bool = False,
    augment: bool = True,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``prepare_batch`` of the FPR ``SupervisedTrainer``: MONAI's ``default_prepare_batch``
    (``image`` crops, ``label``), each crop in a random one of its eight flip / 90° rotation views
    when ``augment`` (default).

    The paper states no augmentation for the FPR; a µC crop has no preferred orientation. One call
    per batch replaces three MONAI transforms per crop, which cost measurable time per FPR epoch on
    the CPU.
    """
    crops, labels = default_prepare_batch(batchdata, device, non_blocking, **kwargs)
    return (rand_dihedral_views(crops) if augment else crops), labels
