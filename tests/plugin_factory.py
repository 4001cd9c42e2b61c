"""Throwaway plugin distributions for tests: a module plus a ``*.dist-info`` with an entry point,
put on ``sys.path`` so ``importlib.metadata`` discovers them exactly as it would an installed package."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest


def make_plugin_distribution(
    root: Path, monkeypatch: pytest.MonkeyPatch, distribution: str, entry_name: str, module_source: str
) -> str:
    """Write module ``<entry_name>_plugin_mod`` and a distribution ``distribution`` whose entry point
    ``entry_name`` in group ``monai_mammo`` points at it; return the module name."""
    module_name = f"{entry_name}_plugin_mod"
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module_name}.py").write_text(textwrap.dedent(module_source))
    dist_info = root / f"{distribution.replace('-', '_')}-0.0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 0.0.1\n")
    (dist_info / "entry_points.txt").write_text(f"[monai_mammo]\n{entry_name} = {module_name}\n")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delitem(sys.modules, module_name, raising=False)
    return module_name


LOSS_PLUGIN = """
from monai_mammo.hookspecs import Component, hookimpl
import torch

class HalfL1Loss(torch.nn.Module):
    def __init__(self, scale=0.5):
        super().__init__()
        self.scale = scale
    def forward(self, input, target):
        return self.scale * (input - target).abs().mean()

@hookimpl
def register_losses():
    return [Component("{name}", HalfL1Loss, "half an L1")]
"""
