"""The plugin contract of monai-mammo.

A plugin is any module exposed under the entry-point group ``monai_mammo``. It implements one or
more of the hooks below with the :data:`hookimpl` marker; each hook returns a list of
:class:`Component`. monai-mammo's own losses, compositors and metrics register through exactly this
path (``monai_mammo.builtins``), so the third-party route is exercised on every run.

Example plugin module (declared in its ``pyproject.toml`` as
``[project.entry-points.monai_mammo] my_plugin = "my_pkg.plugin"``)::

    from monai_mammo.hookspecs import Component, hookimpl

    @hookimpl
    def register_losses():
        return [Component("my_loss", "my_pkg.losses:MyLoss", "what it does, in one line", family="tensor")]

Each component names its *family*, the call contract it implements (:data:`FAMILIES`); a plugin
whose hooks return anything but :class:`Component` objects of a known family is reported as failed
when it loads (``monai-mammo plugins`` shows why) and the other plugins keep working.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import pluggy

PROJECT_NAME = "monai_mammo"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


#: The call contract of each component kind, by family. A component names the family it implements
#: (:attr:`Component.family`); a bundle config names the families it can call
#: (``build_loss(name, accept_families=[...])``) and any other component is rejected when the config
#: is built, with a message naming the component and the family the bundle needs.
FAMILIES: dict[str, dict[str, str]] = {
    "loss": {
        # MONAI's own contract (DiceLoss, FocalLoss, BCEWithLogitsLoss): logits and a target of the
        # same shape, pixel masks or image labels alike.
        "tensor": "loss(prediction: Tensor (B, C, ...), target: Tensor of the same shape) -> Tensor",
        # Reconstruction-style training of a pixel map from the image itself and point labels (ASN).
        "pixel_masks": (
            "loss(prediction: Tensor (B, C, H, W), target: {'image': (B, C, H, W), "
            "'positive_mask': (B, 1, H, W), 'valid_mask': (B, 1, H, W)}) -> Tensor"
        ),
        # Several outputs and several targets, with per-sample flags that switch terms off
        # (see monai_mammo.multitask).
        "multitask": "loss(prediction: Mapping[str, Tensor], target: Mapping[str, Tensor]) -> Tensor",
    },
    "compositor": {
        "blend": "compositor(mass: Tensor (C, H, W), glands: Tensor (C, H, W), box: [x0, y0, x1, y1]) -> (composite, alpha)",
    },
    "metric": {
        "cumulative": "a monai.metrics.CumulativeIterationMetric: metric(y_pred, y), then aggregate()",
    },
}

#: The family a component has when it names none (components written before families existed).
DEFAULT_FAMILY: dict[str, str] = {"loss": "tensor", "compositor": "blend", "metric": "cumulative"}


@dataclass(frozen=True)
class Component:
    """A named, buildable component contributed by a plugin.

    Args:
        name: the name configs use to pick it, e.g. ``"ttest"``. Unique within its kind.
        factory: a callable returning the component (a class or a function), or an import path
            ``"package.module:attribute"`` resolved on first use, so listing plugins does not
            import heavy modules.
        description: one line saying what it is.
        family: the call contract it implements, one of :data:`FAMILIES` of its kind; empty: the
            kind's :data:`DEFAULT_FAMILY` (``"tensor"`` for a loss).
    """

    name: str
    factory: Callable[..., Any] | str
    description: str = ""
    family: str = ""


@hookspec
def register_losses() -> list[Component]:
    """Return the loss functions this plugin provides.

    Called once, when the registry first loads its plugins. Each factory builds a
    ``torch.nn.Module`` loss (preferably a ``monai.losses``-style ``_Loss`` with ``reduction``),
    called as ``loss(prediction, target)``. What ``prediction`` and ``target`` hold is the
    component's family (:data:`FAMILIES`): ``"tensor"`` (MONAI's contract, the default),
    ``"pixel_masks"`` (target a dict of image, positive and valid masks) or ``"multitask"``
    (dicts on both sides).
    """


@hookspec
def register_compositors() -> list[Component]:
    """Return the image compositors this plugin provides.

    Called once, when the registry first loads its plugins. Each factory builds a callable
    ``compositor(mass, glands, box) -> (composite, alpha)`` where ``mass`` and ``glands`` are
    ``(C, H, W)`` (or batched ``(B, C, H, W)``) tensors and ``box`` is ``[x0, y0, x1, y1]`` in
    pixels of ``mass`` (DAB-Net's alpha-blending interface; family ``"blend"``, the only one).
    """


@hookspec
def register_metrics() -> list[Component]:
    """Return the metrics this plugin provides.

    Called once, when the registry first loads its plugins. Each factory builds a metric,
    a ``monai.metrics.CumulativeIterationMetric`` (family ``"cumulative"``, the only one) so
    ``IgniteMetricHandler`` can wrap it.
    """
