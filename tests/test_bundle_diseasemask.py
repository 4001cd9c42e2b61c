"""The diseasemask bundle: the user's commands with configs/smoke.yaml (training of every stage,
evaluation of the four models, inference) through ``python -m monai.bundle``, MONAI's property
checks, the network's in/out shapes, MONAI Label's label and JSON, a bad input in a batch, resume
after the last stage, skipping stages by key, and a plugin loss by name."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from bundle_runner import BundleRunner

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "diseasemask"
CONFIGS = BUNDLE / "configs"


RUNNER = BundleRunner("diseasemask")
config_files, run_bundle, dirs, parser_of = RUNNER.config_files, RUNNER.run, RUNNER.dirs, RUNNER.parser


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One smoke training of every stage, shared by the tests that need weights."""
    tmp = tmp_path_factory.mktemp("diseasemask")
    return tmp, run_bundle(["training", "--config_file", config_files("train.yaml", "smoke.yaml"), *dirs(tmp)])


def test_smoke_training_runs_every_stage_and_saves_each_model(smoke):
    tmp, result = smoke
    log = result.stdout + result.stderr
    for stage in ("stage 1 (baseline classifier, unaligned): validation", "stage 3 (classifier on aligned images): validation",
                  "stage 5 (retrained with disease masks): validation", "stage 5+ (PDM baseline): validation"):  # fmt: skip
        assert stage in log and "val_mean_auc" in log.split(stage)[1].splitlines()[0], stage
    models = tmp / "models"
    assert sorted(p.name for p in models.glob("*.pt")) == ["model.pt"]  # MONAI Label's default choice is the final model
    stages = {p.name for p in (models / "stages").iterdir()}
    assert {"baseline.pt", "anchor.pt", "alignment.pt", "align.pt", "disease_masks.pt", "pseudo_disease_masks.pt", "align_dm.pt", "pdm.pt"} <= stages
    from monai_mammo.checkpoints import load_network
    from monai_mammo.disease_masks import load_masks

    final = load_network(models / "model.pt")
    masks = load_masks(models / "stages" / "disease_masks.pt")
    assert torch.equal(final.classifier.disease_masks, masks)  # the model carries its masks
    pdm = load_masks(models / "stages" / "pseudo_disease_masks.pt")
    assert set(pdm.unique().tolist()) <= {0.0, 1.0} and pdm[1].sum() > 0  # binary; cardiomegaly: the heart


def test_smoke_evaluation_writes_the_issue_keys(smoke):
    tmp, _ = smoke
    run_bundle(["evaluating", "--config_file", config_files("train.yaml", "evaluate.yaml", "smoke.yaml"), *dirs(tmp)])
    metrics = json.loads((tmp / "eval" / "metrics.json").read_text())
    assert set(metrics["models"]) == {"baseline", "align", "align_dm", "pdm"}
    for key in ("mean_auc", "auc", "loc_acc_iou03", "loc_acc_iou05", "loc_acc_iou07", "loc_acc", "alignment_error_mm"):
        assert key in metrics, key
    assert len(metrics["auc"]) == 14 and set(metrics["loc_acc"]) == {"Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia", "Pneumothorax"}
    baseline = metrics["models"]["baseline"]["alignment_error_mm"]
    assert baseline["before"] == pytest.approx(baseline["after"]) and baseline["before"] > 0  # no alignment


def test_smoke_inference_json_overlay_and_a_bad_file(smoke, tmp_path):
    tmp, _ = smoke
    from monai_mammo.bundle_utils import load_items

    phantoms = next((tmp / "phantoms").rglob("datalist.json"))
    good = load_items(phantoms, "training")[0]["image"]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    inputs = str([good, str(bad)])
    run_bundle(["inferring", "--config_file", config_files("inference.yaml", "smoke.yaml"), "--ckpt_dir", str(tmp / "models"),
                "--output_dir", str(tmp_path / "out"), "--input_path", inputs, "--threshold", "0.0", "--save_aligned", "true"])  # fmt: skip
    out = tmp_path / "out"
    record = json.loads((out / f"{Path(good).stem}.json").read_text())
    assert len(record["probabilities"]) == 14 and record["coordinates"] == "original_pixels"
    assert record["findings"] and all(0 <= f["box"][0] < f["box"][2] <= 64 for f in record["findings"])
    assert (out / record["overlay"]).is_file() and (out / record["aligned"]).is_file() and record["cams"]
    skipped = json.loads((out / "skipped.json").read_text())
    assert skipped[0]["source"] == str(bad)


