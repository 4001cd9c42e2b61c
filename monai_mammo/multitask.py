"""Multi-task batches: targets as dicts, and a weighted sum of loss terms that per-sample flags switch off.

Methods with several targets per image (ASN: image + positive mask + valid mask; DAB-Net: label +
clear mass + glands for composites; Cls-Det: image labels + region labels for fully labelled
images; LatentCADx: class + in-bounds mask) run on MONAI's stock ``SupervisedTrainer``:

* :class:`DictTargetPrepareBatch` is the trainer's ``prepare_batch``: it returns the image and a
  dict of named targets (moved to the device), plus keyword arguments for the network, so nothing
  is packed into channels and unpacked by index;
* :class:`WeightedLossTerms` is the ``loss_function``: ``sum_t w_t * L_t`` where each term gives a
  per-sample loss and a term with a flag is averaged over the samples whose flag is set (0 when none
  is: a batch without composites, without fully labelled images, without masks).

The trainer calls ``loss_function(prediction, target)``; with these two the prediction may be a dict
(a network with several heads) and the target is the dict built here (loss family ``"multitask"`` in
:mod:`monai_mammo.hookspecs`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from monai.data import MetaTensor
from monai.engines.utils import PrepareBatch
from monai.utils import LossReduction
from torch.nn.modules.loss import _Loss

__all__ = ["DictTargetPrepareBatch", "WeightedLossTerms", "LossTerm"]


def _as_plain_tensor(value: Any) -> Any:
    if isinstance(value, MetaTensor):
        return value.as_tensor()
    if isinstance(value, torch.Tensor):
        return value
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        return value  # lists of varying length (points, boxes) stay as they are


class DictTargetPrepareBatch(PrepareBatch):
    """``prepare_batch`` returning ``(image, {name: batch[key]}, (), network_kwargs)``.

    Args:
        image_key: the network input. Default ``"image"``.
        target_keys: ``{target name: batch key}`` (or a list of keys used as both). Required
            targets must be in every batch.
        optional_keys: target names that may be missing from a batch (they are then absent from the
            target dict, and the loss treats them as such, e.g. "no sample is composite").
        network_kwargs: keyword arguments for the network call (e.g. ``{"return_reconstructions": True}``).

    Example::

        >>> import torch
        >>> prepare = DictTargetPrepareBatch(target_keys={"label": "y", "mask": "m"}, optional_keys=["mask"])
        >>> image, target, args, kwargs = prepare({"image": torch.zeros(2, 1, 4, 4), "y": [0, 1]})
        >>> sorted(target), target["label"].tolist()
        (['label'], [0, 1])
    """

    def __init__(
        self,
        image_key: str = "image",
        target_keys: Mapping[str, str] | Sequence[str] = ("label",),
        optional_keys: Sequence[str] = (),
        network_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.image_key = image_key
        self.target_keys = dict(target_keys) if isinstance(target_keys, Mapping) else {k: k for k in target_keys}
        self.optional_keys = set(optional_keys)
        unknown = self.optional_keys - set(self.target_keys)
        if unknown:
            raise ValueError(f"DictTargetPrepareBatch: optional_keys {sorted(unknown)} are not targets {sorted(self.target_keys)}")
        self.network_kwargs = dict(network_kwargs or {})

    def __call__(
        self,
        batchdata: Mapping[str, Any],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, dict[str, Any], tuple, dict[str, Any]]:
        def move(value: Any) -> Any:
            value = _as_plain_tensor(value)
            return value.to(device=device, non_blocking=non_blocking, **kwargs) if isinstance(value, torch.Tensor) else value

        if self.image_key not in batchdata:
            raise KeyError(f"DictTargetPrepareBatch: batch has no {self.image_key!r}; keys: {sorted(batchdata)}")
        targets: dict[str, Any] = {}
        for name, key in self.target_keys.items():
            if batchdata.get(key) is None:
                if name in self.optional_keys:
                    continue
                raise KeyError(f"DictTargetPrepareBatch: batch has no {key!r} (target {name!r}); keys: {sorted(batchdata)}")
            targets[name] = move(batchdata[key])
        return move(batchdata[self.image_key]), targets, (), dict(self.network_kwargs)


#: a loss term: ``term(prediction, target) -> (B,)`` per-sample loss, or None when the term is off
LossTerm = Callable[[Any, Mapping[str, Any]], "torch.Tensor | None"]


class WeightedLossTerms(_Loss):
    """``L = sum_t w_t * L_t``, each term averaged over the samples its flag selects.

    Each term is a callable ``term(prediction, target) -> (B,)`` giving one loss per sample (or
    ``None`` when it does not apply, e.g. a head the network lacks). A term with a flag
    (``flags[name]`` = a key of the target dict holding a ``(B,)`` bool or 0/1 tensor) is averaged
    over the flagged samples only, and contributes an exact 0 (still in the graph) when no sample is
    flagged or the flag is absent from the target; unflagged samples are dropped with
    ``torch.where``, so a NaN placeholder target there cannot leak into the loss. A term without a
    flag is averaged over the batch.

    Args:
        terms: ``{name: term}``, evaluated in this order.
        weights: ``{name: weight}``; missing names weigh 1. A weight of 0 skips the term.
        flags: ``{name: target key}`` of per-sample flags.
        reduction: ``"mean"`` (default, as above) or ``"none"`` (per-sample weighted sum ``(B,)``,
            unflagged samples contributing 0 to a flagged term).

    :meth:`terms_of` returns the weighted value of each term for logging.

    Example::

        >>> import torch
        >>> terms = {"a": lambda p, t: p["x"], "b": lambda p, t: 10 * p["x"]}
        >>> loss = WeightedLossTerms(terms, weights={"b": 0.5}, flags={"b": "has_b"})
        >>> pred = {"x": torch.tensor([1.0, 3.0])}
        >>> float(loss(pred, {"has_b": torch.tensor([False, True])}))   # mean(1, 3) + 0.5 * 30
        17.0
        >>> float(loss(pred, {"has_b": torch.tensor([False, False])}))  # no sample has b
        2.0
    """

    def __init__(
        self,
        terms: Mapping[str, LossTerm],
        weights: Mapping[str, float] | None = None,
        flags: Mapping[str, str] | None = None,
        reduction: LossReduction | str = LossReduction.MEAN,
    ) -> None:
        super().__init__(reduction=LossReduction(reduction).value)
        if self.reduction == LossReduction.SUM.value:
            raise ValueError("WeightedLossTerms: reduction must be 'mean' or 'none'")
        self.terms = dict(terms)
        self.weights = {name: float((weights or {}).get(name, 1.0)) for name in self.terms}
        self.flags = dict(flags or {})
        unknown = (set(weights or {}) | set(self.flags)) - set(self.terms)
        if unknown:
            raise ValueError(f"WeightedLossTerms: weights/flags for unknown terms {sorted(unknown)}; terms: {list(self.terms)}")
        negative = [n for n, w in self.weights.items() if w < 0]
        if negative:
            raise ValueError(f"WeightedLossTerms: negative weights for {negative}")

    def _flag(self, name: str, target: Mapping[str, Any], per_sample: torch.Tensor) -> torch.Tensor | None:
        key = self.flags.get(name)
        if key is None:
            return None
        value = target.get(key)
        if value is None:
            return torch.zeros_like(per_sample, dtype=torch.bool)
        flag = torch.as_tensor(value, device=per_sample.device).reshape(-1).bool()
        if flag.shape != per_sample.shape:
            raise ValueError(f"flag {key!r} of term {name!r} has shape {tuple(flag.shape)}, the term {tuple(per_sample.shape)}")
        return flag

    def terms_of(self, prediction: Any, target: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """``{name: (B,) weighted per-sample loss, zero where the flag is off}`` and, per term, the
        number of samples it is averaged over (``"<name>/count"``)."""
        out: dict[str, torch.Tensor] = {}
        for name, term in self.terms.items():
            weight = self.weights[name]
            if weight == 0:
                continue
            per_sample = term(prediction, target)
            if per_sample is None:
                continue
            if per_sample.ndim != 1:
                raise ValueError(f"term {name!r} must return a per-sample loss (B,), got shape {tuple(per_sample.shape)}")
            flag = self._flag(name, target, per_sample)
            if flag is None:
                out[name] = weight * per_sample
                out[f"{name}/count"] = per_sample.new_tensor(float(per_sample.shape[0]))
            else:
                out[name] = weight * torch.where(flag, per_sample, torch.zeros_like(per_sample))
                out[f"{name}/count"] = flag.sum().to(per_sample.dtype)
        return out

    def forward(self, prediction: Any, target: Mapping[str, Any]) -> torch.Tensor:
        if not isinstance(target, Mapping):
            raise TypeError(f"WeightedLossTerms: the target must be a dict of named targets, got {type(target).__name__}")
        parts = self.terms_of(prediction, target)
        names = [n for n in parts if not n.endswith("/count")]
        if not names:
            raise ValueError("WeightedLossTerms: every term is off (zero weight or not applicable)")
        if self.reduction == LossReduction.NONE.value:
            return torch.stack([parts[n] for n in names]).sum(0)
        total = None
        for name in names:
            value = parts[name].sum() / parts[f"{name}/count"].clamp(min=1)
            total = value if total is None else total + value
        return total
