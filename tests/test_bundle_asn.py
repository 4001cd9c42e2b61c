"""bundles/asn (Zhang et al., CVPR 2019 ASN + FPR cascade): smoke runs through ``python -m monai.bundle``
with configs/smoke.yaml, and the contracts between its configs.

One smoke training (ASN, validation FROC, the FPR stage run by the ASN trainer's StageHandler), then
evaluation and inference of the same weights; a plugin loss of MONAI's "tensor" contract trains the
U-Net as a segmenter; a "multitask" loss is rejected when the config is built.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "asn"
CONFIGS = BUNDLE / "configs"
TRAIN, EVALUATE, INFERENCE = (str(CONFIGS / f"{n}.yaml") for n in ("train", "evaluate", "inference"))
SMOKE, MULTI_GPU = str(CONFIGS / "smoke.yaml"), str(CONFIGS / "multi_gpu_train.yaml")
META = str(CONFIGS / "metadata.json")


def _files(*names: str) -> str:
    return "[" + ",".join(f"'{n}'" for n in names) + "]"


def _run(run_id: str, config_files: str, *overrides: str, expect_ok: bool = True) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", run_id, "--config_file", config_files, *overrides],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    out = proc.stdout + proc.stderr
    if expect_ok:
        assert proc.returncode == 0, out[-4000:]
    else:
        assert proc.returncode != 0, out[-2000:]
    return out


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("asn")


def _dirs(work: Path, phantoms: Path | None = None) -> list[str]:
    return ["--ckpt_dir", str(work / "models"), "--output_dir", str(work / "eval"), "--log_dir", str(work / "runs"),
            "--phantom#cache_dir", str(phantoms or work / "phantoms")]


@pytest.fixture(scope="module")
def trained(work: Path) -> str:
    """The smoke training, the user's run id with configs/smoke.yaml merged on train.yaml."""
    start = time.perf_counter()
    out = _run("training", _files(TRAIN, SMOKE), *_dirs(work))
    print(f"ASN smoke training: {time.perf_counter() - start:.1f} s")
    return out


