"""The example third-party plugin, installed from plugins/monai-mammo-extras (the README's test
command and .ci/run install it): registration with explicit families, and each component against
hand-computed values."""

from __future__ import annotations

import doctest
import math

import pytest
import torch

import monai_mammo_extras.compositors
import monai_mammo_extras.losses
import monai_mammo_extras.metrics
import monai_mammo_extras.plugin
from monai_mammo import registry
from monai_mammo.registry import IncompatibleComponentError
from monai_mammo_extras.compositors import MaxIntensityBlend
from monai_mammo_extras.losses import AsymmetricFocalLoss
from monai_mammo_extras.metrics import ExpectedCalibrationErrorMetric

pytestmark = pytest.mark.usefixtures("fresh_registry")


def test_extras_components_are_listed_with_their_distribution_and_family():
    components = registry.get_registry().describe_components()
    extras = {(kind, c["name"]): c for kind, entries in components.items() for c in entries if c["plugin"] == "extras"}
    assert {key: c["family"] for key, c in extras.items()} == {
        ("loss", "asymmetric_focal"): "tensor",
        ("compositor", "max_intensity"): "blend",
        ("metric", "expected_calibration_error"): "cumulative",
    }
    assert {c["distribution"] for c in extras.values()} == {"monai-mammo-extras"}
    plugin = [p for p in registry.list_plugins() if p["name"] == "extras"][0]
    assert plugin["status"] == "loaded" and plugin["module"] == "monai_mammo_extras.plugin"


def test_the_plugin_declares_its_families_explicitly():
    # not left to the defaults: a reader of plugin.py sees each call contract
    declared = [
        *monai_mammo_extras.plugin.register_losses(),
        *monai_mammo_extras.plugin.register_compositors(),
        *monai_mammo_extras.plugin.register_metrics(),
    ]
    assert [(c.name, c.family) for c in declared] == [
        ("asymmetric_focal", "tensor"),
        ("max_intensity", "blend"),
        ("expected_calibration_error", "cumulative"),
    ]


def test_a_bundle_needing_dict_targets_rejects_the_tensor_loss_by_name():
    with pytest.raises(IncompatibleComponentError) as excinfo:
        registry.build_loss("asymmetric_focal", accept_families=["multitask"])
    message = str(excinfo.value)
    assert "loss 'asymmetric_focal' (family 'tensor', plugin 'extras' of monai-mammo-extras)" in message
    assert "needs a loss of family 'multitask'" in message and "disentangle" in message
    assert isinstance(registry.build_loss("asymmetric_focal", accept_families=["pixel_masks", "tensor"]), AsymmetricFocalLoss)


def test_asymmetric_focal_by_hand():
    loss = registry.build_loss("asymmetric_focal", gamma_positive=0.0, gamma_negative=2.0, margin=0.1, reduction="none")
    assert isinstance(loss, AsymmetricFocalLoss)
    logits = torch.tensor([0.0, 0.0, -3.0])
    target = torch.tensor([1.0, 0.0, 0.0])
    values = loss(logits, target)
    p_m = 0.5 - 0.1
    assert values[0].item() == pytest.approx(math.log(2.0), rel=1e-5)
    assert values[1].item() == pytest.approx(-(p_m**2) * math.log(1 - p_m), rel=1e-5)
    assert values[2].item() == 0.0  # p = 0.047 < margin: an easy negative is discarded


def test_asymmetric_focal_positive_focusing_and_reductions_by_hand():
    logit = math.log(3.0)  # p = 0.75
    loss = AsymmetricFocalLoss(gamma_positive=2.0, gamma_negative=1.0, margin=0.0, reduction="none")
    values = loss(torch.tensor([logit, logit]), torch.tensor([1.0, 0.0]))
    # positive: (1 - p)^2 * -log p ; negative (margin 0): p^1 * -log(1 - p)
    assert values.tolist() == pytest.approx([0.25**2 * -math.log(0.75), 0.75 * -math.log(0.25)], rel=1e-5)
    total = sum(values.tolist())
    assert AsymmetricFocalLoss(2.0, 1.0, 0.0, reduction="sum")(torch.tensor([logit, logit]), torch.tensor([1.0, 0.0])).item() == pytest.approx(total, rel=1e-5)
    assert AsymmetricFocalLoss(2.0, 1.0, 0.0)(torch.tensor([logit, logit]), torch.tensor([1.0, 0.0])).item() == pytest.approx(total / 2, rel=1e-5)


