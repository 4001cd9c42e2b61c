"""Where a bundle lives, for configs that are run from the repository root or from the bundle.

A MONAI config cannot see its own path, yet ``bundle_root`` must point at the bundle whether the
user types ``--config_file bundles/asn/train.yaml`` at the repository root or runs inside
``bundles/asn``. MONAI Label overrides ``bundle_root`` itself.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def find_bundle_root(name: str, start: str | os.PathLike | None = None) -> str:
    """Return the folder of bundle ``name``: ``start`` (default: the working directory) when it is
    that bundle, else ``start/bundles/<name>``.

    A folder is bundle ``name`` when its ``configs/metadata.json`` has ``"name": <name>``.

    Raises:
        FileNotFoundError: when neither place holds the bundle.
    """
    start_path = Path(start or os.getcwd()).resolve()
    for candidate in (start_path, start_path / "bundles" / name):
        metadata_file = candidate / "configs" / "metadata.json"
        if metadata_file.is_file() and json.loads(metadata_file.read_text()).get("name") == name:
            return str(candidate)
    raise FileNotFoundError(
        f"bundle {name!r} not found in {start_path} or {start_path / 'bundles' / name}; "
        f"run from the repository root or the bundle folder, or pass --bundle_root"
    )
