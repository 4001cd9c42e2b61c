"""Batch inference over an archive with any bundle: resumable, sharded, never stopped by one bad file.

:func:`run_predict` is the engine of ``monai-mammo predict`` (:mod:`monai_mammo.predict_command`):

1. **Inputs** (:mod:`monai_mammo.inputs`): files, folders (recursive, DICOM found by content) and
   datalists, sorted, each with an output name; the output folder itself is never an input.
2. **Share**: rank ``r`` of ``W`` (``RANK`` / ``WORLD_SIZE``, as ``torchrun`` sets them, or
   arguments) takes ``items[r::W]``; ``workers`` CPU processes split a rank's share the same way
   (global share ``r * workers + i`` of ``W * workers``), so the union of the shares is the input
   list and any split gives the outputs of a single process.
3. **Per image**, in order: header checks (:class:`~monai_mammo.inputs.InputChecker`: corrupt
   file, non-image DICOM, wrong modality, missing spacing unless ``default_spacing_mm``), the
   bundle (:class:`~monai_mammo.bundle_predictor.BundlePredictor`, network loaded once per
   process), then the outputs, each written atomically: ``<name>.json`` (the findings record plus
   ``bundle`` and, when used, ``assumed_spacing_mm``), and on request ``<name>.sr.dcm``,
   ``<name>.seg.dcm``, ``<name>.overlay.dcm`` (:mod:`monai_mammo.dicom`). A completion marker
   ``<name>.done.json`` listing the outputs and their sizes is written **last**.
4. **Resume**: an image whose marker matches (same bundle, version and weights, every requested
   output present with its size) is not processed again; ``overwrite`` redoes it. An image
   interrupted half-way has no marker, so it is redone.
5. **Skips**: anything that fails for one image (a check, the reader, the network, a writer) is
   recorded with its reason and the run goes on. With one rank the list is ``skipped.csv``
   (``path,reason``); with several, each rank writes ``skipped.rank<r>.csv`` and merges every
   rank's file into ``skipped.csv`` under a file lock, so the last rank to finish leaves the
   complete list. The exit status is 0 when nothing was skipped and :data:`EXIT_SKIPPED` (3)
   otherwise (under ``torchrun``, after a barrier, for the skips of all ranks).
6. **Summary**: images done, resumed, skipped, wall seconds, seconds per image processed (the
   network's start-up excluded; with workers, summed over processes), peak resident memory
   (``resource.getrusage``) and peak CUDA memory (``torch.cuda.max_memory_allocated``).

PNG (and other non-DICOM) inputs have no source instance for a DICOM output to reference: their
DICOM outputs are refused with a message (counted in the summary) and their JSON is written.
Coordinates follow :mod:`monai_mammo.coordinates`.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import resource
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from monai_mammo.bundle_utils import root_cause
from monai_mammo.atomic_io import atomic_write_bytes, atomic_write_json
from monai_mammo.inputs import CheckResult, InputChecker, InputItem, assign_output_names, discover_inputs, shard

__all__ = [
    "EXIT_OK",
    "EXIT_SKIPPED",
    "PredictOptions",
    "PredictSummary",
    "run_predict",
    "output_paths",
    "read_skipped",
]

logger = logging.getLogger(__name__)

EXIT_OK = 0
#: exit status when at least one input was skipped (the others were processed).
EXIT_SKIPPED = 3

DICOM_KINDS = ("sr", "seg", "overlay")
_SUFFIXES = {"json": ".json", "sr": ".sr.dcm", "seg": ".seg.dcm", "overlay": ".overlay.dcm", "marker": ".done.json"}
PNG_REFUSAL = "DICOM outputs refused: not a DICOM input, so there is no source instance to reference (JSON written)"


@dataclass
class PredictOptions:
    """What ``monai-mammo predict`` was asked.

    Attributes:
        bundle: bundle name or folder.
        inputs: files, folders and datalists.
        out_dir: output folder.
        dicom_sr / dicom_seg / overlay: the DICOM outputs to write.
        overwrite: redo images whose outputs are complete.
        default_spacing_mm: spacing assumed for files without one (else they are skipped).
        overrides: bundle config overrides.
        datalist_keys: the lists read from a datalist (default "test"; all lists when absent).
        workers: CPU processes splitting this rank's share. Default 1 (this process).
        rank / world_size: this process's share; None: ``RANK`` / ``WORLD_SIZE`` or 0 / 1.
        device: e.g. "cpu", "cuda:0"; None: the bundle's (``cuda:LOCAL_RANK`` under torchrun).
        cpu_threads: torch threads per process; None: the bundle's setting (1 with workers > 1).
        progress: show a progress bar; None: when standard error is a terminal.
        overlay_top_k: points drawn on the overlay (best scores). Default 20.
        max_findings: the SR holds the best ``max_findings`` findings only; None: all (default).
    """

    bundle: str
    inputs: Sequence[str]
    out_dir: Path
    dicom_sr: bool = False
    dicom_seg: bool = False
    overlay: bool = False
    overwrite: bool = False
    default_spacing_mm: float | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    datalist_keys: Sequence[str] = ("test",)
    workers: int = 1
    rank: int | None = None
    world_size: int | None = None
    device: str | None = None
    cpu_threads: int | str | None = None
    progress: bool | None = None
    overlay_top_k: int = 20
    max_findings: int | None = None

    @property
    def dicom_kinds(self) -> tuple[str, ...]:
        return tuple(k for k, on in zip(DICOM_KINDS, (self.dicom_sr, self.dicom_seg, self.overlay)) if on)


@dataclass
class PredictSummary:
    """What a run did (this rank; all its workers)."""

    rank: int
    world_size: int
    total: int = 0
    done: int = 0
    resumed: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    dicom_refused: int = 0
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    processing_seconds: float = 0.0
    peak_rss_mb: float = 0.0
    peak_cuda_mb: float | None = None
    skipped_file: str = ""
    skipped_all_ranks: int | None = None

    @property
    def seconds_per_image(self) -> float | None:
        """Processing time per image done (checks, inference, outputs; not the start-up)."""
        return self.processing_seconds / self.done if self.done else None

    @property
    def exit_code(self) -> int:
        count = self.skipped_all_ranks if self.skipped_all_ranks is not None else len(self.skipped)
        return EXIT_SKIPPED if count else EXIT_OK

    def merge(self, other: PredictSummary) -> None:
        self.total += other.total
        self.done += other.done
        self.resumed += other.resumed
        self.processing_seconds += other.processing_seconds
        self.skipped += other.skipped
        self.dicom_refused += other.dicom_refused
        self.notes += [n for n in other.notes if n not in self.notes]
        self.peak_rss_mb = max(self.peak_rss_mb, other.peak_rss_mb)
        if other.peak_cuda_mb is not None:
            self.peak_cuda_mb = max(self.peak_cuda_mb or 0.0, other.peak_cuda_mb)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["seconds_per_image"] = self.seconds_per_image
        out["skipped"] = [{"path": p, "reason": r} for p, r in self.skipped]
        return out


def output_paths(out_dir: str | os.PathLike, name: str) -> dict[str, Path]:
    """The files of image ``name``: ``json``, ``sr``, ``seg``, ``overlay`` and the ``marker``."""
    return {kind: Path(out_dir) / f"{name}{suffix}" for kind, suffix in _SUFFIXES.items()}


def read_skipped(path: str | os.PathLike) -> list[tuple[str, str]]:
    """The ``(path, reason)`` rows of a skipped.csv."""
    with open(path, newline="") as stream:
        return [(row["path"], row["reason"]) for row in csv.DictReader(stream)]


def _write_skipped(path: Path, rows: Sequence[tuple[str, str]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "reason"])
    writer.writerows(sorted(rows))
    atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock, the merge is still atomic
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    kilobytes = resource.getrusage(who).ru_maxrss
    return kilobytes / (1024.0 * 1024.0) if sys.platform == "darwin" else kilobytes / 1024.0


# ----------------------------------------------------------------------------------- one image


class _ImageProcessor:
    """Checks, predicts and writes one image at a time (one per process: the network loads once)."""

    def __init__(self, options: PredictOptions, threads: int | str | None, device: str | None) -> None:
        from monai_mammo.bundle_predictor import BundlePredictor
        from monai_mammo.dicom.common import Algorithm

        self.options = options
        self.out_dir = Path(options.out_dir)
        self.kinds = options.dicom_kinds
        if self.kinds:
            from monai_mammo.dicom.common import require_highdicom

            require_highdicom()  # fail before any work, with the install line
        self.predictor = BundlePredictor(options.bundle, options.overrides, device=device, cpu_threads=threads)
        profile = self.predictor.profile
        self.checker = InputChecker(self.predictor.modalities, profile.requires_spacing, options.default_spacing_mm)
        self.algorithm = Algorithm(self.predictor.name, self.predictor.version, self.predictor.fingerprint)
        self.identity = {"name": self.predictor.name, "version": self.predictor.version, "weights": self.predictor.fingerprint}
        self.notes: list[str] = []
        if "seg" in self.kinds and profile.mask_key is None:
            self.notes.append(f"--dicom-seg: bundle {self.predictor.name} outputs no mask, so no SEG is written")

    def close(self) -> None:
        self.predictor.close()

    # ------------------------------------------------------------------------------ resume
    def is_complete(self, item: InputItem) -> bool:
        paths = output_paths(self.out_dir, item.name)
        try:
            marker = json.loads(paths["marker"].read_text())
        except (OSError, ValueError):
            return False
        if marker.get("bundle") != self.identity or marker.get("source") != str(item.path):
            return False
        if "sr" in self.kinds and marker.get("max_findings") != self.options.max_findings:
            return False
        outputs, not_written = marker.get("outputs", {}), marker.get("not_written", {})
        for kind in ("json", *self.kinds):
            if kind in not_written:
                continue
            entry = outputs.get(kind)
            if entry is None:
                return False
            path = self.out_dir / entry["file"]
            if not path.is_file() or path.stat().st_size != entry["size"]:
                return False
        return True

    # ----------------------------------------------------------------------------- process
    def process(self, item: InputItem) -> tuple[str, str | None]:
        """``("done" | "skipped", reason)`` for one image; never raises for a bad input."""
        from monai_mammo.transforms.io import RadiographReadError

        check = self.checker.check(item)
        if not check.ok:
            return "skipped", check.reason
        try:
            prediction = self.predictor.predict(item.as_data())
        except Exception as error:  # noqa: BLE001 - one image must not stop the batch
            cause = root_cause(error)
            if isinstance(cause, RadiographReadError):
                return "skipped", f"unreadable image ({cause.reason})"
            logger.debug("%s: inference failed", item.path, exc_info=True)
            return "skipped", f"inference failed ({type(cause).__name__}: {cause})"
        try:
            refused = self._write(item, check, prediction)
        except Exception as error:  # noqa: BLE001
            logger.debug("%s: writing the outputs failed", item.path, exc_info=True)
            cause = root_cause(error)
            return "skipped", f"writing the outputs failed ({type(cause).__name__}: {cause})"
        return "done", refused

    def _write(self, item: InputItem, check: CheckResult, prediction: Any) -> str | None:
        paths = output_paths(self.out_dir, item.name)
        record = dict(prediction.record)
        record["bundle"] = self.identity
        if check.assumed_spacing_mm is not None:
            record["assumed_spacing_mm"] = check.assumed_spacing_mm
        written = {"json": paths["json"]}
        atomic_write_json(paths["json"], record, indent=1, default=float)
        not_written: dict[str, str] = {}
        refused = None
        if self.kinds and check.kind != "dicom":
            refused = PNG_REFUSAL
            not_written = {kind: refused for kind in self.kinds}
        elif self.kinds:
            written.update(self._write_dicom(item, check, prediction, paths, not_written))
        marker = {
            "source": str(item.path),
            "bundle": self.identity,
            "outputs": {k: {"file": p.relative_to(self.out_dir).as_posix(), "size": p.stat().st_size} for k, p in written.items()},
            "not_written": not_written,
            "assumed_spacing_mm": check.assumed_spacing_mm,
            "max_findings": self.options.max_findings,
        }
        atomic_write_json(paths["marker"], marker)
        return refused

    def _write_dicom(
        self, item: InputItem, check: CheckResult, prediction: Any, paths: Mapping[str, Path], not_written: dict[str, str]
    ) -> dict[str, Path]:
        from monai_mammo.dicom.common import read_source_header
        from monai_mammo.dicom.findings import findings_from_record
        from monai_mammo.dicom.secondary_capture import render_overlay, source_grey, write_overlay
        from monai_mammo.dicom.segmentation import write_segmentation
        from monai_mammo.dicom.structured_report import write_structured_report
        from monai_mammo.inputs import dicom_spacing

        header = read_source_header(item.path)
        algorithm = self.algorithm
        description = None
        if check.assumed_spacing_mm is not None:
            algorithm = algorithm.with_parameters(**{"assumed pixel spacing": f"{check.assumed_spacing_mm:g} mm"})
            description = f"{algorithm.display_name} (assumed spacing {check.assumed_spacing_mm:g} mm)"
        label = self.predictor.profile.finding_label
        written: dict[str, Path] = {}
        if "sr" in self.kinds:
            write_structured_report(
                paths["sr"], header, prediction.record, algorithm, default_label=label,
                series_description=f"{description} findings" if description else None,
                max_findings=self.options.max_findings,
            )
            written["sr"] = paths["sr"]
        if "seg" in self.kinds:
            if prediction.mask is None:
                not_written["seg"] = f"bundle {self.predictor.name} outputs no mask"
            else:
                write_segmentation(
                    paths["seg"], header, prediction.mask, algorithm, prediction.segments,
                    series_description=f"{description} segmentation" if description else None,
                )
                written["seg"] = paths["seg"]
        if "overlay" in self.kinds:
            spacing = prediction.record.get("spacing") or dicom_spacing(header)
            if spacing is None and check.assumed_spacing_mm is not None:
                spacing = [check.assumed_spacing_mm] * 2
            rgb = render_overlay(
                source_grey(item.path), findings_from_record(prediction.record, label), spacing, self.options.overlay_top_k
            )
            write_overlay(
                paths["overlay"], header, rgb, algorithm,
                series_description=f"{description} overlay" if description else None,
            )
            written["overlay"] = paths["overlay"]
        return written


# ---------------------------------------------------------------------------------- one share


def _progress_bar(total: int, enabled: bool | None, position: str) -> Any:
    if enabled is None:
        enabled = sys.stderr.isatty()
    try:
        from tqdm import tqdm
    except ImportError:  # progress is optional; the summary still comes
        return None
    return tqdm(total=total, unit="img", desc=f"predict {position}".strip(), disable=not enabled, dynamic_ncols=True)


def _run_share(
    options: PredictOptions,
    items: Sequence[InputItem],
    rank: int,
    world_size: int,
    threads: int | str | None,
    device: str | None,
    report: Callable[[str], None] | None = None,
) -> PredictSummary:
    """Process ``items`` in this process; ``report(event)`` after each ("done", "resumed", "skipped")."""
    import torch

    summary = PredictSummary(rank=rank, world_size=world_size, total=len(items))
    if isinstance(threads, int):
        torch.set_num_threads(max(threads, 1))
    start = time.perf_counter()
    processor = _ImageProcessor(options, threads, device) if items else None
    try:
        if processor is not None:
            summary.notes += processor.notes
        for item in items:
            if not options.overwrite and processor.is_complete(item):
                summary.resumed += 1
                event = "resumed"
            else:
                tick = time.perf_counter()
                event, reason = processor.process(item)
                summary.processing_seconds += time.perf_counter() - tick
                if event == "skipped":
                    summary.skipped.append((str(item.path), str(reason)))
                    logger.warning("skipped %s: %s", item.path, reason)
                else:
                    summary.done += 1
                    if reason is not None:
                        summary.dicom_refused += 1
                        if PNG_REFUSAL not in summary.notes:
                            summary.notes.append(PNG_REFUSAL)
            if report is not None:
                report(event)
    finally:
        if processor is not None:
            processor.close()
    summary.seconds = time.perf_counter() - start
    summary.peak_rss_mb = _peak_rss_mb()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        summary.peak_cuda_mb = torch.cuda.max_memory_allocated() / 2**20
    return summary


_WORKER_EVENTS: Any = None


def _worker_init(queue: Any) -> None:
    global _WORKER_EVENTS
    _WORKER_EVENTS = queue


def _worker_main(payload: dict[str, Any]) -> PredictSummary:
    """Entry point of a ``workers`` process (spawned: it imports torch and the bundle itself)."""
    options = PredictOptions(**payload["options"])
    items = [InputItem(Path(i["path"]), i["fields"], Path(i["root"]) if i["root"] else None, i["name"]) for i in payload["items"]]
    report = _WORKER_EVENTS.put if _WORKER_EVENTS is not None else None
    return _run_share(options, items, payload["rank"], payload["world_size"], payload["threads"], payload["device"], report)


def _run_workers(options: PredictOptions, items: Sequence[InputItem], rank: int, world_size: int, device: str | None) -> PredictSummary:
    import multiprocessing
    import queue as queue_module
    from concurrent.futures import ProcessPoolExecutor

    workers = int(options.workers)
    threads = options.cpu_threads if options.cpu_threads is not None else 1
    total = PredictSummary(rank=rank, world_size=world_size)
    bar = _progress_bar(len(items), options.progress, f"rank {rank}/{world_size}" if world_size > 1 else "")
    context = multiprocessing.get_context("spawn")
    start = time.perf_counter()
    plain_options = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()}
    plain_options.update(workers=1, progress=False)
    queue = context.Queue()
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker_init, initargs=(queue,)) as pool:
        futures = []
        for index in range(workers):
            share = shard(items, index, workers)
            payload = {
                "options": plain_options,
                "items": [{"path": str(i.path), "fields": i.fields, "root": str(i.root) if i.root else None, "name": i.name} for i in share],
                "rank": rank * workers + index,
                "world_size": world_size * workers,
                "threads": threads,
                "device": device,
            }
            futures.append(pool.submit(_worker_main, payload))
        skipped = 0
        while not all(f.done() for f in futures) or not queue.empty():
            try:
                event = queue.get(timeout=0.2)
            except queue_module.Empty:
                continue
            skipped += event == "skipped"
            if bar is not None:
                bar.update(1)
                bar.set_postfix(skipped=skipped)
        for future in futures:
            total.merge(future.result())
    if bar is not None:
        bar.close()
    total.seconds = time.perf_counter() - start
    total.peak_rss_mb = max(total.peak_rss_mb, _peak_rss_mb())
    return total


# ------------------------------------------------------------------------------------ the run


def _rank_and_world(options: PredictOptions) -> tuple[int, int]:
    rank = options.rank if options.rank is not None else int(os.environ.get("RANK", 0))
    world = options.world_size if options.world_size is not None else int(os.environ.get("WORLD_SIZE", 1))
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"predict: need 0 <= RANK < WORLD_SIZE, got RANK={rank}, WORLD_SIZE={world}")
    return rank, world


def _default_device(options: PredictOptions) -> str | None:
    if options.device is not None:
        return options.device
    local_rank = os.environ.get("LOCAL_RANK")
    if local_rank is not None:
        import torch

        if torch.cuda.is_available():
            return f"cuda:{int(local_rank) % torch.cuda.device_count()}"
    return None


def _process_group(world: int) -> Any:
    """torch.distributed (gloo) when torchrun started several ranks, else None."""
    if world < 2 or "MASTER_ADDR" not in os.environ:
        return None
    import torch.distributed as dist

    if not dist.is_available():
        return None
    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
    return dist


def _finish_skipped(out_dir: Path, rows: Sequence[tuple[str, str]], rank: int, world: int) -> str:
    """Write this rank's skip list; with several ranks, merge every rank's into skipped.csv."""
    merged = out_dir / "skipped.csv"
    if world == 1:
        _write_skipped(merged, rows)
        return str(merged)
    _write_skipped(out_dir / f"skipped.rank{rank}.csv", rows)
    with _locked(out_dir / ".skipped.lock"):
        union: list[tuple[str, str]] = []
        for other in range(world):
            part = out_dir / f"skipped.rank{other}.csv"
            if part.is_file():
                union += read_skipped(part)
        _write_skipped(merged, union)
    return str(merged)


def select_items(options: PredictOptions) -> list[InputItem]:
    """All inputs with their output names (the same list on every rank), the output folder excluded."""
    out = Path(options.out_dir).resolve()
    items = [i for i in discover_inputs(options.inputs, options.datalist_keys) if out not in i.path.parents]
    return assign_output_names(items)


def run_predict(options: PredictOptions) -> PredictSummary:
    """Run the command (see the module docstring); return this rank's summary.

    Raises:
        FileNotFoundError / ValueError: an input or the bundle does not exist, a datalist is
            malformed, or RANK / WORLD_SIZE are inconsistent (nothing has been processed then).
        monai_mammo.dicom.HighdicomMissingError: DICOM outputs asked for without highdicom.
    """
    rank, world = _rank_and_world(options)
    out_dir = Path(options.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dist = _process_group(world)
    items = select_items(options)
    if not items:
        raise FileNotFoundError(f"predict: no files in {', '.join(map(str, options.inputs))}")
    share = shard(items, rank, world)
    device = _default_device(options)
    logger.info("predict: %d inputs, rank %d of %d takes %d", len(items), rank, world, len(share))
    if int(options.workers) > 1:
        summary = _run_workers(options, share, rank, world, device)
    else:
        bar = _progress_bar(len(share), options.progress, f"rank {rank}/{world}" if world > 1 else "")
        counts = {"skipped": 0}

        def report(event: str) -> None:
            counts["skipped"] += event == "skipped"
            if bar is not None:
                bar.update(1)
                bar.set_postfix(skipped=counts["skipped"])

        try:
            summary = _run_share(options, share, rank, world, options.cpu_threads, device, report)
        finally:
            if bar is not None:
                bar.close()
    summary.rank, summary.world_size = rank, world
    summary.skipped_file = _finish_skipped(out_dir, summary.skipped, rank, world)
    if dist is not None:
        import torch

        count = torch.tensor([len(summary.skipped)], dtype=torch.int64)
        dist.all_reduce(count)
        dist.barrier()
        summary.skipped_all_ranks = int(count.item())
        if rank == 0:  # every rank has written its file: this merge is complete
            _finish_skipped(out_dir, summary.skipped, rank, world)
        dist.barrier()
        dist.destroy_process_group()
    atomic_write_json(out_dir / (f"summary.rank{rank}.json" if world > 1 else "summary.json"), summary.as_dict(), default=float)
    return summary
