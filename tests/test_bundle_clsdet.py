"""The clsdet bundle: the user's commands with configs/smoke.yaml (training, semi-supervised training,
evaluation, inference through ``python -m monai.bundle``), the MONAI Label postprocessing (uint8
label 1 benign / 2 malignant, probabilities in the result), plugin components by name, the
ablation files, and the inference of a full image in chunks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bundle_runner import BundleRunner

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "clsdet"
CONFIGS = BUNDLE / "configs"


RUNNER = BundleRunner("clsdet")
config_files, run_bundle, dirs, parser_of = RUNNER.config_files, RUNNER.run, RUNNER.dirs, RUNNER.parser


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One smoke training (train.yaml + smoke.yaml), shared by the tests that need weights."""
    tmp = tmp_path_factory.mktemp("clsdet")
    return tmp, run_bundle(["training", "--config_file", config_files("train.yaml", "smoke.yaml"), *dirs(tmp)])


def test_layout_and_ablations():
    for name, target in (("train.yaml", "configs/train.yaml"), ("metadata.json", "configs/metadata.json"), ("logging.conf", "configs/logging.conf")):
        assert (BUNDLE / name).is_symlink() and os.readlink(BUNDLE / name) == target
    ablations = sorted(p.stem for p in (CONFIGS / "ablations").glob("*.yaml"))
    assert {"db_baseline", "max_region", "cls_det", "ss_25", "ss_50", "ss_75", "ss_100", "ss_baseline_rs_50", "ceiling"} <= set(ablations)
    metadata = json.loads((CONFIGS / "metadata.json").read_text())
    assert metadata["network_data_format"]["outputs"]["pred"]["channel_def"] == {"0": "background", "1": "benign", "2": "malignant"}


def test_smoke_training_evaluation_and_inference_through_monai_bundle(smoke):
    tmp, trained = smoke
    assert "Metrics -- val_auroc_m_vs_bn" in trained.stdout and "Cls-Det best validation AUROC M vs BN" in trained.stdout
    checkpoint = torch.load(tmp / "models" / "model.pt", weights_only=True)
    assert checkpoint["network_spec"]["mode"] == "cls_det_rs" and checkpoint["network_spec"]["_target_"] == "monai_mammo.networks.clsdet.ClsDetNet"
    run_bundle(["evaluating", "--config_file", config_files("train.yaml", "evaluate.yaml", "smoke.yaml"), *dirs(tmp), "--eval#n_bootstrap", "20"])
    metrics = json.loads((tmp / "eval" / "metrics.json").read_text())
    for key in ("auroc_m_vs_bn", "auroc_mb_vs_n", "pauc_ratio_m_vs_bn", "spec_at_sens_085_m_vs_bn", "spec_at_sens_090_m_vs_bn", "froc_m_vs_bn_sensitivity_at_1fp"):
        assert key in metrics and f"{key}_ci" in metrics, key
    for name in ("froc_m_vs_bn.csv", "froc_mb_vs_n.csv", "froc.png"):
        assert (tmp / "eval" / name).is_file(), name
    infer_dir = tmp / "infer"
    run_bundle(["inferring", "--config_file", config_files("inference.yaml", "smoke.yaml"), "--ckpt_dir", str(tmp / "models"), "--phantom#cache_dir", str(tmp / "phantoms"), "--output_dir", str(infer_dir), "--save_png", "true"])
    predictions = json.loads((infer_dir / "predictions.json").read_text())
    assert predictions and {"malignant_probability", "benign_probability", "findings", "num_regions"} <= set(predictions[0])
    finding = predictions[0]["findings"][0]
    assert finding["class"] in ("malignant", "benign") and len(finding["box"]) == 4 and Path(predictions[0]["png"]).is_file()


def test_semi_supervised_smoke_training(tmp_path):
    result = run_bundle(["training", "--config_file", config_files("train.yaml", "ablations/ss_50.yaml", "smoke.yaml"), *dirs(tmp_path), "--annotated_share", "1.0"])
    assert "val_auroc_m_vs_bn" in result.stdout


