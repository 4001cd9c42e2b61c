"""The dabnet bundle: the user's commands with configs/smoke.yaml (training, evaluation, inference
through ``python -m monai.bundle``), MONAI's property checks, one preprocessing chain for training,
evaluation, inference and MONAI Label, multi-GPU handlers, plugin components by name, and the
ablation files under evaluation repeats."""

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
BUNDLE = REPO / "bundles" / "dabnet"
CONFIGS = BUNDLE / "configs"


RUNNER = BundleRunner("dabnet")
config_files, run_bundle, dirs, parser_of = RUNNER.config_files, RUNNER.run, RUNNER.dirs, RUNNER.parser


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One smoke training (train.yaml + smoke.yaml), shared by the tests that need weights."""
    tmp = tmp_path_factory.mktemp("dabnet")
    return tmp, run_bundle(["training", "--config_file", config_files("train.yaml", "smoke.yaml"), *dirs(tmp)])


def test_layout_and_symlinks():
    for name, target in (("train.yaml", "configs/train.yaml"), ("metadata.json", "configs/metadata.json"), ("logging.conf", "configs/logging.conf")):
        link = BUNDLE / name
        assert link.is_symlink() and os.readlink(link) == target
    for name in ("evaluate.yaml", "inference.yaml", "multi_gpu_train.yaml", "smoke.yaml", "metadata.json", "logging.conf"):
        assert (CONFIGS / name).is_file()
    ablations = sorted(p.name for p in (CONFIGS / "ablations").glob("*.yaml"))
    assert ablations == ["ad.yaml", "erm.yaml", "no_glands_decoder.yaml", "no_mass_decoder.yaml", "one_branch.yaml", "simple.yaml"]
    assert (BUNDLE / "LICENSE").is_file() and (BUNDLE / "docs" / "README.md").is_file() and (BUNDLE / "models").is_dir()
    metadata = json.loads((CONFIGS / "metadata.json").read_text())
    assert metadata["name"] == "dabnet"
    assert len(metadata["network_data_format"]["inputs"]["image"]["spatial_shape"]) == 2
    assert metadata["network_data_format"]["outputs"]["pred"]["channel_def"] == {"0": "background", "1": "benign", "2": "malignant"}


def test_smoke_training_evaluation_and_inference_through_monai_bundle(smoke):
    tmp, trained = smoke
    assert "DAB-Net best validation AUC" in trained.stdout
    checkpoint = torch.load(tmp / "models" / "model.pt", weights_only=True)
    assert checkpoint["network_spec"]["decoder_channels"] == [4, 4, 4, 4, 4]
    run_bundle(["evaluating", "--config_file", config_files("train.yaml", "evaluate.yaml", "smoke.yaml"), *dirs(tmp)])
    metrics = json.loads((tmp / "eval" / "metrics.json").read_text())
    assert metrics["description"] == "phantom roi n=20 seed=1 (all real ROIs), size 32"
    assert metrics["overall"]["n"] == 20 and 0 < metrics["obscured"]["n"] < 20
    assert metrics["clear"]["n"] == 20 - metrics["obscured"]["n"]
    assert metrics["overall"]["ci_low"] <= metrics["overall"]["auc"] <= metrics["overall"]["ci_high"]
    run_bundle(["inferring", "--config_file", config_files("inference.yaml", "smoke.yaml"), *dirs(tmp), "--output_dir", str(tmp / "infer")])
    predictions = json.loads((tmp / "infer" / "predictions.json").read_text())
    datalist = next((tmp / "phantoms").glob("roi-n20-s0-*")) / "datalist.json"
    assert [Path(p["source"]).name for p in predictions] == [Path(t["image"]).name for t in json.loads(datalist.read_text())["test"]]
    assert (tmp / "infer" / predictions[0]["png"]).is_file()


def test_check_properties_and_monai_label_data_override(smoke):
    from monai.bundle import ConfigWorkflow

    tmp, _ = smoke
    common = {"phantom#cache_dir": str(tmp / "phantoms"), "ckpt_dir": str(tmp / "models")}
    train = ConfigWorkflow(config_file=[str(CONFIGS / "train.yaml"), str(CONFIGS / "smoke.yaml")], workflow_type="train", **common)
    train.initialize()
    assert train.check_properties() in (None, [])
    # MONAI Label trains on its datastore through these two keys
    roi = json.loads(next((tmp / "phantoms").glob("roi-n20-s0-*/datalist.json")).read_text())
    items = [{"image": str(next((tmp / "phantoms").glob("roi-n20-s0-*")) / t["image"]), "label": t["label"]} for t in roi["test"][:2]]
    train.parser.update({"train#dataset#data": items, "validate#dataset#data": items[:1]})
    assert len(train.parser.get_parsed_content("train#dataset")) == 2
    assert len(train.parser.get_parsed_content("validate#dataset")) == 1
    infer = ConfigWorkflow(config_file=[str(CONFIGS / "inference.yaml"), str(CONFIGS / "smoke.yaml")], workflow_type="infer", **common)
    infer.initialize()
    assert infer.check_properties() in (None, [])
    assert infer.parser.get_parsed_content("network_def").init_args["decoder_channels"] == [4, 4, 4, 4, 4]


def test_inference_preprocessing_is_the_training_chain():
    """inference.yaml (read alone by MONAI Label) repeats train.yaml's `preprocessing`: the same
    image transforms, arguments and order; train.yaml's `targets` only add the label and types."""
    from monai.bundle import ConfigParser

    def image_steps(config: dict) -> list[dict]:
        steps = []
        for step in config["preprocessing"]:
            keys = step.get("keys")
            if "image" in ([keys] if isinstance(keys, str) else keys):
                steps.append(step)
        return steps

    train = ConfigParser.load_config_file(str(CONFIGS / "train.yaml"))
    infer = ConfigParser.load_config_file(str(CONFIGS / "inference.yaml"))
    assert image_steps(train) == image_steps(infer) and len(image_steps(train)) == len(train["preprocessing"]) == 4
    assert train["preprocessing"][0]["_target_"] == "monai_mammo.transforms.io.LoadRadiographd"
    assert train["spatial_size"] == infer["spatial_size"] and train["phantom"] == infer["phantom"]
    assert {step["_target_"] for step in train["targets"]} == {
        "monai_mammo.engines.dabnet.LabelImageToClassd", "Lambdad", "EnsureTyped", "SelectItemsd"}  # label-only steps
    # validation, stage 1 and stage 2 all start with the one chain
    for key in ("validate", "train", "pretrain"):
        assert train[key]["preprocessing"]["transforms"].startswith("$@preprocessing + @targets")


