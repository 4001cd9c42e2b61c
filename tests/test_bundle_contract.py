"""What every bundle under ``bundles/`` must be (``shared/BUNDLES.md`` and the config conventions),
checked the same way for each: layout, run ids, MONAI's workflow properties, shared key names,
multi-GPU overrides, and training and inference agreeing on network and preprocessing.

A new bundle gets these checks by existing: the tests are parametrised over the folders.
"""

from __future__ import annotations

import ast
import collections
import json
import pydoc
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow
from monai.bundle.config_item import ComponentLocator
from monai.bundle.reference_resolver import ReferenceResolver

REPO = Path(__file__).resolve().parents[1]
BUNDLES_DIR = REPO / "bundles"
BUNDLES = sorted(p.name for p in BUNDLES_DIR.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))

CONFIG_FILES = ("train.yaml", "evaluate.yaml", "inference.yaml", "multi_gpu_train.yaml", "multi_gpu_evaluate.yaml", "smoke.yaml")

#: Workflow properties whose value may be None, and why. Any other property that is None fails.
TOLERATED_NONE = {
    "dataset_dir": "null selects the embedded phantom default (resolve_datalist); a real dataset is --dataset_dir DIR",
}

#: Handlers that ranks > 0 may drop under multi_gpu_train.yaml: they log, save or validate, and
#: change nothing in training. Every other handler (an lr schedule above all) must run on every rank.
RANK_ZERO_ONLY_HANDLERS = {
    "StatsHandler",
    "TensorBoardStatsHandler",
    "TensorBoardImageHandler",
    "MLFlowHandler",
    "ClearMLStatsHandler",
    "ClearMLImageHandler",
    "CheckpointSaver",
    "MetricsSaver",
    "ValidationHandler",
    "EndOfRunValidationHandler",
    "FROCReportHandler",
}

#: Handlers multi_gpu_train.yaml may add on every rank: checks that change nothing in training.
DISTRIBUTED_ONLY_HANDLERS = {"IdenticalReplicasCheck"}

#: ConfigComponent keys that are not constructor arguments
_NON_ARGUMENT_KEYS = {"_target_", "_desc_", "_requires_", "_disabled_", "_mode_"}

#: Transforms that only choose which keys a sample carries: training keeps its labels, inference
#: does not, and neither changes the image.
_KEY_SELECTION = {"monai.transforms.utility.dictionary.SelectItemsd", "monai.transforms.utility.dictionary.DeleteItemsd"}


@pytest.fixture(params=BUNDLES)
def bundle(request) -> Path:
    return BUNDLES_DIR / request.param


def _configs(bundle: Path, *names: str) -> list[str]:
    return [str(bundle / "configs" / name) for name in names]


def _parser(*files: str) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(list(files))
    return parser


def _missing_references(parser: ConfigParser) -> list[str]:
    """``id -> @ref`` for every reference in the raw config that names no item of it."""
    missing: list[str] = []

    def walk(value: Any, id: str) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(sub, f"{id}::{key}" if id else str(key))
        elif isinstance(value, list):
            for index, sub in enumerate(value):
                walk(sub, f"{id}::{index}" if id else str(index))
        elif isinstance(value, str) and "@" in value:
            resolved = ConfigParser.resolve_relative_ids(id, value)
            for ref in ReferenceResolver.match_refs_pattern(resolved):
                if ref not in parser:
                    missing.append(f"{id} -> @{ref}")

    walk(parser.get(), "")
    return missing


# --- layout ----------------------------------------------------------------------------------------


def test_layout(bundle):
    configs = bundle / "configs"
    missing = [name for name in CONFIG_FILES + ("metadata.json", "logging.conf") if not (configs / name).is_file()]
    missing += [name for name in ("docs/README.md", "LICENSE") if not (bundle / name).is_file()]
    missing += ["models/"] if not (bundle / "models").is_dir() else []
    assert not missing, f"bundle {bundle.name} lacks {missing}"
    metadata = json.loads((configs / "metadata.json").read_text())
    assert metadata.get("name") == bundle.name
    assert set(metadata.get("network_data_format", {})) >= {"inputs", "outputs"}
    # the user's literal command reads bundles/<name>/train.yaml: a link, so no config is written twice
    top = bundle / "train.yaml"
    assert top.is_symlink() and top.resolve() == (configs / "train.yaml").resolve()


