"""The example third-party plugin, installed from plugins/monai-mammo-extras (see .ci/run)."""

from __future__ import annotations

import math

import pytest
import torch

from monai_mammo import registry

pytest.importorskip("monai_mammo_extras", reason="pip install -e plugins/monai-mammo-extras")


pytestmark = pytest.mark.usefixtures("fresh_registry")


def test_extras_components_are_listed_with_their_distribution():
    components = registry.list_components()
    assert "asymmetric_focal" in components["loss"]
    assert "max_intensity" in components["compositor"]
    assert "expected_calibration_error" in components["metric"]
    extras = [p for p in registry.list_plugins() if p["name"] == "extras"][0]
    assert extras["distribution"] == "monai-mammo-extras" and extras["status"] == "loaded"


def test_asymmetric_focal_by_hand():
    loss = registry.build_loss("asymmetric_focal", gamma_positive=0.0, gamma_negative=2.0, margin=0.1, reduction="none")
    logits = torch.tensor([0.0, 0.0, -3.0])
    target = torch.tensor([1.0, 0.0, 0.0])
    values = loss(logits, target)
    p_m = 0.5 - 0.1
    assert values[0].item() == pytest.approx(math.log(2.0), rel=1e-5)
    assert values[1].item() == pytest.approx(-(p_m**2) * math.log(1 - p_m), rel=1e-5)
    assert values[2].item() == 0.0  # p = 0.047 < margin: an easy negative is discarded


def test_expected_calibration_error_by_hand():
    metric = registry.build_metric("expected_calibration_error", num_bins=2)
    metric(torch.tensor([0.2, 0.4, 0.9, 0.7]), torch.tensor([0, 1, 1, 1]))
    # bin [0,.5): mean p .3, mean y .5 -> gap .2 ; bin [.5,1]: mean p .8, mean y 1 -> gap .2
    assert metric.aggregate() == pytest.approx(0.2, abs=1e-6)


def test_max_intensity_keeps_the_brighter_layer():
    pytest.importorskip("monai_mammo.compositors.alpha_blend")
    blend = registry.build_compositor("max_intensity", sigma_scale=0.5)
    mass = torch.ones(1, 32, 32)
    glands = torch.full((1, 32, 32), 0.3)
    composite, alpha = blend(mass, glands, [8, 8, 24, 24])
    assert composite.shape == mass.shape
    assert composite[0, 16, 16].item() == pytest.approx(alpha[0, 16, 16].item())  # mass wins at the centre
    assert composite[0, 0, 0].item() == pytest.approx(0.3)  # glands win far from the box
    assert torch.all(composite >= glands)
