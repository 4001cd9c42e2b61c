"""Smoke and contract tests of bundles/asn (Zhang et al., CVPR 2019 ASN + FPR cascade).

Everything runs on tiny handmade data (PNG images with bright dots as µCs, a DICOM with 0.1 mm
spacing and laterality R) and tiny networks, through the real entry point
``python -m monai.bundle run ...`` in subprocesses, plus ConfigWorkflow / verify_net_in_out checks
and an in-process check that inference coordinates map back to the stored image's pixels.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "asn"
TRAIN = str(BUNDLE / "configs" / "train.yaml")
EVALUATE = str(BUNDLE / "configs" / "evaluate.yaml")
INFERENCE = str(BUNDLE / "configs" / "inference.yaml")
META = str(BUNDLE / "configs" / "metadata.json")

TINY_NET = "[4,8,8,8]"


def _phantom_png(rng: np.random.Generator, h: int, w: int, n_dots: int) -> tuple[np.ndarray, list[list[float]]]:
    """A breast-like half disc (value ~100) on a black background with bright 3-px dots (µCs)."""
    yy, xx = np.mgrid[0:h, 0:w]
    breast = ((xx / (0.8 * w)) ** 2 + ((yy - h / 2) / (0.45 * h)) ** 2) <= 1.0
    img = np.where(breast, 100.0 + rng.normal(0, 4, (h, w)), 0.0)
    points = []
    while len(points) < n_dots:
        x, y = rng.uniform(0.1 * w, 0.5 * w), rng.uniform(0.3 * h, 0.7 * h)
        if all(np.hypot(x - px, y - py) > 20 for px, py in points):
            points.append([round(float(x), 1), round(float(y), 1)])
            img[(xx - x) ** 2 + (yy - y) ** 2 <= 2.5**2] = 250.0
    return np.clip(img, 0, 255).astype(np.uint8), points


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("asn_data")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    items = []
    for i in range(5):
        arr, pts = _phantom_png(rng, 224, 192, 3)
        Image.fromarray(arr).save(root / "images" / f"case{i}.png")
        items.append(
            {
                "image": f"images/case{i}.png",
                "points": pts,
                "point_diameters_mm": [0.35] * len(pts),
                "spacing": [0.07, 0.07],
                "laterality": "L",
                "label": [0, 1],
            }
        )
    datalist = {"training": items[:3], "validation": items[3:4], "test": items[4:]}
    (root / "datalist.json").write_text(json.dumps(datalist))
    return root


def _run(args: list[str], cwd: Path = REPO, timeout: int = 300) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def _tiny_overrides(data: Path, work: Path) -> list[str]:
    return [
        "--datalist", str(data / "datalist.json"),
        "--ckpt_dir", str(work / "models"),
        "--log_dir", str(work / "runs"),
        "--output_dir", str(work / "eval"),
        "--cpu_threads", "1",
        "--network_def#channels", TINY_NET,
        "--train#max_epochs", "1",
        "--train#iterations_per_epoch", "2",
        "--train#images_per_batch", "1",
        "--train#patches_per_image", "2",
        "--patch_size", "[64,64]",
        "--val_interval", "1",
        "--fpr#input_size", "32",
        "--fpr#epochs", "1",
        "--fpr#max_negatives_per_image", "3",
        "--fpr#batch_size", "4",
        "--candidates#threshold_mode", "quantile",
        "--candidates#threshold", "0.995",
    ]


@pytest.fixture(scope="module")
def trained(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One tiny training run (ASN + validation FROC + FPR stage) through the user's command."""
    work = tmp_path_factory.mktemp("asn_work")
    out = _run(["training", "--config_file", "bundles/asn/train.yaml", *_tiny_overrides(tiny_data, work)])
    return work, out


