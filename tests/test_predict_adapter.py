"""The bundle adapter of ``monai-mammo predict`` gives what ``python -m monai.bundle run`` gives on the same image.

ASN: ``run inferring`` with ``inference.yaml`` (tiny random-init U-Net and FPR classifier saved in a
temp folder) writes ``<stem>.json``; :class:`~monai_mammo.bundle_predictor.BundlePredictor` must
return the same record. DAB-Net: ``run inferring`` (``mm_dabnet.infer_rois``) writes ``predictions.json``
for a full image with boxes and a ROI crop; the adapter's boxes must carry the same probabilities.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from monai_mammo.bundle_predictor import BundlePredictor, resolve_bundle_root
from monai_mammo.checkpoints import save_network
from test_predict import TINY_CHANNELS, make_archive

REPO = Path(__file__).resolve().parents[1]


def _bundle_run(args: list[str], cwd: Path) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    archive = make_archive(tmp_path_factory.mktemp("adapter") / "archive", n=1)
    return sorted((archive / "images").glob("*.dcm"))


def test_bundle_names_and_folders_resolve(tmp_path: Path) -> None:
    assert resolve_bundle_root("asn") == resolve_bundle_root(REPO / "bundles" / "asn") == (REPO / "bundles" / "asn")
    with pytest.raises(FileNotFoundError, match="no_such_bundle"):
        resolve_bundle_root("no_such_bundle")


def test_asn_adapter_equals_run_inferring(images: list[Path], tmp_path: Path) -> None:
    from monai_mammo.networks.asn import AnomalySeparationUNet, FalsePositiveReductionClassifier

    torch.manual_seed(1)
    net = AnomalySeparationUNet(channels=TINY_CHANNELS, convs_per_stage=3, input_skip=True, pad_mode="reflect")
    save_network(net, tmp_path / "model.pt")
    save_network(FalsePositiveReductionClassifier(crop_size=24, input_size=32), tmp_path / "fpr.pt")
    overrides = {
        "ckpt_path": str(tmp_path / "model.pt"),
        "fpr_path": str(tmp_path / "fpr.pt"),
        "cpu_threads": 1,
        "candidates#max_candidates": 40,  # fewer FPR crops: a faster test, the same code path
    }
    expected_dir = tmp_path / "bundle_run"
    args = ["inferring", "--config_file", str(REPO / "bundles/asn/configs/inference.yaml"), "--input_path", str(images[0].parent)]
    for key, value in {**overrides, "output_dir": str(expected_dir)}.items():
        args += [f"--{key}", json.dumps(value) if not isinstance(value, str) else value]
    _bundle_run(args, cwd=REPO)

    with BundlePredictor("asn", overrides) as predictor:
        assert (predictor.name, predictor.modalities, predictor.profile.findings) == ("asn", ("MG",), "points")
        assert len(predictor.fingerprint) == 16  # model.pt and fpr.pt
        for image in images:
            prediction = predictor.predict({"image": str(image)})
            expected = json.loads((expected_dir / f"{image.stem}.json").read_text())
            assert prediction.record == expected
            assert expected["num_points"] > 0 and all(p["fpr_score"] is not None for p in expected["points"])
            # the label (discs at the best detections) on the stored image's grid, rows first
            assert prediction.mask.shape == tuple(expected["image_size"]) and prediction.segments == {1: "microcalcification"}
            best = max(expected["points"], key=lambda p: p["score"])
            assert prediction.mask[int(round(best["y"])), int(round(best["x"]))] == 1


def test_dabnet_adapter_equals_run(images: list[Path], tmp_path: Path) -> None:
    from PIL import Image

    from monai_mammo.networks.dabnet import DABNet

    torch.manual_seed(2)
    models = tmp_path / "models"
    models.mkdir()
    # no decoders: the probability does not use them (and the test builds the encoder alone, faster)
    save_network(DABNet(in_channels=1, decoders="none"), models / "model.pt")
    roi = tmp_path / "roi.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 40), dtype=np.uint8)).save(roi)
    boxes = [[20.0, 30.0, 60.0, 70.0], [80.0, 90.0, 100.0, 120.0]]
    files = [{"image": str(images[0]), "boxes": boxes}, str(roi)]
    _bundle_run(
        [
            "inferring", "--config_file", str(REPO / "bundles/dabnet/configs/inference.yaml"),
            "--input_path", json.dumps(files), "--ckpt_dir", str(models), "--output_dir", str(tmp_path / "run"),
            "--save_png", "false",
        ],
        cwd=REPO,
    )
    expected = json.loads((tmp_path / "run" / "predictions.json").read_text())
    with BundlePredictor("dabnet", {"ckpt_dir": str(models)}) as predictor:
        assert predictor.profile.findings == "boxes" and not predictor.profile.requires_spacing
        full = predictor.predict({"image": str(images[0]), "boxes": boxes}).record
        crop = predictor.predict({"image": str(roi)}).record
    assert [b["box"] for b in full["boxes"]] == [e["box"] for e in expected[:2]] == boxes
    assert [b["roi_box"] for b in full["boxes"]] == [e["roi_box"] for e in expected[:2]]
    got = [b["probability"] for b in full["boxes"] + crop["boxes"]]
    assert got == [e["probability"] for e in expected]  # the bundle's own steps: equal, not close
    assert crop["boxes"][0]["box"] == [0.0, 0.0, 40.0, 50.0]  # a ROI crop is its own box (edge coordinates)
    assert {b["label"] for b in full["boxes"]} == {"mass"}


@pytest.mark.parametrize("bundle", ["asn", "dabnet", "clsdet"])
def test_bundle_metadata_declares_its_predict_profile(bundle: str) -> None:
    """Each bundle's metadata.json says what it outputs, and names only what its inference.yaml has."""
    import importlib

    from monai.bundle import ConfigParser

    from monai_mammo.bundle_predictor import BundleProfile

    root = resolve_bundle_root(bundle)
    profile = BundleProfile(**json.loads((root / "configs" / "metadata.json").read_text())["predict"])
    parser = ConfigParser()
    parser.read_config(str(root / "configs" / "inference.yaml"))
    for key in ("preprocessing", "network", "inferer", "postprocessing", *profile.weights, *profile.config_overrides):
        assert key in parser, key
    assert all(flag in parser for flag in profile.weights.values() if flag is not None)
    if profile.record == "writer":
        assert "writer" in parser and parser["writer"]["_target_"] == "monai_mammo.writers.SaveRegionsd"
    else:
        module, _, name = profile.roi_items.rpartition(".")
        assert callable(getattr(importlib.import_module(module), name))
        assert all(config_id in parser for config_id in profile.roi_items_args.values())
    expected = {"asn": ("points", "microcalcification", True, "pred"), "dabnet": ("boxes", "mass", False, None), "clsdet": ("boxes", "finding", True, "pred")}[bundle]
    assert (profile.findings, profile.finding_label, profile.requires_spacing, profile.mask_key) == expected


def test_a_bundle_without_a_predict_profile_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "newbundle"
    shutil.copytree(REPO / "bundles" / "dabnet" / "configs", root / "configs")
    metadata = json.loads((root / "configs" / "metadata.json").read_text())
    del metadata["predict"]
    (root / "configs" / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match="add a 'predict' section to its configs/metadata.json"):
        BundlePredictor(root)
