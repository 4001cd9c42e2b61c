"""Production paths of every bundle (issue 12): torchrun training and evaluation on 2 CPU processes
(gloo), resume after ``kill -9``, TorchScript export through ``monai.bundle ckpt_export``.

Subprocess tests run the bundles' smoke configs (each well under a minute on one core per process);
the DAB-Net kill-and-resume check (three trainings writing 250 MB checkpoints of a ResNet-34) is
``slow``. The library parts (``monai_mammo.handlers.resume``, ``monai_mammo.distributed``) are
tested here too.
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
from ignite.engine import Engine

from monai_mammo.checkpoints import NetworkSpec, load_network, records_init_args, save_network
from monai_mammo.distributed import check_replicas_identical, gather_interleaved
from monai_mammo.handlers.resume import RandomStates, ResumeCheckpointLoader, ResumeCheckpointSaver

REPO = Path(__file__).resolve().parents[1]
BUNDLES = ("asn", "dabnet")
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", PYTHONPATH=str(REPO))
KILL_YAML = """\
+imports:
  - $from ignite.engine import Events
kill_at_iteration: 1000000
+initialize:
  - "$@train#trainer.add_event_handler(Events.ITERATION_COMPLETED(once=@kill_at_iteration), lambda engine: os.kill(os.getpid(), 9))"
"""


def _configs(bundle: str, *names: str) -> str:
    return "[" + ",".join(f"'bundles/{bundle}/configs/{n}'" for n in names) + "]"


def _dirs(work: Path, phantoms: Path) -> list[str]:
    return ["--ckpt_dir", str(work / "models"), "--output_dir", str(work / "eval"), "--log_dir", str(work / "runs"),
            "--phantom#cache_dir", str(phantoms)]  # fmt: skip


def _run(command: list[str], expect_rc: int = 0) -> str:
    proc = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == expect_rc, out[-4000:]
    return out


def _bundle(*args: str) -> list[str]:
    return [sys.executable, "-m", "monai.bundle", *args]


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "monai.bundle", *args]


def _flat(obj, prefix=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _flat(v, f"{prefix}/{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _flat(v, f"{prefix}/{i}")
    else:
        yield prefix, obj


def _differing(path_a: Path, path_b: Path) -> list[str]:
    """Entries of two checkpoints that are not bit-identical (tensors: ``torch.equal``)."""
    a = dict(_flat(torch.load(path_a, weights_only=True)))
    b = dict(_flat(torch.load(path_b, weights_only=True)))
    assert a.keys() == b.keys()
    return [k for k in a if not (torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k])]


# --- the library parts ------------------------------------------------------------------------------
@records_init_args()
class _Net(torch.nn.Module):
    def __init__(self, width: int = 2) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def _resume_items(net: torch.nn.Module) -> dict:
    return {"network": net, "network_spec": NetworkSpec(net), "optimizer": torch.optim.SGD(net.parameters(), lr=0.1)}


def _train_engine(net: torch.nn.Module, optimizer: torch.optim.Optimizer) -> Engine:
    def step(engine, batch):
        optimizer.zero_grad()
        loss = net(batch).square().mean()
        loss.backward()
        optimizer.step()
        return loss.item()

    return Engine(step)


def test_resume_checkpoint_round_trip_continues_where_it_stopped(tmp_path: Path) -> None:
    """3 epochs in one go == 1 epoch, a new process-like start, --resume, 2 more epochs (bit for bit)."""
    data = [torch.full((1, 2), float(i)) for i in range(3)]

    def run(epochs: int, path: Path, resume: bool, seed: int = 0) -> torch.nn.Module:
        torch.manual_seed(seed)
        items = _resume_items(_Net())
        engine = _train_engine(items["network"], items["optimizer"])
        ResumeCheckpointLoader(path, items, enabled=resume).attach(engine)
        ResumeCheckpointSaver(path, items).attach(engine)
        engine.run(data, max_epochs=epochs)
        return items["network"]

    straight = run(3, tmp_path / "a.pt", resume=False)
    run(1, tmp_path / "b.pt", resume=False)
    resumed = run(3, tmp_path / "b.pt", resume=True, seed=1)  # other init: the checkpoint must win
    assert torch.equal(straight.linear.weight, resumed.linear.weight)
    assert torch.load(tmp_path / "b.pt", weights_only=True)["trainer"]["iteration"] == 9  # 3 epochs x 3


def test_resume_errors_name_the_file_and_keep_the_good_checkpoint(tmp_path: Path) -> None:
    good = tmp_path / "checkpoint.pt"
    items = _resume_items(_Net())
    ResumeCheckpointSaver(good, items)(_train_engine(items["network"], items["optimizer"]))
    before = good.read_bytes()

    def start(path: Path, net: torch.nn.Module, **kwargs) -> None:
        items = _resume_items(net)
        engine = _train_engine(items["network"], items["optimizer"])
        ResumeCheckpointLoader(path, items, enabled="true", **kwargs).attach(engine)
        ResumeCheckpointSaver(path, items).attach(engine)
        engine.run([torch.ones(1, net.linear.in_features)], max_epochs=1)

    with pytest.raises(FileNotFoundError, match="missing.pt"):
        start(tmp_path / "missing.pt", _Net())
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(before[: len(before) // 2])
    with pytest.raises(ValueError, match="corrupt.pt: not a readable checkpoint"):
        start(corrupt, _Net())
    with pytest.raises(ValueError, match=r"checkpoint.pt.*width: checkpoint 2 vs network 3"):
        start(good, _Net(width=3))
    assert good.read_bytes() == before  # never overwritten by a failed resume
    start(tmp_path / "fresh.pt", _Net(), required=False)  # a later stage's file may be missing
    assert (tmp_path / "fresh.pt").is_file()


def test_random_states_restore_transforms_and_global_generators() -> None:
    import random

    import monai

    flip = monai.transforms.RandFlipd(keys="image", prob=0.5)
    chain = monai.transforms.Compose([monai.transforms.Compose([flip])]).set_random_state(seed=3)
    states = RandomStates([chain])
    assert flip in states.transforms  # found inside nested Compose chains
    saved = states.state_dict()

    def draws():
        return flip.R.rand(), torch.rand(1).item(), np.random.rand(), random.random()

    first = draws()
    states.load_state_dict(saved)
    assert draws() == first
    with pytest.raises(ValueError, match="random states of 3 transforms, this run has 0"):  # both Compose are Randomizable too
        RandomStates([]).load_state_dict(saved)


def test_distributed_helpers_outside_a_process_group() -> None:
    assert check_replicas_identical(torch.nn.Linear(2, 1)) == 0
    out = gather_interleaved({"prob": [0.5, 0.25]})
    assert out["prob"].tolist() == [0.5, 0.25]


# --- the bundles under torchrun ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("phantoms")


@pytest.fixture(scope="module")
def ddp_trained(tmp_path_factory: pytest.TempPathFactory, phantoms: Path) -> dict[str, tuple[Path, str]]:
    """Each bundle's smoke training under torchrun, 2 CPU processes (gloo)."""
    runs = {}
    for bundle in BUNDLES:
        work = tmp_path_factory.mktemp(f"{bundle}_ddp")
        out = _run(_torchrun("run", "training", "--config_file", _configs(bundle, "train.yaml", "multi_gpu_train.yaml", "smoke.yaml"),
                             *_dirs(work, phantoms)))  # fmt: skip
        runs[bundle] = (work, out)
    return runs


