"""The shared checkpoint loader of the bundle engines."""

from __future__ import annotations

import pytest
import torch

from monai_mammo.engines.weights import load_network_weights


@pytest.mark.parametrize("key", [None, "model", "network", "state_dict"])
def test_loads_plain_and_nested_state_dicts(tmp_path, key):
    source = torch.nn.Linear(3, 2)
    path = tmp_path / "model.pt"
    state = source.state_dict()
    torch.save(state if key is None else {key: state, "epoch": 3}, path)
    target = load_network_weights(torch.nn.Linear(3, 2), path)
    assert torch.equal(target.weight, source.weight) and torch.equal(target.bias, source.bias)


def test_looks_through_data_parallel(tmp_path):
    source = torch.nn.Linear(3, 2)
    path = tmp_path / "model.pt"
    torch.save(source.state_dict(), path)
    wrapped = load_network_weights(torch.nn.DataParallel(torch.nn.Linear(3, 2)), path)
    assert torch.equal(wrapped.module.weight, source.weight)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        load_network_weights(torch.nn.Linear(3, 2), tmp_path / "nothing.pt")
