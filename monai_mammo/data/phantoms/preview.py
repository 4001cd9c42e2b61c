"""Contact sheet of a phantom datalist: thumbnails with the ground truth drawn on top.

Mammograms: exact lesion outlines (green benign, red malignant, yellow µCs), simulated hand-drawn
outlines (magenta), vessel-calcification boxes (cyan), marker boxes (grey). ROIs: mass box and
"B"/"M", "obscured". Chest X-rays: finding boxes with their class names.

Example:
    >>> # write_preview(Path("/tmp/mg/datalist.json"), Path("/tmp/mg/preview.png"))
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from monai_mammo.atomic_io import atomic_path

__all__ = ["write_preview"]

_COLOURS = {1: (60, 220, 60), 2: (255, 60, 60), 3: (255, 230, 0)}


def _load_grey(path: Path) -> np.ndarray:
    if path.suffix.lower() == ".dcm":
        from .dicom_writer import read_back

        _, pixels = read_back(path)
        return pixels.astype(np.float32)
    return np.asarray(Image.open(path), dtype=np.float32)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    tissue = image[image > np.percentile(image, 30)]
    low, high = np.percentile(tissue if tissue.size else image, [1, 99.7])
    return (np.clip((image - low) / max(high - low, 1e-6), 0, 1) * 255).astype(np.uint8)


def _outline(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask)


def _thumbnail(entry: dict[str, Any], root: Path, height: int) -> Image.Image:
    grey = _load_grey(root / entry["image"])
    scale = height / grey.shape[0]
    size = (max(int(round(grey.shape[1] * scale)), 1), height)
    thumb = Image.fromarray(_to_uint8(grey)).resize(size, Image.BILINEAR).convert("RGB")
    pixels = np.asarray(thumb).copy()
    for key, colour_of in (("coarse_mask", lambda v: (255, 0, 255)), ("mask", lambda v: _COLOURS.get(v, (255, 255, 255)))):
        if key not in entry or entry.get("kind") == "gland":
            continue
        labels = np.asarray(Image.open(root / entry[key]).resize(size, Image.NEAREST))
        if key == "mask":
            # µCs are a few pixels: grow them so they survive the thumbnail
            full = np.asarray(Image.open(root / entry[key]))
            calc = ndimage.maximum_filter((full == 3).astype(np.uint8), size=max(int(1.5 / scale), 1))
            labels = np.where(np.asarray(Image.fromarray(calc * 3).resize(size, Image.NEAREST)) == 3, 3, labels)
        for value in np.unique(labels):
            if value == 0:
                continue
            edge = _outline(labels == value) if not (key == "mask" and value == 3) else labels == value
            pixels[edge] = colour_of(int(value))
    thumb = Image.fromarray(pixels)
    draw = ImageDraw.Draw(thumb)

    def rect(box: list[float], colour: tuple[int, int, int]) -> None:
        draw.rectangle([box[0] * scale, box[1] * scale, box[2] * scale - 1, box[3] * scale - 1], outline=colour)

    for box in entry.get("vessel_boxes", []):
        rect(box, (0, 220, 255))
    if entry.get("marker_box"):
        rect(entry["marker_box"], (160, 160, 160))
    if "findings" in entry:  # chest X-ray
        for finding in entry["findings"]:
            if finding.get("box"):
                rect(finding["box"], (255, 140, 0))
                draw.text((finding["box"][0] * scale + 2, finding["box"][1] * scale + 1), finding["name"][:12], fill=(255, 140, 0))
    elif "box" in entry:  # ROI
        rect(entry["box"], (255, 60, 60) if entry["label"] else (60, 220, 60))
    font = ImageFont.load_default(size=max(height // 18, 9))
    draw.text((3, height - max(height // 18, 9) - 4), _caption(entry), fill=(255, 255, 255), font=font)
    return thumb


def _caption(entry: dict[str, Any]) -> str:
    if "view" in entry and "density" in entry:
        label = entry.get("label", [0, 0])
        status = "M" if label[0] else ("B" if label[1] else "N")
        return f"{entry['laterality']}{entry['view']} {entry['density']} {status} uC{len(entry.get('points', []))}"
    if "findings" in entry:
        return ",".join(f["name"][:5] for f in entry["findings"]) or "No Finding"
    if "label" in entry:
        return ("M" if entry["label"] else "B") + (" obscured" if entry.get("obscured") else " clear")
    return "gland"


def write_preview(datalist: str | os.PathLike, out_png: str | os.PathLike, max_items: int = 12, columns: int = 6, height: int = 256) -> Path:
    """Draw up to ``max_items`` datalist entries (all splits, then pools) into a PNG contact sheet."""
    datalist = Path(datalist)
    content = json.loads(datalist.read_text())
    root = datalist.parent
    entries: list[dict[str, Any]] = []
    for key in ("training", "validation", "test", "masses", "glands"):
        for item in content.get(key, []):
            entries.append(dict(item, kind="gland") if key == "glands" else item)
    if content.get("kind") == "roi":
        # show each class: clear/obscured benign/malignant and glands
        groups: dict[str, list[dict[str, Any]]] = {}
        for item in entries:
            groups.setdefault(_caption(item), []).append(item)
        entries = [item for items in zip(*groups.values()) for item in items] if groups else entries
    entries = entries[:max_items]
    if not entries:
        raise ValueError(f"write_preview: {datalist} has no entries to draw")
    thumbs = [_thumbnail(e, root, height) for e in entries]
    cell_w = max(t.width for t in thumbs)
    rows = -(-len(thumbs) // columns)
    sheet = Image.new("RGB", (cell_w * min(columns, len(thumbs)), height * rows), (0, 0, 0))
    for i, thumb in enumerate(thumbs):
        sheet.paste(thumb, ((i % columns) * cell_w, (i // columns) * height))
    out = Path(out_png)
    with atomic_path(out) as tmp:
        # an adaptive palette keeps the sheet small enough to live in the repository
        sheet.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(tmp, format="PNG", optimize=True)
    return out
