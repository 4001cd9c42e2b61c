"""Glue between MONAI engines and the ASN cascade (Zhang et al., CVPR 2019), used by ``bundles/asn``.

Zhang et al., "Cascaded Generative and Discriminative Learning for Microcalcification Detection in
Breast Mammograms", CVPR 2019 (seed ``003_d8ab11915d521395.txt``). The networks, the losses, the
candidate extraction and the FROC metric live in their own modules; this one holds what a bundle
config needs to wire them into MONAI's ``SupervisedTrainer`` / ``SupervisedEvaluator``:

* :class:`LabelMaskToPointsd`, :class:`MicrocalcificationMaskd`: µC targets (points -> positive
  pixel mask, discs of each µC's diameter), also from a MONAI Label label image;
* :func:`prepare_asn_batch` + :class:`PackedASNLoss`: run the registry losses, which are called as
  ``loss(output, image, positive_mask, valid_mask)``, inside the stock ``SupervisedTrainer``;
* :class:`ASNDetectd`: postprocessing from the network output to scored points (threshold ->
  components -> ASN score, optional FPR score, final = ASN × FPR, Sec. 3.2), optionally mapped back
  to the stored image's pixels;
* :class:`DetectionsToLabeld`: a uint8 label image (discs at detections) for MONAI Label;
* :class:`SaveDetectionsd`: the per-image JSON (+ optional residual NIfTI and overlay PNG);
* :func:`mine_fpr_samples`: the FPR training set (ASN candidates on the training images = hard
  negatives, ground-truth µCs = positives, Sec. 3.2); :func:`prepare_fpr_batch` feeds it to the
  FPR trainer, each crop in a random flip / 90° view;
* :func:`save_fpr_checkpoint` / :func:`load_fpr_network`: ``models/fpr.pt`` with its construction
  arguments, so inference needs no duplicated FPR settings.

Coordinates follow the project contract: points ``[x, y]`` in pixels, images ``(C, H, W)``.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.engines.utils import default_prepare_batch
from monai.transforms import MapTransform
from scipy import ndimage
from torch.nn.modules.loss import _Loss

from monai_mammo.atomic_io import atomic_path, atomic_write_bytes
from monai_mammo.engines.weights import load_network_weights
from monai_mammo.inferers.candidates import (
    DEFAULT_THRESHOLD,
    Candidates,
    candidates_to_original,
    extract_candidates,
    extract_crops,
    score_candidates,
)
from monai_mammo.networks.asn import (
    CANDIDATE_MAP_MODES,
    FalsePositiveReductionClassifier,
    candidate_map,
)
from monai_mammo.transforms.dihedral import rand_dihedral_views
from monai_mammo.transforms.geometry import as_points, get_pixel_to_original
from monai_mammo.transforms.io import spacing_of

__all__ = [
    "set_cpu_threads",
    "scale_head_init",
    "resolve_datalist",
    "load_items",
    "inference_items",
    "LabelMaskToPointsd",
    "MicrocalcificationMaskd",
    "PointsToTensord",
    "prepare_asn_batch",
    "PackedASNLoss",
    "original_spacing",
    "ASNDetectd",
    "DetectionsToLabeld",
    "SaveDetectionsd",
    "mine_fpr_samples",
    "fpr_placeholder_samples",
    "prepare_fpr_batch",
    "save_fpr_checkpoint",
    "load_fpr_network",
]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------- data lists


def scale_head_init(network: torch.nn.Module, scale: float | None = None) -> torch.nn.Module:
    """Multiply the initial weights of ``network.head`` (the last, linear layer) by ``scale``.

    With ``AnomalySeparationUNet(input_skip=True)`` (f = I + g(I)) a small head makes the network
    start close to the identity, so the negative residuals of the t-test loss (Zhang et al. Eq. 6)
    start near 0 instead of O(1) from the Kaiming-initialised head, and the CPU demo spends its
    iterations on separating µCs. Not in the paper (Kaiming everywhere); ``None`` or 1 leaves the
    network untouched. The weights stay non-zero, so the L1 residual keeps a gradient.
    """
    if scale is None or float(scale) == 1.0:
        return network
    head = getattr(network, "head", None)
    if head is None:
        raise ValueError(f"scale_head_init: {type(network).__name__} has no 'head' module")
    with torch.no_grad():
        for name, param in head.named_parameters():
            if name.endswith("weight"):
                param.mul_(float(scale))
    return network


def set_cpu_threads(threads: int | str | None = "auto") -> int:
    """Set torch's intra-op CPU threads and return the number used.

    ``None``: leave torch's default. An int: that many. ``"auto"``: all cores, but 1 when the
    machine is already busy (1-minute load average >= cores - 0.5): with OpenMP threads spinning
    at barriers, a shared 2-core machine runs these small convolutions 2-4x faster on one thread
    than on two (measured for the ASN U-Net and the FPR ResNet-50).
    """
    if threads is None:
        return torch.get_num_threads()
    if threads == "auto":
        cores = os.cpu_count() or 1
        try:
            busy = os.getloadavg()[0] >= cores - 0.5
        except OSError:
            busy = False
        threads = 1 if busy else cores
    torch.set_num_threads(max(int(threads), 1))
    print(f"torch CPU threads: {torch.get_num_threads()}", flush=True)
    return torch.get_num_threads()



def resolve_datalist(
    dataset_dir: str | os.PathLike | None,
    datalist: str | os.PathLike | None,
    cache_dir: str | os.PathLike,
    phantom_n: int = 40,
    phantom_seed: int = 0,
    **phantom_options: Any,
) -> str:
    """Path of the datalist a bundle trains on.

    ``datalist`` (a file) wins; else ``dataset_dir/datalist.json``; else (both None) the embedded
    default: ``ensure_phantoms("mammogram", cache_dir, phantom_n, phantom_seed, **phantom_options)``,
    generated once and cached.

    Raises:
        FileNotFoundError: a given ``datalist`` / ``dataset_dir`` has no datalist file.
    """
    if datalist:
        path = Path(datalist)
        if not path.is_file():
            raise FileNotFoundError(f"datalist {path}: no such file")
        return str(path)
    if dataset_dir:
        path = Path(dataset_dir) / "datalist.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"dataset_dir {dataset_dir}: no datalist.json inside; create one with `monai-mammo datalist ...` "
                "or pass --datalist PATH"
            )
        return str(path)
    from monai_mammo.data.phantoms import ensure_phantoms

    return str(ensure_phantoms("mammogram", cache_dir, int(phantom_n), int(phantom_seed), **phantom_options))


def load_items(datalist: str | os.PathLike, keys: str | Sequence[str] = "training") -> list[dict]:
    """Items of one or more lists of a decathlon-style datalist, paths made absolute.

    ``keys`` is a list name or several (concatenated); missing lists are skipped, but if none of
    them exists a ``ValueError`` names the file and the lists it has.
    """
    from monai.data import load_decathlon_datalist

    names = [keys] if isinstance(keys, str) else list(keys)
    content = json.loads(Path(datalist).read_text())
    present = [k for k in names if k in content]
    if not present:
        lists = [k for k, v in content.items() if isinstance(v, list)]
        raise ValueError(f"datalist {datalist}: none of the lists {names}; it has {lists}")
    items: list[dict] = []
    for key in present:
        if content[key]:
            items += load_decathlon_datalist(str(datalist), is_segmentation=False, data_list_key=key)
    return items


_IMAGE_SUFFIXES = (".dcm", ".dicom", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".nii", ".nii.gz")


def inference_items(input_path: str | os.PathLike | Sequence[str], datalist_keys: Sequence[str] = ("test",)) -> list[dict]:
    """Items for inference from a DICOM/PNG path, a folder of them, a datalist JSON, or a list of paths.

    A datalist contributes its ``datalist_keys`` lists (default "test"; all lists when none of them
    exists), keeping per-item fields such as ``spacing`` and ``points``.
    """
    if input_path is None or input_path == "":
        raise ValueError("inference: no input; pass --input_path FILE.dcm|FILE.png|FOLDER|DATALIST.json")
    if isinstance(input_path, (list, tuple)):
        return [{"image": str(p)} for p in input_path]
    path = Path(input_path)
    if path.suffix.lower() == ".json":
        content = json.loads(path.read_text())
        keys = [k for k in datalist_keys if content.get(k)]
        if not keys:
            keys = [k for k, v in content.items() if isinstance(v, list) and v and isinstance(v[0], dict)]
        return load_items(path, keys)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and str(p).lower().endswith(_IMAGE_SUFFIXES))
        if not files:
            raise FileNotFoundError(f"input folder {path}: no DICOM / PNG / NIfTI files")
        return [{"image": str(p)} for p in files]
    if not path.is_file():
        raise FileNotFoundError(f"input {path}: no such file")
    return [{"image": str(path)}]


# ------------------------------------------------------------------------------------------ targets


def _meta(img: Any) -> dict:
    return dict(img.meta) if isinstance(img, MetaTensor) else {}


def _spacing(meta: Mapping[str, Any], fallback: float | None = None) -> tuple[float, float] | None:
    """``(sx, sy)`` from the meta, else ``(fallback, fallback)``, else None."""
    spacing = spacing_of(meta)
    if spacing is None:
        return (fallback, fallback) if fallback else None
    return spacing[0], spacing[1]


class LabelMaskToPointsd(MapTransform):
    """Turn a label *image* path in ``label_key`` (MONAI Label's datalists) into µC ``points``.

    MONAI Label trains bundles on items ``{"image": path, "label": path}`` whose label image marks
    µCs with ``label_value`` (our inference writes discs of value 1). When ``points_key`` is absent
    and ``label_key`` holds a file path, the label is read with
    :class:`~monai_mammo.transforms.io.RadiographReader`, each connected component becomes a point
    (its centroid) and its equivalent-circle diameter in mm goes to ``diameters_key``. Items that
    already have points (our datalists, where ``label`` is the image-level label vector) pass
    through unchanged. Run it after loading the image (its spacing converts areas to mm).

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
        sp = _spacing(_meta(d.get(self.ref_key)), fallback=0.07) or (0.07, 0.07)
        points, diameters = [], []
        if n:
            idx = np.arange(1, n + 1)
            centres = ndimage.center_of_mass(m, labels, idx)
            areas = ndimage.sum(m, labels, idx)
            for (cy, cx), area in zip(centres, areas):
                points.append([float(cx), float(cy)])
                diameters.append(float(2.0 * np.sqrt(area / np.pi) * np.sqrt(sp[0] * sp[1])))
        d[self.points_key] = points
        d[self.diameters_key] = diameters
        d.pop(self.label_key)  # a path would break collation; the points replace it
        return d


class MicrocalcificationMaskd(MapTransform):
    """Positive-pixel mask of the t-test loss: a disc of each µC's diameter around its point.

    Zhang et al. CVPR 2019 Sec. 3.1.2 (Eq. 6) needs the set of positive (µC) pixels P+ of a patch;
    datalists give µC centres (``points``) and, where known, diameters in mm. The disc radius is
    ``max(diameter / 2 / spacing, min_radius_px)``; points without a diameter use
    ``default_diameter_mm``. Points must be in the current pixels of ``ref_key`` (run after
    resampling with the points as ``point_keys``). The mask is a ``(1, H, W)`` float32 MetaTensor
    {0, 1} sharing the image's meta.

    Example::

        >>> import torch
        >>> from monai.data import MetaTensor
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
        fallback_spacing_mm: spacing when the image meta has none. Default 0.07.
    """

    def __init__(
        self,
        ref_key: str = "image",
        points_key: str = "points",
        diameters_key: str = "point_diameters_mm",
        mask_key: str = "pos_mask",
        default_diameter_mm: float = 0.3,
        min_radius_px: float = 1.0,
        fallback_spacing_mm: float = 0.07,
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
        sx, sy = _spacing(_meta(img), self.fallback_spacing_mm)  # type: ignore[misc]
        pts = as_points(d.get(self.points_key) if d.get(self.points_key) is not None else [], self.points_key)
        diam = d.get(self.diameters_key)
        diam = np.asarray(diam, dtype=np.float64).reshape(-1) if diam is not None and len(diam) == len(pts) else None
        mask = np.zeros((h, w), dtype=np.float32)
        for i, (x, y) in enumerate(pts):
            dmm = float(diam[i]) if diam is not None else self.default_diameter_mm
            rx = max(dmm / 2.0 / sx, self.min_radius_px)
            ry = max(dmm / 2.0 / sy, self.min_radius_px)
            r0, r1 = int(max(np.floor(y - ry), 0)), int(min(np.ceil(y + ry) + 1, h))
            c0, c1 = int(max(np.floor(x - rx), 0)), int(min(np.ceil(x + rx) + 1, w))
            if r0 >= r1 or c0 >= c1:
                continue
            yy, xx = np.mgrid[r0:r1, c0:c1]
            mask[r0:r1, c0:c1][((xx - x) / rx) ** 2 + ((yy - y) / ry) ** 2 <= 1.0] = 1.0
        t = torch.from_numpy(mask[None])
        d[self.mask_key] = MetaTensor(t, meta=img.meta) if isinstance(img, MetaTensor) else t
        return d


class PointsToTensord(MapTransform):
    """Points lists -> float32 tensors (N, 2), so a batch of one image collates and decollates cleanly.

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


# ----------------------------------------------------------------------------------- ASN training


def prepare_asn_batch(
    batchdata: Mapping[str, Any],
    device: str | torch.device | None = None,
    non_blocking: bool = False,
    image_key: str = "image",
    positive_key: str = "pos_mask",
    valid_key: str | None = "breast_mask",
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``prepare_batch`` for ``SupervisedTrainer``: ``(image, target)`` with the target packing
    ``[image, positive mask, valid mask]`` along channels for :class:`PackedASNLoss`.

    Without ``valid_key`` (or when the batch lacks it) the valid mask is all ones.
    """
    image = batchdata[image_key]
    image = image.as_tensor() if isinstance(image, MetaTensor) else torch.as_tensor(image)
    pos = torch.as_tensor(batchdata[positive_key]).float()
    pos = pos.as_tensor() if isinstance(pos, MetaTensor) else pos
    if valid_key is not None and valid_key in batchdata:
        valid = torch.as_tensor(batchdata[valid_key]).float()
        valid = valid.as_tensor() if isinstance(valid, MetaTensor) else valid
    else:
        valid = torch.ones_like(pos)
    target = torch.cat([image.float(), pos, valid], dim=1)
    return (
        image.to(device=device, non_blocking=non_blocking),
        target.to(device=device, non_blocking=non_blocking),
    )


class PackedASNLoss(_Loss):
    """Call an ASN loss ``loss(output, image, positive_mask, valid_mask)`` from ``(pred, target)``.

    MONAI's ``SupervisedTrainer`` calls ``loss_function(pred, target)``; :func:`prepare_asn_batch`
    packs ``target = cat([image (C), positive (1), valid (1)])``. Works for every registry loss of
    the ASN family: ``ttest`` (Zhang et al. Eq. 6), ``mse_reconstruction``, ``segmentation_ce``.

    Example::

        >>> import torch
        >>> from monai_mammo.registry import build_loss
        >>> loss = PackedASNLoss(build_loss("ttest"))
        >>> image = torch.rand(2, 1, 8, 8); pos = torch.zeros(2, 1, 8, 8); pos[:, :, 3, 3] = 1
        >>> float(loss(image, torch.cat([image, pos, torch.ones_like(pos)], 1))) >= 0
        True

    Args:
        loss: the wrapped loss module.
        in_channels: image channels C in the packed target. Default 1.
    """

    def __init__(self, loss: Callable[..., torch.Tensor], in_channels: int = 1) -> None:
        super().__init__()
        self.loss = loss
        self.in_channels = int(in_channels)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        c = self.in_channels
        if target.ndim != pred.ndim or target.shape[1] != c + 2 or target.shape[2:] != pred.shape[2:]:
            raise ValueError(
                f"PackedASNLoss: target must be (B, {c}+2, *spatial) = [image, positive, valid] matching "
                f"pred {tuple(pred.shape)}, got {tuple(target.shape)}"
            )
        return self.loss(pred, target[:, :c], target[:, c : c + 1], target[:, c + 1 : c + 2])


# ---------------------------------------------------------------------------------------- detection


def original_spacing(meta: Mapping[str, Any]) -> list[float] | None:
    """Spacing [sx, sy] of the stored image, from the current spacing and ``pixel_to_original``.

    A current pixel spans ``|M[0, 0]|`` original pixels along x (``|M[1, 1]|`` along y) for the
    axis-aligned maps our transforms compose (scale, flip, shift), so the original spacing is the
    current one divided by that factor.
    """
    sp = _spacing(meta)
    if sp is None:
        return None
    m = get_pixel_to_original(meta)
    fx, fy = abs(m[0, 0]) + abs(m[1, 0]), abs(m[1, 1]) + abs(m[0, 1])
    return [sp[0] / fx, sp[1] / fy]


def _plain(x: Any) -> torch.Tensor:
    return x.as_tensor() if isinstance(x, MetaTensor) else torch.as_tensor(x)


class ASNDetectd(MapTransform):
    """Postprocessing: network output -> candidate map -> scored µC points (Zhang et al. Sec. 3.2).

    Steps: :func:`~monai_mammo.networks.asn.candidate_map` (residual ``|f(I) − I|``, Eq. 1, or the
    U-Net+CE probability) -> :func:`~monai_mammo.inferers.candidates.extract_candidates`
    (threshold, connected components, centre, ASN score = summed residual) inside the breast mask ->
    with an FPR classifier, :func:`~monai_mammo.inferers.candidates.score_candidates` (56×56 crop,
    final = ASN × FPR) -> optionally back to the stored image's pixels. Writes ``output_key`` (a
    list of point dicts ``x, y, score, asn_score, fpr_score, area``), ``spacing_key`` (the spacing
    of the points' pixel grid) and, when ``gt_key`` is set, copies the image's ground truth to
    ``gt_out_key`` for FROC handlers (new keys land in the engine output).

    Example::

        >>> import torch
        >>> det = ASNDetectd(mode="residual", threshold=0.4, mask_key=None)
        >>> img = torch.zeros(1, 16, 16); pred = img.clone(); pred[0, 4, 6] = 1.0
        >>> [(p["x"], p["y"]) for p in det({"image": img, "pred": pred})["pred_points"]]
        [(6.0, 4.0)]

    Args:
        image_key: network input key. Default "image".
        pred_key: network output key. Default "pred".
        mask_key: breast mask key restricting candidates; None: whole image. Default "breast_mask".
        output_key: output points key. Default "pred_points".
        mode: candidate map mode or the loss name (see ``CANDIDATE_MAP_MODES``). Default "ttest".
        threshold: see ``extract_candidates``. Default 0.4 (β / 2 of the t-test loss).
        threshold_mode: "absolute" (default) or "quantile".
        centre: "centroid" (default, the paper's "center"), "weighted" or "peak".
        min_area: smallest component in pixels. Default 1.
        max_candidates: keep the highest ASN scores only. Default 200.
        score: ASN score of a component, see ``extract_candidates``: "sum" (default, paper), "max"
            or "mean".
        fpr_network: FPR classifier or None (FPR off: final score = ASN score). Default None.
        fpr_crop_size: crop side. Default: the classifier's ``crop_size`` or 56 (paper).
        fpr_batch_size: crops per classifier call. Default 64.
        fpr_dihedral_tta: average the FPR probability over the crop's eight flip / 90° rotation
            views (not in the paper; see ``score_candidates``). Default False.
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
        mode: str = "ttest",
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
        if mode not in CANDIDATE_MAP_MODES:
            raise ValueError(f"ASNDetectd: unknown mode {mode!r}; known: {', '.join(CANDIDATE_MAP_MODES)}")
        self.image_key, self.pred_key, self.mask_key, self.output_key = image_key, pred_key, mask_key, output_key
        self.mode = mode
        self.extract_kwargs = {
            "threshold": float(threshold),
            "threshold_mode": threshold_mode,
            "centre": centre,
            "min_area": int(min_area),
            "max_candidates": max_candidates,
            "score": score,
        }
        self.fpr_network = fpr_network
        crop = fpr_crop_size or getattr(fpr_network, "crop_size", None) or 56
        self.fpr_crop_size = int(crop)
        self.fpr_batch_size = int(fpr_batch_size)
        self.fpr_dihedral_tta = bool(fpr_dihedral_tta)
        self.to_original = bool(to_original)
        self.spacing_key, self.gt_key, self.gt_out_key, self.map_key = spacing_key, gt_key, gt_out_key, map_key

    def detect(self, image: torch.Tensor, pred: torch.Tensor, mask: Any = None) -> tuple[Candidates, torch.Tensor]:
        """Candidates (current pixels) and the candidate map for one ``(C, H, W)`` image and output."""
        if image.ndim != 3 or pred.ndim != 3 or image.shape[-2:] != pred.shape[-2:]:
            raise ValueError(
                f"ASNDetectd: image and pred must be (C, H, W) of the same size, got {tuple(image.shape)} and {tuple(pred.shape)}"
            )
        img, out = _plain(image).float(), _plain(pred).float()
        cmap = candidate_map(out[None], img[None], self.mode)[0]
        m = _plain(mask) if mask is not None else None
        cands = extract_candidates(cmap.detach().cpu(), mask=None if m is None else m.cpu(), **self.extract_kwargs)
        if self.fpr_network is not None and len(cands):
            was_training = self.fpr_network.training
            self.fpr_network.eval()
            dev = next(self.fpr_network.parameters()).device
            cands = score_candidates(
                cands,
                img[:1],
                self.fpr_network,
                crop_size=self.fpr_crop_size,
                batch_size=self.fpr_batch_size,
                device=dev,
                dihedral_tta=self.fpr_dihedral_tta,
            )
            self.fpr_network.train(was_training)
        return cands, cmap

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        image, pred = d[self.image_key], d[self.pred_key]
        mask = d.get(self.mask_key) if self.mask_key else None
        cands, cmap = self.detect(image, pred, mask)
        meta = _meta(image)
        if self.to_original:
            cands = candidates_to_original(cands, meta)
            spacing = original_spacing(meta)
        else:
            sp = _spacing(meta)
            spacing = list(sp) if sp else None
        d[self.output_key] = cands.to_records()
        d[self.spacing_key] = spacing
        if self.gt_key is not None:
            gt = d.get(self.gt_key)
            d[self.gt_out_key] = as_points(gt if gt is not None else [], self.gt_key)
        if self.map_key is not None:
            d[self.map_key] = MetaTensor(cmap, meta=image.meta) if isinstance(image, MetaTensor) else cmap
        return d


class DetectionsToLabeld(MapTransform):
    """A uint8 label image with a disc at each detection, on the stored image's pixel grid (MONAI Label).

    MONAI Label's bundle app writes ``pred`` as the label of the image it loaded, so the label has the
    stored image's size (``meta["original_size"]``) and the detections must already be in original
    pixels (``ASNDetectd(to_original=True)``). Points with ``score >= min_score`` get a disc of
    ``radius_mm`` with value ``label_value``; the output replaces ``label_key`` (default "pred").
    Cast with ``CastToTyped(keys="pred", dtype=np.uint8)`` at the end of the postprocessing.

    Args:
        points_key: detections (list of point dicts). Default "pred_points".
        ref_key: image key whose meta gives ``original_size`` and spacing. Default "image".
        label_key: output key. Default "pred".
        spacing_key: spacing of the points' grid. Default "pred_spacing".
        min_score: smallest final score drawn. Default 0.0 (all).
        max_points: draw at most this many (highest scores). Default 20.
        radius_mm: disc radius in mm. Default 0.5.
        label_value: value of the discs. Default 1 (channel_def "microcalcification").
    """

    def __init__(
        self,
        points_key: str = "pred_points",
        ref_key: str = "image",
        label_key: str = "pred",
        spacing_key: str = "pred_spacing",
        min_score: float = 0.0,
        max_points: int | None = 20,
        radius_mm: float = 0.5,
        label_value: int = 1,
    ) -> None:
        super().__init__(keys=[points_key])
        self.points_key, self.ref_key, self.label_key, self.spacing_key = points_key, ref_key, label_key, spacing_key
        self.min_score, self.max_points = float(min_score), max_points
        self.radius_mm, self.label_value = float(radius_mm), int(label_value)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        meta = _meta(d.get(self.ref_key))
        size = meta.get("original_size")
        if size is None:
            size = list(d[self.ref_key].shape[-2:])
        h, w = (int(v) for v in np.asarray(size).reshape(-1)[:2])
        sp = _spacing({"spacing": d.get(self.spacing_key)}, fallback=0.07) or (0.07, 0.07)
        pts = [p for p in d.get(self.points_key) or [] if p["score"] >= self.min_score]
        pts = sorted(pts, key=lambda p: -p["score"])[: self.max_points]
        label = np.zeros((1, h, w), dtype=np.uint8)
        rx, ry = max(self.radius_mm / sp[0], 1.0), max(self.radius_mm / sp[1], 1.0)
        for p in pts:
            x, y = p["x"], p["y"]
            r0, r1 = int(max(np.floor(y - ry), 0)), int(min(np.ceil(y + ry) + 1, h))
            c0, c1 = int(max(np.floor(x - rx), 0)), int(min(np.ceil(x + rx) + 1, w))
            if r0 >= r1 or c0 >= c1:
                continue
            yy, xx = np.mgrid[r0:r1, c0:c1]
            label[0, r0:r1, c0:c1][((xx - x) / rx) ** 2 + ((yy - y) / ry) ** 2 <= 1.0] = self.label_value
        out_meta = {k: meta[k] for k in ("filename_or_obj", "laterality", "view", "original_size") if k in meta}
        out_meta["spacing"] = [float(sp[0]), float(sp[1])]
        out_meta["affine"] = torch.diag(torch.tensor([sp[1], sp[0], 1.0], dtype=torch.float64))
        d[self.label_key] = MetaTensor(torch.from_numpy(label), meta=out_meta)
        return d


class SaveDetectionsd(MapTransform):
    """Write ``<output_dir>/<image stem>.json`` per image (+ optional residual NIfTI and overlay PNG).

    The JSON holds ``source`` (input path), ``spacing`` (of the coordinates: the stored image's when
    the points were mapped back), ``image_size`` [H, W] of the stored image, ``coordinates``
    ("original_pixels" or "preprocessed_pixels") and ``points``: ``x``, ``y`` (pixel centres,
    x = column), ``score`` (ASN × FPR), ``asn_score``, ``fpr_score`` (null with FPR off), ``area``.
    The residual map (``map_key``) is written on the preprocessed 70 µm grid (``<stem>_residual.nii.gz``),
    the overlay (``<stem>_overlay.png``) on the preprocessed image with the ``overlay_top_k``
    best detections circled (mapped from original pixels through the inverse of
    ``pixel_to_original``).

    Args:
        output_dir: folder. Required.
        points_key: default "pred_points". spacing_key: default "pred_spacing". image_key: default "image".
        map_key: candidate map key for the NIfTI; None: no NIfTI. Default None.
        write_overlay: write the PNG. Default False.
        overlay_top_k: circles drawn. Default 20.
        original_coordinates: the points are in original pixels. Default True.
        json_key: output key of the written JSON path. Default "detections_file".
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        points_key: str = "pred_points",
        spacing_key: str = "pred_spacing",
        image_key: str = "image",
        map_key: str | None = None,
        write_overlay: bool = False,
        overlay_top_k: int = 20,
        original_coordinates: bool = True,
        json_key: str = "detections_file",
    ) -> None:
        super().__init__(keys=[points_key])
        self.output_dir = Path(output_dir)
        self.points_key, self.spacing_key, self.image_key, self.map_key = points_key, spacing_key, image_key, map_key
        self.write_overlay, self.overlay_top_k = bool(write_overlay), int(overlay_top_k)
        self.original_coordinates = bool(original_coordinates)
        self.json_key = json_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        image = d[self.image_key]
        meta = _meta(image)
        source = str(meta.get("filename_or_obj", "image"))
        stem = Path(source).name
        for suffix in (".nii.gz", ".dcm", ".dicom", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".nii"):
            if stem.lower().endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        points = list(d.get(self.points_key) or [])
        size = meta.get("original_size") if self.original_coordinates else list(image.shape[-2:])
        record = {
            "source": source,
            "coordinates": "original_pixels" if self.original_coordinates else "preprocessed_pixels",
            "spacing": d.get(self.spacing_key),
            "image_size": [int(v) for v in np.asarray(size).reshape(-1)[:2]] if size is not None else None,
            "laterality": meta.get("laterality", ""),
            "view": meta.get("view", ""),
            "num_points": len(points),
            "points": points,
        }
        path = self.output_dir / f"{stem}.json"
        atomic_write_bytes(path, (json.dumps(record, indent=1) + "\n").encode())
        d[self.json_key] = str(path)
        if self.map_key is not None and d.get(self.map_key) is not None:
            import nibabel as nib

            cmap = _plain(d[self.map_key]).detach().cpu().float().numpy()[0]
            sp = _spacing(meta) or (1.0, 1.0)
            # NIfTI axis 0 = rows (our reader's convention for NIfTI input)
            nii = nib.Nifti1Image(cmap.astype(np.float32), np.diag([sp[1], sp[0], 1.0, 1.0]))
            nib.save(nii, str(self.output_dir / f"{stem}_residual.nii.gz"))
        if self.write_overlay:
            self._overlay(image, meta, points, self.output_dir / f"{stem}_overlay.png")
        return d

    def _overlay(self, image: Any, meta: Mapping[str, Any], points: list[dict], path: Path) -> None:
        from PIL import Image, ImageDraw

        arr = _plain(image).detach().cpu().float().numpy()[0]
        lo, hi = float(arr.min()), float(arr.max())
        grey = np.clip((arr - lo) / (hi - lo + 1e-12) * 255.0, 0, 255).astype(np.uint8)
        canvas = Image.fromarray(grey).convert("RGB")
        draw = ImageDraw.Draw(canvas)
        best = sorted(points, key=lambda p: -p["score"])[: self.overlay_top_k]
        if best:
            xy = np.array([[p["x"], p["y"]] for p in best], dtype=np.float64)
            if self.original_coordinates:
                inv = np.linalg.inv(get_pixel_to_original(meta))
                xy = (np.c_[xy, np.ones(len(xy))] @ inv.T)[:, :2]
            sp = _spacing(meta) or (0.07, 0.07)
            r = max(1.5 / sp[0], 4.0)  # 1.5 mm circles
            for x, y in xy:
                draw.ellipse([x - r, y - r, x + r, y + r], outline=(255, 0, 0), width=2)
        import io

        buf = io.BytesIO()
        canvas.save(buf, format="PNG")
        atomic_write_bytes(path, buf.getvalue())


# --------------------------------------------------------------------------------------- FPR stage


def mine_fpr_samples(
    network: torch.nn.Module,
    dataset: Sequence[Mapping[str, Any]],
    inferer: Callable[..., torch.Tensor],
    detector: ASNDetectd,
    checkpoint: str | os.PathLike | None = None,
    crop_size: int = 56,
    radius_mm: float = 1.0,
    include_ground_truth: bool = True,
    max_negatives_per_image: int | None = None,
    device: str | torch.device = "cpu",
    image_key: str = "image",
    points_key: str = "points",
    mask_key: str | None = "breast_mask",
) -> list[dict[str, torch.Tensor]]:
    """FPR training samples: 56×56 crops of ASN candidates (hard negatives) and of ground-truth µCs.

    Zhang et al. CVPR 2019 Sec. 3.2: the FPR ResNet-50 is trained on all ASN predictions (hard
    negatives) plus the ground-truth µCs, without extra sampling. A candidate within ``radius_mm``
    of a µC (the evaluation radius, 1 mm) is a positive, any other a negative. ``dataset`` yields
    preprocessed items (the deterministic training transforms, no patch sampling); ``checkpoint``
    (if given) is loaded into ``network`` first (the best ASN checkpoint of the run).

    Returns:
        list of ``{"image": (1, S, S) float32 crop, "label": (1,) float32}``; the counts are logged.
    """
    from monai_mammo.metrics.froc import match_points

    if checkpoint is not None:
        load_network_weights(network, checkpoint, device)
    network.eval()
    samples: list[dict[str, torch.Tensor]] = []
    n_pos = n_neg = n_gt = n_hit = 0
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for item in dataset:
            image = item[image_key]
            x = _plain(image).float()[None].to(device)
            pred = inferer(x, network)[0].cpu()
            mask = item.get(mask_key) if mask_key else None
            cands, _ = detector.detect(_plain(image), pred, mask)
            gt = as_points(item.get(points_key) if item.get(points_key) is not None else [], points_key)
            sp = _spacing(_meta(image), 0.07)
            hits = match_points(cands.points, gt, sp, radius_mm) if len(cands) and len(gt) else np.zeros((len(cands), len(gt)), bool)
            is_pos = hits.any(axis=1)
            n_gt += len(gt)
            n_hit += int(hits.any(axis=0).sum()) if hits.size else 0
            neg_idx = np.flatnonzero(~is_pos)
            if max_negatives_per_image is not None and len(neg_idx) > max_negatives_per_image:
                neg_idx = np.sort(rng.choice(neg_idx, size=int(max_negatives_per_image), replace=False))
            keep = np.concatenate([np.flatnonzero(is_pos), neg_idx])
            pts = cands.points[keep]
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
    msg = (
        f"FPR mining: {len(dataset)} images, {n_gt} µCs, candidate recall {recall:.3f}; "
        f"{n_pos} positive and {n_neg} negative crops of {crop_size}x{crop_size}"
    )
    logger.info(msg)
    print(msg, flush=True)
    if not samples:
        raise ValueError("FPR mining produced no samples: no ASN candidate and no ground-truth µC in the training data")
    if n_pos == 0 or n_neg == 0:
        warnings.warn(f"FPR mining: only one class ({n_pos} positive, {n_neg} negative crops)", stacklevel=2)
    return samples


def fpr_placeholder_samples(crop_size: int = 56) -> list[dict[str, torch.Tensor]]:
    """Two blank crops (one per class): the FPR data when the FPR stage is disabled.

    MONAI configs resolve every reference of an expression before evaluating it, so the FPR
    trainer is built even when ``fpr#enabled`` is false; these stand in for the mined samples so
    that no ASN inference is spent on a stage that will not run.
    """
    blank = torch.zeros(1, int(crop_size), int(crop_size))
    return [{"image": blank.clone(), "label": torch.tensor([float(y)])} for y in (0, 1)]


FPR_OPTIMIZERS = ("sgd", "adam")


def build_fpr_optimizer(
    name: str, params: Iterable[torch.nn.Parameter], lr: float = 1e-3, momentum: float = 0.9
) -> torch.optim.Optimizer:
    """Optimizer of the FPR stage: ``"sgd"`` (Zhang et al. Sec. 4.1: SGD, lr 1e-3) or ``"adam"``.

    The paper fine-tunes an ImageNet-pretrained ResNet-50 with SGD. Trained from scratch (no
    pretrained weights can be downloaded here), SGD at lr 1e-3 stays at the base-rate loss within
    the CPU budget, so the bundle default is Adam at the paper's learning rate (a config value).
    """
    key = str(name).lower()
    if key == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum)
    if key == "adam":
        return torch.optim.Adam(params, lr=lr)
    raise ValueError(f"build_fpr_optimizer: unknown optimizer {name!r}; known: {', '.join(FPR_OPTIMIZERS)}")


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