def test_monai_label_postprocessing_paints_benign_1_malignant_2(tmp_path):
    from monai.data import MetaTensor
    from monai.transforms import Compose

    parser = parser_of("inference.yaml", ckpt_dir=str(tmp_path))
    post = parser.get_parsed_content("postprocessing", instantiate=True)
    assert isinstance(post, Compose)
    image = MetaTensor(torch.zeros(1, 20, 30), meta={"spacing": [0.56, 0.56], "original_size": [20, 30]})
    pred = {
        "image_prob": torch.tensor([0.8, 0.6]),
        "region_scores": torch.tensor([[0.9, 0.1], [0.0, 0.7], [0.1, 0.0]]),
        "region_valid": torch.tensor([True, True, True]),
    }
    boxes = torch.tensor([[0, 0, 10, 10], [10, 0, 20, 10], [20, 10, 30, 20]])
    d = post({"image": image, "pred": pred, "region_boxes": boxes})
    label = d["pred"]
    assert label.dtype == torch.uint8 and tuple(label.shape) == (30, 20)  # MONAI Label's (W, H) layout
    assert int(label[5, 5]) == 2 and int(label[15, 5]) == 1  # malignant region 0, benign region 1
    assert d["result"]["malignant_probability"] == pytest.approx(0.8) and d["result"]["coordinates"] == "original_pixels"
    assert {f["class"] for f in d["result"]["findings"]} == {"malignant", "benign"}


def test_label_image_from_monai_label_trains(tmp_path):
    from PIL import Image

    from monai_mammo.engines.clsdet import LabelImageToFindingsd

    label = np.zeros((40, 30), np.uint8)
    label[5:10, 5:12] = 2
    label[20:25, 3:6] = 1
    Image.fromarray(label).save(tmp_path / "label.png")
    d = LabelImageToFindingsd()({"label": str(tmp_path / "label.png")})
    assert d["label"] == [1, 1] and d["boxes"] == [[3, 20, 6, 25], [5, 5, 12, 10]] and d["box_labels"] == [1, 2]
    Image.fromarray(np.full((4, 4), 7, np.uint8)).save(tmp_path / "bad.png")
    with pytest.raises(ValueError, match=r"bad\.png"):
        LabelImageToFindingsd()({"label": str(tmp_path / "bad.png")})


def test_a_tensor_loss_plugin_is_rejected_and_a_metric_plugin_swaps_in():
    from monai_mammo.registry import IncompatibleComponentError, list_components

    parser = parser_of("train.yaml", **{"loss#name": "weighted_bce"})
    with pytest.raises(Exception) as excinfo:
        parser.get_parsed_content("loss")
    assert "multitask" in str(excinfo.value) or isinstance(excinfo.value.__cause__, IncompatibleComponentError)
    if "expected_calibration_error" not in list_components()["metric"]:
        pytest.skip("monai-mammo-extras is not installed")
    parser = parser_of("train.yaml", **{"validate#additional_metrics#val_auroc_mb_vs_n#metric_fn#name": "expected_calibration_error"})
    metric = parser.get_parsed_content("validate#additional_metrics#val_auroc_mb_vs_n#metric_fn")
    assert type(metric).__name__ == "ExpectedCalibrationErrorMetric"