@pytest.mark.parametrize("bundle", BUNDLES)
def test_torchrun_training_on_two_cpu_processes(bundle: str, ddp_trained) -> None:
    work, out = ddp_trained[bundle]
    assert out.count("parameters identical on 2 ranks") == 2  # checked on each rank
    models = work / "models"
    expected = {"asn": {"model.pt", "stages/fpr.pt", "resume/checkpoint.pt"},
                "dabnet": {"model.pt", "resume/checkpoint.pt", "resume/pretrain_checkpoint.pt"}}[bundle]
    # one of each: rank 0 saves, no temporary left; only model.pt directly in models/ (MONAI Label's choice)
    assert {p.relative_to(models).as_posix() for p in models.rglob("*") if p.is_file()} == expected
    if bundle == "asn":
        assert out.count("FPR stage: done") == 1  # rank 0 alone
        assert torch.load(models / "resume" / "checkpoint.pt", weights_only=True)["fpr_stage"] == {"done": True}
    # the checkpoint loads in the single-process inference config (its network_spec, strict weights)
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(f"bundles/{bundle}/configs/inference.yaml")
    parser["ckpt_dir"] = str(models)
    network = parser.get_parsed_content("network")
    reference = load_network(models / "model.pt")
    assert all(torch.equal(a, b) for a, b in zip(network.state_dict().values(), reference.state_dict().values()))


