"""The entry-point module: it implements monai-mammo's hooks and returns named components.

Factories are import paths, so ``monai-mammo plugins`` lists them without importing torch. Each
component names its family, the call contract it implements (``monai_mammo.hookspecs.FAMILIES``);
a bundle whose config cannot call that contract rejects the component by name when it is built.
"""

from __future__ import annotations

from monai_mammo.hookspecs import Component, hookimpl


@hookimpl
def register_losses() -> list[Component]:
    return [
        Component(
            "asymmetric_focal",
            "monai_mammo_extras.losses:AsymmetricFocalLoss",
            "asymmetric focal loss with probability margin for imbalanced (multi-)label tasks (Ridnik et al. 2021)",
            family="tensor",  # MONAI's contract: loss(logits, target of the same shape)
        )
    ]


@hookimpl
def register_compositors() -> list[Component]:
    return [
        Component(
            "max_intensity",
            "monai_mammo_extras.compositors:MaxIntensityBlend",
            "brighter of the glands and the Gaussian-weighted mass at each pixel: glands stay in front",
            family="blend",  # compositor(mass, glands, box) -> (composite, alpha)
        )
    ]


@hookimpl
def register_metrics() -> list[Component]:
    return [
        Component(
            "expected_calibration_error",
            "monai_mammo_extras.metrics:ExpectedCalibrationErrorMetric",
            "expected calibration error of binary probabilities over equal-width bins (Guo et al. 2017)",
            family="cumulative",  # a CumulativeIterationMetric behind IgniteMetricHandler
        )
    ]
