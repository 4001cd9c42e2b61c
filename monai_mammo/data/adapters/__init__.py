"""Public dataset adapters: INbreast, CBIS-DDSM, VinDr-Mammo, ChestX-ray14 -> MONAI datalist JSON.

Each adapter is a function ``<name>_datalist(root, out_dir=None, ...) -> dict`` returning a
decathlon-style datalist (``training`` / ``validation`` / ``test``); the keys are documented in
:mod:`monai_mammo.data.adapters.datalist` and in each adapter module. This package stays
import-light: adapters are imported when asked for.

Example::

    from monai_mammo.data.adapters import get_adapter
    adapter = get_adapter("chestxray14")  # == chestxray14.chestxray14_datalist
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

#: CLI dataset name -> "module:function"
ADAPTERS: dict[str, str] = {
    "inbreast": "monai_mammo.data.adapters.inbreast:inbreast_datalist",
    "cbis-ddsm": "monai_mammo.data.adapters.cbis_ddsm:cbis_ddsm_datalist",
    "vindr-mammo": "monai_mammo.data.adapters.vindr_mammo:vindr_mammo_datalist",
    "chestxray14": "monai_mammo.data.adapters.chestxray14:chestxray14_datalist",
}


def list_adapters() -> list[str]:
    """Dataset names known to :func:`get_adapter` and ``monai-mammo datalist``."""
    return sorted(ADAPTERS)


def get_adapter(name: str) -> Callable[..., dict[str, Any]]:
    """The adapter function for a dataset name; an unknown name lists the known ones."""
    if name not in ADAPTERS:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(list_adapters())}")
    module_name, function_name = ADAPTERS[name].split(":")
    return getattr(importlib.import_module(module_name), function_name)