def save_fpr_checkpoint(network: FalsePositiveReductionClassifier, path: str | os.PathLike) -> str:
    """Save the FPR classifier with its construction arguments (atomic; loadable with weights_only=True)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "num_classes": int(network.num_classes),
        "crop_size": int(network.crop_size),
        "input_size": int(network.input_size),
        "resize_mode": str(network.resize_mode),
        "crop_normalization": str(network.crop_normalization),
    }
    state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"config": config, "state_dict": state}, tmp)
    print(f"saved FPR classifier to {path}", flush=True)
    return str(path)


def load_fpr_network(
    path: str | os.PathLike, device: str | torch.device = "cpu", enabled: bool = True, required: bool = False
) -> FalsePositiveReductionClassifier | None:
    """The FPR classifier saved by :func:`save_fpr_checkpoint`, in eval mode; None when disabled or
    (with ``required=False``) when the file is missing (FPR off, final score = ASN score)."""
    if not enabled:
        return None
    path = Path(path)
    if not path.is_file():
        if required:
            raise FileNotFoundError(f"FPR checkpoint {path}: no such file (train the bundle first)")
        warnings.warn(f"FPR checkpoint {path} not found: FPR off, final score = ASN score", stacklevel=2)
        return None
    obj = torch.load(str(path), map_location=device, weights_only=True)
    if not isinstance(obj, Mapping) or "state_dict" not in obj or "config" not in obj:
        raise ValueError(f"{path}: not an FPR checkpoint (expected keys 'config' and 'state_dict')")
    net = FalsePositiveReductionClassifier(**obj["config"])
    net.load_state_dict(obj["state_dict"])
    return net.to(device).eval()
