"""What every bundle config calls: where the bundle is, which data it reads, how many CPU threads.

* :func:`find_bundle_root`: the bundle folder, also when monai-mammo is installed without the
  source tree (``pip install .``) and the user runs the checkout's config files from elsewhere;
* :func:`resolve_datalist`: ``datalist`` file, else ``dataset_dir/datalist.json``, else the cached
  phantom set of a phantom spec (the embedded default);
* :func:`load_items`: the items of one or more lists of a datalist, paths made absolute;
* :func:`inference_items`: inference inputs from a path, a folder, a datalist or a list of paths;
* :func:`set_cpu_threads`: torch's intra-op threads, ``"auto"`` backing off on a busy machine.

Coordinates in datalists follow :mod:`monai_mammo.coordinates`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from monai_mammo.transforms.io import DICOM_SUFFIXES, NIFTI_SUFFIXES, RASTER_SUFFIXES

__all__ = [
    "IMAGE_SUFFIXES",
    "strip_image_suffix",
    "find_bundle_root",
    "resolve_datalist",
    "load_items",
    "inference_items",
    "set_cpu_threads",
    "root_cause",
    "SkippedInputs",
]

logger = logging.getLogger(__name__)

#: File name endings of the images a bundle reads: the reader's DICOM suffixes, then the rest.
IMAGE_SUFFIXES = (*DICOM_SUFFIXES, *RASTER_SUFFIXES, *NIFTI_SUFFIXES)


def strip_image_suffix(name: str) -> str:
    """``name`` without its image suffix (case-insensitive), e.g. ``"a.nii.gz" -> "a"``.

    Example::

        >>> strip_image_suffix("case1.DCM"), strip_image_suffix("x.nii.gz"), strip_image_suffix("notes.txt")
        ('case1', 'x', 'notes.txt')
    """
    lower = name.lower()
    for suffix in IMAGE_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _is_bundle(folder: Path, name: str) -> bool:
    metadata_file = folder / "configs" / "metadata.json"
    try:
        return metadata_file.is_file() and json.loads(metadata_file.read_text()).get("name") == name
    except (OSError, ValueError):
        return False


def _config_files_on_command_line(argv: Sequence[str]) -> list[Path]:
    """The files named by ``--config_file`` (one path, a comma list or a Python list literal)."""
    files: list[Path] = []
    for i, arg in enumerate(argv):
        value = None
        if arg == "--config_file" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--config_file="):
            value = arg.split("=", 1)[1]
        if value:
            for part in value.strip("[]").replace('"', "").replace("'", "").split(","):
                if part.strip():
                    files.append(Path(part.strip()))
    return files


def find_bundle_root(name: str, start: str | os.PathLike | None = None, argv: Sequence[str] | None = None) -> str:
    """Return the folder of bundle ``name``.

    A folder is bundle ``name`` when its ``configs/metadata.json`` has ``"name": <name>``. Looked
    for, in order: ``start`` (default: the working directory), ``start/bundles/<name>``, then the
    bundle holding each ``--config_file`` on the command line (``argv``, default ``sys.argv``), so
    ``python -m monai.bundle run ... --config_file /checkout/bundles/asn/configs/train.yaml`` works
    from any folder and with a non-editable install. ``--bundle_root DIR`` overrides it all.

    Raises:
        FileNotFoundError: when no place holds the bundle.
    """
    start_path = Path(start or os.getcwd()).resolve()
    candidates = [start_path, start_path / "bundles" / name]
    for config_file in _config_files_on_command_line(sys.argv if argv is None else argv):
        resolved = config_file.expanduser().resolve()
        candidates += [parent for parent in resolved.parents][:3]
    for candidate in candidates:
        if _is_bundle(candidate, name):
            return str(candidate)
    raise FileNotFoundError(
        f"bundle {name!r} not found in {start_path}, {start_path / 'bundles' / name} or beside the config files "
        "given; run from the repository root or the bundle folder, or pass --bundle_root"
    )


def resolve_datalist(
    dataset_dir: str | os.PathLike | None = None,
    datalist: str | os.PathLike | None = None,
    phantom: Mapping[str, Any] | None = None,
) -> str:
    """Path of the datalist a bundle reads.

    ``datalist`` (a file) wins; else ``dataset_dir/datalist.json``; else (both None) the embedded
    default, ``phantom``: a spec ``{"kind": ..., "cache_dir": ..., "n": ..., "seed": ..., **options}``
    passed to :func:`monai_mammo.data.phantoms.ensure_phantoms` (generated once and cached).

    Raises:
        FileNotFoundError: a given ``datalist`` / ``dataset_dir`` has no datalist file.
        ValueError: nothing given and no phantom spec.
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
    if not phantom:
        raise ValueError("resolve_datalist: no datalist, no dataset_dir and no phantom spec")
    from monai_mammo.data.phantoms import ensure_phantoms

    spec = dict(phantom)
    missing = [k for k in ("kind", "cache_dir", "n") if k not in spec]
    if missing:
        raise ValueError(f"resolve_datalist: the phantom spec lacks {missing}; it has {sorted(spec)}")
    kind, cache_dir, n = spec.pop("kind"), spec.pop("cache_dir"), int(spec.pop("n"))
    seed = int(spec.pop("seed", 0))
    return str(ensure_phantoms(kind, cache_dir, n, seed, **spec))