def test_training_smoke_asn_and_fpr(trained: tuple[Path, str]) -> None:
    work, out = trained
    assert (work / "models" / "model.pt").is_file()
    assert (work / "models" / "fpr.pt").is_file()
    assert "FROC proposals (epoch 1): R@5=" in out
    assert "FPR mining:" in out and "train_loss" in out and "fpr_loss" in out
    assert any((work / "runs").iterdir())  # TensorBoard event files
    # checkpoints load with weights_only=True
    state = torch.load(work / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert any(k.startswith("stem.") for k in state)
    fpr = torch.load(work / "models" / "fpr.pt", map_location="cpu", weights_only=True)
    assert fpr["config"]["input_size"] == 32 and fpr["config"]["crop_size"] == 24


def test_evaluation_writes_metrics(trained: tuple[Path, str], tiny_data: Path) -> None:
    work, _ = trained
    cfg = f"['{TRAIN}','{EVALUATE}']"
    out = _run(["evaluating", "--config_file", cfg, *_tiny_overrides(tiny_data, work)])
    metrics = json.loads((work / "eval" / "metrics.json").read_text())
    assert set(metrics) == {"proposals", "final"}
    assert set(metrics["proposals"]["recall_at"]) == {"R@5", "R@10", "R@15", "R@20", "R@30"}
    assert set(metrics["final"]["recall_at"]) == {"R@1", "R@5", "R@10", "R@15", "R@20"}
    assert (work / "eval" / "froc_final.csv").is_file() and (work / "eval" / "froc_proposals.csv").is_file()
    assert (work / "eval" / "froc.png").is_file()
    assert "FROC final" in out


def test_inference_on_datalist_and_file(trained: tuple[Path, str], tiny_data: Path) -> None:
    work, _ = trained
    common = [
        "--config_file", INFERENCE,
        "--ckpt_path", str(work / "models" / "model.pt"),
        "--fpr_path", str(work / "models" / "fpr.pt"),
        "--network_def#channels", TINY_NET,
        "--cpu_threads", "1",
        "--candidates#threshold_mode", "quantile",
        "--candidates#threshold", "0.995",
    ]
    _run(["inferring", *common, "--input_path", str(tiny_data / "datalist.json"),
          "--output_dir", str(work / "infer"), "--write_overlay", "True", "--write_residual", "True"])
    result = json.loads((work / "infer" / "case4.json").read_text())
    assert result["coordinates"] == "original_pixels"
    assert result["source"].endswith("case4.png") and result["image_size"] == [224, 192]
    assert result["spacing"] == pytest.approx([0.07, 0.07])
    assert result["points"], "no detection at all"
    assert set(result["points"][0]) >= {"x", "y", "score", "asn_score", "fpr_score"}
    p = result["points"][0]
    assert p["score"] == pytest.approx(p["asn_score"] * p["fpr_score"])
    assert (work / "infer" / "case4_overlay.png").is_file()
    assert (work / "infer" / "case4_residual.nii.gz").is_file()


def test_loss_override_by_name(tiny_data: Path, tmp_path: Path) -> None:
    out = _run(
        ["training", "--config_file", "bundles/asn/train.yaml", *_tiny_overrides(tiny_data, tmp_path),
         "--loss#name", "mse_reconstruction", "--fpr#enabled", "False", "--train#iterations_per_epoch", "1"]
    )
    assert "FROC proposals" in out and "FPR mining" not in out
    assert (tmp_path / "models" / "model.pt").is_file() and not (tmp_path / "models" / "fpr.pt").exists()


def test_monai_label_style_overrides(tiny_data: Path) -> None:
    """MONAI Label trains through run id `run`, overriding the data lists and `train#trainer#max_epochs`."""
    from monai.bundle import ConfigWorkflow

    items = json.loads((tiny_data / "datalist.json").read_text())
    for item in items["training"] + items["validation"]:
        item["image"] = str(tiny_data / item["image"])
    wf = ConfigWorkflow(config_file=TRAIN, workflow_type="train", run_id="run")
    wf.parser["train#dataset#data"] = items["training"]
    wf.parser["validate#dataset#data"] = items["validation"]
    wf.parser["train#trainer#max_epochs"] = 1
    assert wf.parser.get_parsed_content("train#dataset#data")[0]["image"].endswith("case0.png")
    assert wf.parser.get_parsed_content("network_def") is not None
    assert wf.parser.get_parsed_content("train#trainer").state.max_epochs == 1


def test_check_properties(tiny_data: Path) -> None:
    from monai.bundle import ConfigWorkflow

    train = ConfigWorkflow(
        config_file=TRAIN, meta_file=META, workflow_type="train", datalist=str(tiny_data / "datalist.json"),
        cpu_threads=1,
    )
    train.initialize()
    assert not train.check_properties()
    infer = ConfigWorkflow(
        config_file=INFERENCE, meta_file=META, workflow_type="infer", input_path=str(tiny_data / "datalist.json")
    )
    infer.initialize()
    assert not infer.check_properties()


def test_inference_config_matches_training() -> None:
    """inference.yaml must be self-contained for MONAI Label yet agree with train.yaml."""
    from monai.bundle import ConfigParser

    train, infer = ConfigParser(), ConfigParser()
    train.read_config(TRAIN)
    infer.read_config(INFERENCE)
    tnet = {k: v for k, v in train["network_def"].items()}
    inet = {k: v for k, v in infer["network_def"].items()}
    assert tnet == inet
    for key in ("threshold", "threshold_mode", "centre", "min_area", "max_candidates", "score"):
        assert train["candidates"][key] == infer["candidates"][key], key
    assert infer["candidates"]["mode"] == train["loss"]["name"]
    assert train["target_spacing"] == infer["target_spacing"]
    assert train["fpr"]["dihedral_tta"] == infer["fpr_dihedral_tta"]


def test_verify_net_in_out() -> None:
    from monai.bundle import verify_net_in_out

    verify_net_in_out(net_id="network_def", meta_file=META, config_file=INFERENCE, n=4, device="cpu")


def test_metadata_for_monai_label() -> None:
    meta = json.loads(Path(META).read_text())
    assert meta["name"] == "asn"
    assert len(meta["network_data_format"]["inputs"]["image"]["spatial_shape"]) == 2
    assert meta["network_data_format"]["outputs"]["pred"]["channel_def"]["1"] == "microcalcification"
    for link in ("train.yaml", "metadata.json", "logging.conf"):
        assert (BUNDLE / link).is_symlink() and (BUNDLE / link).resolve().parent == BUNDLE / "configs"


def test_inference_coordinates_map_back_through_resampling_and_flip(tmp_path: Path) -> None:
    """A DICOM at 0.1 mm, laterality R: resampled to 0.07 mm and flipped; the JSON point must land
    on the bright dot's original pixel."""
    sys.path.insert(0, str(Path(__file__).parent))
    from dicom_fixtures import write_dicom
    from monai.bundle import ConfigParser

    h, w = 160, 120
    arr = np.zeros((h, w), dtype=np.uint16)
    yy, xx = np.mgrid[0:h, 0:w]
    arr[((xx - w) / (0.8 * w)) ** 2 + ((yy - h / 2) / (0.45 * h)) ** 2 <= 1.0] = 4000  # R breast: chest wall right
    dot_x, dot_y = 90, 57
    arr[(xx - dot_x) ** 2 + (yy - dot_y) ** 2 <= 1] = 16000
    path = write_dicom(tmp_path / "right.dcm", arr, pixel_spacing=(0.1, 0.1), laterality="R")

    parser = ConfigParser()
    parser.read_config(INFERENCE)
    parser["bundle_root"] = str(BUNDLE)
    parser["use_fpr"] = False
    parser["output_dir"] = str(tmp_path / "out")
    pre = parser.get_parsed_content("preprocessing")
    post = parser.get_parsed_content("postprocessing")
    writer = parser.get_parsed_content("writer")
    d = pre({"image": str(path)})
    img = d["image"]
    assert img.meta["chest_wall_flipped"] in (True, 1)
    assert tuple(img.shape[-2:]) == (round(h * 0.1 / 0.07), round(w * 0.1 / 0.07))
    # a "reconstruction" that removes the dot: the residual is the dot itself
    d["pred"] = img * (img < 0.9)
    d = post(d)
    d = writer(d)
    result = json.loads(Path(d["detections_file"]).read_text())
    best = result["points"][0]
    assert result["spacing"] == pytest.approx([0.1, 0.1])
    assert result["image_size"] == [h, w]
    assert abs(best["x"] - dot_x) <= 1.0 and abs(best["y"] - dot_y) <= 1.0, best
    assert best["fpr_score"] is None
    # the MONAI Label label: uint8, original size in MONAI's x-first (W, H) layout, a disc at the dot
    label = d["pred"]
    assert label.dtype == torch.uint8 and tuple(label.shape) == (w, h)
    assert label[dot_x, dot_y] == 1
