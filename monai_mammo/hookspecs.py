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
        return [Component("my_loss", "my_pkg.losses:MyLoss", "what it does, in one line")]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import pluggy

PROJECT_NAME = "monai_mammo"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@dataclass(frozen=True)
class Component:
    """A named, buildable component contributed by a plugin.

    Args:
        name: the name configs use to pick it, e.g. ``"ttest"``. Unique within its kind.
        factory: a callable returning the component (a class or a function), or an import path
            ``"package.module:attribute"`` resolved on first use, so listing plugins does not
            import heavy modules.
        description: one line saying what it is.
    """

    name: str
    factory: Callable[..., Any] | str
    description: str = ""


@hookspec
def register_losses() -> list[Component]:
    """Return the loss functions this plugin provides.

    Called once, when the registry first loads its plugins. Each factory builds a
    ``torch.nn.Module`` loss (preferably a ``monai.losses``-style ``_Loss`` with ``reduction``).
    """


@hookspec
def register_compositors() -> list[Component]:
    """Return the image compositors this plugin provides.

    Called once, when the registry first loads its plugins. Each factory builds a callable
    ``compositor(mass, glands, box) -> (composite, alpha)`` where ``mass`` and ``glands`` are
    ``(C, H, W)`` (or batched ``(B, C, H, W)``) tensors and ``box`` is ``[x0, y0, x1, y1]`` in
    pixels of ``mass`` (DAB-Net's alpha-blending interface).
    """


@hookspec
def register_metrics() -> list[Component]:
    """Return the metrics this plugin provides.

    Called once, when the registry first loads its plugins. Each factory builds a metric,
    preferably a ``monai.metrics.CumulativeIterationMetric`` so ``IgniteMetricHandler`` can
    wrap it.
    """