def _embed(roi_png: Path, tmp: Path) -> tuple[Path, list[float]]:
    """A 3x-larger noisy image holding the ROI, and a box whose documented square crop is the ROI."""
    from PIL import Image

    roi = np.asarray(Image.open(roi_png))
    height, width = roi.shape
    full = np.random.default_rng(0).integers(0, 256, (3 * height, 3 * width), dtype=np.uint8)
    full[height : 2 * height, width : 2 * width] = roi
    Image.fromarray(full).save(tmp / "full.png")
    quarter = width / 4  # a box of half the ROI's side, centred: crop side 2 x that = the ROI
    return tmp / "full.png", [width + quarter, height + quarter, 2 * width - quarter, 2 * height - quarter]


def test_roi_inference_equals_the_evaluator(smoke, tmp_path):
    """The same ROI gets the same probability from infer_rois (as a crop and as a full-image box),
    from the evaluation path (evaluate.yaml's dataloader) and from the MONAI Label evaluator."""
    from monai_mammo.checkpoints import load_network_weights
    from monai_mammo.engines.dabnet import infer_rois, predict

    tmp, _ = smoke
    phantoms = next((tmp / "phantoms").glob("roi-n20-s0-*"))
    test_roi = json.loads((phantoms / "datalist.json").read_text())["test"][0]
    roi_png = phantoms / test_roi["image"]
    full_png, box = _embed(roi_png, tmp_path)
    common = {"phantom#cache_dir": str(tmp / "phantoms"), "ckpt_dir": str(tmp / "models")}

    infer = parser_of("inference.yaml", "smoke.yaml", **common)
    network = infer.get_parsed_content("network")
    results = infer_rois(network, [str(roi_png), {"image": str(full_png), "boxes": [box]}], infer.get_parsed_content("preprocessing"), tmp_path / "out")
    assert results[1]["roi_box"] == [32.0, 32.0, 64.0, 64.0]

    evaluate = parser_of("train.yaml", "evaluate.yaml", "smoke.yaml", **common, **{"eval#data": [{"image": str(roi_png), "label": 1}]})
    eval_network = load_network_weights(evaluate.get_parsed_content("network"), tmp / "models" / "model.pt")
    expected = float(predict(eval_network, evaluate.get_parsed_content("eval#dataloader"), "cpu")["prob"][0])

    infer.update({"input_path": [str(roi_png)]})
    evaluator = infer.get_parsed_content("evaluator")
    evaluator.run()
    monai_label = evaluator.state.output[0]["result"]["malignancy_probability"]

    for probability in (results[0]["probability"], results[1]["probability"], monai_label):
        assert probability == pytest.approx(expected, abs=1e-6)


