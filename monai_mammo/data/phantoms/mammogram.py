"""Full-field synthetic mammograms (2D projections) with exact ground truth.

The image is formed in the attenuation (log) domain, ``L(x, y) = ∫ mu(x, y, z) dz``, as in
software breast phantoms (Bakic et al., "Mammogram synthesis using a 3D simulation", Med. Phys.
29(9), 2002; Carton et al., Med. Phys. 38(2), 2011; Kiarashi et al., "Development of realistic
physical breast phantoms matched to virtual breast phantoms", Med. Phys. 42(1), 2015), then
detected with quantum noise and mapped to 14-bit "for presentation" values:

* **Anatomy.** Compressed breast outline (half-ellipse with a low-order radial perturbation)
  against the chest wall; thickness constant under the paddle and falling off as a half circle
  over the uncompressed periphery; a skin line; a pectoral muscle wedge on MLO views.
* **Parenchyma.** A power-law Gaussian field (beta ≈ 3, Burgess et al., Med. Phys. 28(4), 2001),
  biased towards the central/sub-areolar region and soft-thresholded to a glandular fraction that
  matches the BI-RADS density category A-D (area fractions roughly <20 %, 20-45 %, 45-70 %, >70 %).
* **Lesions** (see :mod:`.lesions`): masses whose attenuation is that of glandular tissue (so a
  mass over dense tissue loses its contrast: *obscured*), µC clusters, vessel calcifications.
* **Acquisition.** Automatic exposure control fixes the photon count behind fatty tissue;
  Gaussian-approximated Poisson noise with ``sigma_L = 1 / sqrt(N)``; linear mapping of ``L`` to
  14-bit values (tissue bright); a burned-in view marker ("LCC", ...).

Images are generated in a canonical frame with the chest wall at x = 0 (the usual storage of left
breasts, PatientOrientation "A\\R"/"A\\FR"), and mirrored for right breasts.

Example:
    >>> import numpy as np
    >>> opts = MammogramOptions(image_size=(512, 416))
    >>> plan = plan_patient(np.random.default_rng(0), opts)
    >>> view = render_view(np.random.default_rng(1), plan, "CC", opts)
    >>> view.image.shape, view.image.dtype, int(view.image.max()) <= 16383
    ((512, 416), dtype('uint16'), True)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

logger = logging.getLogger(__name__)
from scipy.special import expit

from .lesions import (
    hand_drawn_polygon,
    polygon_mask,
    render_calcification,
    render_mass,
    render_vessel,
    sample_cluster,
    sample_mass_shape,
    sample_vessel,
)
from .texture import power_law_noise

__all__ = ["MammogramOptions", "PatientPlan", "RenderedView", "plan_patient", "render_view", "synthesize_mammograms", "DENSITY_AREA_FRACTION"]

#: BI-RADS density category -> range of fibroglandular area fraction drawn for a breast
DENSITY_AREA_FRACTION: dict[str, tuple[float, float]] = {"A": (0.05, 0.2), "B": (0.2, 0.45), "C": (0.45, 0.7), "D": (0.7, 0.9)}

# linear attenuation coefficients at ~20 keV, 1/mm (Johns & Yaffe, Phys. Med. Biol. 32(6), 1987:
# fat 0.46 /cm, fibroglandular 0.80 /cm; infiltrating ductal carcinoma ~0.85 /cm; muscle ~0.85 /cm)
MU_FAT = np.float32(0.046)
MU_GLAND = np.float32(0.080)
MU_MASS = np.float32(0.085)
MU_MUSCLE = np.float32(0.086)

MAX_VALUE = 16383  # 14 bits


@dataclass
class MammogramOptions:
    """Options of the "mammogram" phantom kind (every field is a ``synthesize`` keyword).

    Attributes:
        image_size: (H, W) pixels; default (4096, 3328). Smaller sizes keep ``spacing_mm`` (a
            smaller field of view), so physical lesion sizes stay right.
        spacing_mm: pixel spacing in mm (default 0.07).
        p_mass: probability that a patient has masses (default 0.5).
        p_malignant_mass: probability that a mass is malignant (default 0.5).
        max_masses: at most this many masses per patient (default 2).
        p_calc_cluster: probability that a patient has µC clusters (default 0.4).
        p_malignant_cluster: probability that a cluster is malignant (default 0.5).
        max_clusters: at most this many clusters per patient (default 2).
        p_vessel: probability that a patient has vessel calcifications (default 0.4).
        max_vessels: at most this many vessel tracks per view (default 3).
        mass_diameter_mm: range of mass diameters (default (5, 30)).
        calc_diameter_mm: range of µC diameters (default (0.1, 1.0)).
        calc_cnr: range of µC peak contrast-to-noise ratios (default (1.0, 12.0)).
        density_probs: probabilities of BI-RADS density A, B, C, D (default (0.1, 0.4, 0.4, 0.1)).
        views: views to draw from; with ``views_per_patient=2`` both are used (default ("CC", "MLO")).
        views_per_patient: images per patient (same breast, same lesions; default 2).
        compression_mm: range of compressed breast thickness in mm (default (35, 65)).
        photons_per_pixel: detected quanta per pixel behind fat at full thickness (default 1500).
        beta: power-law exponent of the parenchyma (default 3.0).
        obscured_threshold: a mass is ``obscured`` when the mean glandular fraction over it is at
            least this (default 0.5).
        under_drawn_fraction: fraction of hand-drawn outlines drawn too small (default 0.15).
        coarse_margin_mm: range of the hand-drawn outline margin in mm (default (1.0, 5.0)).
        coarse_area_ratio_mass: None (default: ``coarse_margin_mm`` sets the margin) or a range
            (lo, hi): a mass's outline margin is drawn so that the outline's area is about ``k`` times
            the mass's, ``k`` uniform in the range, per lesion (LatentCADx: 1.5-4x; tight on masses).
        coarse_area_ratio_calc: the same for µC clusters (area of the cluster's disc; loose outlines).
        marker_probability: probability of a burned-in view marker (default 0.9).
        monochrome1_fraction: fraction of images stored MONOCHROME1 (inverted; default 0.3).
        syntax_probs: probabilities of (uncompressed, RLE Lossless, JPEG 2000 Lossless)
            (default (0.5, 0.25, 0.25)).
        pixel_spacing_fraction: fraction of files with PixelSpacing (the others carry only
            ImagerPixelSpacing; default 0.7).
        fully_labelled_fraction: fraction of patients flagged ``fully_labelled`` (default 1.0).
        clusters_as_boxes: also append µC cluster boxes to ``boxes``/``box_labels`` (default False).
        split: training / validation / test fractions of patients (default (0.7, 0.15, 0.15)).
    """

    image_size: tuple[int, int] = (4096, 3328)
    spacing_mm: float = 0.07
    p_mass: float = 0.5
    p_malignant_mass: float = 0.5
    max_masses: int = 2
    p_calc_cluster: float = 0.4
    p_malignant_cluster: float = 0.5
    max_clusters: int = 2
    p_vessel: float = 0.4
    max_vessels: int = 3
    mass_diameter_mm: tuple[float, float] = (5.0, 30.0)
    calc_diameter_mm: tuple[float, float] = (0.1, 1.0)
    calc_cnr: tuple[float, float] = (1.0, 12.0)
    density_probs: tuple[float, float, float, float] = (0.1, 0.4, 0.4, 0.1)
    views: tuple[str, ...] = ("CC", "MLO")
    views_per_patient: int = 2
    compression_mm: tuple[float, float] = (35.0, 65.0)
    photons_per_pixel: float = 1500.0
    beta: float = 3.0
    obscured_threshold: float = 0.5
    under_drawn_fraction: float = 0.15
    coarse_margin_mm: tuple[float, float] = (1.0, 5.0)
    # added after the asn / dabnet sets were cached: left out of the cache key while at their default
    coarse_area_ratio_mass: tuple[float, float] | None = field(default=None, metadata={"cache_key": "omit_default"})
    coarse_area_ratio_calc: tuple[float, float] | None = field(default=None, metadata={"cache_key": "omit_default"})
    marker_probability: float = 0.9
    monochrome1_fraction: float = 0.3
    syntax_probs: tuple[float, float, float] = (0.5, 0.25, 0.25)
    pixel_spacing_fraction: float = 0.7
    fully_labelled_fraction: float = 1.0
    clusters_as_boxes: bool = False
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)

    def __post_init__(self) -> None:
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        if min(self.image_size) < 64:
            raise ValueError(f"mammogram phantom: image_size must be at least 64x64, got {self.image_size}")
        for name in ("density_probs", "syntax_probs", "split"):
            values = np.asarray(getattr(self, name), dtype=float)
            if (values < 0).any() or values.sum() <= 0:
                raise ValueError(f"mammogram phantom: option {name} must be non-negative and not all zero, got {values.tolist()}")
        lo, hi = self.mass_diameter_mm
        if not 0 < lo <= hi:
            raise ValueError(f"mammogram phantom: mass_diameter_mm must be 0 < lo <= hi, got {self.mass_diameter_mm}")


@dataclass
class PatientPlan:
    """What a patient has, shared by all of their views."""

    laterality: str
    density: str
    gland_fraction: float
    thickness_mm: float
    masses: list[dict[str, Any]] = field(default_factory=list)  # {"malignant", "diameter_mm"}
    clusters: list[dict[str, Any]] = field(default_factory=list)  # {"malignant"}
    n_vessels: int = 0


@dataclass
class RenderedView:
    """One rendered image: 14-bit presentation values (tissue bright) and its ground truth."""

    image: np.ndarray  # uint16 (H, W)
    mask: np.ndarray  # uint8 (H, W): 0 bg, 1 benign mass, 2 malignant mass, 3 µC
    coarse_mask: np.ndarray  # uint8 (H, W), same labels, simulated hand-drawn
    record: dict[str, Any]  # datalist fields (coordinates in stored-image pixels)
    gland: np.ndarray | None = None  # float32 glandular fraction map (for tests / ROI crops)


def plan_patient(rng: np.random.Generator, opts: MammogramOptions) -> PatientPlan:
    """Draw the patient-level content: laterality, density, thickness and the lesion list."""
    probs = np.asarray(opts.density_probs, dtype=float)
    density = "ABCD"[int(rng.choice(4, p=probs / probs.sum()))]
    lo, hi = DENSITY_AREA_FRACTION[density]
    plan = PatientPlan(
        laterality="L" if rng.uniform() < 0.5 else "R",
        density=density,
        gland_fraction=float(rng.uniform(lo, hi)),
        thickness_mm=float(rng.uniform(*opts.compression_mm)),
    )
    if rng.uniform() < opts.p_mass:
        for _ in range(1 + int(rng.integers(0, max(opts.max_masses, 1)))):
            plan.masses.append({"malignant": bool(rng.uniform() < opts.p_malignant_mass), "diameter_mm": float(rng.uniform(*opts.mass_diameter_mm))})
    if rng.uniform() < opts.p_calc_cluster:
        for _ in range(1 + int(rng.integers(0, max(opts.max_clusters, 1)))):
            plan.clusters.append({"malignant": bool(rng.uniform() < opts.p_malignant_cluster)})
    if rng.uniform() < opts.p_vessel:
        plan.n_vessels = 1 + int(rng.integers(0, max(opts.max_vessels, 1)))
    return plan


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


class _Anatomy:
    """Breast geometry of one view in the canonical frame (chest wall at x = 0)."""

    def __init__(self, rng: np.random.Generator, height: int, width: int, view: str, spacing: float) -> None:
        self.height, self.width, self.view, self.spacing = height, width, view, spacing
        self.mlo = view.upper() == "MLO"
        self.ax = width * rng.uniform(0.62, 0.86)
        if self.mlo:
            self.cy = height * rng.uniform(0.38, 0.48)
            self.by = height * rng.uniform(0.46, 0.58)
            self.pect_w = width * rng.uniform(0.22, 0.38)
            self.pect_h = height * rng.uniform(0.35, 0.6)
            self.pect_gamma = rng.uniform(0.8, 1.3)
        else:
            self.cy = height * rng.uniform(0.46, 0.54)
            self.by = height * rng.uniform(0.33, 0.45)
        self.harmonics = [(k, rng.uniform(0, 0.025), rng.uniform(0, 2 * np.pi)) for k in range(2, 6)]

    def outline_scale(self, theta: np.ndarray) -> np.ndarray:
        scale = np.ones_like(theta)
        for k, amp, phase in self.harmonics:
            scale += np.float32(amp) * np.cos(k * theta + np.float32(phase))
        return scale

    def fields(self, ys: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalised radius rho (< 1 inside) and distance to the skin in pixels (> 0 inside)."""
        u = xs / np.float32(self.ax)
        v = (ys - np.float32(self.cy)) / np.float32(self.by)
        rho0 = np.sqrt(u * u + v * v)
        theta = np.arctan2(v, u)
        scale = self.outline_scale(theta)
        rho = rho0 / scale
        # first-order distance to the outline: (1 - rho) / |grad rho|
        gx = u / np.float32(self.ax)
        gy = v / np.float32(self.by)
        grad = np.sqrt(gx * gx + gy * gy) / np.maximum(rho0, np.float32(1e-6)) / scale
        dist = (1.0 - rho) / np.maximum(grad, np.float32(1e-9))
        return rho.astype(np.float32), dist.astype(np.float32)

    def pectoral_signed(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """Signed distance-like value (pixels) into the pectoral muscle (> 0 inside); MLO only."""
        frac = np.clip(1.0 - ys / np.float32(self.pect_h), 0.0, 1.0)
        edge_x = np.float32(self.pect_w) * frac ** np.float32(self.pect_gamma)
        slope = np.float32(np.sin(np.arctan2(self.pect_h, self.pect_w)))
        return ((edge_x - xs) * slope).astype(np.float32)

    def nipple(self) -> tuple[float, float]:
        return float(self.ax * 0.98), float(self.cy)


def _density_threshold(score: np.ndarray, inside: np.ndarray, fraction: float) -> float:
    """Threshold of ``score`` such that ``fraction`` of the breast is glandular (subsampled)."""
    sample = score[::4, ::4][inside[::4, ::4]]
    if sample.size == 0:
        return 0.0
    return float(np.quantile(sample, 1.0 - fraction))


def render_view(rng: np.random.Generator, plan: PatientPlan, view: str, opts: MammogramOptions) -> RenderedView:
    """Render one view of a planned patient. See the module docstring for the model."""
    height, width = opts.image_size
    spacing = float(opts.spacing_mm)
    anatomy = _Anatomy(rng, height, width, view, spacing)
    ys = np.arange(height, dtype=np.float32)[:, None]
    xs = np.arange(width, dtype=np.float32)[None, :]
    rho, dist_px = anatomy.fields(ys, xs)
    dist_mm = dist_px * np.float32(spacing)
    inside = dist_px > 0
    thickness = np.float32(plan.thickness_mm)
    rim = np.float32(plan.thickness_mm / 2)
    # compressed breast: flat under the paddle, half-circle profile over the periphery
    edge_profile = np.sqrt(np.clip(1.0 - (1.0 - np.clip(dist_mm, 0, None) / rim) ** 2, 0.0, 1.0))
    t_map = (thickness * np.where(dist_mm < rim, edge_profile, np.float32(1.0))).astype(np.float32)

    # parenchyma: glandular tissue sits centrally, behind a subcutaneous and a retromammary fat layer
    texture = power_law_noise((height, width), beta=opts.beta, rng=rng)
    weight = _smoothstep(dist_mm / np.float32(10.0)) * _smoothstep(xs * np.float32(spacing) / np.float32(12.0)) * (np.float32(1.0) - np.float32(0.45) * rho * rho)
    score = texture + np.float32(2.0) * (weight - np.float32(1.0))
    pect = None
    if anatomy.mlo:
        pect = anatomy.pectoral_signed(ys, xs)
        breast_tissue = inside & (pect < 0)
    else:
        breast_tissue = inside
    threshold = _density_threshold(score, breast_tissue, plan.gland_fraction)
    gland = np.clip((score - np.float32(threshold)) / np.float32(1.0) + np.float32(0.5), 0.0, 1.0).astype(np.float32)
    gland *= breast_tissue
    # glandular volume fraction along the ray (never fully 0 or 1)
    # (+ a weak share of the same field everywhere: fat lobules and Cooper's ligaments also modulate)
    volume = np.float32(0.05) + np.float32(0.45) * gland + np.float32(0.035) * texture * breast_tissue
    mu_local = MU_FAT + (MU_GLAND - MU_FAT) * volume
    atten = t_map * mu_local
    if pect is not None:
        muscle = expit(pect * np.float32(spacing)).astype(np.float32)  # 1 mm soft edge
        atten = atten * (1 - muscle) + muscle * (MU_MUSCLE * t_map * (np.float32(1.0) + np.float32(0.02) * texture))
    # skin: a 1.5 mm shell seen edge-on at the boundary
    atten += np.float32(0.10) * np.exp(-np.clip(dist_mm, 0, None) / np.float32(0.8))
    atten *= np.clip(dist_px + 0.5, 0.0, 1.0)

    mask = np.zeros((height, width), np.uint8)
    coarse = np.zeros((height, width), np.uint8)
    coarse_order: list[tuple[float, np.ndarray, int]] = []

    def usable(x: float, y: float, clearance_px: float) -> bool:
        if not (0 <= x < width and 0 <= y < height):
            return False
        iy, ix = int(y), int(x)
        if x < clearance_px or dist_px[iy, ix] <= clearance_px:
            return False
        if pect is not None and pect[iy, ix] > -clearance_px:
            return False
        return True

    # ---- masses: glandular-like attenuation that replaces the local tissue over its depth
    boxes: list[list[int]] = []
    box_labels: list[int] = []
    obscured: list[bool] = []
    obscuring: list[float] = []
    mass_diameters: list[float] = []
    placed: list[tuple[float, float, float]] = []
    for spec in plan.masses:
        diameter_px = spec["diameter_mm"] / spacing
        shape = sample_mass_shape(rng, diameter_px, spec["malignant"])
        radius = float(shape.radius.max())
        for _ in range(200):
            cx, cy = rng.uniform(0, anatomy.ax), rng.uniform(0, height)
            if usable(cx, cy, radius * 1.1 + 2) and all(np.hypot(cx - px, cy - py) > radius + pr for px, py, pr in placed):
                break
        else:
            continue
        placed.append((cx, cy, radius))
        window, body, body_mask = render_mass(shape, cx, cy, height, width)
        if body_mask.sum() == 0:
            continue
        depth = np.float32(spec["diameter_mm"] * rng.uniform(0.8, 1.0))
        # the mass displaces the tissue it grows in: fibroglandular tissue where the local glandular
        # fraction is high, fat otherwise, so over dense tissue its contrast nearly vanishes
        displaced_mu = MU_FAT + (MU_GLAND - MU_FAT) * gland[window]
        delta = np.clip(body * depth * (MU_MASS - displaced_mu), 0.0, None)
        atten[window] += delta * inside[window]
        label = 2 if spec["malignant"] else 1
        mask_window = mask[window]
        mask_window[body_mask] = label
        rows, cols = np.nonzero(body_mask)
        box = [int(cols.min() + window[1].start), int(rows.min() + window[0].start), int(cols.max() + window[1].start + 1), int(rows.max() + window[0].start + 1)]
        density_over = float(gland[window][body_mask].mean())
        boxes.append(box)
        box_labels.append(label)
        obscuring.append(round(density_over, 4))
        obscured.append(bool(density_over >= opts.obscured_threshold))
        mass_diameters.append(round(float(spec["diameter_mm"]), 3))
        spicule_reach = max((s[1] for s in shape.spicules), default=0.0) * 0.3
        margin = rng.uniform(*opts.coarse_margin_mm) / spacing + spicule_reach
        if opts.coarse_area_ratio_mass is not None:  # area k x the mass's: (r + m)^2 = k r^2
            margin = float(shape.radius.mean()) * (np.sqrt(rng.uniform(*opts.coarse_area_ratio_mass)) - 1.0)
        polygon = hand_drawn_polygon(rng, cx, cy, shape.radius_at, margin, under_drawn=rng.uniform() < opts.under_drawn_fraction)
        coarse_order.append((radius, polygon, label))

    # ---- noise level (needed to set µC and vessel contrast as a CNR)
    l_ref = float(MU_FAT * thickness * 1.1)

    def noise_sigma(value: float) -> float:
        return float(np.exp((value - l_ref) / 2) / np.sqrt(opts.photons_per_pixel))

    # ---- µC clusters, preferably in glandular tissue where ducts are
    points: list[list[float]] = []
    point_diameters: list[float] = []
    point_cnr: list[float] = []
    point_cluster: list[int] = []
    cluster_boxes: list[list[int]] = []
    cluster_labels: list[int] = []
    for spec in plan.clusters:
        candidates = []
        for _ in range(60):
            cx, cy = rng.uniform(0, anatomy.ax), rng.uniform(0, height)
            if usable(cx, cy, 8.0 / spacing):
                candidates.append((float(gland[int(cy), int(cx)]) + rng.uniform(0, 0.3), cx, cy))
            if len(candidates) >= 4:
                break
        if not candidates:
            continue
        _, cx, cy = max(candidates)
        calcs = sample_cluster(rng, cx, cy, spacing, spec["malignant"], opts.calc_diameter_mm, opts.calc_cnr)
        calcs = [c for c in calcs if usable(c.x, c.y, 3.0)]
        if len(calcs) < 3:
            continue
        index = len(cluster_boxes)
        label = 2 if spec["malignant"] else 1
        bx0, by0, bx1, by1 = width, height, 0, 0
        for calc in calcs:
            window, profile, calc_mask = render_calcification(calc, spacing, height, width)
            sigma = noise_sigma(float(atten[int(round(calc.y)), int(round(calc.x))]))
            atten[window] += np.float32(calc.cnr * sigma) * profile
            mask_window = mask[window]
            mask_window[calc_mask] = 3
            rows, cols = np.nonzero(calc_mask)
            bx0, by0 = min(bx0, int(cols.min() + window[1].start)), min(by0, int(rows.min() + window[0].start))
            bx1, by1 = max(bx1, int(cols.max() + window[1].start + 1)), max(by1, int(rows.max() + window[0].start + 1))
            points.append([round(calc.x, 2), round(calc.y, 2)])
            point_diameters.append(round(calc.diameter_mm, 4))
            point_cnr.append(round(calc.cnr, 3))
            point_cluster.append(index)
        cluster_boxes.append([bx0, by0, bx1, by1])
        cluster_labels.append(label)
        member = np.array([[c.x, c.y] for c in calcs])
        centre = member.mean(axis=0)
        reach = float(np.max(np.hypot(*(member - centre).T))) + max(c.diameter_mm for c in calcs) / spacing
        margin = rng.uniform(*opts.coarse_margin_mm) / spacing
        if opts.coarse_area_ratio_calc is not None:
            margin = reach * (np.sqrt(rng.uniform(*opts.coarse_area_ratio_calc)) - 1.0)
        polygon = hand_drawn_polygon(rng, float(centre[0]), float(centre[1]), lambda t, r=reach: np.full_like(t, r), margin, under_drawn=rng.uniform() < opts.under_drawn_fraction)
        coarse_order.append((reach, polygon, 3))

    # ---- vessel calcifications: tram tracks running towards the nipple (distractors)
    vessel_boxes: list[list[int]] = []
    vessel_polylines: list[list[list[float]]] = []
    nipple = anatomy.nipple()
    for _ in range(plan.n_vessels):
        for _ in range(50):
            sx, sy = rng.uniform(0, anatomy.ax * 0.8), rng.uniform(0, height)
            if usable(sx, sy, 5.0 / spacing):
                break
        else:
            continue
        direction = float(np.arctan2(nipple[1] - sy, nipple[0] - sx) + rng.normal(0, 0.35))
        track = sample_vessel(rng, (sx, sy), direction, spacing)
        window, profile = render_vessel(track, height, width)
        if profile.size == 0:
            continue
        profile = profile * (dist_px[window] > 2)
        if pect is not None:
            profile = profile * (pect[window] < 0)
        if profile.max() < 0.5:
            continue
        sigma = noise_sigma(float(np.median(atten[window][profile > 0.5])))
        atten[window] += np.float32(track.cnr * sigma) * profile
        rows, cols = np.nonzero(profile > 0.25)
        vessel_boxes.append([int(cols.min() + window[1].start), int(rows.min() + window[0].start), int(cols.max() + window[1].start + 1), int(rows.max() + window[0].start + 1)])
        keep = track.points[:: max(len(track.points) // 16, 1)]
        vessel_polylines.append([[round(float(x), 1), round(float(y), 1)] for x, y in keep])

    # ---- simulated hand-drawn outlines: large lesions first so small ones stay visible
    for _, polygon, label in sorted(coarse_order, key=lambda item: -item[0]):
        window, poly = polygon_mask(polygon, height, width)
        coarse_window = coarse[window]
        coarse_window[poly] = label

    # ---- acquisition: AEC + quantum noise (sigma_L = 1 / sqrt(N), N = N_ref exp(-(L - L_ref)))
    noise = rng.standard_normal((height, width), dtype=np.float32)
    sigma_map = np.exp((atten - np.float32(l_ref)) * np.float32(0.5)) * np.float32(1.0 / np.sqrt(opts.photons_per_pixel))
    noisy = atten + noise * sigma_map
    gain = np.float32(rng.uniform(0.9, 1.1) * 12500.0 / float(MU_GLAND * thickness))
    offset = np.float32(rng.uniform(40, 300))
    image = np.clip(noisy * gain + offset, 0, MAX_VALUE)

    laterality = plan.laterality
    burn_marker = rng.uniform() < opts.marker_probability
    marker_x = int(rng.integers(0, 1000))

    label_vector = [int(any(box_labels[i] == 2 for i in range(len(box_labels))) or any(c == 2 for c in cluster_labels)), int(any(b == 1 for b in box_labels) or any(c == 1 for c in cluster_labels))]
    if opts.clusters_as_boxes:
        boxes = boxes + cluster_boxes
        box_labels = box_labels + cluster_labels
    record: dict[str, Any] = {
        "label": label_vector,
        "boxes": boxes,
        "box_labels": box_labels,
        "obscured": obscured if not opts.clusters_as_boxes else obscured + [False] * len(cluster_boxes),
        "obscuring_density": obscuring,
        "mass_diameters_mm": mass_diameters,
        "points": points,
        "point_diameters_mm": point_diameters,
        "point_cnr": point_cnr,
        "point_cluster": point_cluster,
        "cluster_boxes": cluster_boxes,
        "cluster_labels": cluster_labels,
        "vessel_boxes": vessel_boxes,
        "vessel_polylines": vessel_polylines,
        "marker_box": None,
        "spacing": [spacing, spacing],
        "laterality": laterality,
        "view": view,
        "density": plan.density,
        "gland_fraction": round(plan.gland_fraction, 4),
        "breast_thickness_mm": round(plan.thickness_mm, 2),
    }
    if laterality == "R":
        image, mask, coarse, gland, inside = image[:, ::-1], mask[:, ::-1], coarse[:, ::-1], gland[:, ::-1], inside[:, ::-1]
        _mirror_record(record, width)
    image = np.ascontiguousarray(image)
    if burn_marker:
        # burned in after mirroring so the text reads correctly, on the side away from the chest wall
        record["marker_box"] = _burn_marker(image, f"{laterality}{view}", inside, anterior_right=laterality == "L", jitter=marker_x)
    image = np.rint(image).astype(np.uint16)
    return RenderedView(np.ascontiguousarray(image), np.ascontiguousarray(mask), np.ascontiguousarray(coarse), record, np.ascontiguousarray(gland))


def _burn_marker(image: np.ndarray, text: str, inside: np.ndarray, anterior_right: bool, jitter: int) -> list[int] | None:
    """Write ``text`` as near-saturated pixels into a free corner on the anterior side."""
    height, width = image.shape
    size = max(int(height * 0.035), 8)
    font = ImageFont.load_default(size=size)
    left, top, right, bottom = font.getbbox(text)
    text_w, text_h = right - left, bottom - top
    margin = max(int(height * 0.015), 2)
    x0 = width - text_w - margin - jitter % (margin + 1) if anterior_right else margin + jitter % (margin + 1)
    for y0 in (margin, height - text_h - margin):
        y1, x1 = y0 + text_h, x0 + text_w
        if x0 < 0 or y1 > height:
            return None
        if inside[max(y0 - margin, 0) : y1 + margin, max(x0 - margin, 0) : x1 + margin].any():
            continue
        canvas = Image.new("L", (text_w, text_h), 0)
        ImageDraw.Draw(canvas).text((-left, -top), text, fill=255, font=font)
        glyphs = np.asarray(canvas) > 127
        region = image[y0:y1, x0:x1]
        region[glyphs] = MAX_VALUE - 200
        return [int(x0), int(y0), int(x1), int(y1)]
    return None


def _mirror_record(record: dict[str, Any], width: int) -> None:
    """Mirror coordinates left-right (x -> W - 1 - x for pixel centres; box edges x -> W - x)."""

    def box(b: list[int]) -> list[int]:
        return [width - b[2], b[1], width - b[0], b[3]]

    for key in ("boxes", "cluster_boxes", "vessel_boxes"):
        record[key] = [box(b) for b in record[key]]
    if record["marker_box"] is not None:
        record["marker_box"] = box(record["marker_box"])
    record["points"] = [[round(width - 1 - x, 2), y] for x, y in record["points"]]
    record["vessel_polylines"] = [[[round(width - 1 - x, 1), y] for x, y in line] for line in record["vessel_polylines"]]


def synthesize_mammograms(out_dir: str | Path, n: int, seed: int, **options: Any) -> Path:
    """Write ``n`` DICOM MG phantoms, their masks and ``datalist.json`` into ``out_dir``.

    Patients get ``views_per_patient`` images (the same breast and lesion list, independently
    placed per view); the training / validation / test split is by patient. Each patient and view
    draws from its own seed (``[seed, patient, view]``), so the first images do not change with n.

    Returns:
        path of ``datalist.json``.
    """
    from ._io import GENERATOR_VERSION, split_groups, write_json, write_png
    from .dicom_writer import available_syntaxes, write_mammogram_dicom

    unavailable = {name: why for name, why in available_syntaxes().items() if why}
    if unavailable:
        logger.warning(
            "phantoms: writing RLE Lossless instead of %s here (%s)",
            ", ".join(unavailable),
            "; ".join(f"{name}: {why}" for name, why in unavailable.items()),
        )

    opts = MammogramOptions(**options)
    out = Path(out_dir)
    for sub in ("images", "masks", "coarse_masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    per_patient = max(int(opts.views_per_patient), 1)
    n_patients = -(-int(n) // per_patient)
    syntax_p = np.asarray(opts.syntax_probs, float) / float(np.sum(opts.syntax_probs))
    records: list[dict[str, Any]] = []
    for patient in range(n_patients):
        prng = np.random.default_rng([int(seed), 1, patient])
        plan = plan_patient(prng, opts)
        fully_labelled = bool(prng.uniform() < opts.fully_labelled_fraction)
        first = int(prng.integers(0, len(opts.views)))
        patient_id = f"P{patient:05d}"
        for k in range(per_patient):
            if len(records) >= n:
                break
            view = opts.views[(first + k) % len(opts.views)]
            vrng = np.random.default_rng([int(seed), 1, patient, k + 1])
            rendered = render_view(vrng, plan, view, opts)
            photometric = "MONOCHROME1" if vrng.uniform() < opts.monochrome1_fraction else "MONOCHROME2"
            syntax = ("explicit", "rle", "jpeg2000")[int(vrng.choice(3, p=syntax_p))]
            if syntax in unavailable:  # the draw stays, so every other pixel and tag is unchanged
                syntax = "rle" if "rle" not in unavailable else "explicit"
            with_pixel_spacing = bool(vrng.uniform() < opts.pixel_spacing_fraction)
            # magnification only where PixelSpacing (breast plane) is present to correct it
            magnification = float(round(vrng.uniform(1.0, 1.1), 4)) if with_pixel_spacing else 1.0
            manufacturer = "monai-mammo phantom " + "AB"[int(vrng.integers(0, 2))]
            stem = f"{patient_id}_{plan.laterality}{view}"
            write_mammogram_dicom(
                out / "images" / f"{stem}.dcm",
                rendered.image,
                uid_key=f"{seed}/{patient}/{k}/{GENERATOR_VERSION}",
                patient_id=patient_id,
                laterality=plan.laterality,
                view=view,
                spacing_mm=opts.spacing_mm,
                photometric=photometric,
                syntax=syntax,
                write_pixel_spacing=with_pixel_spacing,
                magnification=magnification,
                manufacturer=manufacturer,
            )
            write_png(out / "masks" / f"{stem}.png", rendered.mask)
            write_png(out / "coarse_masks" / f"{stem}.png", rendered.coarse_mask)
            record = {
                "image": f"images/{stem}.dcm",
                "mask": f"masks/{stem}.png",
                "coarse_mask": f"coarse_masks/{stem}.png",
                "patient_id": patient_id,
                "fully_labelled": fully_labelled,
                **rendered.record,
                "photometric_interpretation": photometric,
                "transfer_syntax": syntax,
                "magnification_factor": magnification,
                "manufacturer": manufacturer,
            }
            records.append(record)
    assignment = split_groups([r["patient_id"] for r in records], opts.split, seed)
    datalist: dict[str, Any] = {
        "name": "monai-mammo synthetic mammograms",
        "kind": "mammogram",
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "n": int(n),
        "options": _jsonable(opts.__dict__),
        "mask_labels": {"0": "background", "1": "benign mass", "2": "malignant mass", "3": "microcalcification"},
        "label_order": ["malignant", "benign"],
        "box_label_names": {"1": "benign", "2": "malignant"},
        "training": [r for r in records if assignment[r["patient_id"]] == "training"],
        "validation": [r for r in records if assignment[r["patient_id"]] == "validation"],
        "test": [r for r in records if assignment[r["patient_id"]] == "test"],
    }
    path = out / "datalist.json"
    write_json(path, datalist)
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value
