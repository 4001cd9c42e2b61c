"""Shared pytest configuration: slow and GPU tests are skipped unless asked for."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch):
    """A registry loaded anew for the test (all plugins, no MONAI_MAMMO_PLUGINS), and forgotten after it."""
    from monai_mammo import registry

    monkeypatch.delenv(registry.PLUGINS_ENV_VAR, raising=False)
    registry.reset_registry()
    yield
    registry.reset_registry()


def pytest_configure(config: pytest.Config) -> None:
    # The suite runs as two xdist workers on two cores: one intra-op thread each avoids the
    # oversubscription that makes small-tensor training many times slower. Bundle subprocesses
    # inherit the setting through the environment.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import torch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    except ImportError:
        pass


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    run_slow = config.getoption("--run-slow")
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    skip_slow = pytest.mark.skip(reason="slow test: pass --run-slow to run it")
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "slow" in item.keywords and not run_slow:
            item.add_marker(skip_slow)
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)
