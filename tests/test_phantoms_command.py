"""``monai-mammo synth`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

from monai_mammo.cli import main


def test_synth_mammogram_with_preview(tmp_path: Path, capsys) -> None:
    rc = main(["synth", "mammogram", "--out", str(tmp_path), "--n", "2", "--seed", "1", "-O", "image_size=[256,208]", "-O", "p_mass=1.0", "--preview"])
    assert rc == 0
    content = json.loads((tmp_path / "datalist.json").read_text())
    assert content["kind"] == "mammogram" and content["options"]["image_size"] == [256, 208]
    assert (tmp_path / "preview.png").stat().st_size > 1000
    assert "wrote" in capsys.readouterr().out


def test_synth_roi(tmp_path: Path) -> None:
    assert main(["synth", "roi", "--out", str(tmp_path), "--n", "3", "-O", "size=48", "-O", "n_masses=1", "-O", "n_glands=1", "--preview", "sheet.png"]) == 0
    assert (tmp_path / "sheet.png").is_file()


def test_synth_bad_option_reports_and_fails(tmp_path: Path, capsys) -> None:
    assert main(["synth", "mammogram", "--out", str(tmp_path), "--n", "1", "-O", "no_such_option=1"]) == 2
    assert "no_such_option" in capsys.readouterr().out
