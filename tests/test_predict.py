"""The ``monai-mammo predict`` engine (monai_mammo.predict) with the ASN bundle on small phantom DICOMs.

The network is the ASN U-Net at a tiny width with random weights saved as ``model.pt`` in a temp
folder (plumbing, not quality; the FPR stage is off). The archive mixes four phantom mammograms
with a truncated copy of one, an SR and a CT image, which must be reported and skipped.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dicom_fixtures import CT_SOP_CLASS, SR_SOP_CLASS, ramp, write_dicom
from monai_mammo.bundle_predictor import BundlePredictor
from monai_mammo.checkpoints import save_network
from monai_mammo.predict import EXIT_SKIPPED, PredictOptions, output_paths, read_skipped, run_predict

TINY_CHANNELS = [4, 8, 8, 8]


def make_asn_weights(folder: Path) -> dict:
    """Random-init tiny ASN weights in ``folder``; the bundle overrides that use them (FPR off)."""
    from monai_mammo.networks.asn import AnomalySeparationUNet

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    net = AnomalySeparationUNet(channels=TINY_CHANNELS, convs_per_stage=3, input_skip=True, pad_mode="reflect")
    save_network(net, folder / "model.pt")  # the checkpoint carries the network's arguments
    return {"ckpt_path": str(folder / "model.pt"), "use_fpr": False, "cpu_threads": 1}


def make_archive(folder: Path, n: int = 4, size: tuple[int, int] = (160, 128)) -> Path:
    """``n`` phantom MG DICOMs in ``folder/images`` plus a truncated one, an SR and a CT."""
    from monai_mammo.data.phantoms import synthesize

    source = folder.parent / f"{folder.name}-phantoms"
    synthesize("mammogram", source, n=n, seed=3, image_size=size, syntax_probs=(1.0, 0.0, 0.0))
    (folder / "images").mkdir(parents=True)
    for path in sorted((source / "images").glob("*.dcm")):
        shutil.copy(path, folder / "images" / path.name)
    first = sorted((folder / "images").glob("*.dcm"))[0]
    (folder / "broken.dcm").write_bytes(first.read_bytes()[:4000])
    write_dicom(folder / "report", None, modality="SR", sop_class=SR_SOP_CLASS)
    write_dicom(folder / "ct.dcm", ramp(), modality="CT", sop_class=CT_SOP_CLASS)
    return folder


@pytest.fixture(scope="module")
def asn(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return make_asn_weights(tmp_path_factory.mktemp("asn_weights"))


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_archive(tmp_path_factory.mktemp("predict") / "archive")


def _options(archive: Path, out: Path, overrides: dict, **kwargs) -> PredictOptions:
    return PredictOptions(bundle="asn", inputs=[str(archive)], out_dir=out, overrides=overrides, progress=False, **kwargs)


def _outputs(out: Path) -> dict[str, dict]:
    """Every findings JSON under ``out`` by its relative name."""
    return {
        p.relative_to(out).as_posix(): json.loads(p.read_text())
        for p in sorted(out.rglob("*.json"))
        if not p.name.endswith(".done.json") and not p.name.startswith("summary")
    }


def test_skip_report_and_exit_status(archive: Path, asn: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from monai_mammo.predict_command import main

    out = tmp_path / "out"
    overrides = [f"-O{k}={json.dumps(v)}" for k, v in asn.items()]
    status = main(["--bundle", "asn", str(archive), "--out", str(out), "--no-progress", *overrides])
    assert status == EXIT_SKIPPED == 3
    printed = capsys.readouterr().out
    assert "predict: 4 done, 0 already complete, 3 skipped of 7" in printed and "s/image" in printed
    skipped = dict(read_skipped(out / "skipped.csv"))
    assert set(skipped) == {str(archive / "broken.dcm"), str(archive / "report"), str(archive / "ct.dcm")}
    assert skipped[str(archive / "broken.dcm")].startswith("unreadable image (truncated pixel data")
    assert skipped[str(archive / "report")].startswith("non-image DICOM (Enhanced SR Storage")
    assert skipped[str(archive / "ct.dcm")].startswith("wrong modality CT")
    outputs = _outputs(out)
    assert sorted(outputs) == sorted(f"images/{p.stem}.json" for p in (archive / "images").glob("*.dcm"))
    record = next(iter(outputs.values()))
    assert record["coordinates"] == "original_pixels" and record["image_size"] == [160, 128]
    assert record["bundle"]["name"] == "asn" and len(record["bundle"]["weights"]) == 16
    assert all(set(p) == {"x", "y", "score", "asn_score", "fpr_score", "area"} for p in record["points"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["done"] == 4 and len(summary["skipped"]) == 3 and summary["peak_rss_mb"] > 0


def test_resume_after_interruption_does_no_work_twice(archive: Path, asn: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    original = BundlePredictor.predict
    calls: list[str] = []

    def interrupted(self, item):  # the third phantom is interrupted (e.g. Ctrl-C or a killed job)
        if Path(item["image"]).parent.name == "images":
            if len(calls) == 2:
                raise KeyboardInterrupt
            calls.append(Path(item["image"]).name)
        return original(self, item)

    monkeypatch.setattr(BundlePredictor, "predict", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_predict(_options(archive, out, asn))
    first = list(calls)
    assert len(first) == 2
    done_before = {name: (out / "images" / f"{Path(name).stem}.json").stat().st_mtime_ns for name in first}

    def counted(self, item):  # the truncated file also reaches the reader: count the phantoms
        if Path(item["image"]).parent.name == "images":
            calls.append(Path(item["image"]).name)
        return original(self, item)

    calls.clear()
    monkeypatch.setattr(BundlePredictor, "predict", counted)
    summary = run_predict(_options(archive, out, asn))
    assert sorted(calls) == sorted(set(p.name for p in (archive / "images").glob("*.dcm")) - set(first))
    assert (summary.done, summary.resumed, len(summary.skipped)) == (2, 2, 3)
    assert {n: (out / "images" / f"{Path(n).stem}.json").stat().st_mtime_ns for n in first} == done_before

    calls.clear()  # everything complete: nothing is predicted
    summary = run_predict(_options(archive, out, asn))
    assert calls == [] and (summary.done, summary.resumed) == (0, 4)

    # an output that disappeared (or was cut short) makes its image incomplete again
    victim = sorted((archive / "images").glob("*.dcm"))[1]
    (out / "images" / f"{victim.stem}.json").write_text("{")
    summary = run_predict(_options(archive, out, asn))
    assert calls == [victim.name] and (summary.done, summary.resumed) == (1, 3)

    calls.clear()
    summary = run_predict(_options(archive, out, asn, overwrite=True))
    assert len(calls) == 4 and summary.done == 4


def test_two_shards_equal_one_process(archive: Path, asn: dict, tmp_path: Path) -> None:
    single = run_predict(_options(archive, tmp_path / "one", asn))
    ranks = [run_predict(_options(archive, tmp_path / "two", asn, rank=r, world_size=2)) for r in (0, 1)]
    assert [r.total for r in ranks] == [4, 3] and sum(r.done for r in ranks) == single.done == 4
    assert _outputs(tmp_path / "one") == _outputs(tmp_path / "two")
    # per-rank skip lists, merged into skipped.csv by the last rank to finish
    parts = [read_skipped(tmp_path / "two" / f"skipped.rank{r}.csv") for r in (0, 1)]
    assert not set(parts[0]) & set(parts[1])
    assert read_skipped(tmp_path / "two" / "skipped.csv") == read_skipped(tmp_path / "one" / "skipped.csv")
    assert len(read_skipped(tmp_path / "one" / "skipped.csv")) == 3


@pytest.mark.slow  # two spawned processes each import torch and MONAI: ~30 s on the shared 2-core machine
def test_worker_processes_equal_one_process(archive: Path, asn: dict, tmp_path: Path) -> None:
    single = run_predict(_options(archive, tmp_path / "one", asn))
    workers = run_predict(_options(archive, tmp_path / "workers", asn, workers=2))
    assert (workers.done, len(workers.skipped)) == (single.done, len(single.skipped)) == (4, 3)
    assert _outputs(tmp_path / "one") == _outputs(tmp_path / "workers")
    assert read_skipped(tmp_path / "workers" / "skipped.csv") == read_skipped(tmp_path / "one" / "skipped.csv")


def test_png_inputs_refuse_dicom_outputs_and_keep_json(asn: dict, tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (96, 80), dtype=np.uint8)).save(tmp_path / "case.png")
    (tmp_path / "list.json").write_text(json.dumps({"test": [{"image": "case.png", "spacing": [0.07, 0.07]}]}))
    summary = run_predict(
        PredictOptions("asn", [str(tmp_path / "list.json")], tmp_path / "out", dicom_sr=True, overrides=asn, progress=False)
    )
    paths = output_paths(tmp_path / "out", "case")
    assert summary.exit_code == 0 and summary.done == 1 and summary.dicom_refused == 1
    assert paths["json"].is_file() and not paths["sr"].exists()
    assert any("refused" in note for note in summary.notes)
    marker = json.loads(paths["marker"].read_text())
    assert marker["not_written"]["sr"].startswith("DICOM outputs refused")


def test_missing_spacing_is_skipped_unless_a_default_is_given(asn: dict, tmp_path: Path) -> None:
    from monai_mammo.data.phantoms.dicom_writer import write_mammogram_dicom

    image = (np.arange(96 * 80).reshape(96, 80) % 4000).astype(np.uint16)
    folder = tmp_path / "film"
    write_mammogram_dicom(folder / "scan.dcm", image, uid_key="film", patient_id="F", laterality="R", view="CC", spacing_mm=0.07)
    import pydicom

    ds = pydicom.dcmread(folder / "scan.dcm")
    del ds.PixelSpacing, ds.ImagerPixelSpacing  # scanned film: no spacing
    ds.save_as(folder / "scan.dcm")
    summary = run_predict(PredictOptions("asn", [str(folder)], tmp_path / "a", overrides=asn, progress=False))
    assert summary.exit_code == EXIT_SKIPPED and "missing pixel spacing" in summary.skipped[0][1]
    summary = run_predict(PredictOptions("asn", [str(folder)], tmp_path / "b", overrides=asn, default_spacing_mm=0.07, progress=False))
    assert summary.exit_code == 0 and summary.done == 1
    record = json.loads((tmp_path / "b" / "scan.json").read_text())
    assert record["assumed_spacing_mm"] == 0.07 and record["spacing"] == pytest.approx([0.07, 0.07])


def test_dicom_outputs_of_a_run_match_its_json(archive: Path, asn: dict, tmp_path: Path) -> None:
    hd = pytest.importorskip("highdicom", reason="the [dicom] extra (highdicom) is not installed")
    import pydicom

    from monai_mammo.dicom.structured_report import read_structured_report

    one = sorted((archive / "images").glob("*.dcm"))[0]
    out = tmp_path / "out"
    summary = run_predict(
        PredictOptions("asn", [str(one)], out, dicom_sr=True, dicom_seg=True, overlay=True, overrides=asn, progress=False)
    )
    assert summary.done == 1
    paths = output_paths(out, one.stem)
    record = json.loads(paths["json"].read_text())
    source = pydicom.dcmread(one, stop_before_pixels=True)
    found = read_structured_report(paths["sr"])
    assert len(found) == len(record["points"]) > 0
    assert {f["source_sop_instance_uid"] for f in found} == {source.SOPInstanceUID}
    for f, p in zip(found, record["points"]):
        assert f["coordinates"] == (float(np.float32(p["x"] + 0.5)) - 0.5, float(np.float32(p["y"] + 0.5)) - 0.5)
        assert f["scores"]["score"] == pytest.approx(p["score"])
    seg = hd.seg.segread(paths["seg"])
    assert seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert seg.get_segment_description(1).segment_label == "microcalcification"
    assert pydicom.dcmread(paths["seg"]).pixel_array.shape == (160, 128)
    overlay = pydicom.dcmread(paths["overlay"])
    assert overlay.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    marker = json.loads(paths["marker"].read_text())
    assert set(marker["outputs"]) == {"json", "sr", "seg", "overlay"}


def test_core_works_without_highdicom(archive: Path, asn: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from monai_mammo.dicom import HighdicomMissingError

    monkeypatch.setitem(sys.modules, "highdicom", None)  # as in MONAI Label's pydicom 2 environment
    one = sorted((archive / "images").glob("*.dcm"))[0]
    with pytest.raises(HighdicomMissingError, match=r"monai-mammo\[dicom\]"):
        run_predict(PredictOptions("asn", [str(one)], tmp_path / "a", dicom_sr=True, overrides=asn, progress=False))
    assert not (tmp_path / "a" / f"{one.stem}.json").exists()  # refused before any work
    summary = run_predict(PredictOptions("asn", [str(one)], tmp_path / "b", overrides=asn, progress=False))
    assert summary.done == 1 and (tmp_path / "b" / f"{one.stem}.json").is_file()


def test_output_folder_inside_the_input_is_not_an_input(archive: Path, asn: dict, tmp_path: Path) -> None:
    folder = tmp_path / "scans"
    folder.mkdir()
    shutil.copy(sorted((archive / "images").glob("*.dcm"))[0], folder / "a.dcm")
    options = PredictOptions("asn", [str(folder)], folder / "results", overrides=asn, progress=False)
    first = run_predict(options)
    second = run_predict(options)  # the results folder now holds a.json and a.done.json
    assert (first.total, first.done) == (1, 1) and (second.total, second.resumed, len(second.skipped)) == (1, 1, 0)


def test_dabnet_boxes_from_a_datalist_into_json_and_sr(archive: Path, tmp_path: Path) -> None:
    """A boxes bundle: DAB-Net on a datalist's full image with its boxes (edge coordinates); the SR
    rectangles are the JSON boxes exactly, and --dicom-seg is noted as not applicable."""
    pytest.importorskip("highdicom", reason="the [dicom] extra (highdicom) is not installed")
    import pydicom

    from monai_mammo.dicom.structured_report import read_structured_report
    from monai_mammo.networks.dabnet import DABNet

    torch.manual_seed(3)
    save_network(DABNet(in_channels=1, decoders="none"), tmp_path / "models" / "model.pt")
    one = sorted((archive / "images").glob("*.dcm"))[0]
    boxes = [[20.0, 30.0, 60.0, 70.0], [5.0, 8.0, 17.0, 26.0]]
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"test": [{"image": str(one), "boxes": boxes}]}))
    out = tmp_path / "out"
    overrides = {"ckpt_dir": str(tmp_path / "models"), "cpu_threads": 1}
    summary = run_predict(PredictOptions("dabnet", [str(datalist)], out, dicom_sr=True, dicom_seg=True, overrides=overrides, progress=False))
    assert (summary.done, summary.skipped) == (1, [])
    assert any("outputs no mask" in note for note in summary.notes)
    (json_file,) = [p for p in out.rglob("*.json") if not p.name.endswith(".done.json") and not p.name.startswith("summary")]
    record = json.loads(json_file.read_text())
    assert [b["box"] for b in record["boxes"]] == boxes and {b["label"] for b in record["boxes"]} == {"mass"}
    assert all(0.0 < b["probability"] < 1.0 for b in record["boxes"])
    paths = output_paths(json_file.parent, json_file.stem)
    assert not paths["seg"].exists()
    found = read_structured_report(paths["sr"])
    assert [f["kind"] for f in found] == ["box", "box"]
    assert [f["coordinates"] for f in found] == [tuple(b) for b in boxes]  # edges: no half-pixel shift
    assert [f["finding_type"][2] for f in found] == ["Mass", "Mass"]
    assert [f["scores"]["probability"] for f in found] == pytest.approx([b["probability"] for b in record["boxes"]])
    assert {f["source_sop_instance_uid"] for f in found} == {pydicom.dcmread(one, stop_before_pixels=True).SOPInstanceUID}
