"""Loading trained weights into a network, the one way every bundle engine does it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch

__all__ = ["load_network_weights"]

#: keys under which MONAI's CheckpointSaver and common trainers nest a state dict
STATE_DICT_KEYS = ("model", "network", "state_dict")


def load_network_weights(network: torch.nn.Module, path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Load a state dict (plain, or under "model" / "network" / "state_dict") with ``weights_only=True``.

    A ``DataParallel`` / ``DistributedDataParallel`` wrapper is looked through. A missing file is a
    ``FileNotFoundError`` naming it.

    Example::

        >>> import tempfile, torch
        >>> net = torch.nn.Linear(2, 1)
        >>> path = tempfile.mkdtemp() + "/model.pt"
        >>> torch.save({"model": net.state_dict()}, path)
        >>> load_network_weights(torch.nn.Linear(2, 1), path).weight.shape
        torch.Size([1, 2])
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no trained model (run the bundle's `training` workflow first)")
    obj = torch.load(str(path), map_location=device, weights_only=True)
    if isinstance(obj, Mapping):
        for key in STATE_DICT_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    parallel = (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)
    target = network.module if isinstance(network, parallel) else network
    target.load_state_dict(obj)
    return network
