"""Lesion and distractor models for the synthetic mammograms: masses, microcalcification clusters,
vessel calcifications and simulated hand-drawn outlines.

Models (all rendered locally, in pixels, as normalised projected-thickness profiles that the caller
scales into attenuation):

* **Masses** follow the BI-RADS shape/margin descriptors used by lesion-insertion phantoms
  (Carton et al., "Development of a physical 3D anthropomorphic breast phantom", Med. Phys. 38(2),
  2011; de Sisternes et al., "A computational model to generate simulated three-dimensional breast
  masses", Med. Phys. 42(2), 2015): benign masses are round/oval with a smooth, circumscribed
  margin; malignant masses have an irregular radius function (high-order harmonics), an ill-defined
  (blurred) margin and radiating spicules. The projected thickness of the mass body is that of an
  ellipsoid, ``h ∝ sqrt(1 - rho^2)`` with ``rho`` the normalised polar radius.
* **Microcalcifications** are projected spheres (benign, round, similar sizes) or elongated,
  pleomorphic ellipsoids along a ductal segment (malignant), 0.1-1 mm, in clusters of >= 3 within
  about 1 cm^2 (BI-RADS atlas, 5th ed.); their contrast ranges down to barely above the quantum
  noise, as in CNR-controlled detectability studies (e.g. Warren et al., Med. Phys. 39(6), 2012).
* **Vessel calcifications** are thin "tram-track" parallel lines along a smooth curve running
  towards the nipple, interrupted in segments: elongated bright structures that a µC detector
  flags and a false-positive reducer must reject.
* **Hand-drawn outlines** are a smooth closed curve at a margin around the lesion with
  low-frequency wobble; some are under-drawn (shrunk) as happens in CBIS-DDSM ROI masks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

__all__ = [
    "MassShape",
    "sample_mass_shape",
    "render_mass",
    "Calcification",
    "sample_cluster",
    "render_calcification",
    "VesselTrack",
    "sample_vessel",
    "render_vessel",
    "hand_drawn_polygon",
    "polygon_mask",
]

_N_ANGLES = 360


@dataclass
class MassShape:
    """A mass: radius function, spicules and margin, in pixels, centred at the origin.

    Attributes:
        radius: r(theta) at ``_N_ANGLES`` equally spaced angles in [0, 2*pi), pixels.
        malignant: malignant (irregular, spiculated) or benign (round/oval, circumscribed).
        spicules: (angle rad, length px, width px) for each spicule (empty for benign masses).
        margin_blur: Gaussian sigma of the margin in pixels (ill-defined margins are blurred).
        diameter_px: maximum caliper (Feret) diameter of the body, pixels.
    """

    radius: np.ndarray
    malignant: bool
    spicules: list[tuple[float, float, float]] = field(default_factory=list)
    margin_blur: float = 0.5
    diameter_px: float = 0.0

    def radius_at(self, theta: np.ndarray) -> np.ndarray:
        """r(theta) for any angles (radians), by periodic linear interpolation."""
        angles = np.linspace(0.0, 2 * np.pi, _N_ANGLES, endpoint=False)
        return np.interp(np.mod(theta, 2 * np.pi), angles, self.radius, period=2 * np.pi)


def sample_mass_shape(rng: np.random.Generator, diameter_px: float, malignant: bool) -> MassShape:
    """Draw a benign (oval, smooth) or malignant (irregular, spiculated) mass of a given diameter.

    Args:
        rng: random generator.
        diameter_px: target maximum caliper diameter of the mass body in pixels.
        malignant: shape class.
    """
    theta = np.linspace(0.0, 2 * np.pi, _N_ANGLES, endpoint=False)
    aspect = rng.uniform(0.65, 1.0) if not malignant else rng.uniform(0.6, 1.0)
    rotation = rng.uniform(0, np.pi)
    phi = theta - rotation
    ellipse = aspect / np.sqrt((aspect * np.cos(phi)) ** 2 + np.sin(phi) ** 2)
    modulation = np.ones_like(theta)
    if malignant:
        # irregular: energetic harmonics up to order 12 (de Sisternes et al. 2015 use a similar
        # spherical-harmonic perturbation of the mass surface)
        for order in range(2, 13):
            modulation += rng.uniform(0.04, 0.16) / order**0.6 * np.cos(order * theta + rng.uniform(0, 2 * np.pi))
    else:
        # circumscribed: at most a gentle lobulation
        for order in range(2, 5):
            modulation += rng.uniform(0.0, 0.03) * np.cos(order * theta + rng.uniform(0, 2 * np.pi))
    radius = ellipse * np.maximum(modulation, 0.45)
    caliper = radius + np.roll(radius, _N_ANGLES // 2)
    radius = radius * (diameter_px / caliper.max())
    spicules: list[tuple[float, float, float]] = []
    if malignant:
        for _ in range(int(rng.integers(8, 22))):
            spicules.append(
                (
                    float(rng.uniform(0, 2 * np.pi)),
                    float(rng.uniform(0.4, 1.3) * diameter_px / 2),
                    float(max(rng.uniform(0.015, 0.04) * diameter_px, 1.5)),
                )
            )
    margin_blur = float(rng.uniform(0.008, 0.025) * diameter_px) if malignant else 0.6
    return MassShape(radius=radius, malignant=malignant, spicules=spicules, margin_blur=margin_blur, diameter_px=float(diameter_px))


def render_mass(shape: MassShape, cx: float, cy: float, height: int, width: int) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray]:
    """Render a mass centred at (cx, cy) into the window of an (height, width) image it touches.

    Returns:
        (window slices (rows, cols), normalised projected thickness in [0, 1] of the body plus
        spicules (float32), exact body mask (bool) -- the spicules are not part of the mask, as in
        radiologists' outlines of the mass body).
    """
    reach = float(shape.radius.max()) + (max((s[1] for s in shape.spicules), default=0.0)) + 4 * shape.margin_blur + 3
    y0, y1 = max(int(np.floor(cy - reach)), 0), min(int(np.ceil(cy + reach)) + 1, height)
    x0, x1 = max(int(np.floor(cx - reach)), 0), min(int(np.ceil(cx + reach)) + 1, width)
    if y1 <= y0 or x1 <= x0:
        empty = np.zeros((0, 0), np.float32)
        return (slice(0, 0), slice(0, 0)), empty, empty.astype(bool)
    dy = (np.arange(y0, y1, dtype=np.float32) - cy)[:, None]
    dx = (np.arange(x0, x1, dtype=np.float32) - cx)[None, :]
    dist = np.sqrt(dx * dx + dy * dy)
    edge = shape.radius_at(np.arctan2(dy, dx)).astype(np.float32)
    rho = dist / np.maximum(edge, 1e-3)
    mask = rho <= 1.0
    # ellipsoid projection (Carton et al. 2011 insert masses as solids; projected thickness of an
    # ellipsoid is sqrt(1 - rho^2)); a one-pixel ramp anti-aliases the circumscribed edge
    body = np.sqrt(np.clip(1.0 - np.minimum(rho, 1.0) ** 2, 0.0, 1.0))
    body = np.where(mask, np.maximum(body, 0.25), np.clip(1.0 - (dist - edge), 0.0, 1.0) * 0.25).astype(np.float32)
    if shape.spicules:
        canvas = Image.new("F", (x1 - x0, y1 - y0), 0.0)
        draw = ImageDraw.Draw(canvas)
        for angle, length, spicule_width in shape.spicules:
            start_r = float(shape.radius_at(np.array([angle]))[0]) * 0.8
            # taper: three segments of decreasing width and brightness
            for k, (f0, f1) in enumerate(((0.0, 0.4), (0.4, 0.75), (0.75, 1.0))):
                r0, r1 = start_r + f0 * length, start_r + f1 * length
                p0 = (cx + r0 * np.cos(angle) - x0, cy + r0 * np.sin(angle) - y0)
                p1 = (cx + r1 * np.cos(angle) - x0, cy + r1 * np.sin(angle) - y0)
                draw.line([p0, p1], fill=0.7 - 0.2 * k, width=max(int(round(spicule_width * (1.0 - 0.3 * k))), 1))
        spicule_map = ndimage.gaussian_filter(np.asarray(canvas, dtype=np.float32), 0.7)
        body = np.maximum(body, spicule_map)
    if shape.margin_blur > 0.6:
        # ill-defined margin: blur the profile but keep the body plateau
        blurred = ndimage.gaussian_filter(body, shape.margin_blur)
        body = np.where(rho < 0.7, body, blurred)
    return (slice(y0, y1), slice(x0, x1)), body.astype(np.float32), mask


@dataclass
class Calcification:
    """One microcalcification: centre (pixels), diameter (mm), elongation and orientation."""

    x: float
    y: float
    diameter_mm: float
    elongation: float = 1.0
    angle: float = 0.0
    cnr: float = 5.0


def sample_cluster(
    rng: np.random.Generator,
    cx: float,
    cy: float,
    spacing_mm: float,
    malignant: bool,
    diameter_range_mm: tuple[float, float] = (0.1, 1.0),
    cnr_range: tuple[float, float] = (1.0, 12.0),
) -> list[Calcification]:
    """A cluster of >= 3 µCs around (cx, cy): benign = scattered round, similar sizes;
    malignant = more numerous, smaller, pleomorphic, along a ductal segment.

    Args:
        rng: random generator.
        cx, cy: cluster centre in pixels.
        spacing_mm: pixel spacing.
        malignant: cluster morphology.
        diameter_range_mm: allowed µC diameters (default 0.1-1 mm).
        cnr_range: peak contrast-to-noise range, sampled log-uniformly (default 1-12: from barely
            visible to obvious).
    """
    lo, hi = diameter_range_mm
    count = int(rng.integers(6, 16)) if malignant else int(rng.integers(3, 9))
    extent_mm = rng.uniform(3.0, 8.0)
    # one brightness level per cluster (a cluster tends to be uniformly conspicuous), jittered
    log_cnr = rng.uniform(np.log(cnr_range[0]), np.log(cnr_range[1]))
    if malignant:
        duct_angle = rng.uniform(0, np.pi)
        curvature = rng.uniform(-0.1, 0.1)
    calcs: list[Calcification] = []
    attempts = 0
    while len(calcs) < count and attempts < count * 30:
        attempts += 1
        if malignant:
            # segmental / linear distribution along a (slightly curved) duct
            t = rng.uniform(-0.5, 0.5) * extent_mm * 1.6
            offset = rng.normal(0.0, 0.12 * extent_mm) + curvature * t * t
            ox = t * np.cos(duct_angle) - offset * np.sin(duct_angle)
            oy = t * np.sin(duct_angle) + offset * np.cos(duct_angle)
            diameter = float(np.clip(rng.lognormal(np.log(0.25), 0.45), lo, min(hi, 0.7)))
            elongation = float(rng.uniform(1.0, 3.0))
            angle = float(duct_angle + rng.normal(0, 0.3))
        else:
            r = extent_mm / 2 * np.sqrt(rng.uniform())
            a = rng.uniform(0, 2 * np.pi)
            ox, oy = r * np.cos(a), r * np.sin(a)
            diameter = float(np.clip(rng.lognormal(np.log(0.45), 0.35), max(lo, 0.15), hi))
            elongation, angle = 1.0, 0.0
        x, y = cx + ox / spacing_mm, cy + oy / spacing_mm
        # keep µCs distinct: centres at least their radii + 1.5 px apart
        if any(np.hypot(x - c.x, y - c.y) < (diameter * max(elongation, 1) + c.diameter_mm * max(c.elongation, 1)) / 2 / spacing_mm + 1.5 for c in calcs):
            continue
        cnr = float(np.exp(np.clip(log_cnr + rng.normal(0, 0.25), np.log(cnr_range[0]), np.log(cnr_range[1]))))
        calcs.append(Calcification(x=float(x), y=float(y), diameter_mm=diameter, elongation=elongation, angle=angle, cnr=cnr))
    return calcs


def render_calcification(calc: Calcification, spacing_mm: float, height: int, width: int, supersample: int = 4) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray]:
    """Render one µC (projected ellipsoid, supersampled, blurred by a 0.5 px detector PSF).

    Returns:
        (window slices, profile normalised to peak 1 (float32), mask: pixels at least half covered,
        and always the pixel containing the centre).
    """
    radius_px = calc.diameter_mm / 2 / spacing_mm
    semi_major = radius_px * np.sqrt(calc.elongation)
    semi_minor = radius_px / np.sqrt(calc.elongation)
    reach = int(np.ceil(semi_major)) + 3
    ix, iy = int(round(calc.x)), int(round(calc.y))
    y0, y1 = max(iy - reach, 0), min(iy + reach + 1, height)
    x0, x1 = max(ix - reach, 0), min(ix + reach + 1, width)
    if y1 <= y0 or x1 <= x0:
        empty = np.zeros((0, 0), np.float32)
        return (slice(0, 0), slice(0, 0)), empty, empty.astype(bool)
    s = supersample
    sub = (np.arange(s, dtype=np.float32) + 0.5) / s - 0.5
    ys = (np.arange(y0, y1, dtype=np.float32)[:, None] + sub[None, :]).ravel() - calc.y
    xs = (np.arange(x0, x1, dtype=np.float32)[:, None] + sub[None, :]).ravel() - calc.x
    cos_a, sin_a = np.cos(calc.angle), np.sin(calc.angle)
    u = xs[None, :] * cos_a + ys[:, None] * sin_a
    v = -xs[None, :] * sin_a + ys[:, None] * cos_a
    rho2 = (u / semi_major) ** 2 + (v / semi_minor) ** 2
    thickness = np.sqrt(np.clip(1.0 - rho2, 0.0, None))
    h, w = y1 - y0, x1 - x0
    profile = thickness.reshape(h, s, w, s).mean(axis=(1, 3))
    coverage = (rho2 <= 1.0).reshape(h, s, w, s).mean(axis=(1, 3))
    mask = coverage >= 0.5
    cy_local, cx_local = iy - y0, ix - x0
    if 0 <= cy_local < h and 0 <= cx_local < w:
        mask[cy_local, cx_local] = True
    profile = ndimage.gaussian_filter(profile.astype(np.float32), 0.5)
    peak = float(profile.max())
    if peak > 0:
        profile /= peak
    return (slice(y0, y1), slice(x0, x1)), profile.astype(np.float32), mask


@dataclass
class VesselTrack:
    """A vessel calcification: polyline centre-line (pixels), vessel diameter and wall width (px)."""

    points: np.ndarray  # (N, 2) [x, y]
    vessel_diameter_px: float
    wall_width_px: float
    segments: list[tuple[float, float]]  # calcified stretches as fractions of the length
    cnr: float


def sample_vessel(
    rng: np.random.Generator,
    start: tuple[float, float],
    direction: float,
    spacing_mm: float,
    length_range_mm: tuple[float, float] = (10.0, 45.0),
    cnr_range: tuple[float, float] = (4.0, 15.0),
) -> VesselTrack:
    """A smooth, gently curving vessel track starting at ``start`` heading along ``direction``."""
    length = rng.uniform(*length_range_mm) / spacing_mm
    n = 64
    t = np.linspace(0.0, 1.0, n)
    bend = rng.uniform(-0.25, 0.25) * length
    wiggle = rng.uniform(0, 0.04) * length * np.sin(2 * np.pi * rng.uniform(1, 3) * t + rng.uniform(0, 6.3))
    along = t * length
    across = bend * 4 * t * (1 - t) + wiggle
    x = start[0] + along * np.cos(direction) - across * np.sin(direction)
    y = start[1] + along * np.sin(direction) + across * np.cos(direction)
    segments: list[tuple[float, float]] = []
    pos = rng.uniform(0.0, 0.15)
    while pos < 1.0:
        seg = rng.uniform(0.1, 0.45)
        segments.append((float(pos), float(min(pos + seg, 1.0))))
        pos += seg + rng.uniform(0.03, 0.15)
    return VesselTrack(
        points=np.stack([x, y], axis=1).astype(np.float64),
        vessel_diameter_px=float(rng.uniform(0.8, 2.5) / spacing_mm),
        wall_width_px=float(max(rng.uniform(0.15, 0.4) / spacing_mm, 1.5)),
        segments=segments,
        cnr=float(np.exp(rng.uniform(np.log(cnr_range[0]), np.log(cnr_range[1])))),
    )


def render_vessel(track: VesselTrack, height: int, width: int) -> tuple[tuple[slice, slice], np.ndarray]:
    """Render tram-track calcified walls of a vessel; returns window slices and a [0, 1] profile."""
    pad = track.vessel_diameter_px + 3 * track.wall_width_px + 4
    x0 = max(int(np.floor(track.points[:, 0].min() - pad)), 0)
    x1 = min(int(np.ceil(track.points[:, 0].max() + pad)) + 1, width)
    y0 = max(int(np.floor(track.points[:, 1].min() - pad)), 0)
    y1 = min(int(np.ceil(track.points[:, 1].max() + pad)) + 1, height)
    if y1 <= y0 or x1 <= x0:
        return (slice(0, 0), slice(0, 0)), np.zeros((0, 0), np.float32)
    canvas = Image.new("F", (x1 - x0, y1 - y0), 0.0)
    draw = ImageDraw.Draw(canvas)
    pts = track.points - np.array([x0, y0])
    tangent = np.gradient(pts, axis=0)
    tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-6)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    n = len(pts)
    for side in (-1.0, 1.0):
        wall = pts + side * normal * track.vessel_diameter_px / 2
        for a, b in track.segments:
            i0, i1 = int(a * (n - 1)), max(int(b * (n - 1)), int(a * (n - 1)) + 1)
            draw.line([tuple(p) for p in wall[i0 : i1 + 1]], fill=1.0, width=max(int(round(track.wall_width_px)), 1))
    profile = ndimage.gaussian_filter(np.asarray(canvas, dtype=np.float32), 0.6)
    peak = float(profile.max())
    if peak > 0:
        profile /= peak
    return (slice(y0, y1), slice(x0, x1)), profile


def hand_drawn_polygon(
    rng: np.random.Generator,
    cx: float,
    cy: float,
    radius_at,
    margin_px: float,
    under_drawn: bool = False,
    n_vertices: int = 72,
) -> np.ndarray:
    """A loose, smooth hand-drawn outline around a lesion (CBIS-DDSM-style ROI outline).

    Args:
        rng: random generator.
        cx, cy: lesion centre (pixels).
        radius_at: callable theta -> lesion radius (pixels) in that direction.
        margin_px: mean margin added outside the lesion.
        under_drawn: shrink the outline so that it cuts into the lesion (annotator error).
        n_vertices: number of polygon vertices.

    Returns:
        (n_vertices, 2) array of [x, y] vertices.
    """
    theta = np.linspace(0, 2 * np.pi, n_vertices, endpoint=False)
    base = np.asarray(radius_at(theta), dtype=np.float64)
    # coarse tracing: the annotator follows a smoothed (convex-ish) version of the outline
    smooth = ndimage.gaussian_filter1d(np.maximum.reduce([base, np.roll(base, 1), np.roll(base, -1)]), 3, mode="wrap")
    wobble = np.zeros_like(theta)
    for order in range(1, 5):
        wobble += rng.uniform(0.0, 0.06) / order * np.cos(order * theta + rng.uniform(0, 2 * np.pi))
    margin = margin_px * (1.0 + wobble * 3)
    radius = (smooth + np.maximum(margin, 0.2 * margin_px)) * (1.0 + wobble)
    if under_drawn:
        radius = smooth * rng.uniform(0.6, 0.85) * (1.0 + wobble)
    return np.stack([cx + radius * np.cos(theta), cy + radius * np.sin(theta)], axis=1)


def polygon_mask(polygon: np.ndarray, height: int, width: int) -> tuple[tuple[slice, slice], np.ndarray]:
    """Rasterise a polygon ([x, y] vertices) into a bool mask window of an (height, width) image."""
    x0 = max(int(np.floor(polygon[:, 0].min())) - 1, 0)
    x1 = min(int(np.ceil(polygon[:, 0].max())) + 2, width)
    y0 = max(int(np.floor(polygon[:, 1].min())) - 1, 0)
    y1 = min(int(np.ceil(polygon[:, 1].max())) + 2, height)
    if y1 <= y0 or x1 <= x0:
        return (slice(0, 0), slice(0, 0)), np.zeros((0, 0), bool)
    canvas = Image.new("L", (x1 - x0, y1 - y0), 0)
    ImageDraw.Draw(canvas).polygon([(float(x - x0), float(y - y0)) for x, y in polygon], fill=1)
    return (slice(y0, y1), slice(x0, x1)), np.asarray(canvas, dtype=bool)
