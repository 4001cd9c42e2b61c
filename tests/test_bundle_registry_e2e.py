"""A bundle run through MONAI's own CLI, with its loss taken from the registry by name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TOY_CONFIG = Path(__file__).parent / "bundles" / "toy" / "configs" / "train.yaml"


def run_bundle(*overrides: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", str(TOY_CONFIG), *overrides]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_bundle_builds_its_loss_from_the_registry():
    result = run_bundle()
    assert result.returncode == 0, result.stderr[-3000:]
    assert "loss component: BatchWeightedBCELoss" in result.stdout
    assert "final loss:" in result.stdout


def test_one_override_swaps_in_a_third_party_loss():
    pytest.importorskip("monai_mammo_extras", reason="pip install -e plugins/monai-mammo-extras")
    result = run_bundle("--loss#name", "asymmetric_focal", "--loss#gamma_negative", "2.0")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "loss component: AsymmetricFocalLoss" in result.stdout


def test_unknown_loss_name_fails_listing_known_names():
    result = run_bundle("--loss#name", "no_such_loss")
    assert result.returncode != 0
    assert "no loss named 'no_such_loss'" in result.stderr and "weighted_bce" in result.stderr
