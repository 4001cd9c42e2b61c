"""The t-test loss of the Anomaly Separation Network (Zhang et al., CVPR 2019, Eq. 6).

Registry family ``"pixel_masks"`` (:data:`monai_mammo.hookspecs.FAMILIES`): called as
``loss(prediction, target)`` with ``target = {"image", "positive_mask", "valid_mask"}`` (the batch of
:class:`monai_mammo.multitask.DictTargetPrepareBatch`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from monai.utils import LossReduction
from torch.nn.modules.loss import _Loss

__all__ = ["TTestLoss", "RESIDUALS", "PIXEL_MASK_KEYS", "reconstruction_residual", "pixel_masks", "unpack_pixel_masks"]

#: The target of a "pixel_masks" loss: the image, the positive (µC) pixels, the pixels that count.
PIXEL_MASK_KEYS = ("image", "positive_mask", "valid_mask")

#: residual variants r(P) of a reconstruction f against the image I (Zhang et al. Eq. 1 and Sec. 4.5)
RESIDUALS = ("l1", "l2", "smooth_l1")


def reconstruction_residual(
    reconstruction: torch.Tensor, image: torch.Tensor, residual: str = "l1", smooth_l1_beta: float = 1.0
) -> torch.Tensor:
    """Per-pixel residual r = ρ(f(Θ; I) − I).

    "l1": |f − I| (Zhang et al. Eq. 1, the paper's choice); "l2": (f − I)²; "smooth_l1":
    0.5 d²/b if |d| < b else |d| − 0.5 b with b = ``smooth_l1_beta`` (Fast R-CNN's, the paper's
    ref. [23]; the L2 / SmoothL1 variants are the ablation of Sec. 4.5, Table 5).
    """
    if residual == "l1":
        return (reconstruction - image).abs()  # Zhang et al. Eq. 1
    if residual == "l2":
        return (reconstruction - image) ** 2
    if residual == "smooth_l1":
        return F.smooth_l1_loss(reconstruction, image, reduction="none", beta=smooth_l1_beta)
    raise ValueError(f"unknown residual {residual!r}; known: {', '.join(RESIDUALS)}")


def unpack_pixel_masks(name: str, target: Any) -> tuple[Any, Any, Any]:
    """``(image, positive_mask, valid_mask)`` of a "pixel_masks" target dict (None where absent).

    Raises:
        TypeError: ``target`` is not a mapping (e.g. a tensor: the loss was called with MONAI's
            ``loss(prediction, tensor)`` contract instead of a dict target).
    """
    if not isinstance(target, Mapping):
        raise TypeError(
            f"{name}: the target must be a dict with keys {list(PIXEL_MASK_KEYS)} (loss family 'pixel_masks'), "
            f"got {type(target).__name__}"
        )
    unknown = set(target) - set(PIXEL_MASK_KEYS)
    if unknown:
        raise KeyError(f"{name}: unknown target keys {sorted(unknown)}; known: {list(PIXEL_MASK_KEYS)}")
    return target.get("image"), target.get("positive_mask"), target.get("valid_mask")


def pixel_masks(
    name: str,
    output: torch.Tensor,
    reference: torch.Tensor | None,
    positive_mask: torch.Tensor | None,
    valid_mask: torch.Tensor | None,
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Check shapes and return float masks (positive, valid) broadcastable to ``output``.

    ``output`` is (B, C, *spatial). ``reference`` (the image), when given, must have the same shape.
    Masks are (B, 1, *spatial) or (B, C, *spatial); a pixel is positive / valid where the mask is
    > 0.5 (so bool, {0, 1} and interpolated soft masks all work). Without ``valid_mask`` every
    pixel is valid. Positive pixels outside the valid mask are dropped.
    """
    if output.ndim < 3:
        raise ValueError(f"{name}: expected output (B, C, *spatial), got shape {tuple(output.shape)}")
    if reference is not None and reference.shape != output.shape:
        raise ValueError(
            f"{name}: reconstruction shape {tuple(output.shape)} differs from image shape {tuple(reference.shape)}"
        )

    def check(mask: torch.Tensor, what: str) -> torch.Tensor:
        if not isinstance(mask, torch.Tensor):
            mask = torch.as_tensor(mask)
        if (
            mask.ndim != output.ndim
            or mask.shape[0] != output.shape[0]
            or mask.shape[2:] != output.shape[2:]
            or mask.shape[1] not in (1, output.shape[1])
        ):
            raise ValueError(
                f"{name}: {what} must have shape (B, 1 or C, *spatial) = ({output.shape[0]}, 1 or {output.shape[1]}, "
                f"{', '.join(str(s) for s in output.shape[2:])}) like the output {tuple(output.shape)}, "
                f"got {tuple(mask.shape)}"
            )
        return (mask.detach().to(device=output.device) > 0.5).to(output.dtype)

    valid = check(valid_mask, "valid_mask") if valid_mask is not None else torch.ones_like(output[:, :1])
    positive = check(positive_mask, "positive_mask") * valid if positive_mask is not None else None
    return positive, valid


def _reduce_dims(reduction: str, ndim: int) -> tuple[int, ...]:
    # "mean"/"sum": pool the pixels of the whole batch; "none": per image
    return tuple(range(ndim)) if reduction != LossReduction.NONE.value else tuple(range(1, ndim))


def _masked_mean_var(
    values: torch.Tensor, mask: torch.Tensor, dims: tuple[int, ...], unbiased: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Count, mean and variance of ``values`` where ``mask`` is 1, reduced over ``dims``; 0 when empty."""
    mask = mask.expand_as(values)
    count = mask.sum(dim=dims)
    mean = (values * mask).sum(dim=dims) / count.clamp(min=1)
    keep_shape = [1 if d in dims else s for d, s in enumerate(values.shape)]
    deviation = (values - mean.reshape(keep_shape)) * mask
    # population variance by default: a single pixel has variance 0 and empty sets stay 0, never NaN
    denominator = (count - 1).clamp(min=1) if unbiased else count.clamp(min=1)
    variance = (deviation**2).sum(dim=dims) / denominator
    return count, mean, variance


class TTestLoss(_Loss):
    """t-test loss on reconstruction residuals (ASN).

    Zhang et al., "Cascaded Generative and Discriminative Learning for Microcalcification Detection
    in Breast Mammograms", CVPR 2019, Eq. 6:

        L = max(β − mean(r_p), 0) + mean(r_n) + λp · S²(r_p) + λn · S²(r_n)

    over the residuals r = |f(Θ; I) − I| (Eq. 1) of the positive (µC) pixels r_p and negative
    pixels r_n of the batch. Minimising it maximises the t-statistic of Eq. 3 between the two
    residual populations: negatives are reconstructed (small residual), positives are pushed
    beyond the margin β. With ``lambda_p = lambda_n = 0`` it is the variance-free Eq. 10 (the
    paper's "w/o λ" ablation, Table 5).

    Edge cases (never NaN): with no positive pixel in the batch the positive terms (hinge and
    λp·S²(r_p)) vanish; with no negative pixel the negative terms vanish; the variance of a single
    pixel is 0. The variance is the population variance (divide by N) by default; ``unbiased=True``
    divides by N − 1 (the paper's "sample variance", Eq. 3), guarded to 0 for N < 2. With the
    ~10⁴ pixels of a 112×112 patch batch the two differ by < 0.01 %.

    The loss is a statistic of the pooled pixels of the batch, not a mean of per-pixel losses, so
    ``reduction`` means: "mean" (default) and "sum" both return that batch statistic (a scalar;
    there is only one value to reduce); "none" returns the loss computed per image, shape (B,)
    (an image with no positive pixel has only its negative terms).

    Residuals are unbounded when the reconstruction head is linear (the default of
    :class:`monai_mammo.networks.asn.AnomalySeparationUNet`), so every variant can reach β = 0.8
    on [0, 1] images. The network it trains is a reconstruction, so the candidate map is the L1
    residual whatever variant trained it (:attr:`candidate_map` = "residual", see
    :func:`monai_mammo.regions.candidate_map`).

    Called as ``loss(prediction, target)`` (family "pixel_masks"): ``prediction`` the
    reconstruction f(Θ; I) (B, C, H, W); ``target`` a dict with ``image`` (I, same shape,
    intensities in [0, 1]), ``positive_mask`` (µC pixels, (B, 1 or C, H, W), > 0.5 = positive) and
    optionally ``valid_mask`` (pixels that count at all, e.g. the breast; same shape rules; default
    every pixel). Negatives = valid and not positive.

    Args:
        beta: margin β between the mean residuals. Default 0.8 (paper, on [0, 1] intensities).
        lambda_p: weight λp of the positive residual variance. Default 1.0 (paper).
        lambda_n: weight λn of the negative residual variance. Default 0.1 (paper).
        residual: "l1" (Eq. 1, default), "l2" or "smooth_l1" (Sec. 4.5 ablation).
        smooth_l1_beta: transition point of "smooth_l1". Default 1.0 (Fast R-CNN).
        unbiased: divide the variances by N − 1 instead of N. Default False.
        reduction: "mean" | "sum" (batch statistic, scalar) | "none" (per image, (B,)). Default "mean".

    Example::

        >>> import torch
        >>> from monai_mammo.losses.ttest import TTestLoss
        >>> image = torch.zeros(1, 1, 4, 4); image[0, 0, 1, 1] = 1.0
        >>> positive = image > 0.5
        >>> loss = TTestLoss(beta=0.8, lambda_p=1.0, lambda_n=0.1)
        >>> target = {"image": image, "positive_mask": positive}
        >>> round(loss(image.clone(), target).item(), 4)  # perfect reconstruction: hinge = β
        0.8
    """

    #: the network trained with this loss outputs a reconstruction: candidates from its residual
    candidate_map = "residual"

    def __init__(
        self,
        beta: float = 0.8,
        lambda_p: float = 1.0,
        lambda_n: float = 0.1,
        residual: str = "l1",
        smooth_l1_beta: float = 1.0,
        unbiased: bool = False,
        reduction: LossReduction | str = LossReduction.MEAN,
    ) -> None:
        super().__init__(reduction=LossReduction(reduction).value)
        if residual not in RESIDUALS:
            raise ValueError(f"TTestLoss: unknown residual {residual!r}; known: {', '.join(RESIDUALS)}")
        if beta < 0 or lambda_p < 0 or lambda_n < 0:
            raise ValueError(
                f"TTestLoss: beta, lambda_p and lambda_n must be >= 0, got {beta}, {lambda_p}, {lambda_n}"
            )
        if smooth_l1_beta <= 0:
            raise ValueError(f"TTestLoss: smooth_l1_beta must be > 0, got {smooth_l1_beta}")
        self.beta = float(beta)
        self.lambda_p = float(lambda_p)
        self.lambda_n = float(lambda_n)
        self.residual = residual
        self.smooth_l1_beta = float(smooth_l1_beta)
        self.unbiased = bool(unbiased)

    def terms(self, reconstruction: torch.Tensor, target: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """The pieces of Eq. 6 (for logging): counts, means and variances of r_p and r_n, and the
        four weighted terms "hinge", "mean_term_n", "var_term_p", "var_term_n" whose sum is the loss."""
        image, positive_mask, valid_mask = unpack_pixel_masks("TTestLoss", target)
        if image is None:
            raise ValueError("TTestLoss: target['image'] is required (the reconstruction's reference)")
        if positive_mask is None:
            raise ValueError("TTestLoss: positive_mask is required (the µC pixels)")
        positive, valid = pixel_masks("TTestLoss", reconstruction, image, positive_mask, valid_mask)
        negative = valid * (1 - positive)
        r = reconstruction_residual(reconstruction, image, self.residual, self.smooth_l1_beta)  # Eq. 1
        dims = _reduce_dims(self.reduction, r.ndim)
        n_p, mean_p, var_p = _masked_mean_var(r, positive, dims, self.unbiased)
        n_n, mean_n, var_n = _masked_mean_var(r, negative, dims, self.unbiased)
        has_p = (n_p > 0).to(r.dtype)
        # Zhang et al. Eq. 6: max(β − r̄p, 0) + r̄n + λp S²_rp + λn S²_rn; absent sets contribute nothing
        return {
            "num_positive": n_p,
            "num_negative": n_n,
            "mean_p": mean_p,
            "mean_n": mean_n,
            "variance_p": var_p,
            "variance_n": var_n,
            "hinge": has_p * torch.clamp(self.beta - mean_p, min=0),
            "mean_term_n": mean_n,
            "var_term_p": self.lambda_p * var_p,
            "var_term_n": self.lambda_n * var_n,
        }

    def forward(self, reconstruction: torch.Tensor, target: Mapping[str, Any]) -> torch.Tensor:
        """
        Args:
            reconstruction: f(Θ; I), (B, C, H, W).
            target: ``{"image": I, "positive_mask": ..., "valid_mask": ... (optional)}``, see the
                class docstring.
        """
        t = self.terms(reconstruction, target)
        return t["hinge"] + t["mean_term_n"] + t["var_term_p"] + t["var_term_n"]
