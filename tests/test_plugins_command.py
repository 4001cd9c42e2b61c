from __future__ import annotations

import json
import subprocess
import sys

import pytest

from monai_mammo import cli
from tests.plugin_factory import make_plugin_distribution


pytestmark = pytest.mark.usefixtures("fresh_registry")


def test_plugins_json_lists_plugins_and_components(capsys):
    assert cli.main(["plugins", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    names = {p["name"]: p for p in listing["plugins"]}
    assert names["builtin"]["distribution"] == "monai-mammo"
    losses = {c["name"]: c for c in listing["components"]["loss"]}
    assert losses["weighted_bce"]["plugin"] == "builtin" and losses["weighted_bce"]["description"]
    assert losses["weighted_bce"]["family"] == "tensor" and losses["ttest"]["family"] == "pixel_masks"
    assert losses["disentangle"]["family"] == "multitask"
    compositors = {c["name"]: c for c in listing["components"]["compositor"]}
    assert compositors["alpha_blend"]["family"] == "blend"
    assert listing["families"]["loss"]["multitask"].startswith("loss(prediction: Mapping[str, Tensor]")


def test_plugins_text_shows_each_component_family(capsys):
    assert cli.main(["plugins"]) == 0
    lines = capsys.readouterr().out.splitlines()
    ttest = [line.split() for line in lines if line.strip().startswith("ttest ")]
    assert ttest and ttest[0][:3] == ["ttest", "pixel_masks", "[builtin]"]
    froc = [line.split() for line in lines if line.strip().startswith("froc ")]
    assert froc[0][:3] == ["froc", "cumulative", "[builtin]"]
    families = lines[lines.index("Families (the call contract a bundle config accepts with accept_families=[...]):") + 1 :]
    assert [line.split()[:2] for line in families] == [
        ["loss", "tensor"],
        ["loss", "pixel_masks"],
        ["loss", "multitask"],
        ["compositor", "blend"],
        ["metric", "cumulative"],
    ]


def test_plugins_text_shows_failed_plugin_with_reason(tmp_path, monkeypatch, capsys):
    make_plugin_distribution(tmp_path, monkeypatch, "broken-dist", "broken", "raise RuntimeError('boom')\n")
    with pytest.warns(RuntimeWarning):
        assert cli.main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "broken" in out and "failed" in out and "boom" in out
    assert "Losses (name, family, plugin, description):" in out and "weighted_bce" in out


def test_console_script_entry_point_runs():
    result = subprocess.run(
        [sys.executable, "-c", "from monai_mammo.cli import main; raise SystemExit(main(['plugins']))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "builtin" in result.stdout