def test_ablations_live_in_one_folder_and_parse_on_train(bundle):
    configs = bundle / "configs"
    flat = sorted(p.name for p in configs.glob("ablation*.yaml"))
    assert not flat, f"ablations go in configs/ablations/<name>.yaml, found {flat}"
    for ablation in sorted((configs / "ablations").glob("*.yaml")):
        parser = _parser(*_configs(bundle, "train.yaml"), str(ablation))
        assert not _missing_references(parser), (ablation.name, _missing_references(parser))


# --- run ids and shared key names ---------------------------------------------------------------


def test_run_ids(bundle):
    train = _parser(*_configs(bundle, "train.yaml"))
    assert isinstance(train.get("run"), list) and train.get("run"), "train.yaml needs a `run` list"
    assert train.get("training") in ("@run", "$@run"), "train.yaml: `training` must refer to `run` (MONAI Label uses `run`)"
    assert isinstance(train.get("initialize"), list) and isinstance(train.get("finalize"), list)
    evaluate = _parser(*_configs(bundle, "train.yaml", "evaluate.yaml"))
    assert evaluate.get("evaluating") in ("@run", "$@run")
    inference = _parser(*_configs(bundle, "inference.yaml"))
    assert inference.get("inferring") in ("@run", "$@run")


def test_shared_key_names(bundle):
    train = _parser(*_configs(bundle, "train.yaml"))
    absent = [k for k in ("bundle_root", "ckpt_dir", "output_dir", "log_dir", "device", "seed", "cpu_threads", "dataset_dir", "datalist", "phantom", "datalist_file") if k not in train]
    assert not absent, f"train.yaml lacks {absent}"
    assert "num_threads" not in train, "the key is cpu_threads in every bundle"
    assert train.get("bundle_root") == f"$mm_bundle.find_bundle_root('{bundle.name}')"
    assert train.get("datalist") is None, "datalist: a file path or null (the phantom default), never an expression"
    assert set(train.get("phantom")) >= {"kind", "cache_dir", "n", "seed"}
    assert re.sub(r"\s", "", train.get("datalist_file")) == "$mm_bundle.resolve_datalist(@dataset_dir,@datalist,@phantom)"
    assert any("set_cpu_threads(@cpu_threads)" in str(step) for step in train.get("initialize"))
    evaluate = _parser(*_configs(bundle, "train.yaml", "evaluate.yaml"))
    assert evaluate.get("eval_phantom#seed") == 1, "the held-out phantom seed is eval_phantom#seed, 1 by default"
    assert set(evaluate.get("eval_phantom")) >= {"kind", "cache_dir", "n", "seed"}
    assert re.sub(r"\s", "", evaluate.get("eval_datalist_file")) == "$mm_bundle.resolve_datalist(@dataset_dir,@datalist,@eval_phantom)"
    inference = _parser(*_configs(bundle, "inference.yaml"))
    absent = [k for k in ("bundle_root", "ckpt_dir", "output_dir", "device", "cpu_threads", "input_path") if k not in inference]
    assert not absent, f"inference.yaml lacks {absent} (input_path: a file, a folder, a datalist or a list, in every bundle)"


def test_configs_hold_no_file_handles_or_string_switch_factories(bundle):
    for path in sorted((bundle / "configs").rglob("*.yaml")):
        text = path.read_text()
        assert not re.search(r"\bopen\(", text), f"{path.name}: no file handles in YAML (read files in the library)"
        for factory in ("build_lr_scheduler", "build_fpr_optimizer", "engines.lr_schedule", "bundle_paths"):
            assert factory not in text, f"{path.name}: {factory} is gone; use _target_ objects"


def test_optimisers_and_schedulers_are_target_objects(bundle):
    parser = _parser(*_configs(bundle, "train.yaml"))
    found: list[str] = []

    def resolve(value: Any) -> Any:
        while isinstance(value, str) and re.fullmatch(r"@[\w#:]+", value):
            value = parser.get(value[1:])
        return value

    def walk(value: Any, id: str) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                sub_id = f"{id}#{key}" if id else str(key)
                if key in ("optimizer", "lr_scheduler"):
                    found.append(sub_id)
                    target = resolve(sub)
                    assert isinstance(target, dict) and "_target_" in target, f"{sub_id} must be a _target_ object, got {sub!r}"
                walk(sub, sub_id)
        elif isinstance(value, list):
            for index, sub in enumerate(value):
                walk(sub, f"{id}#{index}")

    walk(parser.get(), "")
    assert any(f.endswith("optimizer") for f in found), "no optimizer found in train.yaml"


