"""DAB-Net ROI phantoms: clear masses, dense-gland patches and obscured masses.

The crops come from the same physical model as the full-field phantoms (:mod:`.mammogram`):
power-law parenchyma (Burgess et al., Med. Phys. 28(4), 2001), masses with glandular-like
attenuation that replace the tissue over their depth (Carton et al., Med. Phys. 38(2), 2011), and
quantum noise. Benign masses are oval and circumscribed, malignant ones irregular and spiculated
(:func:`.lesions.sample_mass_shape`), so the class is carried by shape and margin only: readable on a
*clear* mass (fatty surround), hidden when dense glands lie over the mass (*obscured*), which is
the situation DAB-Net's alpha-blended composites imitate.

Each crop covers ``fov_factor`` times the mass diameter (as a radiologist's ROI does) and is then
represented at ``size`` x ``size`` pixels; intensities are normalised per crop to 8 or 16 bits.

Example:
    >>> import numpy as np
    >>> roi = render_roi(np.random.default_rng(0), "clear", malignant=True, opts=RoiOptions(size=64))
    >>> roi["image"].shape, roi["label"], roi["obscured"]
    ((64, 64), 1, False)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .lesions import render_mass, sample_mass_shape
from .mammogram import MU_FAT, MU_GLAND, MU_MASS
from .texture import power_law_noise

__all__ = ["RoiOptions", "render_roi", "synthesize_rois", "ROI_REVISION"]

#: revision of the ROI model; a RoiOptions field, so it is part of ensure_phantoms' cache key
#: (2: obscured masses keep a reduced, non-zero contrast; see RoiOptions.displaced_glandularity)
ROI_REVISION = 2


@dataclass
class RoiOptions:
    """Options of the "roi" phantom kind.

    Attributes:
        size: crop side in pixels (default 224).
        bit_depth: 8 or 16 bits per PNG pixel (default 8).
        obscured_fraction: fraction of the real ROIs that are obscured (default 0.4).
        p_malignant: fraction of malignant masses (default 0.5).
        n_masses: size of the clear-mass compositing pool (default: n).
        n_glands: size of the dense-gland pool (default: n).
        mass_diameter_mm: range of mass diameters (default (5, 30)).
        fov_factor: crop field of view / mass diameter (default (1.6, 2.4)).
        gland_fov_mm: field of view of gland patches, mm (default (10, 50)).
        clear_gland_fraction: glandular area fraction around clear masses (default (0.0, 0.25)).
        dense_gland_fraction: glandular area fraction of gland patches and around obscured masses
            (default (0.6, 0.9)).
        displaced_glandularity: range of the glandular share of the tissue a mass displaces,
            relative to the projected gland density over it (default (0.5, 0.85)). A dense area in a
            projection is a stack of glandular and fatty layers, so a mass embedded there displaces
            partly fat and keeps a reduced but non-zero contrast; 1.0 would make it displace pure
            gland and vanish (the version-1 model, where obscured masses were invisible).
        revision: ROI model revision; part of the phantom cache key, bumped whenever the generated
            bytes change (default 2).
        beta: power-law exponent (default 3.0).
        photons_per_pixel: detected quanta per 70 µm pixel behind fat (default 1500); scaled by
            the crop's pixel area.
        split: training / validation / test fractions of the real ROIs (default (0.7, 0.15, 0.15)).
    """

    size: int = 224
    bit_depth: int = 8
    obscured_fraction: float = 0.4
    p_malignant: float = 0.5
    n_masses: int | None = None
    n_glands: int | None = None
    mass_diameter_mm: tuple[float, float] = (5.0, 30.0)
    fov_factor: tuple[float, float] = (1.6, 2.4)
    gland_fov_mm: tuple[float, float] = (10.0, 50.0)
    clear_gland_fraction: tuple[float, float] = (0.0, 0.25)
    dense_gland_fraction: tuple[float, float] = (0.6, 0.9)
    displaced_glandularity: tuple[float, float] = (0.5, 0.85)
    beta: float = 3.0
    photons_per_pixel: float = 1500.0
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)
    revision: int = ROI_REVISION

    def __post_init__(self) -> None:
        if self.bit_depth not in (8, 16):
            raise ValueError(f"roi phantom: bit_depth must be 8 or 16, got {self.bit_depth}")
        if int(self.size) < 32:
            raise ValueError(f"roi phantom: size must be >= 32, got {self.size}")
        if not 0.0 <= self.obscured_fraction <= 1.0:
            raise ValueError(f"roi phantom: obscured_fraction must be in [0, 1], got {self.obscured_fraction}")
        low, high = self.displaced_glandularity
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"roi phantom: displaced_glandularity must be 0 <= low <= high <= 1, got {self.displaced_glandularity}")
        if self.revision != ROI_REVISION:
            raise ValueError(f"roi phantom: this generator writes revision {ROI_REVISION}, got revision={self.revision}")


def render_roi(rng: np.random.Generator, kind: str, malignant: bool = False, opts: RoiOptions | None = None) -> dict[str, Any]:
    """Render one crop.

    Args:
        rng: random generator.
        kind: "clear" (mass in fatty tissue), "obscured" (mass under dense glands) or "gland"
            (dense glands, no mass).
        malignant: mass class (ignored for "gland").
        opts: options (default ``RoiOptions()``).

    Returns:
        dict with "image" (uint8/uint16 (size, size)), "mask" (uint8: 0, 1 benign, 2 malignant),
        "box" ([x0, y0, x1, y1] or None), "label" (0/1 or None), "obscured" (bool),
        "obscuring_density" (mean glandular fraction over the mass, or None), "spacing_mm",
        "diameter_mm", "gland_fraction".
    """
    opts = opts or RoiOptions()
    if kind not in ("clear", "obscured", "gland"):
        raise ValueError(f"render_roi: kind must be 'clear', 'obscured' or 'gland', got {kind!r}")
    size = int(opts.size)
    has_mass = kind != "gland"
    diameter_mm = float(rng.uniform(*opts.mass_diameter_mm)) if has_mass else 0.0
    fov_mm = diameter_mm * rng.uniform(*opts.fov_factor) if has_mass else rng.uniform(*opts.gland_fov_mm)
    spacing = fov_mm / size
    thickness = np.float32(rng.uniform(35, 65))
    fraction = rng.uniform(*(opts.clear_gland_fraction if kind == "clear" else opts.dense_gland_fraction))

    # mass position: jittered around the centre, as in radiologist-centred ROI crops
    cx = size / 2 + rng.uniform(-0.08, 0.08) * size
    cy = size / 2 + rng.uniform(-0.08, 0.08) * size
    texture = power_law_noise((size, size), beta=opts.beta, rng=rng)
    yy = (np.arange(size, dtype=np.float32)[:, None] - cy) / size
    xx = (np.arange(size, dtype=np.float32)[None, :] - cx) / size
    bump = np.exp(-(xx * xx + yy * yy) / np.float32(2 * 0.2**2))
    # clear: fat around the mass (glands pushed away); obscured: glands pulled over the mass
    bias = {"clear": -2.0, "obscured": 2.0, "gland": 0.0}[kind]
    score = texture + np.float32(bias) * bump
    threshold = np.quantile(score, 1.0 - fraction) if fraction > 0 else score.max() + 10
    gland = np.clip(score - np.float32(threshold) + np.float32(0.5), 0.0, 1.0).astype(np.float32)
    volume = np.float32(0.05) + np.float32(0.45) * gland + np.float32(0.035) * texture
    mu_local = MU_FAT + (MU_GLAND - MU_FAT) * volume
    atten = thickness * mu_local

    mask = np.zeros((size, size), np.uint8)
    box = None
    density_over = None
    if has_mass:
        shape = sample_mass_shape(rng, diameter_mm / spacing, malignant)
        window, body, body_mask = render_mass(shape, cx, cy, size, size)
        depth = np.float32(diameter_mm * rng.uniform(0.8, 1.0))
        # displaced tissue: glandular where the glands are (see mammogram.render_view), but only
        # partly -- the dense projection stacks glandular and fatty layers -- so an obscured mass
        # loses most, not all, of its contrast and part of its margin under the gland texture
        share = np.float32(rng.uniform(*opts.displaced_glandularity))
        displaced = MU_FAT + (MU_GLAND - MU_FAT) * share * gland[window]
        atten[window] += np.clip(body * depth * (MU_MASS - displaced), 0.0, None)
        mask_window = mask[window]
        mask_window[body_mask] = 2 if malignant else 1
        rows, cols = np.nonzero(mask)
        box = [int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1]
        density_over = float(gland[mask > 0].mean())

    # quantum noise for the crop's pixel size (a crop resized from 70 µm pixels averages them)
    photons = opts.photons_per_pixel * (spacing / 0.07) ** 2
    l_ref = float(MU_FAT * thickness * 1.1)
    sigma = np.exp((atten - np.float32(l_ref)) * np.float32(0.5)) / np.float32(np.sqrt(photons))
    noisy = atten + rng.standard_normal((size, size), dtype=np.float32) * sigma
    low, high = np.percentile(noisy, [0.5, 99.8])
    top = 255 if opts.bit_depth == 8 else 65535
    scaled = np.clip((noisy - low) / max(high - low, 1e-6), 0.0, 1.0) * top
    image = np.rint(scaled).astype(np.uint8 if opts.bit_depth == 8 else np.uint16)
    return {
        "image": image,
        "mask": mask,
        "box": box,
        "label": (1 if malignant else 0) if has_mass else None,
        "obscured": kind == "obscured",
        "obscuring_density": None if density_over is None else round(density_over, 4),
        "spacing_mm": round(float(spacing), 5),
        "diameter_mm": round(diameter_mm, 3),
        "gland_fraction": round(float(gland.mean()), 4),
    }


def synthesize_rois(out_dir: str | Path, n: int, seed: int, **options: Any) -> Path:
    """Write ``n`` real ROIs (clear + obscured) plus the "masses" and "glands" pools.

    Returns:
        path of ``datalist.json`` with "training" / "validation" / "test" (real ROIs; each ROI is
        its own patient), "masses" (clear masses for compositing) and "glands" (gland patches).
    """
    from ._io import GENERATOR_VERSION, split_groups, write_json, write_png
    from .mammogram import _jsonable

    opts = RoiOptions(**options)
    out = Path(out_dir)
    n_masses = int(n if opts.n_masses is None else opts.n_masses)
    n_glands = int(n if opts.n_glands is None else opts.n_glands)

    def entry(folder: str, stem: str, roi: dict[str, Any], patient: str) -> dict[str, Any]:
        write_png(out / folder / f"{stem}.png", roi["image"])
        item: dict[str, Any] = {"image": f"{folder}/{stem}.png", "patient_id": patient, "spacing": [roi["spacing_mm"], roi["spacing_mm"]]}
        if roi["box"] is not None:
            write_png(out / folder / f"{stem}_mask.png", roi["mask"])
            item.update(
                {
                    "mask": f"{folder}/{stem}_mask.png",
                    "label": roi["label"],
                    "box": roi["box"],
                    "boxes": [roi["box"]],
                    "box_labels": [roi["label"] + 1],
                    "obscured": roi["obscured"],
                    "obscuring_density": roi["obscuring_density"],
                    "diameter_mm": roi["diameter_mm"],
                }
            )
        item["gland_fraction"] = roi["gland_fraction"]
        return item

    real: list[dict[str, Any]] = []
    # exactly round(n * obscured_fraction) obscured ROIs, at random positions
    n_obscured = int(round(n * opts.obscured_fraction))
    rank = np.random.default_rng([int(seed), 2, 9]).permutation(n)
    for i in range(n):
        rng = np.random.default_rng([int(seed), 2, 0, i])
        kind = "obscured" if rank[i] < n_obscured else "clear"
        roi = render_roi(rng, kind, bool(rng.uniform() < opts.p_malignant), opts)
        real.append(entry("rois", f"roi_{i:05d}", roi, f"R{i:05d}"))
    masses = []
    for i in range(n_masses):
        rng = np.random.default_rng([int(seed), 2, 1, i])
        masses.append(entry("masses", f"mass_{i:05d}", render_roi(rng, "clear", bool(rng.uniform() < opts.p_malignant), opts), f"M{i:05d}"))
    glands = []
    for i in range(n_glands):
        rng = np.random.default_rng([int(seed), 2, 2, i])
        glands.append(entry("glands", f"gland_{i:05d}", render_roi(rng, "gland", False, opts), f"G{i:05d}"))
    assignment = split_groups([r["patient_id"] for r in real], opts.split, seed)
    datalist = {
        "name": "monai-mammo synthetic DAB-Net ROIs",
        "kind": "roi",
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "n": int(n),
        "options": _jsonable(opts.__dict__),
        "label_names": {"0": "benign", "1": "malignant"},
        "training": [r for r in real if assignment[r["patient_id"]] == "training"],
        "validation": [r for r in real if assignment[r["patient_id"]] == "validation"],
        "test": [r for r in real if assignment[r["patient_id"]] == "test"],
        "masses": masses,
        "glands": glands,
    }
    path = out / "datalist.json"
    write_json(path, datalist)
    return path
