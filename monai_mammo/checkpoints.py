"""Checkpoints that carry the network's constructor arguments, loaded with ``weights_only=True``.

A checkpoint of this project is ``{"model": state_dict, "network_spec": {"_target_": ..., **args}}``
(plus whatever else a saver adds, e.g. an optimiser). The spec rebuilds the network without a
config (:func:`load_network`), so an inference config need not repeat ``network_def`` by hand and a
checkpoint of a changed network is an error naming the file instead of a silent partial load.

* :func:`records_init_args`: a class decorator that makes a network remember its constructor
  arguments (``network.init_args``);
* :func:`network_spec` / :func:`build_network`: the spec of a network and the network of a spec
  (only ``torch.nn.Module`` classes of ``monai_mammo`` and ``monai.networks``: a checkpoint
  never names arbitrary code to run);
* :class:`NetworkSpec`: the spec as an item of MONAI's ``CheckpointSaver`` ``save_dict``;
* :func:`unwrap_network`, :func:`unwrap_state_dict`: the one way to look through DDP wrappers and
  nested state dicts;
* :func:`save_network`, :func:`load_network_weights`, :func:`load_network`.

Example::

    >>> import tempfile, torch
    >>> @records_init_args("bias")
    ... class Tiny(torch.nn.Linear):
    ...     pass
    >>> network_spec(Tiny(3, 2, bias=False))["in_features"]
    3
    >>> path = tempfile.mkdtemp() + "/model.pt"
    >>> _ = save_network(Tiny(3, 2), path)
    >>> load_network_weights(Tiny(3, 2), path).weight.shape
    torch.Size([2, 3])
"""

from __future__ import annotations

import enum
import functools
import inspect
import logging
import numbers
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from monai_mammo.atomic_io import atomic_path

__all__ = [
    "STATE_DICT_KEYS",
    "records_init_args",
    "network_spec",
    "build_network",
    "NetworkSpec",
    "unwrap_network",
    "unwrap_state_dict",
    "save_network",
    "load_checkpoint",
    "load_network_weights",
    "load_network",
    "strict_loading",
    "NetworkFile",
]

logger = logging.getLogger(__name__)

#: keys under which MONAI's CheckpointSaver and common trainers nest a state dict
STATE_DICT_KEYS = ("model", "network", "state_dict", "model_state_dict")
#: module prefixes a checkpoint's ``_target_`` may name
ALLOWED_TARGET_PREFIXES = ("monai_mammo.", "monai.networks.")
def _plain_value(value: Any, where: str) -> Any:
    """``value`` as lists / dicts of exact ``str``, ``int``, ``float``, ``bool`` and ``None`` (what
    ``weights_only=True`` loads back: a ``StrEnum`` such as MONAI's ``BlendMode`` or a numpy scalar
    would be pickled as its class and make the checkpoint unloadable).

    Example::

        >>> import numpy as np
        >>> from monai.utils import BlendMode
        >>> _plain_value({"mode": BlendMode.GAUSSIAN, "size": (np.int64(3), 4.0), "on": np.bool_(True)}, "net")
        {'mode': 'gaussian', 'size': [3, 4.0], 'on': True}
    """
    if value is None:
        return None
    if isinstance(value, enum.Enum):
        return _plain_value(value.value, where)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        return [_plain_value(v, where) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain_value(v, where) for k, v in value.items()}
    raise TypeError(f"{where}: constructor argument of type {type(value).__name__} cannot go into a checkpoint")


def records_init_args(*drop: str):
    """Class decorator: instances keep their constructor arguments as ``init_args`` (a dict).

    ``drop`` names arguments that only matter when the network is first built (such as the path of
    pretrained weights, which the trained state dict supersedes); they are left out of the spec, so
    the rebuilt network takes their defaults.
    """

    def decorate(cls: type) -> type:
        original_init = cls.__init__
        signature = inspect.signature(original_init)
        takes_any_keyword = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
        unknown = sorted(set(drop) - set(signature.parameters)) if not takes_any_keyword else []
        if unknown:  # a misspelled name would silently keep a pretrained path in every checkpoint
            raise TypeError(f"records_init_args on {cls.__name__}: no constructor argument named {unknown}")

        @functools.wraps(original_init)
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            bound = signature.bind(self, *args, **kwargs)
            # defaults too: ``Net()`` and ``Net(x=<default>)`` are the same network and must have one spec
            bound.apply_defaults()
            arguments: dict[str, Any] = {}
            for name, value in list(bound.arguments.items())[1:]:
                if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                    arguments.update(value)
                elif signature.parameters[name].kind is inspect.Parameter.VAR_POSITIONAL:
                    raise TypeError(f"{cls.__name__}: *args cannot be recorded; pass them by name")
                else:
                    arguments[name] = value
            original_init(self, *args, **kwargs)
            self.init_args = {k: _plain_value(v, cls.__name__) for k, v in arguments.items() if k not in drop}

        cls.__init__ = __init__
        return cls

    return decorate


