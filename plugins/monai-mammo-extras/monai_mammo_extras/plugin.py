"""The entry-point module: it implements monai-mammo's hooks and returns named components.

Factories are import paths, so ``monai-mammo plugins`` lists them without importing torch.
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
        )
    ]


@hookimpl
def register_compositors() -> list[Component]:
    return [
        Component(
            "max_intensity",
            "monai_mammo_extras.compositors:MaxIntensityBlend",
            "brighter of the glands and the Gaussian-weighted mass at each pixel: glands stay in front",
        )
    ]


@hookimpl
def register_metrics() -> list[Component]:
    return [
        Component(
            "expected_calibration_error",
            "monai_mammo_extras.metrics:ExpectedCalibrationErrorMetric",
            "expected calibration error of binary probabilities over equal-width bins (Guo et al. 2017)",
        )
    ]
