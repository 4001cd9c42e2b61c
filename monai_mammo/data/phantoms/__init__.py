"""Deterministic synthetic phantoms: the embedded default dataset of every bundle.

Three kinds, each written with a MONAI decathlon-style ``datalist.json`` (paths relative to it):

* ``"mammogram"``: full-field DICOM MG images (14-bit, 70 µm, MONOCHROME1/2, uncompressed / RLE /
  JPEG 2000) with exact lesion masks, µC points, mass boxes, image labels, ``obscured`` flags,
  simulated hand-drawn masks and vessel-calcification distractors (:mod:`.mammogram`).
* ``"roi"``: DAB-Net ROI crops: clear masses, dense-gland patches and obscured masses (:mod:`.roi`).
* ``"cxr"``: chest X-rays in the ChestX-ray14 layout (PNGs + ``Data_Entry_2017.csv`` +
  ``BBox_List_2017.csv``) with misalignment transforms (:mod:`.chest`).

Example:
    >>> import tempfile
    >>> from monai_mammo.data.phantoms import synthesize
    >>> path = synthesize("mammogram", tempfile.mkdtemp(), n=2, seed=0, image_size=(256, 208))
    >>> path.name
    'datalist.json'

The same (kind, n, seed, options) always give byte-identical files. ``ensure_phantoms`` caches a
generated set under a folder keyed by those arguments and the generator version.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable

__all__ = ["synthesize", "ensure_phantoms", "KINDS", "phantom_cache_key"]

#: kind -> (module, synthesize function, options dataclass)
KINDS: dict[str, tuple[str, str, str]] = {
    "mammogram": ("monai_mammo.data.phantoms.mammogram", "synthesize_mammograms", "MammogramOptions"),
    "roi": ("monai_mammo.data.phantoms.roi", "synthesize_rois", "RoiOptions"),
    "cxr": ("monai_mammo.data.phantoms.chest", "synthesize_chest", "ChestOptions"),
}


def _resolve(kind: str) -> tuple[Callable[..., Path], type]:
    import importlib

    if kind not in KINDS:
        raise ValueError(f"unknown phantom kind {kind!r}; known kinds: {sorted(KINDS)}")
    module_name, function_name, options_name = KINDS[kind]
    module = importlib.import_module(module_name)
    return getattr(module, function_name), getattr(module, options_name)


def synthesize(kind: str, out_dir: str | os.PathLike, n: int, seed: int = 0, **options: Any) -> Path:
    """Generate ``n`` phantoms of ``kind`` into ``out_dir`` and return the ``datalist.json`` path.

    Args:
        kind: "mammogram", "roi" or "cxr".
        out_dir: output folder (created).
        n: number of images (for "roi": number of real ROIs; the compositing pools have their own
            sizes, see :class:`.roi.RoiOptions`).
        seed: random seed; the same arguments give byte-identical files.
        options: fields of the kind's options dataclass (``MammogramOptions``, ``RoiOptions``,
            ``ChestOptions``); unknown names raise a ``TypeError`` that lists the known ones.
    """
    function, options_class = _resolve(kind)
    if int(n) < 1:
        raise ValueError(f"synthesize {kind}: n must be >= 1, got {n}")
    _check_options(kind, options_class, options)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return function(out, int(n), int(seed), **options)


def _check_options(kind: str, options_class: type, options: dict[str, Any]) -> None:
    known = set(options_class.__dataclass_fields__)
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"phantom kind {kind!r}: unknown option(s) {unknown}; known options: {sorted(known)}")


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value


def phantom_cache_key(kind: str, n: int, seed: int, **options: Any) -> str:
    """Hash of (kind, n, seed, all options with their defaults filled in, generator version)."""
    from ._io import GENERATOR_VERSION

    _, options_class = _resolve(kind)
    _check_options(kind, options_class, options)
    resolved = options_class(**options).__dict__
    # options added later with metadata {"cache_key": "omit_default"} stay out of the key at their
    # default, so sets cached before they existed keep their key (and their files)
    fields = options_class.__dataclass_fields__
    resolved = {k: v for k, v in resolved.items() if not (fields[k].metadata.get("cache_key") == "omit_default" and v == fields[k].default)}
    text = json.dumps(_canonical({"kind": kind, "n": int(n), "seed": int(seed), "options": resolved, "version": GENERATOR_VERSION}), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def ensure_phantoms(kind: str, cache_dir: str | os.PathLike, n: int, seed: int = 0, **options: Any) -> Path:
    """Return the datalist of a cached phantom set, generating it once if it is not there.

    The set lives in ``cache_dir/<kind>-n<n>-s<seed>-<hash>/``; generation goes to a temporary
    folder that is renamed into place when complete, so a crash never leaves a half-written set
    and concurrent callers (e.g. several DDP ranks) end up sharing one copy.
    """
    key = phantom_cache_key(kind, n, seed, **options)
    cache = Path(cache_dir)
    final = cache / f"{kind}-n{int(n)}-s{int(seed)}-{key}"
    datalist = final / "datalist.json"
    if datalist.is_file():
        return datalist
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    try:
        synthesize(kind, tmp, n, seed, **options)
        try:
            os.rename(tmp, final)
        except OSError:
            if not datalist.is_file():  # not a lost race: a real failure
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return datalist