def test_monai_label_label_and_result(smoke):
    tmp, _ = smoke
    from monai.bundle import ConfigWorkflow

    from monai_mammo.bundle_utils import load_items

    phantoms = next((tmp / "phantoms").rglob("datalist.json"))
    item = load_items(phantoms, "training")[0]
    workflow = ConfigWorkflow(
        config_file=[str(CONFIGS / "inference.yaml"), str(CONFIGS / "smoke.yaml")], meta_file=str(CONFIGS / "metadata.json"), logging_file=False,
        workflow_type="infer", ckpt_dir=str(tmp / "models"), **{"dataset#data": [{"image": item["image"]}], "device": "$torch.device('cpu')", "threshold": 0.0},
    )  # fmt: skip
    workflow.initialize()
    workflow.evaluator.run()  # the chain MONAI Label runs: preprocessing -> inferer -> postprocessing
    output = workflow.evaluator.state.output[0]
    label = output["pred"]
    assert label.dtype == torch.uint8 and tuple(label.shape) == (64, 64)  # (W, H) of the stored 64 x 64 image
    assert 0 < int(label.max()) <= 14
    assert set(output["result"]) >= {"probabilities", "findings"} and len(output["result"]["probabilities"]) == 14
    workflow.finalize()


def test_resume_after_the_last_stage_trains_nothing_again(smoke):
    tmp, _ = smoke
    before = (tmp / "models" / "stages" / "pdm.pt").stat().st_mtime
    result = run_bundle(["training", "--config_file", config_files("train.yaml", "smoke.yaml"), *dirs(tmp), "--resume", "true"])
    log = result.stdout + result.stderr
    assert "stage 2 (alignment): already done" in log and "stage 5+ (PDM baseline, pseudo disease masks): already done" in log
    assert (tmp / "models" / "stages" / "pdm.pt").stat().st_mtime == before


def test_stages_are_skipped_by_key(tmp_path):
    result = run_bundle(["training", "--config_file", config_files("train.yaml", "smoke.yaml"), *dirs(tmp_path),
                         "--stages#alignment", "false", "--stages#masks", "false", "--stages#disease_masks", "false", "--stages#pdm", "false"])  # fmt: skip
    log = result.stdout + result.stderr
    assert "stage 2 (alignment): disabled, skipped" in log and "stage 4 (disease masks): disabled, skipped" in log
    # model.pt: the last classifier trained (stage 3 on unaligned images here)
    assert (tmp_path / "models" / "model.pt").is_file() and not (tmp_path / "models" / "stages" / "alignment.pt").exists()


def test_network_in_out_and_the_plugin_loss():
    # (MONAI's verify_net_in_out checks `pred` of metadata.json, the postprocessed label image; the
    # network itself gives logits, CAMs and the alignment, checked here at the metadata input shape)
    metadata = json.loads((CONFIGS / "metadata.json").read_text())
    shape = metadata["network_data_format"]["inputs"]["image"]["spatial_shape"]
    network = parser_of("train.yaml").get_parsed_content("network_def").eval()
    with torch.no_grad():
        out = network.predict(torch.rand(2, 1, *shape))
    assert out["logits"].shape == (2, 14) and out["theta"].shape == (2, 2, 3) and out["aligned"].shape == (2, 1, *shape)
    assert out["cam"].shape[:2] == (2, 14) and out["cam"].shape[-1] == network.classifier.disease_masks.shape[-1]
    pytest.importorskip("monai_mammo_extras")
    parser = parser_of("train.yaml", "smoke.yaml")
    parser["loss"] = {"_target_": "monai_mammo.registry.build_loss", "name": "asymmetric_focal", "accept_families": ["tensor"]}
    loss = parser.get_parsed_content("loss")
    assert type(loss).__name__ == "AsymmetricFocalLoss"
    value = loss(torch.zeros(2, 14), torch.zeros(2, 14))
    assert torch.isfinite(value)


def test_training_preprocessing_matches_inference():
    train = parser_of("train.yaml").get("preprocessing")
    infer = parser_of("inference.yaml").get("preprocessing")
    assert train == infer
    assert np.allclose(parser_of("train.yaml").get("spatial_size"), parser_of("inference.yaml").get("spatial_size"))


def test_predict_profile_boxes_and_label(smoke):
    tmp, _ = smoke
    from monai_mammo.bundle_predictor import BundlePredictor
    from monai_mammo.bundle_utils import load_items

    phantoms = next((tmp / "phantoms").rglob("datalist.json"))
    image = load_items(phantoms, "training")[0]["image"]
    with BundlePredictor("diseasemask", {"ckpt_dir": str(tmp / "models"), "spatial_size": [64, 64], "threshold": 0.0}, device="cpu") as predictor:
        prediction = predictor.predict({"image": image})
    record = prediction.record
    assert record["coordinates"] == "original_pixels" and record["image_size"] == [64, 64] and len(record["probabilities"]) == 14
    assert record["boxes"] and all(b["label"] in record["probabilities"] for b in record["boxes"])
    assert prediction.mask is not None and prediction.mask.shape == (64, 64) and prediction.mask.max() > 0
