from __future__ import annotations

import json

import pytest

from monai_mammo.atomic_io import atomic_path, atomic_write_bytes, atomic_write_json


def test_writes_replace_the_target_and_leave_no_temporary(tmp_path):
    target = tmp_path / "sub" / "report.json"
    atomic_write_json(target, {"r@5": 0.5})
    atomic_write_json(target, {"r@5": 0.8}, indent=1)
    assert json.loads(target.read_text()) == {"r@5": 0.8}
    assert atomic_write_bytes(tmp_path / "raw.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "model.pt"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
