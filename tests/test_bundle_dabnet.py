"""Smoke tests of the dabnet bundle: the user's literal command with tiny overrides, evaluation,
inference, the MONAI bundle property check, and a third-party compositor swapped in by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "dabnet"
TRAIN = "bundles/dabnet/train.yaml"
EVALUATE = "['bundles/dabnet/configs/train.yaml','bundles/dabnet/configs/evaluate.yaml']"


def tiny(tmp: Path) -> list[str]:
    return [
        "--phantom#n", "20",
        "--phantom#n_masses", "8",
        "--phantom#n_glands", "8",
        "--phantom#size", "32",
        "--phantom#cache_dir", str(tmp / "phantoms"),
        "--spatial_size", "[32, 32]",
        "--batch_size", "8",
        "--epochs", "1",
        "--pretrain_epochs", "1",
        "--network_def#decoder_channels", "[4, 4, 4, 4, 4]",
        "--ckpt_dir", str(tmp / "models"),
        "--output_dir", str(tmp / "eval"),
    ]


def run_bundle(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", *args], cwd=REPO, capture_output=True, text=True, env=env, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_layout_and_symlinks():
    for name, target in (("train.yaml", "configs/train.yaml"), ("metadata.json", "configs/metadata.json"), ("logging.conf", "configs/logging.conf")):
        link = BUNDLE / name
        assert link.is_symlink() and os.readlink(link) == target
    for name in ("evaluate.yaml", "inference.yaml", "multi_gpu_train.yaml", "metadata.json", "logging.conf"):
        assert (BUNDLE / "configs" / name).is_file()
    assert (BUNDLE / "LICENSE").is_file() and (BUNDLE / "docs" / "README.md").is_file() and (BUNDLE / "models").is_dir()
    metadata = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    assert metadata["name"] == "dabnet"
    assert len(metadata["network_data_format"]["inputs"]["image"]["spatial_shape"]) == 2
    assert metadata["network_data_format"]["outputs"]["pred"]["channel_def"]


def test_train_evaluate_infer_through_monai_bundle(tmp_path):
    out = run_bundle(["training", "--config_file", TRAIN, *tiny(tmp_path)])
    assert "best validation AUC" in out.stdout
    assert (tmp_path / "models" / "model.pt").is_file()
    run_bundle(["--config_file", EVALUATE, *tiny(tmp_path), "--eval#phantom_n", "20", "--eval#n_bootstrap", "50"])
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    for subset in ("overall", "obscured"):
        assert {"auc", "ci_low", "ci_high", "n"} <= set(metrics[subset])
    assert metrics["obscured"]["n"] < metrics["overall"]["n"]
    run_bundle(
        [
            "--config_file", "bundles/dabnet/configs/inference.yaml",
            "--phantom#n", "20", "--phantom#n_masses", "8", "--phantom#n_glands", "8",
            "--phantom#size", "32", "--phantom#cache_dir", str(tmp_path / "phantoms"),
            "--spatial_size", "[32, 32]", "--network_def#decoder_channels", "[4, 4, 4, 4, 4]",
            "--ckpt_dir", str(tmp_path / "models"), "--output_dir", str(tmp_path / "infer"),
        ]
    )
    predictions = json.loads((tmp_path / "infer" / "predictions.json").read_text())
    assert predictions and all(0.0 <= p["probability"] <= 1.0 for p in predictions)
    assert (tmp_path / "infer" / predictions[0]["png"]).is_file()


def test_check_properties_and_data_override(tmp_path):
    from monai.bundle import ConfigWorkflow

    overrides = {k.lstrip("-"): v for k, v in zip(tiny(tmp_path)[::2], tiny(tmp_path)[1::2])}
    def value(text: str):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text

    workflow = ConfigWorkflow(
        config_file=str(BUNDLE / "configs" / "train.yaml"),
        workflow_type="train",
        **{k: value(v) for k, v in overrides.items()},
    )
    workflow.initialize()
    assert workflow.check_properties() in (None, [])
    # MONAI Label's data override points at the same keys
    assert workflow.parser.get("train#dataset#data") is not None
    assert workflow.parser.get("validate#dataset#data") is not None
    infer = ConfigWorkflow(config_file=str(BUNDLE / "configs" / "inference.yaml"), workflow_type="infer")
    infer.initialize()
    assert infer.check_properties() in (None, [])


def test_inference_crops_full_image_boxes(tmp_path):
    import monai_mammo.engines.dabnet as mm_dabnet

    items = mm_dabnet.roi_items([{"image": "a.png", "boxes": [[10, 20, 30, 30]]}, "roi.png"], crop_scale=2.0)
    assert items[0]["roi_box"] == [0.0, 5.0, 40.0, 45.0] and items[1]["roi_box"] is None
    with pytest.raises(ValueError, match="empty or inverted"):
        mm_dabnet.roi_items([{"image": "a.png", "boxes": [[10, 20, 5, 30]]}])
    assert mm_dabnet.roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)


@pytest.mark.parametrize("logit, expected", [(2.0, 2), (-2.0, 1)])
def test_inference_postprocessing_gives_monai_label_layout(logit, expected):
    """MONAI Label's bundle app runs inference.yaml's postprocessing and writes `pred` as a label:
    a (W, H) uint8 label of the input's original size, 1 benign / 2 malignant."""
    import torch
    from monai.bundle import ConfigParser
    from monai.data import MetaTensor

    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "inference.yaml"))
    post = parser.get_parsed_content("postprocessing")
    # MONAI's PILReader stores spatial_shape as (W, H) = (20, 30) for an image of H=30 rows, W=20 columns
    image = MetaTensor(torch.rand(1, 32, 32), meta={"spatial_shape": (20, 30)})
    out = post({"image": image, "pred": torch.tensor([logit])})
    assert out["pred"].shape == (20, 30) and out["pred"].dtype == torch.uint8
    assert set(torch.unique(out["pred"]).tolist()) == {expected}
    assert tuple(out["image"].meta["spatial_shape"]) == (20, 30)
    assert out["result"]["label"] == ("malignant" if expected == 2 else "benign")
    assert out["result"]["malignancy_probability"] == pytest.approx(float(torch.sigmoid(torch.tensor(logit))))


def test_third_party_compositor_swapped_in_by_one_override(tmp_path):
    pytest.importorskip("monai_mammo_extras")
    from monai.bundle import ConfigParser

    from monai_mammo import registry

    if "max_intensity" not in registry.list_components()["compositor"]:
        pytest.skip("monai-mammo-extras installed without the max_intensity compositor")
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "train.yaml"))
    parser.update({"compositor#name": "max_intensity"})  # the one override (--compositor#name max_intensity)
    compositor = parser.get_parsed_content("compositor")
    assert type(compositor).__name__ == "MaxIntensityBlend"
    import torch

    from monai_mammo.transforms.compositing import RandMassCompositingd

    masses = [{"image": torch.rand(1, 32, 32), "label": 1, "box": [8, 8, 24, 24]}]
    glands = [{"image": torch.rand(1, 32, 32)}]
    out = RandMassCompositingd("image", masses, glands, ratio=1.0, compositor=compositor)({"image": torch.rand(1, 32, 32), "label": 0})
    assert out[1]["image"].shape == (1, 32, 32)
    # and the whole bundle trains with it
    out = run_bundle(["training", "--config_file", TRAIN, *tiny(tmp_path), "--compositor#name", "max_intensity"])
    assert "best validation AUC" in out.stdout
