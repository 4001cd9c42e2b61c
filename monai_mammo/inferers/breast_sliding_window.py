"""Breast-only sliding-window inference at full resolution.

A full-field mammogram (e.g. 4096 x 3328 px at 70 um) is mostly background: the breast typically
covers 40-60 % of the detector. MONAI's :class:`~monai.inferers.SlidingWindowInferer` runs the
network on every tile of the image. :class:`MaskedSlidingWindowInferer` uses exactly the same
tiling (MONAI's ``dense_patch_slices`` with MONAI's scan interval) and the same blending weights
(MONAI's ``compute_importance_map``) but runs the network only on the tiles that contain breast
pixels. Every tile that covers a breast pixel is computed, so inside the mask the blended output
is the same as MONAI's over the whole image (up to float summation order); outside the mask the
output is ``fill_value`` (default 0).

This serves the full-resolution inference of the Anomaly Separation Network (Zhang et al.,
"Cascaded generative and discriminative learning for microcalcification detection in breast
mammograms", CVPR 2019, Sec. 3.1: "During testing process, for each whole mammogram, we
calculate the reconstruction residual map"), but it is network-agnostic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.data.meta_tensor import MetaTensor
from monai.data.utils import compute_importance_map, dense_patch_slices
from monai.inferers import SlidingWindowInferer
from monai.utils import BlendMode, PytorchPadMode, convert_data_type, convert_to_dst_type, fall_back_tuple, look_up_option

__all__ = ["MaskedSlidingWindowInferer", "nonzero_mask", "resolve_amp_dtype"]

_AMP_DTYPES: dict[str, torch.dtype | None] = {
    "none": None,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
}


def resolve_amp_dtype(amp: torch.dtype | str | None) -> torch.dtype | None:
    """Map ``None`` / ``"none"`` / ``"bf16"`` / ``"fp16"`` (or a torch dtype) to an autocast dtype or None."""
    if amp is None or isinstance(amp, torch.dtype):
        if amp is not None and amp not in (torch.bfloat16, torch.float16):
            raise ValueError(f"amp dtype must be torch.bfloat16 or torch.float16, got {amp}.")
        return amp
    key = str(amp).lower()
    if key not in _AMP_DTYPES:
        raise ValueError(f"amp must be one of {sorted(_AMP_DTYPES)} or a torch dtype, got {amp!r}.")
    return _AMP_DTYPES[key]


def nonzero_mask(inputs: torch.Tensor) -> torch.Tensor:
    """Breast mask for images whose background was zeroed in preprocessing: any channel != 0.

    Returns a bool tensor ``(B, 1, *spatial)``. Usable as ``mask_fn`` of
    :class:`MaskedSlidingWindowInferer` (the ASN preprocessing zeroes the background after Otsu,
    METHODS.md section 1).
    """
    return (inputs != 0).any(dim=1, keepdim=True)


def _scan_interval(image_size: Sequence[int], roi_size: Sequence[int], overlap: Sequence[float]) -> tuple[int, ...]:
    # Same rule as monai.inferers.utils._get_scan_interval (private there, so restated here):
    # interval = int(roi * (1 - overlap)), at least 1, and a full-size ROI uses its own size.
    out = []
    for img, roi, o in zip(image_size, roi_size, overlap):
        if roi == img:
            out.append(int(roi))
        else:
            interval = int(roi * (1 - o))
            out.append(interval if interval > 0 else 1)
    return tuple(out)


class MaskedSlidingWindowInferer(SlidingWindowInferer):
    """Sliding-window inference that only computes the tiles touching a (breast) mask.

    Full-resolution inference of the ASN reconstruction network (Zhang et al., CVPR 2019,
    Sec. 3.1 and 3.2) over the breast only (DESIGN.md principle 6). The tiling and the blending
    are MONAI's own (``dense_patch_slices``, ``compute_importance_map``), so with the same
    arguments the output inside the mask equals ``SlidingWindowInferer`` over the whole image.
    Without a mask (and without ``mask_fn``) the call is exactly ``SlidingWindowInferer.__call__``.

    Memory: the only full-size buffers are the output and a one-channel weight-count map
    (``(B, C_out, H, W)`` + ``(B, 1, H, W)`` on ``device``); tiles go through the network
    ``sw_batch_size`` at a time. Call it under ``torch.no_grad()`` (as MONAI evaluators do).

    Example::

        >>> import torch
        >>> from monai_mammo.inferers.breast_sliding_window import MaskedSlidingWindowInferer
        >>> net = torch.nn.Conv2d(1, 1, 3, padding=1)
        >>> image = torch.rand(1, 1, 300, 200)
        >>> mask = torch.zeros(1, 1, 300, 200, dtype=torch.bool); mask[..., 50:150, :80] = True
        >>> inferer = MaskedSlidingWindowInferer(roi_size=64, sw_batch_size=4, overlap=0.25)
        >>> with torch.no_grad():
        ...     out = inferer(image, net, mask=mask)
        >>> out.shape, inferer.last_stats["tiles_computed"] < inferer.last_stats["tiles_total"]
        (torch.Size([1, 1, 300, 200]), True)

    Args:
        roi_size: spatial tile size, an int or one value per spatial dim (non-positive: whole
            image along that dim), as in ``SlidingWindowInferer``.
        sw_batch_size: tiles per network call. Default 1.
        overlap: fractional overlap between neighbouring tiles, in [0, 1). Default 0.25.
        mode: blending of overlapping tiles, ``"constant"`` or ``"gaussian"``. Default ``"constant"``.
        sigma_scale: Gaussian sigma as a fraction of the tile size (``mode="gaussian"``). Default 0.125.
        padding_mode: padding of an image smaller than ``roi_size``. Default ``"constant"``.
        cval: constant padding value. Default 0.
        sw_device: device the tiles and the network run on. Default: the device of ``inputs``.
        device: device of the stitched output. Default: the device of ``inputs``.
        progress: show a tqdm progress bar (plain, unmasked path only). Default False.
        cache_roi_weight_map: precompute the blending map once. Default False.
        cpu_thresh: as in ``SlidingWindowInferer`` (stitch on CPU above this many pixels).
            Default None.
        min_coverage: a tile is computed when the fraction of its pixels inside the mask is at
            least this value, and it holds at least one mask pixel. Default 0.0, i.e. any mask
            pixel, which guarantees equality with ``SlidingWindowInferer`` inside the mask.
            Larger values skip more tiles; mask pixels then covered by no computed tile get
            ``fill_value``, and others may differ from the plain inferer.
        fill_value: output value outside the mask (and wherever no tile was computed). Default 0.0.
        mask_output: if True (default), every pixel outside the mask is set to ``fill_value``. If
            False, pixels outside the mask that are covered by computed tiles keep their blended
            value (an average over the computed tiles only, which differs from the plain
            inferer near the mask border).
        amp: autocast dtype for the network: None / ``"none"`` (fp32, default), ``"bf16"`` or
            ``"fp16"`` (or a torch dtype). Outputs are accumulated in the input dtype.
        mask_fn: callable ``inputs -> mask`` used when no ``mask`` is passed to the call (e.g.
            :func:`nonzero_mask` for background-zeroed images), so the inferer works inside MONAI
            evaluators that call ``inferer(inputs, network)``. Default None: no mask, plain
            sliding window.
    """

    def __init__(
        self,
        roi_size: Sequence[int] | int,
        sw_batch_size: int = 1,
        overlap: Sequence[float] | float = 0.25,
        mode: BlendMode | str = BlendMode.CONSTANT,
        sigma_scale: Sequence[float] | float = 0.125,
        padding_mode: PytorchPadMode | str = PytorchPadMode.CONSTANT,
        cval: float = 0.0,
        sw_device: torch.device | str | None = None,
        device: torch.device | str | None = None,
        progress: bool = False,
        cache_roi_weight_map: bool = False,
        cpu_thresh: int | None = None,
        min_coverage: float = 0.0,
        fill_value: float = 0.0,
        mask_output: bool = True,
        amp: torch.dtype | str | None = None,
        mask_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__(
            roi_size=roi_size,
            sw_batch_size=sw_batch_size,
            overlap=overlap,
            mode=mode,
            sigma_scale=sigma_scale,
            padding_mode=padding_mode,
            cval=cval,
            sw_device=sw_device,
            device=device,
            progress=progress,
            cache_roi_weight_map=cache_roi_weight_map,
            cpu_thresh=cpu_thresh,
        )
        if sw_batch_size < 1:
            raise ValueError(f"MaskedSlidingWindowInferer: sw_batch_size must be >= 1, got {sw_batch_size}.")
        if not 0.0 <= float(min_coverage) <= 1.0:
            raise ValueError(f"MaskedSlidingWindowInferer: min_coverage must be in [0, 1], got {min_coverage}.")
        self.min_coverage = float(min_coverage)
        self.fill_value = float(fill_value)
        self.mask_output = bool(mask_output)
        self.amp_dtype = resolve_amp_dtype(amp)
        self.mask_fn = mask_fn
        # Filled by each call: tiles_total, tiles_computed, network_calls, mask_fraction.
        self.last_stats: dict[str, Any] = {}

    # ------------------------------------------------------------------ helpers
    def _wrap_network(self, network: Callable[..., Any], device_type: str) -> Callable[..., Any]:
        if self.amp_dtype is None:
            return network
        amp_dtype = self.amp_dtype

        def _amp_network(x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            with torch.autocast(device_type=device_type, dtype=amp_dtype):
                return network(x, *args, **kwargs)

        return _amp_network

    @staticmethod
    def _prepare_mask(mask: Any, inputs: torch.Tensor) -> torch.Tensor:
        """Return a bool CPU tensor (B, 1, *spatial) from (B|1, 1, *sp), (1, *sp) or (*sp)."""
        m = convert_data_type(mask, torch.Tensor)[0]
        spatial = tuple(inputs.shape[2:])
        nd = len(spatial)
        if m.ndim == nd:
            m = m[None, None]
        elif m.ndim == nd + 1:
            m = m[None]
        if m.ndim != nd + 2 or tuple(m.shape[2:]) != spatial or m.shape[1] != 1 or m.shape[0] not in (1, inputs.shape[0]):
            raise ValueError(
                f"MaskedSlidingWindowInferer: mask shape {tuple(mask.shape)} does not fit inputs shape "
                f"{tuple(inputs.shape)}; expected (B or 1, 1, {', '.join(map(str, spatial))}), "
                f"(1, {', '.join(map(str, spatial))}) or ({', '.join(map(str, spatial))})."
            )
        m = m.detach().to("cpu")
        m = m > 0 if m.dtype != torch.bool else m
        if m.shape[0] != inputs.shape[0]:
            m = m.expand(inputs.shape[0], *m.shape[1:])
        return m

    # ------------------------------------------------------------------ call
    def __call__(  # type: ignore[override]
        self,
        inputs: torch.Tensor,
        network: Callable[..., torch.Tensor],
        *args: Any,
        mask: torch.Tensor | np.ndarray | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Run ``network`` over the tiles of ``inputs`` (NCHW[D]) that touch ``mask``.

        Args:
            inputs: image batch ``(B, C, *spatial)``.
            network: callable taking a tile batch ``(N, C, *roi_size)`` and returning a tensor
                ``(N, C_out, *roi_size)`` (same spatial size as the tile).
            args: extra positional args for ``network``.
            mask: region to compute, ``(B or 1, 1, *spatial)``, ``(1, *spatial)`` or ``(*spatial)``,
                bool or numeric (> 0 is inside). None: use ``mask_fn`` if set, else the plain
                MONAI sliding window over the whole image.
            kwargs: extra keyword args for ``network``.
        """
        sw_device = torch.device(self.sw_device) if self.sw_device is not None else inputs.device
        net = self._wrap_network(network, sw_device.type)
        if mask is None and self.mask_fn is not None:
            mask = self.mask_fn(inputs)
        if mask is None:
            self.last_stats = {"tiles_computed": None, "mask_fraction": 1.0}  # plain MONAI path
            return super().__call__(inputs, net, *args, **kwargs)
        if "condition" in kwargs:
            raise ValueError("MaskedSlidingWindowInferer: `condition` is not supported together with a mask.")
        return self._masked_call(inputs, net, self._prepare_mask(mask, inputs), sw_device, *args, **kwargs)

    def _overlap_tuple(self, nd: int) -> tuple[float, ...]:
        ov = self.overlap if isinstance(self.overlap, Sequence) else [self.overlap] * nd
        if len(ov) != nd:
            raise ValueError(f"MaskedSlidingWindowInferer: overlap {self.overlap} does not have {nd} values.")
        for o in ov:
            if o < 0 or o >= 1:
                raise ValueError(f"MaskedSlidingWindowInferer: overlap must be >= 0 and < 1, got {self.overlap}.")
        return tuple(float(o) for o in ov)

    def _masked_call(
        self,
        inputs: torch.Tensor,
        network: Callable[..., Any],
        mask: torch.Tensor,
        sw_device: torch.device,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        nd = inputs.ndim - 2
        if nd < 1:
            raise ValueError(f"MaskedSlidingWindowInferer: inputs must be (B, C, *spatial), got shape {tuple(inputs.shape)}.")
        device = self.device
        if device is None and self.cpu_thresh is not None and inputs.shape[2:].numel() > self.cpu_thresh:
            device = "cpu"  # as SlidingWindowInferer: stitch in CPU memory for very large images
        device = torch.device(device) if device is not None else inputs.device
        overlap = self._overlap_tuple(nd)

        temp_meta = MetaTensor([]).copy_meta_from(inputs, copy_attr=False) if isinstance(inputs, MetaTensor) else None
        x = convert_data_type(inputs, torch.Tensor, wrap_sequence=True)[0]
        compute_dtype = x.dtype
        batch_size = x.shape[0]
        image_size_ = tuple(x.shape[2:])
        roi_size = fall_back_tuple(self.roi_size, image_size_)
        if len(roi_size) != nd:
            raise ValueError(f"MaskedSlidingWindowInferer: roi_size {self.roi_size} does not match {nd} spatial dims of {tuple(x.shape)}.")

        # Pad images smaller than the ROI exactly as sliding_window_inference does (half before,
        # rest after); the mask is padded with "outside".
        image_size = tuple(max(image_size_[i], roi_size[i]) for i in range(nd))
        pad_size: list[int] = []
        for k in range(x.ndim - 1, 1, -1):
            diff = max(roi_size[k - 2] - x.shape[k], 0)
            pad_size.extend([diff // 2, diff - diff // 2])
        if any(pad_size):
            x = F.pad(x, pad=pad_size, mode=look_up_option(self.padding_mode, PytorchPadMode), value=self.cval)
            mask = F.pad(mask, pad=pad_size, mode="constant", value=False)

        slices = dense_patch_slices(image_size, roi_size, _scan_interval(image_size, roi_size, overlap))
        tile_area = math.prod(roi_size)
        min_pixels = max(1, math.ceil(self.min_coverage * tile_area))
        tiles: list[tuple[int, tuple[slice, ...]]] = []
        for b in range(batch_size):
            mb = mask[b, 0]
            for sl in slices:
                if int(mb[sl].sum()) >= min_pixels:
                    tiles.append((b, sl))
        if not tiles:
            raise ValueError(
                f"MaskedSlidingWindowInferer: the mask selects no tile (mask pixels: {int(mask.sum())}, "
                f"min_coverage={self.min_coverage}, roi_size={roi_size}, inputs shape {tuple(inputs.shape)}); "
                "an empty breast mask usually means a blank or unreadable image."
            )

        if self.roi_weight_map is not None and tuple(self.roi_weight_map.shape[-nd:]) == tuple(roi_size):
            importance = self.roi_weight_map
        else:
            importance = compute_importance_map(
                tuple(roi_size), mode=self.mode, sigma_scale=self.sigma_scale, device=sw_device, dtype=compute_dtype
            )
        importance = convert_data_type(importance, torch.Tensor, device=sw_device, dtype=compute_dtype)[0]
        while importance.ndim < nd + 2:
            importance = importance[None]
        importance_out = importance.to(device)

        output: torch.Tensor | None = None
        count = torch.zeros((batch_size, 1, *image_size), dtype=compute_dtype, device=device)
        n_calls = 0
        for start in range(0, len(tiles), self.sw_batch_size):
            chunk = tiles[start : start + self.sw_batch_size]
            win = torch.cat([x[(slice(b, b + 1), slice(None), *sl)] for b, sl in chunk]).to(sw_device)
            if self.with_coord:
                coords = [[slice(b, b + 1), slice(None), *sl] for b, sl in chunk]
                out = network(win, coords, *args, **kwargs)
            else:
                out = network(win, *args, **kwargs)
            n_calls += 1
            if not isinstance(out, torch.Tensor):
                raise TypeError(
                    f"MaskedSlidingWindowInferer: the network must return a tensor, got {type(out).__name__}."
                )
            if out.shape[0] != len(chunk) or tuple(out.shape[2:]) != tuple(roi_size):
                raise ValueError(
                    f"MaskedSlidingWindowInferer: network output shape {tuple(out.shape)} does not match the tile "
                    f"batch {tuple(win.shape)}; the output must keep the batch size and the spatial size {tuple(roi_size)}."
                )
            out = out.to(compute_dtype) * importance
            out = out.to(device)
            if output is None:
                output = torch.zeros((batch_size, out.shape[1], *image_size), dtype=compute_dtype, device=device)
            for p, (b, sl) in zip(out, chunk):
                idx = (slice(b, b + 1), slice(None), *sl)
                output[idx] += p[None]
                count[idx] += importance_out
        assert output is not None

        # In place, so the only full-size buffers stay `output` and `count`.
        covered = count > 0
        output /= count.masked_fill_(~covered, 1.0)
        del count
        keep = covered & mask.to(device) if self.mask_output else covered
        output.masked_fill_(~keep, self.fill_value)

        if any(pad_size):
            crop = []
            for sp in range(nd):
                si = nd - sp - 1
                crop.insert(0, slice(pad_size[sp * 2], pad_size[sp * 2] + image_size_[si]))
            output = output[(slice(None), slice(None), *crop)]

        n_total = len(slices) * batch_size
        self.last_stats = {
            "tiles_total": n_total,
            "tiles_computed": len(tiles),
            "network_calls": n_calls,
            "mask_fraction": float(mask.float().mean()),
        }
        if temp_meta is not None:
            return convert_to_dst_type(output, temp_meta, device=device)[0]
        return output
