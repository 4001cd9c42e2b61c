"""The component registry: losses, compositors and metrics contributed by plugins, picked by name.

Plugins are modules exposed under the entry-point group ``monai_mammo`` (see
:mod:`monai_mammo.hookspecs`). monai-mammo's own components come in through the same group, as the
entry point ``builtin``. Bundle configs build components by name::

    loss:
      _target_: monai_mammo.registry.build_loss
      name: ttest
      beta: 0.8

so ``--loss#name <another>`` swaps in any installed plugin's loss.

Set ``MONAI_MAMMO_PLUGINS`` to a comma-separated list of entry-point names to load only those
third-party plugins (the built-ins always load); set it to an empty string to load none. Plugins
that fail to import, whose hooks fail pluggy's validation, or whose hooks return something the
contract does not allow (not a :class:`~monai_mammo.hookspecs.Component`, or a family not in
:data:`~monai_mammo.hookspecs.FAMILIES`) are skipped with a warning naming them and shown as failed by
``monai-mammo plugins``; the others keep working.

Each component implements one call contract, its *family* (:data:`monai_mammo.hookspecs.FAMILIES`).
A bundle config names the families it can call, and a component of another family is rejected
when the config is built, naming the component, its plugin and what the bundle needs::

    loss:
      _target_: monai_mammo.registry.build_loss
      name: disentangle
      accept_families: [multitask]

Example::

    >>> from monai_mammo import registry
    >>> "weighted_bce" in registry.list_components()["loss"]
    True
    >>> loss = registry.build_loss("weighted_bce")
    >>> registry.component_family("loss", "ttest")
    'pixel_masks'
"""

from __future__ import annotations

import importlib
import os
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from collections.abc import Sequence
from typing import Any, Callable

import pluggy

from monai_mammo import hookspecs
from monai_mammo.hookspecs import Component

ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME
PLUGINS_ENV_VAR = "MONAI_MAMMO_PLUGINS"
BUILTIN_PLUGIN = "builtin"

#: component kind -> the hook that registers it
KIND_HOOKS: dict[str, str] = {
    "loss": "register_losses",
    "compositor": "register_compositors",
    "metric": "register_metrics",
}