@pytest.mark.parametrize("bundle", BUNDLES)
def test_distributed_evaluation_equals_single_process(bundle: str, ddp_trained, phantoms: Path, tmp_path: Path) -> None:
    models = ddp_trained[bundle][0] / "models"
    files = ["train.yaml", "evaluate.yaml", "smoke.yaml"]
    metrics = {}
    for name, command in (("one", _bundle), ("two", _torchrun)):
        config = files if name == "one" else files[:2] + ["multi_gpu_evaluate.yaml", "smoke.yaml"]
        _run(command("run", "evaluating", "--config_file", _configs(bundle, *config), "--ckpt_dir", str(models),
                     "--output_dir", str(tmp_path / name), "--log_dir", str(tmp_path / "runs"), "--phantom#cache_dir", str(phantoms)))  # fmt: skip
        metrics[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    # same weights, same images: counts, recalls and AUCs exactly (areas / AUCs within 1e-6 would do)
    assert metrics["one"] == metrics["two"]


# --- resume after kill -9 ---------------------------------------------------------------------------
def _kill_and_resume(bundle: str, tmp_path: Path, phantoms: Path, epochs: list[str], kill_at: int) -> None:
    (tmp_path / "kill.yaml").write_text(KILL_YAML)
    files = _configs(bundle, "train.yaml", "smoke.yaml")[:-1] + f",'{tmp_path / 'kill.yaml'}']"
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _run(_bundle("run", "training", "--config_file", files, *epochs, *_dirs(straight, phantoms)))
    _run(_bundle("run", "training", "--config_file", files, *epochs, *_dirs(resumed, phantoms), "--kill_at_iteration", str(kill_at)),
         expect_rc=-9)  # fmt: skip
    assert (resumed / "models" / "resume" / "checkpoint.pt").is_file()
    out = _run(_bundle("run", "training", "--config_file", files, *epochs, *_dirs(resumed, phantoms), "--resume", "true"))
    assert "resumed from" in out
    for name in sorted(p.relative_to(straight / "models") for p in (straight / "models").rglob("*.pt")):
        assert _differing(straight / "models" / name, resumed / "models" / name) == [], name


def test_asn_kill_and_resume_equals_uninterrupted_run(tmp_path: Path, phantoms: Path) -> None:
    """Killed (SIGKILL) in the middle of epoch 2 of 2 (2 iterations per epoch), resumed: the final
    checkpoint, the best model and the FPR stage's model are bit-identical to an uninterrupted run."""
    _kill_and_resume("asn", tmp_path, phantoms, ["--train#max_epochs", "2"], kill_at=3)


@pytest.mark.slow
def test_dabnet_kill_and_resume_equals_uninterrupted_run(tmp_path: Path, phantoms: Path) -> None:
    """Killed in the middle of stage-2 epoch 2 of 3 (2 iterations per epoch), resumed: bit-identical."""
    _kill_and_resume("dabnet", tmp_path, phantoms, ["--epochs", "3"], kill_at=3)


# --- export -----------------------------------------------------------------------------------------
EXPORTS = {  # bundle, net_id, checkpoint, traced input shape, network built for the checkpoint
    "asn_unet": ("asn", "network_def", "model.pt", [1, 1, 64, 64], "monai_mammo.networks.asn.AnomalySeparationUNet", {"channels": [4, 8, 16, 32]}),
    "asn_fpr": ("asn", "fpr_network_def", "stages/fpr.pt", [1, 1, 24, 24], "monai_mammo.networks.asn.FalsePositiveReductionClassifier",
                {"crop_size": 24, "input_size": 32}),
    "dabnet_classifier": ("dabnet", "network_def", "model.pt", [1, 1, 32, 32], "monai_mammo.networks.dabnet.DABNet",
                          {"decoder_channels": [4, 4, 4, 4, 4]}),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_ckpt_export_equals_eager(name: str, tmp_path: Path) -> None:
    """``python -m monai.bundle ckpt_export`` of the inference config (traced: see docs "Production")."""
    from monai_mammo.checkpoints import build_network

    bundle, net_id, ckpt, shape, target, kwargs = EXPORTS[name]
    torch.manual_seed(0)
    network = build_network({"_target_": target, **kwargs}).eval()
    models = tmp_path / "models"
    save_network(network, models / ckpt)
    if net_id == "fpr_network_def":
        save_network(build_network({"_target_": EXPORTS["asn_unet"][4], **EXPORTS["asn_unet"][5]}), models / "model.pt")
    ts = models / f"{Path(ckpt).stem}.ts"
    _run(_bundle("ckpt_export", net_id, "--filepath", str(ts), "--ckpt_file", str(models / ckpt), "--key_in_ckpt", "model",
                 "--meta_file", f"bundles/{bundle}/configs/metadata.json", "--config_file", f"bundles/{bundle}/configs/inference.yaml",
                 "--ckpt_dir", str(models), "--use_trace", "True", "--input_shape", str(shape)))  # fmt: skip
    exported = torch.jit.load(str(ts))
    image = torch.rand(2, *shape[1:], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = (exported(image) - load_network(models / ckpt)(image)).abs().max().item()
    assert diff <= 1e-5, diff