@pytest.mark.parametrize("extra", [(), ("smoke.yaml",), ("evaluate.yaml",), ("evaluate.yaml", "smoke.yaml"), ("multi_gpu_train.yaml",)], ids=lambda e: "+".join(e) or "alone")
def test_every_reference_names_an_item(bundle, extra):
    parser = _parser(*_configs(bundle, "train.yaml", *extra))
    assert not _missing_references(parser)


def test_inference_references_name_items(bundle):
    assert not _missing_references(_parser(*_configs(bundle, "inference.yaml")))


# --- MONAI workflow properties --------------------------------------------------------------------


def _property_values(workflow: ConfigWorkflow) -> dict[str, Any]:
    """The value of every property whose config id is present (required ones always)."""
    values = {}
    for name, prop in workflow.properties.items():
        prop_id = prop["id"]
        if prop.get("required") or prop_id in workflow.parser:
            values[name] = getattr(workflow, name)
    return values


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _outputs_to(tmp_path: Path) -> dict[str, str]:
    return {"ckpt_dir": str(tmp_path / "models"), "output_dir": str(tmp_path / "eval"), "log_dir": str(tmp_path / "runs")}


def test_train_workflow_properties_with_smoke(bundle, tmp_path, restore_threads):
    workflow = ConfigWorkflow(
        config_file=_configs(bundle, "train.yaml", "smoke.yaml"),
        meta_file=str(bundle / "configs" / "metadata.json"),
        logging_file=False,
        workflow_type="train",
        **_outputs_to(tmp_path),
    )
    workflow.initialize()
    try:
        assert workflow.check_properties() == []
        none = sorted(name for name, value in _property_values(workflow).items() if value is None and name not in TOLERATED_NONE)
        assert not none, f"train properties that are None: {none} (tolerate them in TOLERATED_NONE with a reason, or set them)"
        assert workflow.max_epochs >= 1
    finally:
        workflow.finalize()


def _networks_training_saves(bundle: Path, ckpt_dir: Path) -> dict[str, torch.nn.Module]:
    """Write, into ``ckpt_dir``, a checkpoint of every network train.yaml saves (untrained, default
    sizes, with its network spec, as training writes it) and return them by file name.

    Found in the config: each ``CheckpointSaver`` (its ``save_dict#model`` under its
    ``key_metric_filename`` / ``final_filename``) and each ``monai_mammo.checkpoints.save_network``
    (the ``network`` beside it, e.g. a cascade stage's, under its ``path``).
    """
    from monai_mammo.checkpoints import save_network

    parser = _parser(*_configs(bundle, "train.yaml"))
    parser["device"] = "$torch.device('cpu')"
    parser["ckpt_dir"] = str(ckpt_dir)
    to_save: dict[str, str] = {}

    def walk(value: Any, id: str, parent: str) -> None:
        if isinstance(value, dict):
            target = str(value.get("_target_", ""))
            if target.split(".")[-1] == "CheckpointSaver":
                filename = value.get("key_metric_filename") or value.get("final_filename")
                model = (value.get("save_dict") or {}).get("model")
                if filename and isinstance(model, str) and re.fullmatch(r"@[\w#:]+", model):
                    to_save[str(Path(parser.get_parsed_content(f"{id}#save_dir")) / filename)] = model[1:]
            elif target == "monai_mammo.checkpoints.save_network":
                to_save[str(parser.get_parsed_content(f"{id}#path"))] = f"{parent}#network"
            for key, sub in value.items():
                walk(sub, f"{id}#{key}" if id else str(key), id)
        elif isinstance(value, list):
            for index, sub in enumerate(value):
                walk(sub, f"{id}#{index}", id)

    walk(parser.get(), "", "")
    saved = {}
    for path, network_id in sorted(to_save.items()):
        network = parser.get_parsed_content(network_id)
        network = network() if callable(network) and not isinstance(network, torch.nn.Module) else network  # _mode_: callable
        assert ckpt_dir in Path(path).parents, f"{path}: training saves networks under ckpt_dir"
        save_network(network, path)
        saved[Path(path).name] = network
    assert "model.pt" in saved, f"train.yaml saves no models/model.pt (MONAI Label loads it); found {sorted(saved)}"
    # MONAI Label offers models/*.pt and, when a request names none, loads the shortest name: any
    # other network's file directly in ckpt_dir could be loaded into network_def (a subfolder is safe)
    direct = sorted(Path(p).name for p in to_save if Path(p).parent == ckpt_dir)
    assert direct == ["model.pt"], f"only model.pt may lie directly in ckpt_dir (second stages: a subfolder), found {direct}"
    return saved


