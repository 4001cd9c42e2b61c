"""Synthetic frontal chest X-rays in the ChestX-ray14 layout (Wang et al., CVPR 2017).

Anatomy is drawn in a canonical, aligned frame with normalised coordinates ``(u, v)`` in [-1, 1]
(u to the image right, v down): body outline with neck and shoulders, two lungs whose bases are
cut by the diaphragm domes, heart (cardiothoracic ratio ~0.45), mediastinum and spine, posterior
ribs as curved bands, clavicles, and power-law lung markings (vessels; the same 1/f^beta model as
the breast parenchyma). This follows the geometric-primitive approach of analytic chest phantoms
(e.g. the XCAT/4D NCAT organ outlines simplified to 2D projections; Segars et al., Med. Phys.
37(9), 2010) rather than any learned generator.

Findings are placed where radiology textbooks put them: cardiomegaly as an enlarged heart (CTR >
0.5), effusion as a meniscus-shaped opacity at a costophrenic angle, pneumothorax as an apical /
lateral lucent rim without lung markings bounded by a visceral pleural line, nodules (< 3 cm) and
masses (>= 3 cm) as round opacities, atelectasis as a plate-like basal band, infiltration as patchy
ill-defined opacity, pneumonia as a lobar consolidation; the six box-less classes get simple
versions too (consolidation, perihilar edema, hyperlucent emphysema with flat diaphragms,
reticular fibrosis, lateral pleural thickening, retrocardiac hiatal hernia). Boxes are the bounding
boxes of each finding's rendered extent in stored pixels.

Misalignment: every image is drawn through a random similarity-plus-anisotropic-scale transform
``T = [[sx cos t, -sy sin t, tx], [sx sin t, sy cos t, ty]]`` (Kim et al.'s alignment
parametrisation) mapping canonical normalised coordinates to image normalised coordinates
(``align_corners=False``). ``T`` is recorded as ``alignment_theta``: fed to
``torch.nn.functional.affine_grid`` it resamples the stored image back into the canonical frame.

Revision 2 (:data:`CHEST_REVISION`) adds what the disease-mask method needs (Kim et al.; METHODS.md
section 4): a majority of normal images (``p_normal`` 0.55), co-occurring labels (each finding
brings its usual companion with ``p_co_occurrence``: cardiomegaly with effusion, effusion with
atelectasis, pneumonia with infiltration, mass with nodule), label-correlated cues outside the
lesion (a class-specific "device" drawn outside the lungs with ``p_cue`` when the class is present
and ``p_cue_normal`` otherwise, so a plain CAM can look at the wrong place) and the mean anatomy of
the canonical frame (:func:`canonical_anatomy`: lungs and heart, written as ``anatomy/*.png``, the
pseudo disease masks' source).

Example:
    >>> import numpy as np
    >>> out = render_chest(np.random.default_rng(0), ["Cardiomegaly"], ChestOptions(size=128))
    >>> out["image"].shape, out["findings"][0]["name"]
    ((128, 128), 'Cardiomegaly')
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.special import expit

from .texture import power_law_noise

__all__ = ["ChestOptions", "render_chest", "synthesize_chest", "canonical_anatomy", "CXR14_CLASSES", "BOX_CLASSES", "CHEST_REVISION"]

CXR14_CLASSES: tuple[str, ...] = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
)
BOX_CLASSES: tuple[str, ...] = CXR14_CLASSES[:8]
#: the BBox_List_2017.csv spelling
_BOX_NAME = {"Infiltration": "Infiltrate"}
_FIELD_MM = 350.0  # the image spans ~35 cm of chest
#: generator revision (part of the options, hence of the cache key); 2: cues, co-occurrence, anatomy
CHEST_REVISION = 2
#: finding -> the companion it brings with ``p_co_occurrence`` (clinically frequent pairs)
_CO_OCCURRING = {"Cardiomegaly": "Effusion", "Effusion": "Atelectasis", "Pneumonia": "Infiltration", "Mass": "Nodule"}
#: class -> shape of its label-correlated cue (a device outside the lungs)
_CUES = {"Effusion": "ring", "Pneumothorax": "bar", "Atelectasis": "square", "Pneumonia": "cross"}


@dataclass
class ChestOptions:
    """Options of the "cxr" phantom kind.

    Attributes:
        size: PNG side in pixels (default 1024, as released).
        p_normal: probability of "No Finding" (default 0.4).
        p_extra_finding: probability of each additional finding after the first (default 0.3).
        box_class_weight: sampling weight of each of the 8 box classes (default 1.0).
        other_class_weight: sampling weight of each of the 6 box-less classes (default 0.3).
        box_fraction: fraction of images with box-class findings whose boxes are listed in
            BBox_List_2017.csv (``fully_labelled``; default 1.0).
        rotation_deg: maximum absolute rotation of the misalignment (default 10).
        scale: range of the per-axis scales sx, sy (default (0.9, 1.1)).
        shift: maximum absolute shift as a fraction of the image side (default 0.06).
        p_followup: probability that a patient has a second (follow-up) image (default 0.2).
        p_ap: probability of an AP (instead of PA) view (default 0.2).
        noise: Gaussian noise standard deviation in 8-bit levels (default 2.0).
        split: training / validation / test fractions of patients (default (0.7, 0.1, 0.2)).
        p_co_occurrence: probability that a finding brings its companion (default 0.35).
        p_cue: probability of a class's cue when the class is present (default 0.6).
        p_cue_normal: probability of each cue when its class is absent (default 0.05).
        revision: must be :data:`CHEST_REVISION` (default).
    """

    size: int = 1024
    p_normal: float = 0.55
    p_extra_finding: float = 0.3
    box_class_weight: float = 1.0
    other_class_weight: float = 0.3
    box_fraction: float = 1.0
    rotation_deg: float = 10.0
    scale: tuple[float, float] = (0.9, 1.1)
    shift: float = 0.06
    p_followup: float = 0.2
    p_ap: float = 0.2
    noise: float = 2.0
    split: tuple[float, float, float] = (0.7, 0.1, 0.2)
    p_co_occurrence: float = 0.35
    p_cue: float = 0.6
    p_cue_normal: float = 0.05
    revision: int = CHEST_REVISION

    def __post_init__(self) -> None:
        if int(self.size) < 64:
            raise ValueError(f"cxr phantom: size must be >= 64, got {self.size}")
        if self.revision != CHEST_REVISION:
            raise ValueError(f"cxr phantom: this generator writes revision {CHEST_REVISION}, got revision={self.revision}")


def _ellipse(u: np.ndarray, v: np.ndarray, cu: float, cv: float, au: float, av: float, power: float = 2.0) -> np.ndarray:
    cu, cv, au, av = float(cu), float(cv), float(au), float(av)
    if power == 2.0:
        a, b = (u - cu) / au, (v - cv) / av
        return (a * a + b * b).astype(np.float32, copy=False)
    return (np.abs((u - cu) / au) ** float(power) + np.abs((v - cv) / av) ** float(power)).astype(np.float32, copy=False)


def _soft(inside_measure: np.ndarray, width: float) -> np.ndarray:
    """Soft indicator of ``inside_measure < 1`` with an edge ``width`` wide (in measure units)."""
    return expit((np.float32(1.0) - inside_measure) / np.float32(width)).astype(np.float32, copy=False)


def _band(u: np.ndarray, v: np.ndarray, p0: tuple[float, float], p1: tuple[float, float], half_width: float) -> np.ndarray:
    """Distance-based soft band along the segment p0-p1."""
    ax, ay, dx, dy = float(p0[0]), float(p0[1]), float(p1[0] - p0[0]), float(p1[1] - p0[1])
    length2 = dx * dx + dy * dy
    t = np.clip(((u - ax) * dx + (v - ay) * dy) / length2, 0.0, 1.0)
    dist = np.hypot(u - (ax + t * dx), v - (ay + t * dy))
    return expit((float(half_width) - dist) / float(half_width * 0.3)).astype(np.float32)


def render_chest(rng: np.random.Generator, findings: list[str], opts: ChestOptions | None = None) -> dict[str, Any]:
    """Render one chest X-ray with the given findings (ChestX-ray14 class names).

    Returns:
        dict with "image" (uint8 (size, size)), "findings" (list of {"name", "index", "box"
        [x0, y0, x1, y1] or None}), "alignment_theta" (2x3, canonical -> image normalised
        coordinates), "transform" (3x3, canonical pixel -> image pixel) and "misalignment"
        {"sx", "sy", "tx", "ty", "theta_deg"}.
    """
    opts = opts or ChestOptions()
    size = int(opts.size)
    theta = float(np.deg2rad(rng.uniform(-opts.rotation_deg, opts.rotation_deg)))
    sx, sy = float(rng.uniform(*opts.scale)), float(rng.uniform(*opts.scale))
    tx, ty = float(rng.uniform(-opts.shift, opts.shift) * 2), float(rng.uniform(-opts.shift, opts.shift) * 2)
    forward = np.array([[sx * np.cos(theta), -sy * np.sin(theta), tx], [sx * np.sin(theta), sy * np.cos(theta), ty], [0, 0, 1]])
    inverse = np.linalg.inv(forward)
    # image pixel centres -> image normalised coords (align_corners=False) -> canonical coords
    grid = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
    xi, yi = grid[None, :], grid[:, None]
    u = (inverse[0, 0] * xi + inverse[0, 1] * yi + inverse[0, 2]).astype(np.float32)
    v = (inverse[1, 0] * xi + inverse[1, 1] * yi + inverse[1, 2]).astype(np.float32)
    names = set(findings)
    px = 2.0 / size  # normalised units per pixel (before scaling)

    # ---- anatomy (canonical frame); patient-to-patient variation of every organ
    lung_w, lung_h = rng.uniform(0.24, 0.3), rng.uniform(0.5, 0.6)
    lung_cv = rng.uniform(-0.12, -0.02)
    dome_v = lung_cv + lung_h * rng.uniform(0.72, 0.85)
    if "Emphysema" in names:
        lung_h *= 1.1
        dome_v += 0.08
    heart_scale = rng.uniform(1.3, 1.5) if "Cardiomegaly" in names else rng.uniform(0.9, 1.05)
    heart = dict(cu=0.1, cv=dome_v - 0.17, au=0.3 * heart_scale, av=0.22 * min(heart_scale, 1.2))
    body = _soft(_ellipse(u, v, 0.0, 0.2, 0.86, 1.15, 2.4), 0.04) + _soft(_ellipse(u, v, 0.0, -1.0, 0.2, 0.5), 0.05)
    body = np.clip(body, 0, 1)
    domes = []
    lungs = np.zeros_like(u)
    lung_masks = []
    for side in (-1, 1):
        cu = side * rng.uniform(0.34, 0.4)
        shape = _ellipse(u, v, cu, lung_cv, lung_w, lung_h, 2.2)
        dome = dome_v - 0.1 * (1 - ((u - cu) / lung_w) ** 2) + (0.03 if side == 1 else 0.0)
        below = expit((v - dome) / 0.01)
        lung = _soft(shape, 0.05) * (1 - below)
        lung_masks.append(lung)
        lungs = np.maximum(lungs, lung)
        domes.append((cu, dome))
    heart_m = _soft(_ellipse(u, v, **heart), 0.05)
    mediastinum = _soft(_ellipse(u, v, 0.0, -0.35, 0.13, 0.45), 0.05)
    spine = _soft(_ellipse(u, v, 0.0, 0.0, 0.07, 1.4, 4.0), 0.05)
    lungs = lungs * (1 - np.maximum(heart_m, mediastinum) * 0.85)
    density = 0.75 * body - 0.5 * lungs + 0.18 * heart_m + 0.15 * mediastinum + 0.12 * spine
    markings = power_law_noise((size, size), beta=3.0, rng=rng)
    density += 0.05 * markings * lungs
    # posterior ribs: 10 curved bands per side, all at once through the phase of a periodic profile
    rib_pitch, rib_top = 0.105, lung_cv - lung_h * 0.85
    abs_u = np.abs(u)
    phase = (v - (0.6 * (abs_u - 0.08) ** 2 - 0.25 * abs_u) - rib_top) / np.float32(rib_pitch)
    nearest = np.abs(phase - np.round(phase)) * np.float32(rib_pitch)
    in_cage = (phase > -0.5) & (phase < 9.5) & (abs_u > 0.05) & (abs_u < 0.72)
    density += np.float32(0.1) * expit((np.float32(0.018) - nearest) / np.float32(0.006)).astype(np.float32) * in_cage * body
    for side in (-1, 1):  # clavicles
        density += 0.2 * _band(u, v, (side * 0.07, -0.68), (side * 0.6, -0.8 + rng.uniform(-0.03, 0.03)), 0.028)

    # ---- findings: each returns an extent map (0-1) whose threshold gives the box
    extents: dict[str, np.ndarray] = {}

    def pick_lung() -> int:
        return int(rng.integers(0, 2))

    def lung_point(side: int, v_range: tuple[float, float]) -> tuple[float, float]:
        cu = domes[side][0]
        return cu + rng.uniform(-0.5, 0.5) * lung_w, lung_cv + rng.uniform(*v_range) * lung_h

    def blob(cu: float, cv: float, radius: float, edge: float = 0.08) -> np.ndarray:
        return _soft(_ellipse(u, v, cu, cv, radius, radius * rng.uniform(0.85, 1.15)), edge)

    if "Cardiomegaly" in names:
        extents["Cardiomegaly"] = heart_m
    if "Effusion" in names:
        side = pick_lung()
        cu, dome = domes[side]
        height = rng.uniform(0.08, 0.22)
        # meniscus: the fluid climbs along the lateral chest wall
        level = dome - height * (1 + 1.5 * ((u - cu) * np.sign(cu) / lung_w).clip(0, None) ** 2)
        fluid = expit((v - level) / 0.012) * lung_masks[side] / np.maximum(lung_masks[side], 1e-3) * _soft(_ellipse(u, v, cu, lung_cv, lung_w * 1.05, lung_h * 1.05, 2.2), 0.05)
        fluid = fluid.astype(np.float32) * (v < dome + 0.02)
        density += 0.55 * fluid
        extents["Effusion"] = fluid
    if "Pneumothorax" in names:
        side = pick_lung()
        mask = lung_masks[side] > 0.5
        depth = ndimage.distance_transform_edt(mask) * px  # approximate, in image-normalised units
        rim = rng.uniform(0.04, 0.1)
        apical = v < lung_cv + rng.uniform(0.0, 0.3) * lung_h
        region = (mask & (depth < rim) & apical).astype(np.float32)
        region = ndimage.gaussian_filter(region, 1.0)
        pleura = ((depth > rim) & (depth < rim + 1.5 * px) & apical & mask).astype(np.float32)
        density -= region * (0.05 * markings + 0.08)
        density += 0.12 * ndimage.gaussian_filter(pleura, 0.7)
        extents["Pneumothorax"] = region
    if "Nodule" in names:
        cu, cv = lung_point(pick_lung(), (-0.6, 0.5))
        radius = rng.uniform(5, 25) / 2 / _FIELD_MM * 2
        nodule = blob(cu, cv, radius, 0.12)
        density += 0.35 * nodule
        extents["Nodule"] = nodule
    if "Mass" in names:
        cu, cv = lung_point(pick_lung(), (-0.5, 0.4))
        radius = rng.uniform(30, 60) / 2 / _FIELD_MM * 2
        mass = blob(cu, cv, radius, 0.1)
        density += 0.4 * mass
        extents["Mass"] = mass
    if "Atelectasis" in names:
        side = pick_lung()
        cu, dome = domes[side]
        cv = dome_v - rng.uniform(0.08, 0.2)
        angle = rng.uniform(-0.35, 0.35)
        half = rng.uniform(0.1, 0.18)
        band = _band(u, v, (cu - half * np.cos(angle), cv - half * np.sin(angle)), (cu + half * np.cos(angle), cv + half * np.sin(angle)), rng.uniform(0.02, 0.04))
        band *= lung_masks[side] > 0.3
        density += 0.35 * band
        extents["Atelectasis"] = band
    for name, v_range, strength, radius_range in (("Infiltration", (-0.3, 0.6), 0.22, (0.1, 0.18)), ("Pneumonia", (0.0, 0.6), 0.42, (0.14, 0.22)), ("Consolidation", (-0.2, 0.6), 0.4, (0.1, 0.18))):
        if name in names:
            side = pick_lung()
            cu, cv = lung_point(side, v_range)
            region = blob(cu, cv, rng.uniform(*radius_range), 0.25)
            patchy = np.clip(power_law_noise((size, size), beta=2.5, rng=rng) * 0.6 + 0.6, 0, 1) if name == "Infiltration" else 1.0
            opacity = (region * patchy * lung_masks[side]).astype(np.float32)
            density += strength * opacity
            extents[name] = opacity
    if "Edema" in names:
        density += 0.2 * (_soft(_ellipse(u, v, -0.18, -0.05, 0.25, 0.3), 0.5) + _soft(_ellipse(u, v, 0.18, -0.05, 0.25, 0.3), 0.5)) * lungs
    if "Emphysema" in names:
        density -= 0.12 * lungs
    if "Fibrosis" in names:
        reticular = np.clip(power_law_noise((size, size), beta=1.5, rng=rng), 0, None)
        density += 0.08 * reticular * lungs * (v < lung_cv)
    if "Pleural_Thickening" in names:
        side = pick_lung()
        cu = domes[side][0]
        density += 0.2 * _band(u, v, (cu + np.sign(cu) * lung_w * 0.95, lung_cv - 0.3), (cu + np.sign(cu) * lung_w * 0.9, lung_cv + 0.2), 0.02)
    if "Hernia" in names:
        bubble = blob(0.05, dome_v - 0.05, 0.07, 0.1)
        density += -0.2 * bubble * (v < dome_v - 0.05) + 0.1 * bubble * (v >= dome_v - 0.05)

    # ---- label-correlated cues (revision 2): a class-specific device outside the lungs
    cues = []
    for name, shape in _CUES.items():
        if rng.uniform() >= (opts.p_cue if name in names else opts.p_cue_normal):
            continue
        for _ in range(20):  # a point of the body outside the lungs
            cu_c, cv_c = rng.uniform(-0.75, 0.75), rng.uniform(-0.85, 0.9)
            inside = _ellipse(np.float32(cu_c), np.float32(cv_c), 0.0, 0.2, 0.86, 1.15, 2.4) < 0.9
            near_lung = any(_ellipse(np.float32(cu_c), np.float32(cv_c), d[0], lung_cv, lung_w * 1.25, lung_h * 1.15, 2.2) < 1 for d in domes)
            if inside and not near_lung:
                break
        r = 0.045
        if shape == "ring":
            d = np.hypot(u - cu_c, v - cv_c)
            device = expit((0.012 - np.abs(d - r)) / 0.004)
        elif shape == "bar":
            device = _band(u, v, (cu_c - r * 1.5, cv_c - r * 0.3), (cu_c + r * 1.5, cv_c + r * 0.3), 0.012)
        elif shape == "square":
            device = _soft(_ellipse(u, v, cu_c, cv_c, r, r, 8.0), 0.05)
        else:
            device = np.maximum(_band(u, v, (cu_c - r, cv_c), (cu_c + r, cv_c), 0.012), _band(u, v, (cu_c, cv_c - r), (cu_c, cv_c + r), 0.012))
        device = device.astype(np.float32)
        density += 0.45 * device
        rows, cols = np.nonzero(device > 0.5)
        box = [int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1] if rows.size else None
        cues.append({"name": name, "shape": shape, "box": box})

    density += rng.standard_normal((size, size), dtype=np.float32) * np.float32(opts.noise / 255 * 1.2)
    image = np.clip(density / 1.15, 0, 1) ** 0.85 * 255
    image = np.rint(image).astype(np.uint8)

    records = []
    for name in findings:
        box = None
        if name in extents and name in BOX_CLASSES:
            rows, cols = np.nonzero(extents[name] > 0.5)
            if rows.size:
                box = [int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1]
        records.append({"name": name, "index": CXR14_CLASSES.index(name), "box": box})
    # canonical pixel -> image pixel: P^-1 F P with P: pixel -> normalised
    to_norm = np.array([[2 / size, 0, 1 / size - 1], [0, 2 / size, 1 / size - 1], [0, 0, 1]])
    transform = np.linalg.inv(to_norm) @ forward @ to_norm
    return {
        "image": image,
        "findings": records,
        "cues": cues,
        "alignment_theta": np.round(forward[:2], 6).tolist(),
        "transform": np.round(transform, 6).tolist(),
        "misalignment": {"sx": round(float(sx), 5), "sy": round(float(sy), 5), "tx": round(float(tx), 5), "ty": round(float(ty), 5), "theta_deg": round(float(np.rad2deg(theta)), 4)},
    }


def _sample_findings(rng: np.random.Generator, opts: ChestOptions) -> list[str]:
    if rng.uniform() < opts.p_normal:
        return []
    weights = np.array([opts.box_class_weight] * 8 + [opts.other_class_weight] * 6, dtype=float)
    chosen = [int(rng.choice(14, p=weights / weights.sum()))]
    while rng.uniform() < opts.p_extra_finding and len(chosen) < 4:
        weights[chosen] = 0
        if weights.sum() <= 0:
            break
        chosen.append(int(rng.choice(14, p=weights / weights.sum())))
    for index in list(chosen):
        companion = _CO_OCCURRING.get(CXR14_CLASSES[index])
        if companion and rng.uniform() < opts.p_co_occurrence:
            chosen.append(CXR14_CLASSES.index(companion))
    return [CXR14_CLASSES[i] for i in sorted(set(chosen))]


def canonical_anatomy(size: int) -> dict[str, np.ndarray]:
    """Lungs and heart of the mean patient in the canonical (aligned) frame, as {0, 1} uint8 masks
    (size, size): the source of the pseudo disease masks (Kim et al.'s PDM baseline).

    Example:
        >>> masks = canonical_anatomy(64)
        >>> sorted(masks), bool(masks["lungs"][32, 16]), bool(masks["heart"][40, 36])
        (['heart', 'lungs'], True, True)
    """
    grid = (np.arange(int(size), dtype=np.float32) + 0.5) / int(size) * 2 - 1
    u, v = np.broadcast_to(grid[None, :], (size, size)), np.broadcast_to(grid[:, None], (size, size))
    lung_w, lung_h, lung_cv = 0.27, 0.55, -0.07  # the means of render_chest's ranges
    dome_v = lung_cv + lung_h * 0.785
    lungs = np.zeros((size, size), dtype=np.float32)
    for side in (-1, 1):
        cu = side * 0.37
        dome = dome_v - 0.1 * (1 - ((u - cu) / lung_w) ** 2) + (0.03 if side == 1 else 0.0)
        lungs = np.maximum(lungs, _soft(_ellipse(u, v, cu, lung_cv, lung_w, lung_h, 2.2), 0.05) * (v < dome))
    heart = _soft(_ellipse(u, v, 0.1, dome_v - 0.17, 0.3 * 0.975, 0.22 * 0.975), 0.05)
    return {"lungs": (lungs > 0.5).astype(np.uint8), "heart": (heart > 0.5).astype(np.uint8)}


def synthesize_chest(out_dir: str | Path, n: int, seed: int, **options: Any) -> Path:
    """Write ``n`` chest X-rays as ``images/*.png`` + ``Data_Entry_2017.csv`` +
    ``BBox_List_2017.csv`` (the release's formats) + ``datalist.json``."""
    from monai_mammo.atomic_io import atomic_write_bytes

    from ._io import GENERATOR_VERSION, split_groups, write_json, write_png
    from .mammogram import _jsonable

    opts = ChestOptions(**options)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    entry_rows: list[list[Any]] = []
    box_rows: list[list[Any]] = []
    records: list[dict[str, Any]] = []
    patient, follow_up = 1, 0
    for i in range(int(n)):
        rng = np.random.default_rng([int(seed), 3, i])
        if i > 0 and rng.uniform() >= opts.p_followup:
            patient, follow_up = patient + 1, 0
        elif i > 0:
            follow_up += 1
        name = f"{patient:08d}_{follow_up:03d}.png"
        findings = _sample_findings(rng, opts)
        rendered = render_chest(rng, findings, opts)
        write_png(out / "images" / name, rendered["image"])
        age = int(rng.integers(18, 90))
        sex = "M" if rng.uniform() < 0.55 else "F"
        view = "AP" if rng.uniform() < opts.p_ap else "PA"
        original = int(rng.integers(2400, 3056))
        spacing = 0.143 if original > 2600 else 0.139
        listed = bool(any(f["box"] for f in rendered["findings"]) and rng.uniform() < opts.box_fraction)
        entry_rows.append([name, "|".join(findings) or "No Finding", follow_up, patient, age, sex, view, original, original, spacing, spacing])
        boxes, box_labels = [], []
        if listed:
            for f in rendered["findings"]:
                if f["box"]:
                    x0, y0, x1, y1 = f["box"]
                    box_rows.append([name, _BOX_NAME.get(f["name"], f["name"]), float(x0), float(y0), float(x1 - x0), float(y1 - y0)])
                    boxes.append(f["box"])
                    box_labels.append(f["index"])
        label = [0] * 14
        for f in rendered["findings"]:
            label[f["index"]] = 1
        stored_spacing = round(spacing * original / opts.size, 6)
        records.append(
            {
                "image": f"images/{name}",
                "label": label,
                "boxes": boxes,
                "box_labels": box_labels,
                "findings": [{"name": f["name"], "index": f["index"], "box": f["box"]} for f in rendered["findings"]],
                "fully_labelled": listed,
                "spacing": [stored_spacing, stored_spacing],
                "patient_id": f"{patient:08d}",
                "follow_up": follow_up,
                "laterality": "",
                "view": view,
                "age": age,
                "sex": sex,
                "alignment_theta": rendered["alignment_theta"],
                "transform": rendered["transform"],
                "misalignment": rendered["misalignment"],
                "cues": rendered["cues"],
            }
        )
    # the release's CSV formats: bracketed headers split over cells, trailing empty header cells
    entry_csv = io.StringIO()
    entry_csv.write("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],\n")
    csv.writer(entry_csv, lineterminator="\n").writerows(entry_rows)
    atomic_write_bytes(out / "Data_Entry_2017.csv", entry_csv.getvalue().encode())
    box_csv = io.StringIO()
    box_csv.write("Image Index,Finding Label,Bbox [x,y,w,h],,,\n")
    csv.writer(box_csv, lineterminator="\n").writerows(box_rows)
    atomic_write_bytes(out / "BBox_List_2017.csv", box_csv.getvalue().encode())
    assignment = split_groups([r["patient_id"] for r in records], opts.split, seed)
    datalist = {
        "name": "monai-mammo synthetic ChestX-ray14",
        "kind": "cxr",
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "n": int(n),
        "options": _jsonable(opts.__dict__),
        "classes": list(CXR14_CLASSES),
        "box_classes": list(BOX_CLASSES),
        "training": [r for r in records if assignment[r["patient_id"]] == "training"],
        "validation": [r for r in records if assignment[r["patient_id"]] == "validation"],
        "test": [r for r in records if assignment[r["patient_id"]] == "test"],
    }
    anatomy = canonical_anatomy(int(opts.size))
    for name, mask in anatomy.items():
        write_png(out / "anatomy" / f"{name}.png", mask * np.uint8(255))
    datalist["anatomy"] = {name: f"anatomy/{name}.png" for name in anatomy}
    path = out / "datalist.json"
    write_json(path, datalist)
    return path