def unwrap_network(network: torch.nn.Module) -> torch.nn.Module:
    """The network inside a ``DataParallel`` / ``DistributedDataParallel`` wrapper (or itself)."""
    parallel = (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)
    return network.module if isinstance(network, parallel) else network


def network_spec(network: torch.nn.Module) -> dict[str, Any]:
    """``{"_target_": "module.Class", **constructor arguments}`` of a network built by a class
    decorated with :func:`records_init_args`."""
    net = unwrap_network(network)
    if not hasattr(net, "init_args"):
        raise TypeError(f"{type(net).__name__} does not record its constructor arguments (use @records_init_args)")
    cls = type(net)
    return {"_target_": f"{cls.__module__}.{cls.__qualname__}", **net.init_args}


def build_network(spec: Mapping[str, Any], source: str = "network spec") -> torch.nn.Module:
    """The network a spec describes. Only ``torch.nn.Module`` classes under
    :data:`ALLOWED_TARGET_PREFIXES` are built."""
    from pydoc import locate

    spec = dict(spec)
    target = str(spec.pop("_target_", ""))
    if not target.startswith(ALLOWED_TARGET_PREFIXES):
        raise ValueError(f"{source}: network class {target!r} is not under {', '.join(ALLOWED_TARGET_PREFIXES)}")
    cls = locate(target)
    if not (inspect.isclass(cls) and issubclass(cls, torch.nn.Module)):
        raise ValueError(f"{source}: {target!r} is not a torch.nn.Module class")
    return cls(**spec)


class NetworkSpec:
    """The constructor arguments of ``network`` as a ``CheckpointSaver`` / ``CheckpointLoader`` item.

    Saving writes :func:`network_spec`; loading compares the stored spec with the network's and
    raises ``ValueError`` naming the arguments that differ (a resumed or evaluated run on a changed
    network fails loudly instead of loading weights into the wrong shapes).

    Example (``save_dict`` of a bundle's ``CheckpointSaver``)::

        save_dict: {model: "@network", network_spec: "$monai_mammo.checkpoints.NetworkSpec(@network)"}
    """

    def __init__(self, network: torch.nn.Module) -> None:
        self.network = network

    def state_dict(self) -> dict[str, Any]:
        return network_spec(self.network)

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True) -> None:
        own = network_spec(self.network)
        differ = sorted(k for k in set(own) | set(state) if own.get(k) != state.get(k))
        if differ:
            details = ", ".join(f"{k}: checkpoint {state.get(k)!r} vs network {own.get(k)!r}" for k in differ)
            raise ValueError(f"the checkpoint was saved from a different network ({details})")


def unwrap_state_dict(obj: Any, source: str = "checkpoint", strip_prefix: str = "module.") -> dict[str, torch.Tensor]:
    """The state dict inside a loaded checkpoint: plain, or nested under :data:`STATE_DICT_KEYS`;
    a DDP ``module.`` prefix is removed.

    Example::

        >>> sd = unwrap_state_dict({"model": {"module.w": torch.zeros(1)}, "network_spec": {}})
        >>> list(sd)
        ['w']
    """
    if isinstance(obj, Mapping):
        for key in STATE_DICT_KEYS:
            if isinstance(obj.get(key), Mapping):
                return unwrap_state_dict(obj[key], source, strip_prefix)
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            if strip_prefix and all(str(k).startswith(strip_prefix) for k in obj):
                return {str(k)[len(strip_prefix) :]: v for k, v in obj.items()}
            return {str(k): v for k, v in obj.items()}
    raise ValueError(f"{source}: not a state dict (expected parameter names -> tensors, possibly under {STATE_DICT_KEYS})")