def test_smoke_training_trains_both_stages(trained: str, work: Path) -> None:
    assert "FROC proposals (epoch 2): R@5=" in trained
    assert "FPR stage: started" in trained and "FPR mining: 2 images" in trained and "FPR stage: done" in trained
    assert "train_loss" in trained and "fpr_loss" in trained
    assert any((work / "runs").iterdir())  # TensorBoard event files
    model = torch.load(work / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert sorted(model) == ["model", "network_spec"] and any(k.startswith("stem.") for k in model["model"])
    assert model["network_spec"]["_target_"] == "monai_mammo.networks.asn.AnomalySeparationUNet"
    assert model["network_spec"]["head_init_scale"] == 0.05  # the head init travels with the network
    fpr = torch.load(work / "models" / "stages" / "fpr.pt", map_location="cpu", weights_only=True)
    assert fpr["network_spec"]["_target_"] == "monai_mammo.networks.asn.FalsePositiveReductionClassifier"
    assert {k: fpr["network_spec"][k] for k in ("crop_size", "input_size", "crop_normalization")} == {
        "crop_size": 24, "input_size": 32, "crop_normalization": "mean"}
    assert "pretrained_path" not in fpr["network_spec"]


def test_smoke_evaluation_writes_metrics(trained: str, work: Path) -> None:
    out = _run("evaluating", _files(TRAIN, EVALUATE, SMOKE), *_dirs(work))
    metrics = json.loads((work / "eval" / "metrics.json").read_text())
    assert set(metrics) == {"proposals", "final"}
    assert set(metrics["proposals"]["recall_at"]) == {"R@5", "R@10", "R@15", "R@20", "R@30"}
    assert set(metrics["final"]["recall_at"]) == {"R@1", "R@5", "R@10", "R@15", "R@20"}
    assert metrics["final"]["num_images"] == 6  # eval_phantom: 3 held-out patients, seed 1
    assert (work / "eval" / "froc_final.csv").is_file() and (work / "eval" / "froc.png").is_file()
    assert "FROC final" in out


def test_smoke_inference_writes_original_pixels(trained: str, work: Path) -> None:
    eval_list = next((work / "phantoms").glob("mammogram-n6-s1-*/datalist.json"))
    _run("inferring", _files(TRAIN, INFERENCE, SMOKE), *_dirs(work),
         "--ckpt_path", str(work / "models" / "model.pt"), "--fpr_path", str(work / "models" / "stages" / "fpr.pt"),
         "--input_path", str(eval_list), "--output_dir", str(work / "infer"), "--write_overlay", "True")
    results = sorted((work / "infer").glob("*.json"))
    assert len(results) == 6
    result = json.loads(results[0].read_text())
    assert result["coordinates"] == "original_pixels" and result["image_size"] == [256, 208]
    assert result["spacing"] == pytest.approx([0.14, 0.14]) and result["num_points"] == len(result["points"]) > 0
    p = result["points"][0]
    assert list(p) == ["x", "y", "score", "asn_score", "fpr_score", "area"]
    assert p["score"] == pytest.approx(p["asn_score"] * p["fpr_score"])
    assert all(0 <= q["x"] < 208 and 0 <= q["y"] < 256 for q in result["points"])
    assert (work / "infer" / (results[0].stem + "_overlay.png")).is_file()


def test_plugin_tensor_loss_trains_the_unet_as_a_segmenter(tmp_path: Path) -> None:
    """One override swaps in the extras plugin's asymmetric focal loss (MONAI's tensor contract)."""
    pytest.importorskip("monai_mammo_extras", reason="pip install -e plugins/monai-mammo-extras")
    out = _run("training", _files(TRAIN, SMOKE), *_dirs(tmp_path), "--loss#name", "asymmetric_focal",
               "--fpr#enabled", "False")
    assert "FROC proposals (epoch 2)" in out and "FPR stage: disabled, skipped" in out
    assert (tmp_path / "models" / "model.pt").is_file() and not (tmp_path / "models" / "stages" / "fpr.pt").exists()


def _parser(*files: str, **overrides):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(list(files))
    parser["bundle_root"] = str(BUNDLE)
    for key, value in overrides.items():
        parser[key.replace("__", "#")] = value
    return parser


def test_loss_families_decide_the_candidate_map_and_reject_multitask_losses() -> None:
    from monai_mammo.engines.asn import PositiveMaskLoss
    from monai_mammo.registry import IncompatibleComponentError

    assert _parser(TRAIN).get_parsed_content("candidates#map") == "residual"
    assert _parser(TRAIN, loss__name="segmentation_ce").get_parsed_content("candidates#map") == "probability"
    assert _parser(TRAIN, loss__name="weighted_bce").get_parsed_content("candidates#map") == "probability"
    adapted = _parser(TRAIN, loss__name="weighted_bce").get_parsed_content("train#trainer#loss_function")
    assert isinstance(adapted, PositiveMaskLoss)
    parser = _parser(TRAIN, loss__name="disentangle")
    for key in ("loss", "candidates#map"):
        with pytest.raises(Exception) as info:  # MONAI wraps the registry's error while instantiating
            parser.get_parsed_content(key)
        chain, error = [], info.value
        while error is not None:
            chain.append(error)
            error = error.__cause__ or error.__context__
        registry_error = next((e for e in chain if isinstance(e, IncompatibleComponentError)), None)
        assert registry_error is not None, chain
        message = str(registry_error)
        assert "loss 'disentangle' (family 'multitask'" in message and "needs a loss of family 'pixel_masks'" in message


def test_disabled_fpr_builds_nothing_of_the_stage(work: Path) -> None:
    """No placeholder data: the FPR stage's pieces are factories until the stage runs."""
    from monai_mammo.handlers.stage import StageHandler, TrainingStage

    parser = _parser(TRAIN, SMOKE, fpr__enabled=False, **{"phantom#cache_dir": str(work / "phantoms"), "log_dir": str(work / "runs")})
    stage = parser.get_parsed_content("fpr_stage")
    assert isinstance(stage, TrainingStage) and stage.network_ is None
    assert callable(stage.data) and callable(stage.network) and not isinstance(stage.network, torch.nn.Module)
    handlers = parser.get_parsed_content("train#handlers")
    stage_handlers = [h for h in handlers if isinstance(h, StageHandler)]
    assert len(stage_handlers) == 1 and not stage_handlers[0].enabled and stage_handlers[0].stage is stage


def _image_transforms(config: list) -> list[dict]:
    def has_image(t: dict) -> bool:
        keys = t.get("keys", [])
        return "image" in ([keys] if isinstance(keys, str) else keys)

    return [t for t in config if isinstance(t, dict) and has_image(t)]


def test_inference_config_agrees_with_training() -> None:
    """inference.yaml is self-contained for MONAI Label, yet runs the training preprocessing and candidates."""
    from monai.bundle import ConfigParser

    train, infer = ConfigParser(), ConfigParser()
    train.read_config(TRAIN)
    infer.read_config(INFERENCE)
    train_images, infer_images = _image_transforms(train["preprocessing"]), _image_transforms(infer["preprocessing"])
    assert [t["_target_"] for t in train_images] == [t["_target_"] for t in infer_images]
    assert len(train_images) == 5 and train_images == infer_images
    for key in ("threshold", "threshold_mode", "centre", "min_area", "max_candidates", "score"):
        assert train["candidates"][key] == infer["candidates"][key], key
    assert _parser(TRAIN).get_parsed_content("candidates#map") == infer["candidates"]["map"]
    assert train["target_spacing"] == infer["target_spacing"]
    assert train["fpr"]["dihedral_tta"] == infer["fpr_dihedral_tta"]


def test_inference_builds_its_networks_from_the_checkpoints(trained: str, work: Path) -> None:
    from monai.bundle import verify_net_in_out

    from monai_mammo.networks.asn import AnomalySeparationUNet, FalsePositiveReductionClassifier

    parser = _parser(INFERENCE, ckpt_path=str(work / "models" / "model.pt"), fpr_path=str(work / "models" / "stages" / "fpr.pt"))
    network_def = parser.get_parsed_content("network_def")  # what MONAI Label instantiates before loading model.pt
    assert isinstance(network_def, AnomalySeparationUNet) and network_def.head_init_scale == 0.05
    state = torch.load(work / "models" / "model.pt", map_location="cpu", weights_only=True)["model"]
    network_def.load_state_dict(state, strict=True)
    network = parser.get_parsed_content("network")
    assert all(torch.equal(v, state[k]) for k, v in network.state_dict().items())
    fpr = parser.get_parsed_content("fpr_network").get()  # a NetworkFile: reloaded when the file changes
    assert isinstance(fpr, FalsePositiveReductionClassifier) and fpr.crop_size == 24 and not fpr.training
    verify_net_in_out(net_id="network_def", meta_file=META, config_file=INFERENCE, n=4, device="cpu",
                      ckpt_path=str(work / "models" / "model.pt"), bundle_root=str(BUNDLE))


def test_check_properties(trained: str, work: Path) -> None:
    from monai.bundle import ConfigWorkflow

    train = ConfigWorkflow(config_file=[TRAIN, SMOKE], meta_file=META, workflow_type="train",
                           **{"phantom#cache_dir": str(work / "phantoms"), "log_dir": str(work / "runs_check"),
                              "ckpt_dir": str(work / "models_check")})
    train.initialize()
    assert not train.check_properties()
    datalist = next((work / "phantoms").glob("mammogram-n4-s0-*/datalist.json"))
    infer = ConfigWorkflow(config_file=INFERENCE, meta_file=META, workflow_type="infer", input_path=str(datalist),
                           ckpt_path=str(work / "models" / "model.pt"), fpr_path=str(work / "models" / "stages" / "fpr.pt"))
    infer.initialize()
    assert not infer.check_properties()


def test_monai_label_style_overrides(trained: str, work: Path, tmp_path: Path) -> None:
    """MONAI Label trains through run id `run` with its datastore's items ({image, label image path}),
    overriding the data lists, max_epochs and the handlers (a CheckpointLoader put first)."""
    from monai.bundle import ConfigWorkflow
    from PIL import Image

    from monai_mammo.handlers.stage import StageHandler
    from monai_mammo.writers import draw_discs

    datalist = next((work / "phantoms").glob("mammogram-n4-s0-*/datalist.json"))
    items = []
    for item in json.loads(datalist.read_text())["training"]:
        image = datalist.parent / item["image"]
        label = np.zeros(Image.open(datalist.parent / item["mask"]).size[::-1], dtype=np.uint8)
        draw_discs(label, item["points"], 2.0, 1)  # the µC label image MONAI Label would store
        Image.fromarray(label).save(tmp_path / f"{image.stem}.png")
        items.append({"image": str(image), "label": str(tmp_path / f"{image.stem}.png"), "n": len(item["points"])})
    wf = ConfigWorkflow(config_file=[TRAIN, SMOKE], workflow_type="train", run_id="run",
                        **{"phantom#cache_dir": str(work / "phantoms"), "ckpt_dir": str(tmp_path), "log_dir": str(tmp_path / "runs")})
    wf.parser["train#dataset#data"] = [{"image": i["image"], "label": i["label"]} for i in items]
    wf.parser["validate#dataset#data"] = [{"image": i["image"], "label": i["label"]} for i in items]
    wf.parser["train#trainer#max_epochs"] = 1
    loader = {"_target_": "CheckpointLoader", "load_path": str(work / "models" / "model.pt"), "load_dict": {"model": "$@network"}}
    wf.parser["train#handlers"] = [loader] + wf.parser["train#handlers"]
    trainer = wf.parser.get_parsed_content("train#trainer")
    assert trainer.state.max_epochs == 1
    assert any(isinstance(h, StageHandler) for h in wf.parser.get_parsed_content("train#handlers"))  # FPR still trains
    cached = wf.parser.get_parsed_content("train#dataset")
    assert [len(c["points"]) for c in cached] == [i["n"] for i in items]  # label image -> µC points


def test_multi_gpu_config_keeps_training_handlers_on_every_rank(monkeypatch: pytest.MonkeyPatch, work: Path) -> None:
    """Merged on train.yaml; rank 0 keeps all handlers, other ranks keep the lr schedule and the stage.

    No process group is started (that is torchrun's job, issue 12): the rank and the DDP wrapper are
    stand-ins, so the handler selection and the wiring are what is checked."""
    import torch.distributed as dist

    class StandInDDP(torch.nn.Module):
        def __init__(self, module: torch.nn.Module, device_ids=None) -> None:
            super().__init__()
            self.module = module

    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", StandInDDP)
    resume = ("ResumeCheckpointLoader", "ResumeCheckpointSaver")  # on every rank (the saver writes on rank 0)
    for rank, expected in ((0, ["IdenticalReplicasCheck", resume[0], "LrScheduleHandler", "EndOfRunValidationHandler", "StatsHandler",
                                "TensorBoardStatsHandler", "StageHandler", resume[1]]),
                           (1, ["IdenticalReplicasCheck", resume[0], "LrScheduleHandler", "StageHandler", resume[1]])):
        monkeypatch.setattr(dist, "get_rank", lambda group=None, rank=rank: rank)
        parser = _parser(TRAIN, MULTI_GPU, SMOKE, log_dir=str(work / "mgpu_runs"), ckpt_dir=str(work / "mgpu"),
                         **{"phantom#cache_dir": str(work / "phantoms")})
        handlers = parser.get_parsed_content("train#trainer#train_handlers")
        assert [type(h).__name__ for h in handlers] == expected
        network = parser.get_parsed_content("network")
        assert isinstance(network, StandInDDP) and network.module.head_init_scale == 0.05  # head init from network_def
        assert parser.get_parsed_content("validate#evaluator").network is network.module
        assert "gloo" in parser["initialize"][0] and "nccl" in parser["initialize"][0]
        assert parser.get_parsed_content("validate#key_metric#val_proposals_recall").metric_fn.gather is False


@pytest.mark.slow
def test_multi_gpu_training_under_torchrun_on_cpu(work: Path) -> None:
    """Two gloo processes on the CPU (issue 12 makes this a regular test)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    command = ["torchrun", "--standalone", "--nnodes=1", "--nproc_per_node=2", "-m", "monai.bundle", "run", "training",
               "--config_file", _files(TRAIN, MULTI_GPU, SMOKE), *_dirs(work / "ddp")]
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert out.count("FROC proposals (epoch 2)") == 1 and out.count("FPR stage: done") == 1  # rank 0 only
    assert (work / "ddp" / "models" / "stages" / "fpr.pt").is_file()


def test_metadata_for_monai_label() -> None:
    meta = json.loads(Path(META).read_text())
    assert meta["name"] == "asn"
    assert len(meta["network_data_format"]["inputs"]["image"]["spatial_shape"]) == 2
    assert meta["network_data_format"]["outputs"]["pred"]["channel_def"]["1"] == "microcalcification"
    for link in ("train.yaml", "metadata.json", "logging.conf"):
        assert (BUNDLE / link).is_symlink() and (BUNDLE / link).resolve().parent == BUNDLE / "configs"


def test_inference_coordinates_map_back_through_resampling_and_flip(tmp_path: Path) -> None:
    """A DICOM at 0.1 mm, laterality R: resampled to 0.07 mm and flipped; the JSON point must land
    on the bright dot's original pixel, and the MONAI Label label has a disc there."""
    sys.path.insert(0, str(Path(__file__).parent))
    from dicom_fixtures import write_dicom

    h, w = 160, 120
    arr = np.zeros((h, w), dtype=np.uint16)
    yy, xx = np.mgrid[0:h, 0:w]
    arr[((xx - w) / (0.8 * w)) ** 2 + ((yy - h / 2) / (0.45 * h)) ** 2 <= 1.0] = 4000  # R breast: chest wall right
    dot_x, dot_y = 90, 57
    arr[(xx - dot_x) ** 2 + (yy - dot_y) ** 2 <= 1] = 16000
    path = write_dicom(tmp_path / "right.dcm", arr, pixel_spacing=(0.1, 0.1), laterality="R")

    parser = _parser(INFERENCE, use_fpr=False, output_dir=str(tmp_path / "out"))
    pre = parser.get_parsed_content("preprocessing")
    post = parser.get_parsed_content("postprocessing")
    writer = parser.get_parsed_content("writer")
    d = {"image": str(path)}
    for transform in pre:
        d = transform(d)
    img = d["image"]
    assert img.meta["chest_wall_flipped"] in (True, 1)
    assert tuple(img.shape[-2:]) == (round(h * 0.1 / 0.07), round(w * 0.1 / 0.07))
    d["pred"] = img * (img < 0.9)  # a "reconstruction" that removes the dot: the residual is the dot
    d = writer(post(d))
    result = json.loads(Path(d["detections_file"]).read_text())
    best = result["points"][0]
    assert result["spacing"] == pytest.approx([0.1, 0.1]) and result["image_size"] == [h, w]
    assert abs(best["x"] - dot_x) <= 1.0 and abs(best["y"] - dot_y) <= 1.0, best
    assert best["fpr_score"] is None
    label = d["pred"]  # uint8, original size in MONAI Label's x-first (W, H) layout, a disc at the dot
    assert label.dtype == torch.uint8 and tuple(label.shape) == (w, h)
    assert label[dot_x, dot_y] == 1