def test_infer_workflow_properties_and_the_network_training_saves(bundle, tmp_path, restore_threads):
    # inference builds its networks from the checkpoints training writes into ckpt_dir, or from
    # its own network_def: either way it must be the network train.yaml trains
    inference = _parser(*_configs(bundle, "inference.yaml"))
    assert "ckpt_dir" in inference and "dataset_dir" in inference, "inference.yaml reads its models from ckpt_dir"
    trained = _networks_training_saves(bundle, tmp_path / "models")["model.pt"]
    workflow = ConfigWorkflow(
        config_file=_configs(bundle, "inference.yaml"),
        meta_file=str(bundle / "configs" / "metadata.json"),
        logging_file=False,
        workflow_type="infer",
        **{**_outputs_to(tmp_path), "dataset#data": [], "device": "$torch.device('cpu')"},  # as MONAI Label overrides it
    )
    workflow.initialize()
    try:
        assert workflow.check_properties() == []
        values = _property_values(workflow)
        none = sorted(name for name, value in values.items() if value is None and name not in TOLERATED_NONE)
        assert not none, f"infer properties that are None: {none} (tolerate them in TOLERATED_NONE with a reason, or set them)"
        network = values["network_def"]
        assert type(network) is type(trained)
        # the app loads model.pt into network_def non-strictly: other weights must be an error naming the file
        with pytest.raises(ValueError, match=r"model\.pt"):
            network.load_state_dict({}, strict=False)
        assert {k: v.shape for k, v in network.state_dict().items()} == {k: v.shape for k, v in trained.state_dict().items()}
    finally:
        workflow.finalize()


# --- multi-GPU ------------------------------------------------------------------------------------


def test_multi_gpu_train_parses_merged_on_train(bundle):
    parser = _parser(*_configs(bundle, "train.yaml", "multi_gpu_train.yaml"))
    parser.parse()
    for key in ("device", "network", "train#trainer", "train#handlers", "train#trainer#train_handlers"):
        assert parser.get(key) is not None, key
    handlers = str(parser.get("train#trainer#train_handlers")) + str(parser.get("validate#evaluator#val_handlers"))
    assert not re.search(r"handlers\s*\[", handlers), "never slice handler lists by index: the order is not a contract"


def test_multi_gpu_evaluate_shards_without_duplicates(bundle):
    """multi_gpu_evaluate.yaml (merged on train.yaml and evaluate.yaml) gives the evaluation loader a
    DistributedSampler with even_divisible false and shuffle false (padded duplicates would count
    twice; the order is the single-process one), and starts gloo without CUDA."""
    parser = _parser(*_configs(bundle, "train.yaml", "evaluate.yaml", "multi_gpu_evaluate.yaml"))
    parser.parse()
    flat = ConfigParser.load_config_file(str(bundle / "configs" / "multi_gpu_evaluate.yaml"))
    samplers = [k for k in flat if k.endswith("#sampler") and "#dataloader#" not in k]
    assert samplers, "multi_gpu_evaluate.yaml must give the evaluation loader a DistributedSampler"
    for key in samplers:
        assert parser[key]["_target_"] == "DistributedSampler", key
        assert parser[key]["even_divisible"] is False and parser[key]["shuffle"] is False, key
        assert parser[key.replace("#sampler", "#dataloader#sampler")].replace("::", "#") == "@" + key
    assert "gloo" in str(parser["initialize"]) and "nccl" in str(parser["initialize"])
    assert "destroy_process_group" in str(parser["finalize"])


class _PassThroughDDP(torch.nn.Module):
    """Stands in for DistributedDataParallel where no process group exists: wraps, never communicates."""

    def __init__(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)


@pytest.fixture
def fake_two_rank_process_group(monkeypatch):
    """torch.distributed answering as a 2-rank group (rank chosen by the test), DDP a pass-through."""
    import torch.distributed as dist

    state = {"rank": 0}
    # is_initialized stays False: ignite's handlers would otherwise query the (absent) backend
    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda *a, **k: state["rank"])
    monkeypatch.setattr(dist, "get_world_size", lambda *a, **k: 2)
    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", _PassThroughDDP)
    return state


def _multi_gpu_parser(bundle: Path, tmp_path: Path) -> ConfigParser:
    parser = _parser(*_configs(bundle, "train.yaml", "multi_gpu_train.yaml", "smoke.yaml"))
    parser["device"] = "$torch.device('cpu')"  # the only change: no GPU here
    for key, value in _outputs_to(tmp_path).items():
        parser[key] = value
    return parser