def test_monai_label_postprocessing_layout(tmp_path):
    """Through inference.yaml's own preprocessing and postprocessing: a (W, H) uint8 label of the
    input's original size, 1 benign / 2 malignant, and the probability in `result`."""
    from monai.transforms import Compose
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 20), dtype=np.uint8)).save(tmp_path / "roi.png")
    parser = parser_of("inference.yaml")
    data = Compose(parser.get_parsed_content("preprocessing"))({"image": str(tmp_path / "roi.png")})
    assert data["image"].shape == (1, 64, 64)
    post = parser.get_parsed_content("postprocessing")
    for logit, expected in ((2.0, 2), (-2.0, 1)):
        out = post({"image": data["image"].clone(), "pred": torch.tensor([logit])})
        assert out["pred"].shape == (20, 30) and out["pred"].dtype == torch.uint8  # (W, H) for MONAI Label
        assert set(torch.unique(out["pred"]).tolist()) == {expected}
        assert tuple(out["image"].meta["spatial_shape"]) == (20, 30)
        assert out["result"]["malignancy_probability"] == pytest.approx(float(torch.sigmoid(torch.tensor(logit))))


_RANK_SCRIPT = """
import json, sys
import torch
import torch.distributed as dist
from monai.bundle import ConfigParser

rank, pg_file, cache_dir, bundle = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
dist.init_process_group("gloo", init_method="file://" + pg_file, rank=rank, world_size=2)
parser = ConfigParser()
parser.read_config([bundle + "/configs/" + n for n in ("train.yaml", "multi_gpu_train.yaml", "smoke.yaml")])
parser.update({"bundle_root": bundle, "phantom#cache_dir": cache_dir})
names = lambda handlers: [type(h).__name__ for h in handlers or []]
sampler = parser.get_parsed_content("validate#dataloader").sampler
print(json.dumps({
    "train": names(parser.get_parsed_content("train#trainer#train_handlers")),
    "pretrain": names(parser.get_parsed_content("pretrain#trainer#train_handlers")),
    "validate": names(parser.get_parsed_content("validate#evaluator#val_handlers")),
    "network": type(parser.get_parsed_content("network")).__name__,
    "val_sampler": [type(sampler).__name__, len(sampler)],
}))
dist.destroy_process_group()
"""


