"""The ``monai-mammo`` command.

Each subcommand lives in the module that owns its concept and exposes two functions:
``configure_parser(parser)`` to add its arguments and ``run(args) -> int``. Subcommand modules are
imported only to build the parser, so they keep heavy imports (torch, MONAI) inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

#: subcommand -> (one-line help, module with configure_parser/run)
COMMANDS: dict[str, tuple[str, str]] = {
    "plugins": ("list loaded plugins and the components they register", "monai_mammo.plugins_command"),
    "synth": ("generate deterministic synthetic phantoms (mammogram, roi, cxr) with a datalist", "monai_mammo.data.phantoms.command"),
    "datalist": ("turn a public dataset into a MONAI datalist JSON", "monai_mammo.data.datalist_command"),
    "predict": ("batch inference with a bundle over DICOM/PNG archives: JSON, DICOM SR/SEG, overlays", "monai_mammo.predict_command"),
    "cross-validate": ("k-fold patient-wise stratified cross-validation of a bundle: cv_metrics.json (mean, sd)", "monai_mammo.cross_validation"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="monai-mammo", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_text, module_name) in COMMANDS.items():
        module = importlib.import_module(module_name)
        subparser = subparsers.add_parser(name, help=help_text, description=help_text)
        module.configure_parser(subparser)
        subparser.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