def _handler_types(parser: ConfigParser, id: str) -> list[str]:
    return [type(h).__name__ for h in parser.get_parsed_content(id) or []]


def _rank_selected_sections(bundle: Path) -> list[str]:
    """Sections ``S`` whose ``S#trainer#train_handlers`` multi_gpu_train.yaml changes (``train``,
    and e.g. a pretraining stage)."""
    single = _parser(*_configs(bundle, "train.yaml"))
    multi = _parser(*_configs(bundle, "train.yaml", "multi_gpu_train.yaml"))
    sections = []
    for section, content in multi.get().items():
        if isinstance(content, dict) and f"{section}#handlers" in multi and f"{section}#trainer#train_handlers" in multi:
            if multi.get(f"{section}#trainer#train_handlers") != single.get(f"{section}#trainer#train_handlers"):
                sections.append(section)
    return sections


def test_multi_gpu_ranks_above_zero_keep_every_handler_that_changes_training(bundle, tmp_path, fake_two_rank_process_group):
    sections = _rank_selected_sections(bundle)
    assert "train" in sections, "multi_gpu_train.yaml must choose train#trainer#train_handlers per rank"
    parser = _multi_gpu_parser(bundle, tmp_path)
    for section in sections:
        fake_two_rank_process_group["rank"] = 0
        parser.parse(reset=True)
        all_handlers = _handler_types(parser, f"{section}#handlers")
        rank0 = [h for h in _handler_types(parser, f"{section}#trainer#train_handlers") if h not in DISTRIBUTED_ONLY_HANDLERS]
        assert collections.Counter(rank0) == collections.Counter(all_handlers), f"{section}: rank 0 runs every handler"
        fake_two_rank_process_group["rank"] = 1
        parser.parse(reset=True)
        rank1 = collections.Counter(h for h in _handler_types(parser, f"{section}#trainer#train_handlers") if h not in DISTRIBUTED_ONLY_HANDLERS)
        needed = collections.Counter(h for h in all_handlers if h not in RANK_ZERO_ONLY_HANDLERS)
        lost = sorted((needed - rank1).elements())
        assert not lost, f"{section}: ranks > 0 lose {lost}: every rank must step the same way"
        assert not rank1 - collections.Counter(all_handlers)


def test_multi_gpu_network_is_the_network_train_builds(bundle, tmp_path, fake_two_rank_process_group):
    # same construction (head initialisation included): same weights from the same seed
    single = _parser(*_configs(bundle, "train.yaml", "smoke.yaml"))
    single["device"] = "$torch.device('cpu')"
    torch.manual_seed(0)
    expected = single.get_parsed_content("network")
    multi = _multi_gpu_parser(bundle, tmp_path)
    torch.manual_seed(0)
    network = multi.get_parsed_content("network")
    network = network.module if isinstance(network, _PassThroughDDP) else network
    assert type(network) is type(expected)
    differ = [k for k, v in expected.state_dict().items() if not torch.equal(v, network.state_dict()[k])]
    assert not differ, f"multi_gpu_train.yaml builds the network differently from train.yaml: {differ[:5]}"


# --- preprocessing: training and inference agree ---------------------------------------------------


def _class_path(target: str) -> str:
    """``module.Class`` of a ``_target_``, short MONAI names located the way MONAI does."""
    if "." in target:
        obj = pydoc.locate(target)
    else:
        module = ComponentLocator().get_component_module_name(target)
        module = module[0] if isinstance(module, list) else module
        obj = pydoc.locate(f"{module}.{target}") if module else None
    return f"{obj.__module__}.{obj.__qualname__}" if obj is not None else target


class _Unresolved(str):
    """An expression kept as written (it is compared as text)."""


