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
            family="tensor",
        ),
        Component(
            "ttest",
            "monai_mammo.losses.ttest:TTestLoss",
            "ASN t-test loss on reconstruction residuals (Zhang et al. CVPR 2019, Eq. 6)",
            family="pixel_masks",
        ),
        Component(
            "mse_reconstruction",
            "monai_mammo.losses.reconstruction:ReconstructionMSELoss",
            "ASN ablation: plain MSE reconstruction, labels ignored (Zhang et al. Sec. 4.5)",
            family="pixel_masks",
        ),
        Component(
            "segmentation_ce",
            "monai_mammo.losses.reconstruction:PixelSegmentationCELoss",
            "ASN baseline: the U-Net as a µC segmenter with pixel cross-entropy (Zhang et al. Sec. 4.3)",
            family="pixel_masks",
        ),
        Component(
            "disentangle",
            "monai_mammo.losses.disentangle:DisentangleLoss",
            "DAB-Net Eq. 4: L1 mass + L1 glands reconstruction on composites + BCE on all samples",
            family="multitask",
        ),
        Component(
            "alignment",
            "monai_mammo.losses.alignment:AlignmentLoss",
            "Kim et al. Eq. 7-9: smoothed aligned image vs anchor, pixel-wise L_e + perceptual L_p",
            family="tensor",
        ),
        Component(
            "dual_branch",
            "monai_mammo.losses.dual_branch:DualBranchLoss",
            "Cls-Det-RS weak (Eq. 5) / semi-supervised (Eqs. 8-12) loss on image probabilities and region labels (Bakalo et al. 2021)",
            family="multitask",
        ),
        Component(
            "latent_cadx",
            "monai_mammo.losses.latentcadx:LatentCADxLoss",
            "LatentCADx (An et al. 2021, Sec. 4.3): alpha CE + beta in-bounds + gamma out-of-bounds mask terms",
            family="multitask",
        ),
        Component(
            "latent_cadx_rpn",
            "monai_mammo.losses.latentcadx:RegionProposalPretrainLoss",
            "LatentCADx RPN pretraining (An et al. 2021, Sec. 4.1): per-cell 2-class CE + patch CE",
            family="multitask",
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
        Component(
            "froc",
            "monai_mammo.metrics.froc:PointFROCMetric",
            "µC point FROC: recall at k false positives per image, hit radius in mm (Zhang et al. CVPR 2019)",
        ),
        Component(
            "localization_accuracy",
            "monai_mammo.metrics.localization:LocalizationAccuracyMetric",
            "CAM -> components -> boxes; fraction of boxes hit at IoU 0.3/0.5/0.7 (Wang et al. 2017; Kim et al.)",
        ),
        Component(
            "partial_auc_ratio",
            "monai_mammo.metrics.classification:SpecificityAtSensitivityMetric",
            "pAUCR over sensitivity [0.8, 1] (area / 0.2) with spec@sens 0.85 and 0.90 (Bakalo et al. 2021)",
        ),
        Component(
            "localization_froc",
            "monai_mammo.metrics.localization_froc:LocalizationFROCMetric",
            "localization FROC at the classifier's 0.85-sensitivity operating point, IoM >= 0.5 (Bakalo et al. 2021 Sec. 5.3)",
        ),
        Component(
            "mask_overlap",
            "monai_mammo.metrics.segmentation:MaskOverlapMetric",
            "per-patch IoU / IoP / IoA / confused pixels / Dice of a thresholded mask (An et al. 2021, Sec. 5.2)",
        ),
        Component(
            "segmentation_ap",
            "monai_mammo.metrics.segmentation:SegmentationAPMetric",
            "segmentation AP at an IoU threshold, one instance per patch (An et al. 2021, Sec. 5.1)",
        ),
        Component(
            "average_precision",
            "monai_mammo.metrics.classification:AveragePrecisionMetric",
            "classification average precision (area under the precision-recall steps)",
        ),
        Component(
            "f1",
            "monai_mammo.metrics.classification:F1ScoreMetric",
            "F1 score at a probability threshold",
        ),
    ]