def test_full_image_regions_in_chunks_and_boxes_in_original_pixels():
    from monai.data import MetaTensor

    from monai_mammo.engines.clsdet import TileRegionsd
    from monai_mammo.networks.clsdet import ClsDetNet
    from monai_mammo.transforms.spacing import ResampleToSpacingd

    image = MetaTensor(torch.rand(1, 200, 160), meta={"spacing": [0.28, 0.28]})
    d = ResampleToSpacingd(keys="image", target_spacing=0.56)({"image": image})
    mask = torch.ones(1, 100, 80)
    d = TileRegionsd(keys="image", window=28, stride=14)({**d, "breast_mask": mask})
    net = ClsDetNet(window=28, channels=(4, 4), strides=(2, 2)).eval()
    out = net.predict_image(d["image"].as_tensor(), d["region_boxes"].numpy(), chunk_size=7)
    assert out["region_scores"].shape[1] == len(d["region_boxes"])
    from monai_mammo.transforms.geometry import boxes_to_original

    original = boxes_to_original(d["region_boxes"].numpy(), d["regions"].meta)
    np.testing.assert_allclose(original[0], [0, 0, 56, 56])  # 28 px at 0.56 mm = 56 px at 0.28 mm


def test_birads_mapping_without_3():
    from monai_mammo.data.adapters.datalist import BIRADS_CLASSES_WITHOUT_3, IMAGE_LABELS, birads_class

    assert birads_class("BI-RADS 3", BIRADS_CLASSES_WITHOUT_3) is None  # excluded (Bakalo et al. Sec. 5.1)
    assert [birads_class(v, BIRADS_CLASSES_WITHOUT_3) for v in ("1", "2", "4A", "5")] == ["normal", "benign", "malignant", "malignant"]
    assert IMAGE_LABELS["both"] == [1, 1] and IMAGE_LABELS["normal"] == [0, 0]


