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


def test_plugins_text_shows_failed_plugin_with_reason(tmp_path, monkeypatch, capsys):
    make_plugin_distribution(tmp_path, monkeypatch, "broken-dist", "broken", "raise RuntimeError('boom')\n")
    with pytest.warns(RuntimeWarning):
        assert cli.main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "broken" in out and "failed" in out and "boom" in out
    assert "Losses:" in out and "weighted_bce" in out


def test_console_script_entry_point_runs():
    result = subprocess.run(
        [sys.executable, "-c", "from monai_mammo.cli import main; raise SystemExit(main(['plugins']))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "builtin" in result.stdout
