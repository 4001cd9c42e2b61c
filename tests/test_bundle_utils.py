"""monai_mammo.bundle_utils: datalist resolution, items, inference inputs, bundle root, threads."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from monai_mammo import bundle_utils
from monai_mammo.bundle_utils import (
    IMAGE_SUFFIXES,
    find_bundle_root,
    inference_items,
    load_items,
    resolve_datalist,
    set_cpu_threads,
    strip_image_suffix,
)

#: the cheapest phantom set there is: two 32 px ROI crops and one-item compositing pools (~0.5 s)
TINY_ROI = {"kind": "roi", "n": 2, "seed": 0, "size": 32, "n_masses": 1, "n_glands": 1}


def _write_json(path: Path, content) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))
    return path


# --- resolve_datalist ----------------------------------------------------------------------------


def test_datalist_file_wins_over_dataset_dir_and_phantoms(tmp_path):
    given = _write_json(tmp_path / "mine.json", {"training": []})
    _write_json(tmp_path / "data" / "datalist.json", {"training": []})
    phantom = {**TINY_ROI, "cache_dir": str(tmp_path / "cache")}
    assert resolve_datalist(tmp_path / "data", given, phantom) == str(given)
    assert not (tmp_path / "cache").exists()  # no phantom generated when a datalist is given


def test_dataset_dir_reads_its_datalist_json(tmp_path):
    inside = _write_json(tmp_path / "data" / "datalist.json", {"training": []})
    assert resolve_datalist(str(tmp_path / "data"), None, None) == str(inside)


def test_missing_datalist_and_dataset_dir_name_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"datalist .*nope\.json: no such file"):
        resolve_datalist(None, tmp_path / "nope.json", None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"dataset_dir .*empty: no datalist.json inside"):
        resolve_datalist(tmp_path / "empty", None, None)
    with pytest.raises(ValueError, match="no datalist, no dataset_dir and no phantom spec"):
        resolve_datalist(None, None, None)
    with pytest.raises(ValueError, match=r"phantom spec lacks \['cache_dir'\]"):
        resolve_datalist(None, None, {"kind": "roi", "n": 2})


def test_phantom_spec_generates_once_and_caches(tmp_path):
    spec = {**TINY_ROI, "cache_dir": str(tmp_path / "cache")}
    first = Path(resolve_datalist(None, None, spec))
    assert first.name == "datalist.json" and first.is_relative_to(tmp_path / "cache")
    content = json.loads(first.read_text())
    assert content["kind"] == "roi" and content["seed"] == 0 and content["options"]["size"] == 32
    assert len(content["training"]) + len(content["validation"]) + len(content["test"]) == 2
    stamp = first.stat().st_mtime_ns
    assert resolve_datalist(None, None, spec) == str(first) and first.stat().st_mtime_ns == stamp  # cached
    # another seed is another set (the held-out evaluation set)
    held_out = Path(resolve_datalist(None, None, {**spec, "seed": 1}))
    assert held_out != first and json.loads(held_out.read_text())["seed"] == 1
    assert spec["kind"] == "roi" and "n_masses" in spec  # the caller's spec is not consumed


# --- load_items ----------------------------------------------------------------------------------


def test_load_items_makes_paths_absolute_and_concatenates_lists(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(b"")
    (tmp_path / "img" / "a_mask.png").write_bytes(b"")
    datalist = _write_json(
        tmp_path / "datalist.json",
        {
            "training": [{"image": "img/a.png", "mask": "img/a_mask.png", "label": 1, "points": [[3, 4]]}],
            "validation": [{"image": "img/b.png", "label": 0}],
        },
    )
    items = load_items(datalist, ["training", "validation", "no_such_list"])
    assert [Path(i["image"]) for i in items] == [tmp_path / "img" / "a.png", tmp_path / "img" / "b.png"]
    assert Path(items[0]["mask"]) == tmp_path / "img" / "a_mask.png"  # an existing path is made absolute
    assert items[0]["label"] == 1 and items[0]["points"] == [[3, 4]]
    assert load_items(datalist, "validation")[0]["label"] == 0


def test_load_items_errors_name_the_file(tmp_path):
    datalist = _write_json(tmp_path / "dl.json", {"training": [{"image": "a.png"}], "test": []})
    with pytest.raises(ValueError, match=r"datalist .*dl\.json: none of the lists \['validation'\]; it has \['training', 'test'\]"):
        load_items(datalist, "validation")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match=r"datalist .*broken\.json: cannot be read as JSON"):
        load_items(broken)
    with pytest.raises(ValueError, match=r"datalist .*missing\.json: cannot be read"):
        load_items(tmp_path / "missing.json")
    as_list = _write_json(tmp_path / "list.json", [{"image": "a.png"}])
    with pytest.raises(ValueError, match=r"list\.json: expected a JSON object of lists, got list"):
        load_items(as_list)
    no_image = _write_json(tmp_path / "noimage.json", {"training": [{"image": "a.png"}, {"label": 1}]})
    with pytest.raises(ValueError, match=r"noimage\.json: training\[1\] must be an object with an 'image' path, got keys \['label'\]"):
        load_items(no_image)
    not_a_list = _write_json(tmp_path / "notalist.json", {"training": {"image": "a.png"}})
    with pytest.raises(ValueError, match=r"notalist\.json: 'training' must be a list of items, got dict"):
        load_items(not_a_list)


# --- inference_items -----------------------------------------------------------------------------


def test_inference_items_from_a_folder_take_every_image_suffix_only(tmp_path):
    for name in ["b.dic", "a.dcm", "sub/c.png", "notes.txt", "d.PNG"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    items = inference_items(tmp_path)
    assert [Path(i["image"]).relative_to(tmp_path).as_posix() for i in items] == ["a.dcm", "b.dic", "d.PNG", "sub/c.png"]
    (tmp_path / "only_text").mkdir()
    (tmp_path / "only_text" / "x.txt").write_text("")
    with pytest.raises(FileNotFoundError, match=r"only_text: no files ending in \.dcm, \.dicom, \.dic, \.png"):
        inference_items(tmp_path / "only_text")


def test_inference_items_from_a_file_a_list_and_a_datalist(tmp_path):
    image = tmp_path / "one.dcm"
    image.write_bytes(b"")
    assert inference_items(str(image)) == [{"image": str(image)}]
    assert inference_items(["x.png", "y.dcm"]) == [{"image": "x.png"}, {"image": "y.dcm"}]
    datalist = _write_json(
        tmp_path / "dl.json",
        {"training": [{"image": "t.png"}], "test": [{"image": "u.png", "spacing": [0.1, 0.1], "boxes": [[1, 2, 5, 6]]}]},
    )
    items = inference_items(datalist)
    assert items == [{"image": str(tmp_path / "u.png"), "spacing": [0.1, 0.1], "boxes": [[1, 2, 5, 6]]}]
    assert [Path(i["image"]).name for i in inference_items(datalist, ("validation", "training"))] == ["t.png"]
    # no test list: every list of items
    only_training = _write_json(tmp_path / "train_only.json", {"training": [{"image": "t.png"}], "name": "x"})
    assert [Path(i["image"]).name for i in inference_items(only_training)] == ["t.png"]
    bare = _write_json(tmp_path / "bare.json", {"test": ["v.png", "w.png"]})
    assert [Path(i["image"]).name for i in inference_items(bare)] == ["v.png", "w.png"]


def test_inference_items_errors_name_the_input(tmp_path):
    with pytest.raises(ValueError, match="no input; pass --input_path"):
        inference_items(None)
    with pytest.raises(FileNotFoundError, match=r"input .*ghost\.dcm: no such file"):
        inference_items(tmp_path / "ghost.dcm")
    empty = _write_json(tmp_path / "empty.json", {"test": [], "name": "x"})
    with pytest.raises(ValueError, match=r"empty\.json: no items in \['test'\]"):
        inference_items(empty)


# --- names, bundle root, threads -----------------------------------------------------------------


def test_strip_image_suffix_knows_every_suffix():
    assert ".dic" in IMAGE_SUFFIXES and ".dcm" in IMAGE_SUFFIXES and ".nii.gz" in IMAGE_SUFFIXES
    assert [strip_image_suffix(n) for n in ["a.dic", "b.DCM", "c.nii.gz", "d.tar.gz", "e"]] == ["a", "b", "c", "d.tar.gz", "e"]


def _make_bundle(root: Path, name: str) -> Path:
    bundle = root / "bundles" / name
    _write_json(bundle / "configs" / "metadata.json", {"name": name, "version": "0.1.0"})
    (bundle / "configs" / "train.yaml").write_text("device: cpu\n")
    return bundle


def test_find_bundle_root_from_the_repository_root_and_the_bundle(tmp_path):
    bundle = _make_bundle(tmp_path, "asn")
    assert find_bundle_root("asn", start=tmp_path, argv=[]) == str(bundle.resolve())
    assert find_bundle_root("asn", start=bundle, argv=[]) == str(bundle.resolve())
    _make_bundle(tmp_path, "other")
    with pytest.raises(FileNotFoundError, match=r"bundle 'dabnet' not found in .*pass --bundle_root"):
        find_bundle_root("dabnet", start=tmp_path, argv=[])


def test_find_bundle_root_beside_the_config_files_from_another_folder(tmp_path, monkeypatch):
    # a non-editable install run from elsewhere: only the --config_file paths say where the bundle is
    bundle = _make_bundle(tmp_path / "x", "asn")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = str(bundle / "configs" / "train.yaml")
    for argv in (
        ["-m", "monai.bundle", "run", "training", "--config_file", f"['{config}']"],
        ["run", "--config_file", f'["{config}","{bundle}/configs/smoke.yaml"]'],
        ["run", f"--config_file={config}"],
        ["run", "--config_file", config],
    ):
        assert find_bundle_root("asn", argv=argv) == str(bundle.resolve()), argv
    with pytest.raises(FileNotFoundError, match="bundle 'asn' not found"):
        find_bundle_root("asn", argv=["run", "--config_file", str(tmp_path / "unrelated" / "train.yaml")])


def test_find_bundle_root_follows_the_top_level_train_yaml_link(tmp_path, monkeypatch):
    bundle = _make_bundle(tmp_path, "asn")
    (bundle / "train.yaml").symlink_to("configs/train.yaml")
    monkeypatch.chdir(tmp_path.parent)
    assert find_bundle_root("asn", argv=["--config_file", str(bundle / "train.yaml")]) == str(bundle.resolve())


def test_a_metadata_file_of_another_bundle_does_not_match(tmp_path):
    bundle = _make_bundle(tmp_path, "dabnet")
    with pytest.raises(FileNotFoundError):
        find_bundle_root("asn", start=bundle, argv=[])
    (bundle / "configs" / "metadata.json").write_text("{broken")
    with pytest.raises(FileNotFoundError):
        find_bundle_root("dabnet", start=bundle, argv=[])


def test_set_cpu_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        assert set_cpu_threads(1) == 1 and torch.get_num_threads() == 1
        assert set_cpu_threads(0) == 1  # at least one
        assert set_cpu_threads("2") == 2
        assert set_cpu_threads(None) == 2  # left as it is
        monkeypatch.setattr(os, "cpu_count", lambda: 4)
        monkeypatch.setattr(os, "getloadavg", lambda: (3.6, 0.0, 0.0))
        assert set_cpu_threads("auto") == 1  # busy: load >= cores - 0.5
        monkeypatch.setattr(os, "getloadavg", lambda: (0.2, 0.0, 0.0))
        assert set_cpu_threads("auto") == 4
    finally:
        torch.set_num_threads(before)


def test_module_lists_what_it_exports():
    assert set(bundle_utils.__all__) == {
        "IMAGE_SUFFIXES",
        "strip_image_suffix",
        "find_bundle_root",
        "resolve_datalist",
        "load_items",
        "inference_items",
        "set_cpu_threads",
        "root_cause",
        "SkippedInputs",
    }


def test_skipped_inputs_write_the_root_cause_only_when_something_was_skipped(tmp_path):
    skipped = bundle_utils.SkippedInputs()
    assert skipped.write(tmp_path) is None and not (tmp_path / "skipped.json").exists()
    try:
        try:
            raise ValueError("bad.dcm: Modality CT is not MG")
        except ValueError as inner:
            raise RuntimeError("applying transform LoadRadiographd") from inner
    except RuntimeError as outer:
        skipped.add(tmp_path / "bad.dcm", outer)
    path = skipped.write(tmp_path)
    assert json.loads(path.read_text()) == [{"source": str(tmp_path / "bad.dcm"), "reason": "ValueError: bad.dcm: Modality CT is not MG"}]
