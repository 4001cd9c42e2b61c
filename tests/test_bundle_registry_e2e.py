"""A bundle run through MONAI's own CLI, with its loss taken from the registry by name."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

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
    # the example plugin is part of the test install (README, .ci/run): no skipping
    assert importlib.util.find_spec("monai_mammo_extras") is not None, "pip install -e plugins/monai-mammo-extras"
    result = run_bundle("--loss#name", "asymmetric_focal", "--loss#gamma_negative", "2.0")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "loss component: AsymmetricFocalLoss" in result.stdout


def test_a_loss_of_another_family_is_rejected_when_the_config_is_built():
    result = run_bundle("--loss#name", "asymmetric_focal", "--loss#accept_families", "['multitask']")
    assert result.returncode != 0
    assert (
        "monai_mammo.registry.IncompatibleComponentError: loss 'asymmetric_focal' (family 'tensor', plugin 'extras' "
        "of monai-mammo-extras) cannot be used here: this config needs a loss of family 'multitask'"
    ) in result.stderr
    assert "final loss:" not in result.stdout  # nothing trained


def test_unknown_loss_name_fails_listing_known_names():
    result = run_bundle("--loss#name", "no_such_loss")
    assert result.returncode != 0
    assert "no loss named 'no_such_loss'" in result.stderr and "weighted_bce" in result.stderr