def _read_datalist(datalist: str | os.PathLike) -> dict:
    try:
        content = json.loads(Path(datalist).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"datalist {datalist}: cannot be read as JSON ({exc})") from exc
    if not isinstance(content, dict):
        raise ValueError(f"datalist {datalist}: expected a JSON object of lists, got {type(content).__name__}")
    return content


def load_items(datalist: str | os.PathLike, keys: str | Sequence[str] = "training") -> list[dict]:
    """Items of one or more lists of a decathlon-style datalist, paths made absolute (relative to
    the datalist's folder, as :func:`monai.data.load_decathlon_datalist` does).

    ``keys`` is a list name or several (concatenated); missing lists are skipped, but if none of
    them exists a ``ValueError`` names the file and the lists it has. An item that is not an object
    with an ``"image"`` (a ``"test"`` list may hold bare paths) is a ``ValueError`` naming the
    file, the list and the item's index.
    """
    from monai.data import load_decathlon_datalist

    names = [keys] if isinstance(keys, str) else list(keys)
    content = _read_datalist(datalist)
    present = [k for k in names if k in content]
    if not present:
        lists = [k for k, v in content.items() if isinstance(v, list)]
        raise ValueError(f"datalist {datalist}: none of the lists {names}; it has {lists}")
    items: list[dict] = []
    for key in present:
        entries = content[key]
        if not isinstance(entries, list):
            raise ValueError(f"datalist {datalist}: {key!r} must be a list of items, got {type(entries).__name__}")
        bare_test_paths = key == "test" and bool(entries) and not isinstance(entries[0], dict)
        for index, entry in enumerate(entries):
            if bare_test_paths and isinstance(entry, str):
                continue
            if not isinstance(entry, dict) or "image" not in entry:
                what = f"keys {sorted(entry)}" if isinstance(entry, dict) else f"a {type(entry).__name__}"
                raise ValueError(f"datalist {datalist}: {key}[{index}] must be an object with an 'image' path, got {what}")
        if entries:
            items += load_decathlon_datalist(str(datalist), is_segmentation=False, data_list_key=key)
    return items


def inference_items(input_path: str | os.PathLike | Sequence[str] | None, datalist_keys: Sequence[str] = ("test",)) -> list[dict]:
    """Items for inference from a DICOM/PNG path, a folder of them, a datalist JSON, or a list of paths.

    A datalist contributes its ``datalist_keys`` lists (default "test"; all lists of items when none
    of them exists), keeping per-item fields such as ``spacing`` and ``boxes``. A folder is searched
    recursively for :data:`IMAGE_SUFFIXES`.
    """
    if input_path is None or input_path == "":
        raise ValueError("inference: no input; pass --input_path FILE.dcm|FILE.png|FOLDER|DATALIST.json")
    if isinstance(input_path, (list, tuple)):
        return [{"image": str(p)} for p in input_path]
    path = Path(input_path)
    if path.suffix.lower() == ".json":
        content = _read_datalist(path)
        keys = [k for k in datalist_keys if content.get(k)]
        if not keys:
            keys = [k for k, v in content.items() if isinstance(v, list) and v and isinstance(v[0], dict)]
        if not keys:
            raise ValueError(f"datalist {path}: no items in {list(datalist_keys)} nor in any other list")
        return load_items(path, keys)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES))
        if not files:
            raise FileNotFoundError(f"input folder {path}: no files ending in {', '.join(IMAGE_SUFFIXES)}")
        return [{"image": str(p)} for p in files]
    if not path.is_file():
        raise FileNotFoundError(f"input {path}: no such file")
    return [{"image": str(path)}]


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
    logger.info("torch CPU threads: %d", torch.get_num_threads())
    return torch.get_num_threads()


def root_cause(error: BaseException) -> BaseException:
    """The first exception of a chain: MONAI's ``Compose`` wraps a transform's own error in a
    ``RuntimeError``, and the user needs the original one (which file, which field).

    >>> try:
    ...     try:
    ...         raise ValueError("a.dcm: no PixelSpacing")
    ...     except ValueError as inner:
    ...         raise RuntimeError("applying transform") from inner
    ... except RuntimeError as outer:
    ...     print(repr(root_cause(outer)))
    ValueError('a.dcm: no PixelSpacing')
    """
    seen = {id(error)}
    while error.__cause__ is not None and id(error.__cause__) not in seen:
        error = error.__cause__
        seen.add(id(error))
    return error


class SkippedInputs:
    """The inputs a batch inference could not read, with why: a batch never dies on one bad file.

    ``add(source, error)`` logs a warning and records ``{"source", "reason"}`` (the reason from the
    :func:`root_cause`); ``write(out_dir)`` writes ``skipped.json`` atomically when anything was
    skipped.

    >>> skipped = SkippedInputs()
    >>> skipped.add("bad.dcm", RuntimeError("applying transform"))
    >>> len(skipped), skipped.records
    (1, [{'source': 'bad.dcm', 'reason': 'RuntimeError: applying transform'}])
    """

    def __init__(self) -> None:
        self.records: list[dict[str, str]] = []

    def __len__(self) -> int:
        return len(self.records)

    def add(self, source: Any, error: BaseException) -> None:
        cause = root_cause(error)
        reason = f"{type(cause).__name__}: {cause}"
        logger.warning("skipped %s: %s", source, reason)
        self.records.append({"source": str(source), "reason": reason})

    def write(self, out_dir: str | os.PathLike) -> Path | None:
        if not self.records:
            return None
        from monai_mammo.atomic_io import atomic_write_json

        path = Path(out_dir) / "skipped.json"
        atomic_write_json(path, self.records, indent=1)
        return path
