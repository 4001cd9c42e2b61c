"""``monai-mammo predict --bundle NAME|FOLDER INPUT... --out DIR [--dicom-sr] [--dicom-seg] [--overlay] ...``.

Examples:
    monai-mammo predict --bundle asn /archive/mammograms --out /results --dicom-sr --dicom-seg
    monai-mammo predict --bundle asn scans/ --out out/ --default-spacing 0.07 --workers 2
    torchrun --nproc_per_node 2 -m monai_mammo.predict_command --bundle asn scans/ --out out/
    monai-mammo predict --bundle dabnet datalist.json --out out/ --dicom-sr -O ckpt_dir=/models/dabnet

Exit status: 0 all inputs processed (or already complete), 3 some were skipped (see
``OUT/skipped.csv``), 1 the run could not start (no inputs, no bundle, highdicom missing), 2 bad
arguments. The engine is :mod:`monai_mammo.predict`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

EXIT_FAILED = 1


def _parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"override {text!r} must look like key=value (value in JSON, e.g. use_fpr=false)")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # a bare string (a path, an expression)
    return key.strip(), value


def _threads(text: str) -> int | str:
    return text if text == "auto" else int(text)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="DICOM/PNG files, folders (recursive; DICOM found by content) or datalist JSON files")
    parser.add_argument("--bundle", required=True, help="bundle name (e.g. asn, dabnet) or bundle folder")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--dicom-sr", action="store_true", help="write a DICOM Structured Report (TID 1500) per DICOM input")
    parser.add_argument("--dicom-seg", action="store_true", help="write a DICOM Segmentation per DICOM input (bundles that output a mask)")
    parser.add_argument("--overlay", action="store_true", help="write a DICOM Secondary Capture with the findings burnt in")
    parser.add_argument("--overwrite", action="store_true", help="redo images whose outputs are already complete")
    parser.add_argument(
        "--default-spacing", type=float, default=None, metavar="MM",
        help="pixel spacing assumed for files without one (recorded in each output); without it they are skipped",
    )
    parser.add_argument(
        "--max-findings", type=int, default=None, metavar="K",
        help="the SR holds the K best findings only (the JSON keeps all); default all",
    )
    parser.add_argument("--workers", type=int, default=1, metavar="N", help="CPU processes sharing the work (default 1)")
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu, cuda:0 (default: the bundle's; cuda:LOCAL_RANK under torchrun)")
    parser.add_argument("--threads", type=_threads, default=None, metavar="N|auto", help="torch CPU threads per process")
    parser.add_argument("--datalist-key", action="append", default=None, metavar="KEY", help="datalist list(s) to read (default: test, else all)")
    parser.add_argument(
        "-O", "--override", action="append", default=[], type=_parse_override, metavar="KEY=VALUE",
        help="bundle config override, value in JSON (repeatable), e.g. -O ckpt_dir=/models/asn",
    )
    parser.add_argument("--progress", dest="progress", action="store_true", default=None, help="always show the progress bar")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="never show the progress bar")


def _print_summary(summary: Any) -> None:
    spi = summary.seconds_per_image
    print(
        f"predict{f' rank {summary.rank}/{summary.world_size}' if summary.world_size > 1 else ''}: "
        f"{summary.done} done, {summary.resumed} already complete, {len(summary.skipped)} skipped of {summary.total}; "
        f"{summary.seconds:.1f} s" + (f", {spi:.2f} s/image processed" if spi is not None else "")
        + f"; peak memory {summary.peak_rss_mb:.0f} MB"
        + (f", CUDA {summary.peak_cuda_mb:.0f} MB" if summary.peak_cuda_mb is not None else "")
    )
    for note in summary.notes:
        print(f"note: {note}" + (f" ({summary.dicom_refused} image(s))" if "refused" in note else ""))
    if summary.skipped:
        print(f"skipped ({summary.skipped_file}):")
        for path, reason in summary.skipped[:20]:
            print(f"  {path}: {reason}")
        if len(summary.skipped) > 20:
            print(f"  ... {len(summary.skipped) - 20} more")


def run(args: argparse.Namespace) -> int:
    import logging

    from monai_mammo.dicom.common import HighdicomMissingError
    from monai_mammo.predict import PredictOptions, run_predict

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.workers < 1:
        print("monai-mammo predict: --workers must be >= 1", file=sys.stderr)
        return 2
    options = PredictOptions(
        bundle=args.bundle,
        inputs=[str(p) for p in args.inputs],
        out_dir=args.out,
        dicom_sr=args.dicom_sr,
        dicom_seg=args.dicom_seg,
        overlay=args.overlay,
        overwrite=args.overwrite,
        default_spacing_mm=args.default_spacing,
        overrides=dict(args.override),
        datalist_keys=tuple(args.datalist_key or ("test",)),
        workers=args.workers,
        device=args.device,
        cpu_threads=args.threads,
        progress=args.progress,
        max_findings=args.max_findings,
    )
    try:
        summary = run_predict(options)
    except (FileNotFoundError, ValueError, HighdicomMissingError) as error:
        print(f"monai-mammo predict: {error}", file=sys.stderr)
        return EXIT_FAILED
    _print_summary(summary)
    return summary.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m monai_mammo.predict_command ...`` (what ``torchrun -m`` runs)."""
    parser = argparse.ArgumentParser(prog="monai-mammo predict", description=__doc__.splitlines()[0])
    configure_parser(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
