"""``monai-mammo datalist`` end to end through ``monai_mammo.cli.main``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from monai_mammo.cli import main
from monai_mammo.data.adapters import get_adapter, list_adapters

DATA_ENTRY = """Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]
00000001_000.png,Mass,0,1,58,M,PA,2048,2048,0.14,0.14
00000001_001.png,No Finding,1,1,58,M,PA,2048,2048,0.14,0.14
00000002_000.png,Effusion|Nodule,0,2,41,F,AP,2048,2048,0.14,0.14
00000003_000.png,Hernia,0,3,77,F,PA,2048,2048,0.14,0.14
00000004_000.png,No Finding,0,4,30,M,PA,2048,2048,0.14,0.14
00000005_000.png,Pneumothorax,0,5,30,M,PA,2048,2048,0.14,0.14
"""
BBOX = """Image Index,Finding Label,Bbox [x,y,w,h],,,
00000001_000.png,Mass,2,2,6,6
00000002_000.png,Nodule,10,10,3,3
00000002_000.png,Effusion,100,100,3,3
"""


@pytest.fixture()
def cxr_root(tmp_path: Path) -> Path:
    root = tmp_path / "data" / "cxr"
    (root / "images").mkdir(parents=True)
    for name in ["00000001_000", "00000001_001", "00000002_000", "00000003_000", "00000004_000"]:
        Image.fromarray(np.zeros((16, 16), np.uint8)).save(root / "images" / f"{name}.png")
    (root / "Data_Entry_2017.csv").write_text(DATA_ENTRY)
    (root / "BBox_List_2017.csv").write_text(BBOX)
    return root


def test_adapter_registry() -> None:
    assert list_adapters() == ["cbis-ddsm", "chestxray14", "inbreast", "vindr-mammo"]
    assert get_adapter("chestxray14").__name__ == "chestxray14_datalist"
    with pytest.raises(KeyError, match="known: cbis-ddsm"):
        get_adapter("ddsm")


def test_datalist_command_writes(cxr_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "lists" / "cxr.json"
    code = main(["datalist", "chestxray14", str(cxr_root), "--out", str(out), "--seed", "2",
                 "--val-fraction", "0.25", "--test-fraction", "0.25"])
    captured = capsys.readouterr()
    assert code == 0 and out.is_file()
    assert "wrote" in captured.out and "1 skipped record" in captured.out and "1 skipped annotation" in captured.out
    # the summary names the file, the row and the reason
    assert "Data_Entry_2017.csv (row 7): missing image file 00000005_000.png" in captured.err
    assert "BBox_List_2017.csv (row 4)" in captured.err and "outside the image" in captured.err
    datalist = json.loads(out.read_text())
    records = [r for split in ("training", "validation", "test") for r in datalist[split]]
    assert len(records) == 5 and datalist["issues"] == {"skipped record": 1, "skipped annotation": 1}
    for record in records:
        assert (out.parent / record["image"]).is_file() and record["image"].startswith("../data/cxr/images/")
    splits = {r["patient_id"]: s for s in ("training", "validation", "test") for r in datalist[s]}
    assert sorted(splits.values()).count("training") == 2 and len(splits) == 4
    assert not list(out.parent.glob("*.tmp")) and not list(out.parent.glob(".*"))

    again = tmp_path / "again.json"
    assert main(["datalist", "chestxray14", str(cxr_root), "--out", str(again), "--seed", "2",
                 "--val-fraction", "0.25", "--test-fraction", "0.25"]) == 0
    assert {r["image"].split("/")[-1] for r in json.loads(again.read_text())["test"]} == \
        {r["image"].split("/")[-1] for r in datalist["test"]}


def test_datalist_command_strict_and_errors(cxr_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "strict.json"
    assert main(["datalist", "chestxray14", str(cxr_root), "--out", str(out), "--strict"]) == 2
    assert not out.exists() and "--strict" in capsys.readouterr().err
    assert main(["datalist", "inbreast", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["datalist", "chestxray14", str(cxr_root), "--out", str(out), "--val-fraction", "0.6",
                 "--test-fraction", "0.5", "--no-official-split"]) == 2
    assert "val_fraction + test_fraction" in capsys.readouterr().err and not out.exists()
    with pytest.raises(SystemExit):
        main(["datalist", "ddsm", str(cxr_root), "--out", str(out)])


def test_datalist_command_import_is_light() -> None:
    code = ("import sys, argparse, monai_mammo.data.datalist_command as d; d.configure_parser(argparse.ArgumentParser()); "
            "heavy = [m for m in ('torch', 'monai', 'pydicom', 'skimage', 'numpy', 'PIL') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