class ComponentNotFoundError(KeyError):
    """No component of this kind has the requested name."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class IncompatibleComponentError(ValueError):
    """A component whose call contract (family) the bundle cannot use."""


class DuplicateComponentError(RuntimeError):
    """Two plugins registered a component of the same kind under the same name."""


@dataclass
class PluginRecord:
    """What the registry knows about one entry point: where it came from and whether it loaded."""

    name: str
    distribution: str
    version: str
    module: str
    hooks: list[str] = field(default_factory=list)
    status: str = "loaded"
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "hooks": list(self.hooks),
            "status": self.status,
            "error": self.error,
        }


@dataclass(frozen=True)
class RegisteredComponent:
    """A component together with the plugin and distribution that registered it."""

    kind: str
    component: Component
    plugin: str
    distribution: str


class ComponentRegistry:
    """Loads plugins from entry points and indexes their components by kind and name.

    Args:
        entry_points: the entry points to load; default: those of the group ``monai_mammo``.
        allowed: names of third-party plugins to load (built-ins always load); ``None`` loads all.
            Default: read from ``MONAI_MAMMO_PLUGINS``.
    """

    def __init__(
        self,
        entry_points: list[metadata.EntryPoint] | None = None,
        allowed: set[str] | None = None,
    ) -> None:
        self.plugin_manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.plugin_manager.add_hookspecs(hookspecs)
        self.plugins: list[PluginRecord] = []
        self._components: dict[str, dict[str, RegisteredComponent]] | None = None
        self._plugin_components: dict[str, dict[str, list[Component]]] = {}
        if entry_points is None:
            entry_points = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
        if allowed is None:
            allowed = allowed_plugins_from_env()
        for entry_point in sorted(entry_points, key=lambda ep: ep.name):
            if allowed is not None and entry_point.name != BUILTIN_PLUGIN and entry_point.name not in allowed:
                continue
            self._load(entry_point)

    def _load(self, entry_point: metadata.EntryPoint) -> None:
        dist = entry_point.dist
        record = PluginRecord(
            name=entry_point.name,
            distribution=dist.name if dist is not None else "?",
            version=dist.version if dist is not None else "?",
            module=entry_point.value,
        )
        self.plugins.append(record)
        try:
            plugin = entry_point.load()
        except Exception as exc:  # a broken plugin must not take the others down
            self._fail(record, f"import failed: {type(exc).__name__}: {exc}")
            return
        try:
            self.plugin_manager.register(plugin, name=entry_point.name)
        except pluggy.PluginValidationError as exc:
            self._fail(record, f"invalid hook implementation: {exc}")
            return
        except ValueError as exc:  # pluggy: plugin name or object already registered
            self._fail(record, str(exc))
            return
        record.hooks = sorted(impl.name for impl in self.plugin_manager.get_hookcallers(plugin) or [])
        unknown = self._unknown_hooks(plugin)
        if unknown:
            self.plugin_manager.unregister(plugin)
            record.hooks = []
            known = ", ".join(sorted(KIND_HOOKS.values()))
            self._fail(record, f"implements unknown hook(s) {', '.join(unknown)}; known hooks: {known}")
            return
        try:
            self._plugin_components[record.name] = self._validated_components(plugin)
        except Exception as exc:  # a hook that raises or returns what the contract does not allow
            self.plugin_manager.unregister(plugin)
            record.hooks = []
            self._fail(record, str(exc) if isinstance(exc, TypeError) else f"{type(exc).__name__}: {exc}")

    def _validated_components(self, plugin: object) -> dict[str, list[Component]]:
        """Call the plugin's hooks once and check what they return: :class:`Component` objects of a
        known family. Done when the plugin loads, so a bad plugin is reported as failed (with its
        name) and left out, instead of failing every later lookup."""
        found: dict[str, list[Component]] = {}
        implementations = {
            caller.name: impl.function
            for caller in self.plugin_manager.get_hookcallers(plugin) or []
            for impl in caller.get_hookimpls()
            if impl.plugin is plugin
        }
        for kind, hook_name in KIND_HOOKS.items():
            if hook_name not in implementations:
                continue
            components = list(implementations[hook_name]() or [])
            for component in components:
                if not isinstance(component, Component):
                    raise TypeError(
                        f"{hook_name} returned {component!r}; expected monai_mammo.hookspecs.Component"
                    )
                family = component.family or hookspecs.DEFAULT_FAMILY[kind]
                if family not in hookspecs.FAMILIES[kind]:
                    raise TypeError(
                        f"{kind} {component.name!r} names family {family!r}; known {kind} families: "
                        f"{', '.join(hookspecs.FAMILIES[kind])}"
                    )
            found[kind] = components
        return found

    def _unknown_hooks(self, plugin: object) -> list[str]:
        """Hook implementations with no matching spec (usually a misspelled hook name)."""
        unknown = []
        for hook_caller in self.plugin_manager.get_hookcallers(plugin) or []:
            if not hook_caller.has_spec():
                unknown.append(hook_caller.name)
        return sorted(unknown)

    @staticmethod
    def _fail(record: PluginRecord, reason: str) -> None:
        record.status = "failed"
        record.error = reason
        warnings.warn(
            f"monai-mammo plugin {record.name!r} (distribution {record.distribution} {record.version}) "
            f"was skipped: {reason}",
            RuntimeWarning,
            stacklevel=4,
        )

    @property
    def components(self) -> dict[str, dict[str, RegisteredComponent]]:
        """``{kind: {name: RegisteredComponent}}``, collected on first use."""
        if self._components is None:
            self._components = self._collect()
        return self._components

    def _collect(self) -> dict[str, dict[str, RegisteredComponent]]:
        records = {record.name: record for record in self.plugins}
        table: dict[str, dict[str, RegisteredComponent]] = {kind: {} for kind in KIND_HOOKS}
        for plugin_name, by_kind in self._plugin_components.items():
            record = records[plugin_name]
            for kind, components in by_kind.items():
                for component in components:
                    previous = table[kind].get(component.name)
                    if previous is not None:
                        raise DuplicateComponentError(
                            f"{kind} {component.name!r} is registered twice: by plugin {previous.plugin!r} "
                            f"(distribution {previous.distribution}) and by plugin {record.name!r} "
                            f"(distribution {record.distribution})"
                        )
                    table[kind][component.name] = RegisteredComponent(kind, component, record.name, record.distribution)
        return table

    def entry(self, kind: str, name: str) -> RegisteredComponent:
        """The registered component ``name`` of ``kind``; an unknown name lists the known ones."""
        if kind not in KIND_HOOKS:
            raise ValueError(f"unknown component kind {kind!r}; known kinds: {', '.join(KIND_HOOKS)}")
        registered = self.components[kind].get(name)
        if registered is None:
            known = ", ".join(sorted(self.components[kind])) or "(none)"
            raise ComponentNotFoundError(f"no {kind} named {name!r}; known {kind} names: {known}")
        return registered

    def family(self, kind: str, name: str) -> str:
        """The call contract (:data:`monai_mammo.hookspecs.FAMILIES`) component ``name`` implements."""
        return self.entry(kind, name).component.family or hookspecs.DEFAULT_FAMILY[kind]

    def get(self, kind: str, name: str) -> Callable[..., Any]:
        """Return the factory of component ``name`` of ``kind``, importing it if it is a path."""
        registered = self.entry(kind, name)
        return resolve_factory(registered.component.factory, f"{kind} {name!r} of plugin {registered.plugin!r}")

    def check_family(self, kind: str, name: str, accept_families: str | Sequence[str]) -> str:
        """Return the family of ``name``; raise :class:`IncompatibleComponentError` when it is not one
        of ``accept_families``, naming the component, its origin and what the caller needs."""
        accepted = [accept_families] if isinstance(accept_families, str) else list(accept_families)
        family = self.family(kind, name)
        if family not in accepted:
            registered = self.entry(kind, name)
            needs = "; or ".join(f"{f!r}: {hookspecs.FAMILIES[kind].get(f, '?')}" for f in accepted)
            usable = sorted(n for n in self.components[kind] if self.family(kind, n) in accepted)
            raise IncompatibleComponentError(
                f"{kind} {name!r} (family {family!r}, plugin {registered.plugin!r} of {registered.distribution}) "
                f"cannot be used here: this config needs a {kind} of family {needs}. "
                f"Usable {kind} names: {', '.join(usable) or '(none)'}"
            )
        return family

    def build(self, kind: str, name: str, accept_families: str | Sequence[str] | None = None, **kwargs: Any) -> Any:
        """Build component ``name`` of ``kind`` with ``kwargs``; with ``accept_families``, first check
        that it implements one of those call contracts (:meth:`check_family`)."""
        if accept_families is not None:
            self.check_family(kind, name, accept_families)
        return self.get(kind, name)(**kwargs)

    def list_components(self) -> dict[str, list[str]]:
        return {kind: sorted(names) for kind, names in self.components.items()}

    def describe_components(self) -> dict[str, list[dict[str, str]]]:
        """Name, description and origin of every component, by kind."""
        return {
            kind: [
                {
                    "name": name,
                    "family": entry.component.family or hookspecs.DEFAULT_FAMILY[kind],
                    "description": entry.component.description,
                    "plugin": entry.plugin,
                    "distribution": entry.distribution,
                }
                for name, entry in sorted(entries.items())
            ]
            for kind, entries in self.components.items()
        }


def allowed_plugins_from_env() -> set[str] | None:
    """Names in ``MONAI_MAMMO_PLUGINS``; ``None`` when it is unset (load every plugin)."""
    value = os.environ.get(PLUGINS_ENV_VAR)
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def resolve_factory(factory: Callable[..., Any] | str, what: str) -> Callable[..., Any]:
    """Return ``factory`` itself, or import it when it is a ``"module:attribute"`` path."""
    if callable(factory):
        return factory
    module_name, _, attribute = factory.partition(":")
    if not attribute:
        raise ValueError(f"{what}: factory path {factory!r} must look like 'package.module:attribute'")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ImportError(f"{what}: cannot import factory {factory!r}: {exc}") from exc
    return target


_registry: ComponentRegistry | None = None


def get_registry() -> ComponentRegistry:
    """The process-wide registry, loaded on first use."""
    global _registry
    if _registry is None:
        _registry = ComponentRegistry()
    return _registry


def reset_registry() -> None:
    """Forget the loaded plugins; the next call loads them again (after installs or env changes)."""
    global _registry
    _registry = None


def get_loss(name: str) -> Callable[..., Any]:
    """Factory of the loss ``name``."""
    return get_registry().get("loss", name)


def get_compositor(name: str) -> Callable[..., Any]:
    """Factory of the compositor ``name``."""
    return get_registry().get("compositor", name)


def get_metric(name: str) -> Callable[..., Any]:
    """Factory of the metric ``name``."""
    return get_registry().get("metric", name)


def build_loss(name: str, accept_families: str | Sequence[str] | None = None, **kwargs: Any) -> Any:
    """Build the loss ``name``, e.g. ``build_loss("ttest", beta=0.8)``; ``accept_families`` (e.g.
    ``["pixel_masks", "tensor"]``) rejects a loss with another call contract, naming it."""
    return get_registry().build("loss", name, accept_families, **kwargs)


def build_compositor(name: str, accept_families: str | Sequence[str] | None = None, **kwargs: Any) -> Any:
    """Build the compositor ``name``, e.g. ``build_compositor("alpha_blend", sigma_scale=0.5)``."""
    return get_registry().build("compositor", name, accept_families, **kwargs)


def build_metric(name: str, accept_families: str | Sequence[str] | None = None, **kwargs: Any) -> Any:
    """Build the metric ``name``, e.g. ``build_metric("froc", radius_mm=1.0)``."""
    return get_registry().build("metric", name, accept_families, **kwargs)


def component_family(kind: str, name: str) -> str:
    """The family (call contract) of component ``name`` of ``kind``, e.g. ``component_family("loss", "ttest")``."""
    return get_registry().family(kind, name)


def list_components() -> dict[str, list[str]]:
    """``{kind: [names]}`` of every loaded component."""
    return get_registry().list_components()


def list_plugins() -> list[dict[str, Any]]:
    """One dict per plugin: name, distribution, version, module, hooks, status and error."""
    return [record.as_dict() for record in get_registry().plugins]