def _resolve_plain(parser: ConfigParser, value: Any, depth: int = 0) -> Any:
    """The raw config ``value`` with references to plain values substituted, lists concatenated by
    ``+`` in an expression evaluated, and a conditional on plain values decided; anything else is
    kept as the text it is."""
    if depth > 20:
        raise RecursionError(f"references nest too deep at {value!r}")
    if isinstance(value, dict):
        return {k: _resolve_plain(parser, v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_plain(parser, v, depth + 1) for v in value]
    if not isinstance(value, str):
        return value
    if re.fullmatch(r"@[\w#:]+", value):
        return _resolve_plain(parser, parser.get(value[1:]), depth + 1)
    if not value.startswith("$"):
        return value
    refs = {}

    def placeholder(match: re.Match) -> str:
        name = f"__ref{len(refs)}__"
        refs[name] = match.group(0)[1:]
        return name

    expression = re.sub(r"@[\w#:]+", placeholder, value[1:])
    try:
        tree = ast.parse(expression.strip(), mode="eval").body
    except SyntaxError:
        return _Unresolved(value)

    def evaluate(node: ast.AST) -> Any:
        if isinstance(node, ast.Name) and node.id in refs:
            return _resolve_plain(parser, parser.get(refs[node.id]), depth + 1)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.List):
            return [evaluate(e) for e in node.elts]
        if isinstance(node, ast.Dict) and all(k is not None for k in node.keys):
            return {evaluate(k): evaluate(v) for k, v in zip(node.keys, node.values)}
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = evaluate(node.left), evaluate(node.right)
            if isinstance(left, list) and isinstance(right, list):
                return left + right
        if isinstance(node, ast.IfExp):
            test = evaluate(node.test)
            if isinstance(test, (bool, int, type(None))) and not isinstance(test, _Unresolved):
                return evaluate(node.body) if test else evaluate(node.orelse)
        raise ValueError("not a plain expression")

    try:
        return evaluate(tree)
    except ValueError:
        return _Unresolved(value)


def _image_transforms(parser: ConfigParser) -> list[tuple[str, dict]]:
    """``(class path, arguments)`` of each transform of ``preprocessing`` whose keys include "image"."""
    assert "preprocessing" in parser, "the config must expose a top-level `preprocessing` (list or Compose)"
    chain = _resolve_plain(parser, parser.get("preprocessing"))
    while isinstance(chain, dict) and "transforms" in chain:  # a Compose
        chain = chain["transforms"]
    assert isinstance(chain, list), f"preprocessing must resolve to a list of transforms, got {chain!r}"
    found = []
    for transform in chain:
        if not isinstance(transform, dict) or "_target_" not in transform:
            continue
        keys = transform.get("keys", [])
        keys = [keys] if isinstance(keys, str) else list(keys)
        target = _class_path(transform["_target_"])
        if "image" in keys and target not in _KEY_SELECTION:
            arguments = {k: v for k, v in transform.items() if k not in _NON_ARGUMENT_KEYS}
            found.append((target, arguments))
    return found


def test_training_and_inference_share_the_image_preprocessing(bundle):
    train = _image_transforms(_parser(*_configs(bundle, "train.yaml")))
    infer = _image_transforms(_parser(*_configs(bundle, "inference.yaml")))
    assert train, "train.yaml's preprocessing has no transform acting on 'image'"
    assert [t for t, _ in train] == [t for t, _ in infer], "the same transforms on 'image', in the same order"
    for (target, train_args), (_, infer_args) in zip(train, infer):
        assert train_args == infer_args, f"{target}: training {train_args} vs inference {infer_args}"


def test_helpers_resolve_plain_references_and_list_expressions():
    # the contract's own machinery, on a hand-made config
    parser = ConfigParser(
        {
            "size": [64, 64],
            "use_extra": False,
            "loading": [{"_target_": "LoadImaged", "keys": "image"}],
            "extra": {"_target_": "monai.transforms.ScaleIntensityd", "keys": ["image", "mask"]},
            "other": {"_target_": "Resized", "keys": "label", "spatial_size": "@size"},
            "preprocessing": {
                "_target_": "Compose",
                "transforms": "$@loading + [@extra if @use_extra else @other] + [{'_target_': 'Resized', 'keys': 'image', 'spatial_size': @size}]",
            },
            "opaque": "$foo(@size)",
        }
    )
    assert _image_transforms(parser) == [
        ("monai.transforms.io.dictionary.LoadImaged", {"keys": "image"}),
        ("monai.transforms.spatial.dictionary.Resized", {"keys": "image", "spatial_size": [64, 64]}),
    ]
    assert _resolve_plain(parser, "@opaque") == "$foo(@size)"
    assert _class_path("monai.transforms.LoadImaged") == _class_path("LoadImaged")
    parser["preprocessing"] = [{"_target_": "SelectItemsd", "keys": ["image", "label"]}, {"_target_": "EnsureTyped", "keys": "image"}]
    assert [t for t, _ in _image_transforms(parser)] == ["monai.transforms.utility.dictionary.EnsureTyped"]
    parser["opaque"] = "$@missing + [1]"
    assert _missing_references(parser) == ["opaque -> @missing"]