def test_multi_gpu_train_keeps_the_lr_schedule_on_every_rank(smoke, tmp_path):
    """multi_gpu_train.yaml merged on train.yaml (and smoke.yaml) parses in a real 2-process gloo
    group: rank 1 keeps the LrScheduleHandler and the (collective) ValidationHandler and loses only
    logging / saving; the validation set is split between the ranks."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    args = [str(tmp_path / "pg"), str(smoke[0] / "phantoms"), str(BUNDLE)]
    procs = [
        subprocess.Popen([sys.executable, "-c", _RANK_SCRIPT, str(rank), *args], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for rank in (0, 1)
    ]  # fmt: skip
    outputs = [proc.communicate(timeout=300) for proc in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-3000:]
    rank0, rank1 = (json.loads(out.strip().splitlines()[-1]) for out, _ in outputs)
    # the resume handlers run on every rank (the saver writes on rank 0 only, after gathering every rank's random streams)
    assert rank0["train"] == ["ResumeCheckpointLoader", "EndOfRunValidationHandler", "StatsHandler", "LrScheduleHandler", "ResumeCheckpointSaver"]
    assert rank1["train"] == ["ResumeCheckpointLoader", "EndOfRunValidationHandler", "LrScheduleHandler", "ResumeCheckpointSaver"]
    assert rank0["pretrain"] == ["ResumeCheckpointLoader", "StatsHandler", "ResumeCheckpointSaver"]
    assert rank1["pretrain"] == ["ResumeCheckpointLoader", "ResumeCheckpointSaver"]
    assert rank0["validate"] == ["StatsHandler", "CheckpointSaver"] and rank1["validate"] == []
    assert rank0["network"] == rank1["network"] == "DistributedDataParallel"
    n_validation = len(json.loads(next((smoke[0] / "phantoms").glob("roi-n20-s0-*/datalist.json")).read_text())["validation"])
    assert rank0["val_sampler"][0] == "DistributedSampler" and rank0["val_sampler"][1] + rank1["val_sampler"][1] == n_validation


def test_plugin_tensor_loss_is_rejected_when_the_config_is_built():
    """`--loss#name asymmetric_focal` (the extras plugin's loss, family "tensor") cannot take DAB-Net's
    dict targets: building `loss` raises the registry's IncompatibleComponentError naming it."""
    from monai_mammo.registry import IncompatibleComponentError, list_components

    assert "asymmetric_focal" in list_components()["loss"]
    parser = parser_of("train.yaml", **{"loss#name": "asymmetric_focal"})
    with pytest.raises(Exception) as info:
        parser.get_parsed_content("loss")
    error = info.value
    while error is not None and not isinstance(error, IncompatibleComponentError):
        error = error.__cause__
    assert isinstance(error, IncompatibleComponentError), repr(info.value)
    assert "'asymmetric_focal'" in str(error) and "'tensor'" in str(error) and "'multitask'" in str(error)
    assert "disentangle" in str(error)  # the usable ones are listed


def test_third_party_compositor_swapped_in_by_one_override(smoke):
    """`--compositor#name max_intensity` (extras plugin) builds, composites, and trains the bundle."""
    from monai_mammo.transforms.compositing import RandMassCompositingd

    compositor = parser_of("train.yaml", **{"compositor#name": "max_intensity"}).get_parsed_content("compositor")
    assert type(compositor).__name__ == "MaxIntensityBlend"
    masses = [{"image": torch.rand(1, 32, 32), "label": 1, "box": [8, 8, 24, 24]}]
    glands = [{"image": torch.zeros(1, 32, 32)}]
    out = RandMassCompositingd("image", masses, glands, ratio=1.0, compositor=compositor)({"image": torch.rand(1, 32, 32), "label": 0})
    composite, _ = compositor(out[1]["x_m"], out[1]["x_g"], [8, 8, 24, 24])  # max(x_g, alpha * x_m)
    torch.testing.assert_close(out[1]["image"], composite, rtol=0, atol=0)
    assert not torch.allclose(composite, out[1]["x_m"]) and bool((composite >= out[1]["x_g"]).all())
    tmp, _ = smoke
    out = run_bundle(
        ["training", "--config_file", config_files("train.yaml", "smoke.yaml"), *dirs(tmp / "max"),
         "--phantom#cache_dir", str(tmp / "phantoms"), "--compositor#name", "max_intensity"]
    )  # fmt: skip
    assert "DAB-Net best validation AUC" in out.stdout


def _repeat_parser(argv: list[str]):
    """The config a repeat would train: the files and overrides of repeat_training_command."""
    import ast

    from monai.bundle import ConfigParser

    from monai_mammo.engines.dabnet import repeat_training_command

    cmd = repeat_training_command(argv, seed=3, ckpt_dir="/tmp/unused")
    parser = ConfigParser()
    parser.read_config([str(REPO / f) for f in ast.literal_eval(cmd[cmd.index("--config_file") + 1])])
    overrides = cmd[cmd.index("--config_file") + 2 :]
    parser.update({"bundle_root": str(BUNDLE), **{k[2:]: v for k, v in zip(overrides[::2], overrides[1::2])}})
    return parser


@pytest.mark.parametrize("ablation", sorted(p.name for p in (CONFIGS / "ablations").glob("*.yaml")))
def test_evaluation_repeats_retrain_the_ablation_itself(ablation):
    """A repeat of `evaluate.yaml` on an ablation trains that ablation: e.g. `simple` gets its fixed
    0.5 blend (whose compositor takes no sigma_scale), `erm` its network without decoders."""
    from monai.bundle import ConfigParser

    files = config_files("train.yaml", f"ablations/{ablation}", "evaluate.yaml")
    parser = _repeat_parser(["/m/monai/bundle/__main__.py", "run", "evaluating", "--config_file", files, "--eval#repeats", "2"])
    ablation_config = ConfigParser.load_config_file(str(CONFIGS / "ablations" / ablation))
    for key, value in ablation_config.items():
        assert parser[key] == value
    compositor = parser.get_parsed_content("compositor")
    assert parser.get_parsed_content("network_def").decoders == ablation_config.get("decoders", "both")
    if ablation == "simple.yaml":
        assert type(compositor).__name__ == "FixedWeightBlend" and compositor.mass_weight == 0.5


@pytest.mark.slow
def test_evaluation_repeats_end_to_end(tmp_path):
    """`--eval#repeats 2` on the `simple` ablation: two retrainings, mean and std in metrics.json."""
    files = config_files("train.yaml", "ablations/simple.yaml", "evaluate.yaml", "smoke.yaml")
    run_bundle(["evaluating", "--config_file", files, *dirs(tmp_path), "--eval#repeats", "2"])
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["repeats"] == 2 and len(metrics["overall"]["aucs"]) == 2
    assert [r["seed"] for r in metrics["runs"]] == [0, 1]
    assert all(Path(r["checkpoint"]).is_file() for r in metrics["runs"])
