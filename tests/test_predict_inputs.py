"""Inputs of ``monai-mammo predict`` (monai_mammo.inputs): discovery by content, names, shards, header checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dicom_fixtures import CT_SOP_CLASS, SR_SOP_CLASS, ramp, write_dicom
from monai_mammo.inputs import InputChecker, InputItem, assign_output_names, discover_inputs, looks_like_dicom, shard


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "archive"
    (root / "a").mkdir(parents=True)
    (root / ".hidden").mkdir()
    write_dicom(root / "a" / "IM0001", ramp())  # no extension: found by content
    write_dicom(root / "a" / "1.dcm", ramp())
    write_dicom(root / "b.dcm", ramp(), pixel_spacing=None)  # no spacing
    write_dicom(root / "ct.dcm", ramp(), modality="CT", sop_class=CT_SOP_CLASS)
    write_dicom(root / "sr.dcm", None, modality="SR", sop_class=SR_SOP_CLASS)
    (root / "corrupt.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff")
    (root / "junk.dcm").write_bytes(b"this is not dicom at all")
    (root / "notes.txt").write_text("hello")
    (root / "empty.png").write_bytes(b"")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "roi.png")
    (root / ".DS_Store").write_bytes(b"x")
    (root / ".hidden" / "x.dcm").write_bytes(b"x")
    return root


def test_discovery_walks_folders_and_skips_hidden_names(folder: Path) -> None:
    items = discover_inputs([folder])
    names = [i.path.relative_to(folder).as_posix() for i in items]
    assert names == sorted(names)
    assert set(names) == {"a/IM0001", "a/1.dcm", "b.dcm", "ct.dcm", "sr.dcm", "corrupt.dcm", "junk.dcm", "notes.txt", "empty.png", "roi.png"}
    assert looks_like_dicom(folder / "a" / "IM0001") and not looks_like_dicom(folder / "junk.dcm")
    # the same file given twice (folder and file) is processed once
    assert len(discover_inputs([folder, folder / "b.dcm"])) == len(items)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        discover_inputs([folder / "nowhere"])


def test_datalist_items_keep_their_fields(tmp_path: Path) -> None:
    write_dicom(tmp_path / "x.dcm", ramp())
    datalist = {"test": [{"image": "x.dcm", "spacing": [0.1, 0.1], "boxes": [[1, 2, 5, 6]]}], "training": [{"image": "y.dcm"}]}
    (tmp_path / "list.json").write_text(json.dumps(datalist))
    (item,) = discover_inputs([tmp_path / "list.json"])
    assert item.path == (tmp_path / "x.dcm").resolve() and item.fields == {"spacing": [0.1, 0.1], "boxes": [[1, 2, 5, 6]]}
    assert item.as_data() == {"image": str(item.path), "spacing": [0.1, 0.1], "boxes": [[1, 2, 5, 6]]}
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="bad.json"):
        discover_inputs([tmp_path / "bad.json"])


def test_output_names_are_relative_unique_and_shards_partition() -> None:
    items = [
        InputItem(Path("/d/p1/LCC.dcm"), root=Path("/d")),
        InputItem(Path("/d/p1/LCC.png"), root=Path("/d")),  # same name once the suffix is gone
        InputItem(Path("/d/p2/IM0001"), root=Path("/d")),
        InputItem(Path("/e/x.nii.gz"), root=Path("/e")),
    ]
    names = [i.name for i in assign_output_names(items)]
    assert names[2:] == ["p2/IM0001", "x"]
    assert names[0].startswith("p1/LCC-") and names[1].startswith("p1/LCC-") and names[0] != names[1]
    shares = [shard(items, r, 3) for r in range(3)]
    assert [len(s) for s in shares] == [2, 1, 1]
    assert sorted(i.name for s in shares for i in s) == sorted(names)  # disjoint, and the union is everything
    with pytest.raises(ValueError, match="rank 3"):
        shard(items, 3, 3)


def test_checker_reasons(folder: Path) -> None:
    checker = InputChecker(modalities=("MG",), requires_spacing=True)
    reasons = {i.path.relative_to(folder).as_posix(): checker.check(i) for i in discover_inputs([folder])}
    assert reasons["a/IM0001"].ok and reasons["a/IM0001"].kind == "dicom" and reasons["a/1.dcm"].ok
    assert reasons["corrupt.dcm"].reason.startswith("corrupt DICOM file")
    assert reasons["junk.dcm"].reason.startswith("corrupt DICOM file: no DICM preamble")
    assert reasons["notes.txt"].reason.startswith("not a DICOM or image file")
    assert reasons["empty.png"].reason == "empty file (0 bytes)"
    assert reasons["sr.dcm"].reason == "non-image DICOM (Enhanced SR Storage, Modality SR): no Image Pixel module"
    assert reasons["ct.dcm"].reason.startswith("wrong modality CT (CT Image Storage); the bundle accepts MG")
    assert reasons["b.dcm"].reason.startswith("missing pixel spacing (no PixelSpacing / ImagerPixelSpacing)")
    assert "--default-spacing" in reasons["roi.png"].reason and reasons["roi.png"].kind == "raster"


def test_default_spacing_is_assumed_only_where_missing(folder: Path) -> None:
    checker = InputChecker(modalities=("MG",), requires_spacing=True, default_spacing_mm=0.05)
    no_spacing, with_spacing = InputItem((folder / "b.dcm").resolve()), InputItem((folder / "a" / "1.dcm").resolve())
    result = checker.check(no_spacing)
    assert result.ok and result.assumed_spacing_mm == 0.05 and no_spacing.fields["spacing"] == [0.05, 0.05]
    result = checker.check(with_spacing)
    assert result.ok and result.assumed_spacing_mm is None and "spacing" not in with_spacing.fields
    datalist_spacing = InputItem((folder / "roi.png").resolve(), {"spacing": [0.1, 0.1]})
    assert checker.check(datalist_spacing).assumed_spacing_mm is None
    # a bundle that needs no spacing (DAB-Net's ROI crops) takes the PNG as it is
    assert InputChecker(("MG",), requires_spacing=False).check(InputItem((folder / "roi.png").resolve())).ok
    with pytest.raises(ValueError, match="positive"):
        InputChecker(default_spacing_mm=0)