def save_network(network: torch.nn.Module, path: str | os.PathLike, **extra: Any) -> str:
    """Save ``{"model": state_dict, "network_spec": spec, **extra}`` atomically (loadable with
    ``weights_only=True``) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = unwrap_network(network)
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"model": state, "network_spec": network_spec(net), **extra}, tmp)
    logger.info("saved %s to %s", type(net).__name__, path)
    return str(path)


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no trained model (run the bundle's `training` workflow first)")
    try:
        return torch.load(str(path), map_location=device, weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which
        raise ValueError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from exc


def load_network_weights(
    network: torch.nn.Module, path: str | os.PathLike, device: str | torch.device = "cpu", strict: bool = True
) -> torch.nn.Module:
    """Load the weights in ``path`` into ``network`` (a DDP wrapper is looked through), strictly by
    default: a checkpoint of another network is an error that names the file.

    Example::

        >>> import tempfile
        >>> net = torch.nn.Linear(2, 1)
        >>> path = tempfile.mkdtemp() + "/model.pt"
        >>> torch.save({"model": net.state_dict()}, path)
        >>> load_network_weights(torch.nn.Linear(2, 1), path).weight.shape
        torch.Size([1, 2])
    """
    obj = load_checkpoint(path, device)
    state = unwrap_state_dict(obj, str(path))
    if isinstance(obj, Mapping) and isinstance(obj.get("network_spec"), Mapping) and hasattr(unwrap_network(network), "init_args"):
        try:
            NetworkSpec(network).load_state_dict(obj["network_spec"])
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc
    try:
        unwrap_network(network).load_state_dict(state, strict=strict)
    except RuntimeError as exc:
        raise ValueError(f"{path}: the weights do not fit {type(unwrap_network(network)).__name__}: {exc}") from exc
    return network


def load_network(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild the network from the checkpoint's ``network_spec``, load its weights strictly, move
    it to ``device`` and put it in eval mode."""
    obj = load_checkpoint(path, device)
    spec = obj.get("network_spec") if isinstance(obj, Mapping) else None
    if not isinstance(spec, Mapping):
        raise ValueError(
            f"{path}: the checkpoint carries no network_spec (saved before checkpoints recorded the network); "
            "build the network from the bundle's network_def and load it with load_network_weights"
        )
    network = build_network(spec, str(path))
    try:
        network.load_state_dict(unwrap_state_dict(obj, str(path)), strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: the weights do not fit the network it names: {exc}") from exc
    return network.to(device).eval()


def _strict_load_state_dict(self: torch.nn.Module, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
    # bound to one network by strict_loading: the caller's ``strict`` is ignored on purpose
    source = getattr(self, "_mm_weights_source", "the network's checkpoint")
    try:
        return type(self).load_state_dict(self, state_dict, strict=True, assign=assign)
    except RuntimeError as exc:
        from monai_mammo.app_errors import as_http_error

        error = ValueError(
            f"weights loaded into the network built from {source} do not fit it (another checkpoint, "
            f"e.g. a second stage's, was chosen; MONAI Label: model_filename must be "
            f"{Path(str(source)).name}): {exc}"
        )
        raise as_http_error(error, 409) from exc  # 409 Conflict: the request chose the wrong file


def strict_loading(network: torch.nn.Module, source: str | os.PathLike = "the network's checkpoint") -> torch.nn.Module:
    """Make ``network.load_state_dict`` strict whatever its caller asks, with an error naming ``source``.

    An application that loads a checkpoint into a bundle's ``network_def`` itself (MONAI Label's
    bundle app: non-strictly, with only a warning) could otherwise run the network on partly
    loaded weights: e.g. a second-stage classifier's file chosen by a request's
    ``model_filename``. ``source`` is the file the network belongs to (``models/model.pt``).

    Example::

        >>> net = strict_loading(torch.nn.Linear(2, 1), "models/model.pt")
        >>> try:
        ...     net.load_state_dict({"weight": torch.ones(1, 2)}, strict=False)
        ... except ValueError as exc:
        ...     print(str(exc).splitlines()[0][:72])
        weights loaded into the network built from models/model.pt do not fit it
    """
    import types

    network._mm_weights_source = str(source)  # plain attribute: not a parameter, buffer or submodule
    network.load_state_dict = types.MethodType(_strict_load_state_dict, network)  # type: ignore[method-assign]
    return network


class NetworkFile:
    """A network loaded from a checkpoint file (:func:`load_network`), reloaded when the file changes.

    For a network that a long-running process keeps (a second stage in a postprocessing
    transform of a server): after a training run rewrites the file, the next :meth:`get` returns
    the new weights, without a restart. The file's modification time and size are the key.

    Example::

        >>> import tempfile, time
        >>> from monai.networks.nets import FullyConnectedNet
        >>> path = tempfile.mkdtemp() + "/fpr.pt"
        >>> spec = {"_target_": "monai.networks.nets.FullyConnectedNet", "in_channels": 2, "out_channels": 1, "hidden_channels": [3]}
        >>> torch.save({"model": FullyConnectedNet(2, 1, [3]).state_dict(), "network_spec": spec}, path)
        >>> f = NetworkFile(path)
        >>> first = f.get(); f.get() is first
        True
        >>> os.utime(path, (time.time() + 5, time.time() + 5))  # a training run rewrote the file
        >>> f.get() is first
        False

    Args:
        path: the checkpoint (``{"model", "network_spec"}``).
        device: where the network goes. Default "cpu".
    """

    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu") -> None:
        self.path = Path(path)
        self.device = device
        self._key: tuple[int, int] | None = None
        self._network: torch.nn.Module | None = None

    def get(self) -> torch.nn.Module:
        """The network of the file as it is now (loaded again when its mtime or size changed)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.path}: no trained model (run the bundle's `training` workflow first)") from None
        key = (st.st_mtime_ns, st.st_size)
        if self._network is None or key != self._key:
            self._network = load_network(self.path, self.device)
            self._key = key
            logger.info("loaded %s from %s", type(self._network).__name__, self.path)
        return self._network

    def __repr__(self) -> str:
        return f"NetworkFile({str(self.path)!r})"
