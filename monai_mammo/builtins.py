"""monai-mammo's own components, registered through the public entry-point group like any plugin.

Factories are import paths, resolved only when a component is built, so listing the registry
stays cheap.
"""

from __future__ import annotations

from monai_mammo.hookspecs import Component, hookimpl


@hookimpl
def register_losses() -> list[Component]:
    return [
        Component(
            "weighted_bce",
            "monai_mammo.losses.weighted_bce:BatchWeightedBCELoss",
            "BCE with per-batch positive/negative class weights (Kim et al., disease masks)",
        ),
    ]


@hookimpl
def register_compositors() -> list[Component]:
    return [
        Component(
            "alpha_blend",
            "monai_mammo.compositors.alpha_blend:GaussianAlphaBlend",
            "DAB-Net Eq. 1: mass over glands through a Gaussian alpha map centred on the mass box",
        ),
        Component(
            "simple",
            "monai_mammo.compositors.simple:FixedWeightBlend",
            "DAB-Net ablation: fixed-weight mix of mass and glands, no alpha map",
        ),
    ]


@hookimpl
def register_metrics() -> list[Component]:
    return [
        Component(
            "roc_auc",
            "monai.metrics:ROCAUCMetric",
            "area under the ROC curve (MONAI's ROCAUCMetric)",
        ),
        Component(
            "specificity_at_sensitivity",
            "monai_mammo.metrics.classification:SpecificityAtSensitivityMetric",
            "specificity at a fixed sensitivity operating point (Bakalo et al.)",
        ),
    ]