def test_asymmetric_focal_gradient_flows_and_bad_input_is_named():
    logits = torch.tensor([[0.3, -1.0], [2.0, 0.1]], requires_grad=True)
    AsymmetricFocalLoss()(logits, torch.tensor([[1.0, 0.0], [0.0, 1.0]])).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"same shape, got \(2, 2\) and \(4,\)"):
        AsymmetricFocalLoss()(logits, torch.zeros(4))
    with pytest.raises(ValueError, match="margin must be in"):
        AsymmetricFocalLoss(margin=1.0)


def test_max_intensity_keeps_the_brighter_layer_by_hand():
    blend = registry.build_compositor("max_intensity", sigma_scale=0.5)
    assert isinstance(blend, MaxIntensityBlend)
    mass = torch.ones(1, 32, 32)
    glands = torch.full((1, 32, 32), 0.3)
    composite, alpha = blend(mass, glands, [8, 8, 24, 24])
    assert composite.shape == mass.shape and alpha.shape == (1, 32, 32)
    # box centre (16, 16), sigma = 0.5 * 16 = 8; the pixel (16, 16) has its centre at (16.5, 16.5)
    centre_alpha = math.exp(-2 * 0.5**2 / (2 * 8.0**2))
    assert composite[0, 16, 16].item() == pytest.approx(centre_alpha, rel=1e-5)  # the mass wins at the centre
    # pixel (0, 0): centre (0.5, 0.5), 15.5 px from the box centre on each axis -> alpha 0.023 < 0.3
    assert alpha[0, 0, 0].item() == pytest.approx(math.exp(-2 * 15.5**2 / (2 * 8.0**2)), rel=1e-4)
    assert composite[0, 0, 0].item() == pytest.approx(0.3)  # the glands win far from the box
    assert torch.equal(composite, torch.maximum(glands, alpha * mass))


def test_max_intensity_batched_with_one_box_per_sample():
    blend = MaxIntensityBlend(sigma_scale=0.25)
    mass = torch.ones(2, 1, 16, 16)
    glands = torch.zeros(2, 1, 16, 16)
    composite, alpha = blend(mass, glands, torch.tensor([[0, 0, 8, 8], [8, 8, 16, 16]]))
    assert composite.shape == (2, 1, 16, 16) and alpha.shape == (2, 1, 16, 16)
    # each sample's brightest pixel lies in its own box
    assert divmod(int(composite[0, 0].argmax()), 16) in {(3, 3), (3, 4), (4, 3), (4, 4)}
    assert divmod(int(composite[1, 0].argmax()), 16) in {(11, 11), (11, 12), (12, 11), (12, 12)}
    with pytest.raises(ValueError, match="same shape"):
        blend(torch.ones(1, 8, 8), torch.ones(1, 8, 9), [0, 0, 4, 4])


def test_expected_calibration_error_by_hand():
    metric = registry.build_metric("expected_calibration_error", num_bins=2)
    assert isinstance(metric, ExpectedCalibrationErrorMetric)
    metric(torch.tensor([0.2, 0.4, 0.9, 0.7]), torch.tensor([0, 1, 1, 1]))
    # bin [0,.5): mean p .3, mean y .5 -> gap .2 ; bin [.5,1]: mean p .8, mean y 1 -> gap .2
    assert metric.aggregate() == pytest.approx(0.2, abs=1e-6)


def test_expected_calibration_error_weights_bins_by_count_across_iterations():
    metric = ExpectedCalibrationErrorMetric(num_bins=4)
    metric(torch.tensor([0.1, 0.1, 0.1]), torch.tensor([0, 0, 1]))  # bin 0: |1/3 - 0.1| over 3 cases
    metric(torch.tensor([1.0]), torch.tensor([1]))  # p = 1 falls in the last bin: gap 0
    assert metric.aggregate() == pytest.approx((3 * abs(1 / 3 - 0.1) + 1 * 0.0) / 4, abs=1e-6)
    metric.reset()
    metric(torch.tensor([0.6, 0.6]), torch.tensor([1, 1]))
    assert metric.aggregate() == pytest.approx(0.4, abs=1e-6)
    with pytest.raises(ValueError, match="probabilities in"):
        metric(torch.tensor([1.5]), torch.tensor([1]))
    with pytest.raises(ValueError, match="num_bins must be positive"):
        ExpectedCalibrationErrorMetric(num_bins=0)


@pytest.mark.parametrize(
    "module", [monai_mammo_extras.losses, monai_mammo_extras.compositors, monai_mammo_extras.metrics], ids=lambda m: m.__name__
)
def test_plugin_docstring_examples_run(module):
    # the plugin is outside testpaths (it is installed, possibly from another checkout): run its examples here
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