@pytest.mark.slow
def test_torchrun_training_and_distributed_evaluation_on_two_cpu_processes(smoke, tmp_path):
    """multi_gpu_train.yaml under torchrun (gloo, 2 processes); multi_gpu_evaluate.yaml gives the
    single-process metrics.json exactly (the records gathered back into dataset order).
    Slow (about 50 s on 2 cores: three more process starts): --run-slow."""
    tmp, _ = smoke
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "monai.bundle", "run"]
    work = tmp_path / "ddp"
    out = subprocess.run(
        [*torchrun, "training", "--config_file", config_files("train.yaml", "multi_gpu_train.yaml", "smoke.yaml"), *dirs(work), "--phantom#cache_dir", str(tmp / "phantoms")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    assert (out.stdout + out.stderr).count("parameters identical on 2 ranks") == 2
    assert {p.relative_to(work / "models").as_posix() for p in (work / "models").rglob("*") if p.is_file()} == {"model.pt", "resume/checkpoint.pt"}
    files = ("train.yaml", "evaluate.yaml")
    one = run_bundle(["evaluating", "--config_file", config_files(*files, "smoke.yaml"), *dirs(tmp), "--output_dir", str(tmp_path / "one"), "--eval#n_bootstrap", "10"])
    two = subprocess.run(
        [*torchrun, "evaluating", "--config_file", config_files(*files, "multi_gpu_evaluate.yaml", "smoke.yaml"), *dirs(tmp), "--output_dir", str(tmp_path / "two"), "--eval#n_bootstrap", "10"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert one.returncode == 0 and two.returncode == 0, (two.stdout + two.stderr)[-4000:]
    assert json.loads((tmp_path / "one" / "metrics.json").read_text()) == json.loads((tmp_path / "two" / "metrics.json").read_text())


def test_inference_batch_skips_a_bad_file_and_writes_the_others(tmp_path):
    from PIL import Image

    from monai_mammo.engines.clsdet import infer_images
    from monai_mammo.networks.clsdet import ClsDetNet

    parser = parser_of("inference.yaml", "smoke.yaml", ckpt_dir=str(tmp_path))
    preprocessing = parser.get_parsed_content("preprocessing")
    good = tmp_path / "good.png"
    array = np.zeros((120, 100), np.uint16)
    array[10:110, :70] = 3000
    Image.fromarray(array).save(good)
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"not a dicom")
    net = ClsDetNet(window=14, channels=(4, 8, 8), strides=(2, 2, 2)).eval()
    inferer = parser.get_parsed_content("inferer")
    inferer.chunk_size = 4
    results = infer_images(net, [{"image": str(good), "spacing": [1.12, 1.12]}, str(bad)], preprocessing, tmp_path / "out", inferer)
    assert len(results) == 1 and results[0]["num_regions"] > 0
    skipped = json.loads((tmp_path / "out" / "skipped.json").read_text())
    assert skipped[0]["source"].endswith("bad.dcm") and skipped[0]["reason"]


def test_monai_mammo_predict_writes_findings_and_skips_a_bad_file(smoke, tmp_path):
    """``monai-mammo predict --bundle clsdet`` (the metadata.json "predict" profile) on phantom
    mammograms with the smoke weights: one findings JSON per image with the two probabilities and
    boxes in original pixels, equal to the bundle's own inference; a truncated DICOM skipped and reported."""
    import shutil

    from monai_mammo.data.phantoms import synthesize
    from monai_mammo.predict import EXIT_SKIPPED, read_skipped
    from monai_mammo.predict_command import main

    weights, _ = smoke
    source = tmp_path / "phantoms"
    synthesize("mammogram", source, n=2, seed=5, image_size=(256, 208), spacing_mm=1.12, syntax_probs=(1.0, 0.0, 0.0))
    archive = tmp_path / "archive"
    archive.mkdir()
    images = sorted((source / "images").glob("*.dcm"))
    for path in images:
        shutil.copy(path, archive / path.name)
    (archive / "broken.dcm").write_bytes(images[0].read_bytes()[:4000])
    overrides = {"ckpt_dir": str(weights / "models"), "spacing_mm": 1.12, "window": 14, "stride": 14, "cpu_threads": 1}
    out = tmp_path / "out"
    status = main(["--bundle", "clsdet", str(archive), "--out", str(out), "--no-progress", "--dicom-sr", "--dicom-seg", *[f"-O{k}={json.dumps(v)}" for k, v in overrides.items()]])
    assert status == EXIT_SKIPPED
    skipped = dict(read_skipped(out / "skipped.csv"))
    assert list(skipped) == [str(archive / "broken.dcm")] and skipped[str(archive / "broken.dcm")]
    records = {p.name: json.loads(p.read_text()) for p in sorted(out.glob("*.json")) if not p.name.endswith(".done.json") and not p.name.startswith("summary")}
    assert sorted(records) == sorted(f"{p.stem}.json" for p in images)
    assert all((out / f"{p.stem}.sr.dcm").is_file() and (out / f"{p.stem}.seg.dcm").is_file() for p in images)
    record = records[f"{images[0].stem}.json"]
    assert record["bundle"]["name"] == "clsdet" and record["coordinates"] == "original_pixels" and record["image_size"] == [256, 208]
    assert 0.0 <= record["malignant_probability"] <= 1.0 and 0.0 <= record["benign_probability"] <= 1.0
    assert record["num_boxes"] == len(record["boxes"]) > 0
    assert all(f["class"] == f["label"] in ("malignant", "benign") and len(f["box"]) == 4 for f in record["boxes"])
    assert all(0 <= f["box"][0] < f["box"][2] <= 208 and 0 <= f["box"][1] < f["box"][3] <= 256 for f in record["boxes"])
    # the same numbers as the bundle's own inference (one code path: the bundle's inferer)
    infer_dir = tmp_path / "infer"
    run_bundle(["inferring", "--config_file", config_files("inference.yaml", "smoke.yaml"), "--ckpt_dir", str(weights / "models"), "--input_path", str(images[0]), "--output_dir", str(infer_dir)])
    own = json.loads((infer_dir / "predictions.json").read_text())[0]
    assert own["malignant_probability"] == pytest.approx(record["malignant_probability"], abs=1e-6)
    assert [f["box"] for f in own["findings"]] == [f["box"] for f in record["boxes"]]
    assert json.loads(Path(own["json"]).read_text())["boxes"] == record["boxes"]
