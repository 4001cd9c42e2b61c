"""``monai-mammo synth <kind> --out DIR --n N --seed S [--preview] [-O key=value ...]``.

Examples:
    monai-mammo synth mammogram --out /tmp/mg --n 8 --seed 0 -O image_size=[1024,832] --preview
    monai-mammo synth roi --out /tmp/roi --n 200 --seed 1 -O obscured_fraction=0.5
    monai-mammo synth cxr --out /tmp/cxr --n 100 --seed 2 -O size=512
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

_KINDS = ("mammogram", "roi", "cxr")


def _parse_option(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"option {text!r} must look like key=value (value in JSON, e.g. image_size=[1024,832])")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # a bare string
    if isinstance(value, list):
        value = tuple(value)
    return key.strip(), value


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=_KINDS, help="phantom kind")
    parser.add_argument("--out", required=True, type=Path, help="output folder (datalist.json and images go here)")
    parser.add_argument("--n", type=int, default=8, help="number of images / real ROIs (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0); same arguments give identical bytes")
    parser.add_argument(
        "--preview",
        nargs="?",
        const="preview.png",
        default=None,
        metavar="PNG",
        help="also write a contact sheet (default OUT/preview.png; a relative PNG path is taken inside OUT)",
    )
    parser.add_argument(
        "-O",
        "--option",
        action="append",
        default=[],
        type=_parse_option,
        metavar="KEY=VALUE",
        help="a generator option, value in JSON (repeatable), e.g. -O image_size=[1024,832] -O p_mass=0.8",
    )


def run(args: argparse.Namespace) -> int:
    from monai_mammo.data.phantoms import synthesize

    options = dict(args.option)
    start = time.perf_counter()
    try:
        datalist = synthesize(args.kind, args.out, args.n, args.seed, **options)
    except (TypeError, ValueError) as error:
        print(f"monai-mammo synth: {error}")
        return 2
    elapsed = time.perf_counter() - start
    content = json.loads(datalist.read_text())
    counts = ", ".join(f"{key} {len(content[key])}" for key in ("training", "validation", "test", "masses", "glands") if key in content)
    print(f"wrote {datalist} ({counts}) in {elapsed:.1f} s")
    if args.preview:
        from monai_mammo.data.phantoms.preview import write_preview

        target = Path(args.preview)
        if not target.is_absolute():
            target = args.out / target
        write_preview(datalist, target)
        print(f"wrote preview {target}")
    return 0
