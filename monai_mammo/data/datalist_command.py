"""``monai-mammo datalist <dataset> <root> --out datalist.json``: a public dataset as a MONAI datalist.

Runs the dataset's adapter (:mod:`monai_mammo.data.adapters`), prints what it skipped and why, and
writes the datalist atomically. Paths in the datalist are relative to the output file's folder.
With ``--strict`` any skipped row, file or annotation is an error and nothing is written.
Exit status: 0 written, 2 failed (bad input in strict mode, unreadable dataset, bad arguments).
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

from monai_mammo.data.adapters import get_adapter, list_adapters


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", choices=list_adapters(), metavar="DATASET", help="which public dataset ROOT holds: " + ", ".join(list_adapters()))
    parser.add_argument("root", type=Path, metavar="ROOT", help="the dataset's root folder as downloaded")
    parser.add_argument("--out", type=Path, required=True, help="datalist JSON to write (atomically)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the patient-wise split (default 0)")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="fraction of patients for validation (default 0.1; of the official training "
                             "patients when the dataset has an official split)")
    parser.add_argument("--test-fraction", type=float, default=0.2,
                        help="fraction of patients for test (default 0.2; unused with an official split)")
    parser.add_argument("--no-official-split", dest="official_split", action="store_false",
                        help="ignore the dataset's official train/test split and split by seed")
    parser.add_argument("--mask-dir", type=Path, default=None,
                        help="where written lesion masks go (INbreast, CBIS-DDSM); default beside --out")
    parser.add_argument("--strict", action="store_true",
                        help="fail, writing nothing, if any row, file or annotation had to be skipped")


def run(args: argparse.Namespace) -> int:
    from monai_mammo.data.adapters.datalist import AdapterReport, DatalistError, write_datalist

    adapter = get_adapter(args.dataset)
    out = Path(args.out)
    report = AdapterReport(args.dataset, log=False)
    kwargs = dict(out_dir=out.parent, seed=args.seed, val_fraction=args.val_fraction,
                  test_fraction=args.test_fraction, official_split=args.official_split, report=report)
    if args.mask_dir is not None:
        if "mask_dir" not in inspect.signature(adapter).parameters:
            print(f"monai-mammo datalist: --mask-dir is not used by {args.dataset}", file=sys.stderr)
        else:
            kwargs["mask_dir"] = args.mask_dir
    try:
        datalist = adapter(args.root, **kwargs)
    except (DatalistError, ValueError, OSError) as error:
        print(f"monai-mammo datalist: {args.dataset}: {error}", file=sys.stderr)
        return 2
    if report.issues:
        print(report.summary(), file=sys.stderr)
    if args.strict and report.problems:
        print(f"monai-mammo datalist: --strict: {len(report.problems)} problem(s); {out} not written",
              file=sys.stderr)
        return 2
    write_datalist(datalist, out)
    counts = ", ".join(f"{len(datalist[split])} {split}" for split in ("training", "validation", "test"))
    skipped = report.counts()
    print(f"wrote {out}: {counts}" + (f" ({', '.join(f'{n} {a}' for a, n in sorted(skipped.items()))})"
                                      if skipped else ""))
    return 0
