"""monai_mammo.checkpoints: networks that carry their constructor arguments, strict loading with
errors that name the file, one state-dict unwrapping helper."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.utils import BlendMode

from monai_mammo import checkpoints
from monai_mammo.checkpoints import (
    NetworkSpec,
    build_network,
    load_checkpoint,
    load_network,
    load_network_weights,
    network_spec,
    records_init_args,
    save_network,
    unwrap_network,
    unwrap_state_dict,
)


@records_init_args("pretrained")
class TinyNet(torch.nn.Module):
    def __init__(self, in_features: int, out_features: int = 2, hidden: tuple = (4,), pretrained: str | None = None, **options):
        super().__init__()
        self.body = torch.nn.Linear(in_features, hidden[0])
        self.head = torch.nn.Linear(hidden[0], out_features)
        self.pretrained_was = pretrained

    def forward(self, x):
        return self.head(torch.relu(self.body(x)))


@pytest.fixture
def tests_may_be_built(monkeypatch):
    """Let build_network build classes of this test module (checkpoints may name only monai_mammo
    and monai.networks classes)."""
    monkeypatch.setattr(checkpoints, "ALLOWED_TARGET_PREFIXES", (*checkpoints.ALLOWED_TARGET_PREFIXES, f"{__name__}."))


# --- records_init_args, network_spec, build_network ----------------------------------------------


def test_records_init_args_keeps_what_was_passed_and_drops_the_named_ones():
    net = TinyNet(3, hidden=(5,), pretrained="/weights/imagenet.pt", mode=BlendMode.GAUSSIAN, scale=np.float64(0.5))
    assert net.pretrained_was == "/weights/imagenet.pt"  # the constructor still got it
    assert net.init_args == {"in_features": 3, "out_features": 2, "hidden": [5], "mode": "gaussian", "scale": 0.5}
    assert type(net.init_args["mode"]) is str and type(net.init_args["scale"]) is float
    assert network_spec(net) == {"_target_": f"{__name__}.TinyNet", "in_features": 3, "out_features": 2, "hidden": [5], "mode": "gaussian", "scale": 0.5}
    # a default passed explicitly is the same network
    assert network_spec(TinyNet(3)) == network_spec(TinyNet(3, out_features=2, hidden=(4,)))


def test_records_init_args_refuses_what_a_checkpoint_cannot_hold():
    with pytest.raises(TypeError, match="TinyNet: constructor argument of type Tensor cannot go into a checkpoint"):
        TinyNet(3, weights=torch.zeros(2))

    @records_init_args()
    class Star(torch.nn.Module):
        def __init__(self, *sizes):
            super().__init__()

    with pytest.raises(TypeError, match=r"Star: \*args cannot be recorded"):
        Star(1, 2)
    with pytest.raises(TypeError, match=r"records_init_args on Plain: no constructor argument named \['pretrainde'\]"):

        @records_init_args("pretrainde")
        class Plain(torch.nn.Module):
            def __init__(self, pretrained=None):
                super().__init__()


def test_network_spec_looks_through_data_parallel_and_needs_the_decorator():
    net = TinyNet(3)
    wrapped = torch.nn.DataParallel(net)
    assert unwrap_network(wrapped) is net and unwrap_network(net) is net
    assert network_spec(wrapped) == {"_target_": f"{__name__}.TinyNet", "in_features": 3, "out_features": 2, "hidden": [4]}
    with pytest.raises(TypeError, match=r"Linear does not record its constructor arguments \(use @records_init_args\)"):
        network_spec(torch.nn.Linear(2, 2))


def test_build_network_rebuilds_from_the_spec(tests_may_be_built):
    rebuilt = build_network(network_spec(TinyNet(3, out_features=1, hidden=(6,), pretrained="x.pt")))
    assert isinstance(rebuilt, TinyNet) and rebuilt.head.out_features == 1 and rebuilt.body.out_features == 6
    assert rebuilt.pretrained_was is None  # dropped: the trained weights supersede it
    unet = build_network({"_target_": "monai.networks.nets.BasicUNet", "spatial_dims": 2, "features": [4, 4, 4, 4, 4, 4]})
    assert type(unet).__name__ == "BasicUNet"


@pytest.mark.parametrize(
    "target, message",
    [
        ("os.system", r"network class 'os.system' is not under monai_mammo\., monai\.networks\."),
        ("torch.nn.Linear", r"network class 'torch.nn.Linear' is not under"),
        ("monai_mammo_evil.Net", r"is not under"),
        ("", r"network class '' is not under"),
        ("monai_mammo.registry.ComponentRegistry", r"'monai_mammo.registry.ComponentRegistry' is not a torch.nn.Module class"),
        ("monai_mammo.no_such_module.Net", r"is not a torch.nn.Module class"),
    ],
)
def test_build_network_refuses_other_code(target, message):
    with pytest.raises(ValueError, match=message):
        build_network({"_target_": target}, source="spec.pt")


# --- NetworkSpec as a CheckpointSaver / CheckpointLoader item -------------------------------------


def test_network_spec_item_round_trips_through_monai_checkpoint_handlers(tmp_path):
    from ignite.engine import Engine
    from monai.handlers import CheckpointLoader, CheckpointSaver

    net = TinyNet(3, hidden=(5,))
    engine = Engine(lambda engine, batch: None)
    saver = CheckpointSaver(save_dir=str(tmp_path), save_dict={"model": net, "network_spec": NetworkSpec(net)}, save_final=True)
    saver.attach(engine)
    engine.run([0], max_epochs=1)
    saved = sorted(tmp_path.glob("*.pt"))
    assert len(saved) == 1
    content = torch.load(saved[0], weights_only=True)
    assert content["network_spec"] == {"_target_": f"{__name__}.TinyNet", "in_features": 3, "out_features": 2, "hidden": [5]}

    same = TinyNet(3, hidden=(5,))
    CheckpointLoader(load_path=str(saved[0]), load_dict={"model": same, "network_spec": NetworkSpec(same)})(engine)
    assert torch.equal(same.body.weight, net.body.weight)

    other = TinyNet(3, hidden=(7,))
    with pytest.raises(ValueError, match=r"saved from a different network \(hidden: checkpoint \[5\] vs network \[7\]\)"):
        CheckpointLoader(load_path=str(saved[0]), load_dict={"network_spec": NetworkSpec(other), "model": other}, strict_shape=True)(engine)


def test_network_spec_mismatch_lists_every_differing_argument():
    with pytest.raises(ValueError) as excinfo:
        NetworkSpec(TinyNet(4, out_features=3)).load_state_dict({"_target_": f"{__name__}.TinyNet", "in_features": 3, "hidden": [4], "depth": 2})
    message = str(excinfo.value)
    assert "depth: checkpoint 2 vs network None" in message and "hidden" not in message
    assert "in_features: checkpoint 3 vs network 4" in message and "out_features: checkpoint None vs network 3" in message


# --- save / load ---------------------------------------------------------------------------------


def test_save_network_writes_weights_and_spec_atomically(tmp_path):
    net = TinyNet(3)
    path = save_network(torch.nn.DataParallel(net), tmp_path / "sub" / "model.pt", best_metric=0.75)
    assert path == str(tmp_path / "sub" / "model.pt")
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["model.pt"]  # no temporary file left
    content = torch.load(path, weights_only=True)
    assert set(content) == {"model", "network_spec", "best_metric"} and content["best_metric"] == 0.75
    assert set(content["model"]) == {"body.weight", "body.bias", "head.weight", "head.bias"}  # no DDP prefix
    assert content["network_spec"]["in_features"] == 3


def test_load_network_weights_is_strict_and_names_the_file(tmp_path):
    path = tmp_path / "linear.pt"
    torch.save({"model": torch.nn.Linear(2, 1).state_dict()}, path)
    loaded = load_network_weights(torch.nn.Linear(2, 1), path)
    assert torch.equal(loaded.weight, torch.load(path, weights_only=True)["model"]["weight"])
    with pytest.raises(ValueError, match=rf"(?s){path}: the weights do not fit Linear: .*size mismatch"):
        load_network_weights(torch.nn.Linear(3, 1), path)
    with pytest.raises(ValueError, match=rf"(?s){path}: the weights do not fit Sequential: .*Missing key"):
        load_network_weights(torch.nn.Sequential(torch.nn.Linear(2, 1)), path)
    # non-strict is allowed only when asked for
    partial = load_network_weights(torch.nn.Sequential(torch.nn.Linear(2, 1)), path, strict=False)
    assert isinstance(partial, torch.nn.Sequential)


def test_load_network_weights_checks_the_spec_of_a_decorated_network(tmp_path):
    path = save_network(TinyNet(3, hidden=(5,)), tmp_path / "model.pt")
    assert isinstance(load_network_weights(TinyNet(3, hidden=(5,)), path), TinyNet)
    with pytest.raises(ValueError, match=rf"{path}: the checkpoint was saved from a different network \(hidden: checkpoint \[5\] vs network \[8\]\)"):
        load_network_weights(TinyNet(3, hidden=(8,)), path)


def test_corrupt_and_missing_files_are_errors_naming_the_file(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError, match=rf"{garbage}: not a readable checkpoint"):
        load_network_weights(torch.nn.Linear(2, 1), garbage)
    truncated = tmp_path / "truncated.pt"
    save_network(TinyNet(3), truncated)
    truncated.write_bytes(truncated.read_bytes()[:100])
    with pytest.raises(ValueError, match=rf"{truncated}: not a readable checkpoint"):
        load_network(truncated)
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path / 'absent.pt'}: no trained model"):
        load_checkpoint(tmp_path / "absent.pt")


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": Evil()}, path)
    with pytest.raises(ValueError, match=rf"{path}: not a readable checkpoint \(UnpicklingError"):
        load_checkpoint(path)


def test_load_network_rebuilds_loads_strictly_and_evaluates(tmp_path, tests_may_be_built):
    net = TinyNet(3, hidden=(5,))
    path = save_network(net, tmp_path / "model.pt")
    loaded = load_network(path)
    assert isinstance(loaded, TinyNet) and not loaded.training
    x = torch.rand(2, 3)
    assert torch.equal(loaded(x), net(x))
    # a spec that does not fit the weights
    content = torch.load(path, weights_only=True)
    content["network_spec"]["hidden"] = [9]
    torch.save(content, tmp_path / "mismatch.pt")
    with pytest.raises(ValueError, match="mismatch.pt: the weights do not fit the network it names"):
        load_network(tmp_path / "mismatch.pt")


def test_load_network_refuses_a_target_outside_the_allowed_packages(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"model": torch.nn.Linear(2, 1).state_dict(), "network_spec": {"_target_": "torch.nn.Linear", "in_features": 2, "out_features": 1}}, path)
    with pytest.raises(ValueError, match=rf"{path}: network class 'torch.nn.Linear' is not under monai_mammo\., monai\.networks\."):
        load_network(path)
    old = tmp_path / "old.pt"
    torch.save({"model": torch.nn.Linear(2, 1).state_dict()}, old)
    with pytest.raises(ValueError, match=rf"{old}: the checkpoint carries no network_spec"):
        load_network(old)


def test_load_network_builds_monai_networks_from_a_spec(tmp_path):
    spec = {"_target_": "monai.networks.nets.BasicUNet", "spatial_dims": 2, "in_channels": 1, "out_channels": 1, "features": [4, 4, 4, 4, 4, 4]}
    unet = build_network(spec)
    torch.save({"model": unet.state_dict(), "network_spec": spec}, tmp_path / "unet.pt")
    loaded = load_network(tmp_path / "unet.pt")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), unet.state_dict().values()))


# --- unwrap_state_dict ---------------------------------------------------------------------------


def test_unwrap_state_dict_nested_and_ddp_prefix():
    weight = torch.ones(2)
    assert unwrap_state_dict({"w": weight}) == {"w": weight}
    assert unwrap_state_dict({"model": {"w": weight}, "network_spec": {"_target_": "x"}, "epoch": 3}) == {"w": weight}
    assert unwrap_state_dict({"state_dict": {"network": {"module.a.w": weight, "module.b": weight}}}) == {"a.w": weight, "b": weight}
    assert unwrap_state_dict({"model_state_dict": {"w": weight}}) == {"w": weight}
    # only a prefix that every key has is a wrapper's
    assert set(unwrap_state_dict({"module.a": weight, "b": weight})) == {"module.a", "b"}
    assert set(unwrap_state_dict({"module.a": weight}, strip_prefix="")) == {"module.a"}


@pytest.mark.parametrize("obj", [{}, {"model": {}}, [torch.ones(1)], {"w": 1.0}, {"optimizer": {"lr": 0.1}}])
def test_unwrap_state_dict_names_the_source_when_there_is_none(obj):
    with pytest.raises(ValueError, match=r"fpr\.pt: not a state dict"):
        unwrap_state_dict(obj, source="fpr.pt")


def test_module_lists_what_it_exports():
    assert set(checkpoints.__all__) >= {"records_init_args", "network_spec", "build_network", "NetworkSpec", "unwrap_state_dict", "load_network"}
    assert Path(checkpoints.__file__).name == "checkpoints.py"
