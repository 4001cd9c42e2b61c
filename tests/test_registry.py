from __future__ import annotations

import pytest
import torch

from monai_mammo import hookspecs, registry
from monai_mammo.registry import (
    ComponentNotFoundError,
    ComponentRegistry,
    DuplicateComponentError,
    IncompatibleComponentError,
)
from tests.plugin_factory import LOSS_PLUGIN, make_plugin_distribution


pytestmark = pytest.mark.usefixtures("fresh_registry")


def test_builtins_register_through_the_entry_point_group():
    builtin = [p for p in registry.list_plugins() if p["name"] == registry.BUILTIN_PLUGIN]
    assert builtin and builtin[0]["distribution"] == "monai-mammo"
    assert builtin[0]["status"] == "loaded"
    assert set(builtin[0]["hooks"]) == {"register_losses", "register_compositors", "register_metrics"}
    components = registry.list_components()
    assert set(components) >= {"loss", "compositor", "metric"}
    assert "weighted_bce" in components["loss"]
    assert {"alpha_blend", "simple"} <= set(components["compositor"])


def test_build_and_get_return_the_component_and_its_factory():
    from monai_mammo.losses.weighted_bce import BatchWeightedBCELoss

    assert registry.get_loss("weighted_bce") is BatchWeightedBCELoss
    loss = registry.build_loss("weighted_bce", reduction="sum")
    assert isinstance(loss, BatchWeightedBCELoss) and loss.reduction == "sum"
    metric = registry.build_metric("specificity_at_sensitivity", sensitivities=(0.5,))
    assert metric.sensitivities == (0.5,)


def test_unknown_name_lists_the_known_names():
    with pytest.raises(ComponentNotFoundError) as excinfo:
        registry.build_loss("no_such_loss")
    message = str(excinfo.value)
    assert "no_such_loss" in message and "weighted_bce" in message
    with pytest.raises(ValueError, match="known kinds"):
        registry.get_registry().get("optimizer", "adam")


def test_third_party_plugin_is_discovered_and_built(tmp_path, monkeypatch):
    make_plugin_distribution(tmp_path, monkeypatch, "acme-losses", "acme", LOSS_PLUGIN.format(name="half_l1"))
    assert "half_l1" in registry.list_components()["loss"]
    loss = registry.build_loss("half_l1", scale=2.0)
    assert loss(torch.ones(3), torch.zeros(3)).item() == pytest.approx(2.0)
    acme = [p for p in registry.list_plugins() if p["name"] == "acme"][0]
    assert acme["distribution"] == "acme-losses" and acme["version"] == "0.0.1"
    assert acme["hooks"] == ["register_losses"]


def test_duplicate_name_names_both_distributions(tmp_path, monkeypatch):
    make_plugin_distribution(tmp_path / "a", monkeypatch, "first-dist", "first", LOSS_PLUGIN.format(name="clash"))
    make_plugin_distribution(tmp_path / "b", monkeypatch, "second-dist", "second", LOSS_PLUGIN.format(name="clash"))
    with pytest.raises(DuplicateComponentError) as excinfo:
        registry.list_components()
    message = str(excinfo.value)
    assert "clash" in message and "first-dist" in message and "second-dist" in message


def test_duplicate_of_a_builtin_name_is_an_error_too(tmp_path, monkeypatch):
    make_plugin_distribution(tmp_path, monkeypatch, "shadow-dist", "shadow", LOSS_PLUGIN.format(name="weighted_bce"))
    with pytest.raises(DuplicateComponentError, match="monai-mammo.*shadow-dist"):
        registry.build_loss("weighted_bce")


def test_import_failure_is_skipped_with_a_warning_and_others_keep_working(tmp_path, monkeypatch):
    make_plugin_distribution(tmp_path, monkeypatch, "broken-dist", "broken", "import not_a_real_module_xyz\n")
    with pytest.warns(RuntimeWarning, match=r"'broken'.*not_a_real_module_xyz"):
        plugins = registry.list_plugins()
    broken = [p for p in plugins if p["name"] == "broken"][0]
    assert broken["status"] == "failed" and "ModuleNotFoundError" in broken["error"]
    assert "weighted_bce" in registry.list_components()["loss"]


def test_misspelled_hook_is_rejected_by_validation(tmp_path, monkeypatch):
    source = """
    from monai_mammo.hookspecs import Component, hookimpl

    @hookimpl
    def register_loses():
        return []
    """
    make_plugin_distribution(tmp_path, monkeypatch, "typo-dist", "typo", source)
    with pytest.warns(RuntimeWarning, match="register_loses"):
        plugins = registry.list_plugins()
    typo = [p for p in plugins if p["name"] == "typo"][0]
    assert typo["status"] == "failed" and "unknown hook" in typo["error"]
    assert registry.get_registry().plugin_manager.get_plugin("typo") is None


def test_wrong_hook_arguments_are_rejected_by_pluggy(tmp_path, monkeypatch):
    source = """
    from monai_mammo.hookspecs import hookimpl

    @hookimpl
    def register_losses(config):
        return []
    """
    make_plugin_distribution(tmp_path, monkeypatch, "args-dist", "badargs", source)
    with pytest.warns(RuntimeWarning, match="badargs"):
        plugins = registry.list_plugins()
    bad = [p for p in plugins if p["name"] == "badargs"][0]
    assert bad["status"] == "failed" and "config" in bad["error"]
    assert "weighted_bce" in registry.list_components()["loss"]


def test_hook_returning_a_non_component_fails_that_plugin_only(tmp_path, monkeypatch):
    source = """
    from monai_mammo.hookspecs import hookimpl

    @hookimpl
    def register_metrics():
        return [("auc", object, "a tuple, not a Component")]
    """
    make_plugin_distribution(tmp_path, monkeypatch, "tuple-dist", "tuples", source)
    with pytest.warns(RuntimeWarning, match=r"'tuples' \(distribution tuple-dist.*expected monai_mammo.hookspecs.Component"):
        plugins = registry.list_plugins()
    tuples = [p for p in plugins if p["name"] == "tuples"][0]
    assert tuples["status"] == "failed" and "register_metrics returned ('auc'" in tuples["error"]
    assert "roc_auc" in registry.list_components()["metric"]


def test_components_without_a_family_get_their_kind_default(tmp_path, monkeypatch):
    source = """
    from monai_mammo.hookspecs import Component, hookimpl

    @hookimpl
    def register_losses():
        return [Component("plain_loss", "x.y:Loss")]

    @hookimpl
    def register_compositors():
        return [Component("plain_blend", "x.y:Blend")]

    @hookimpl
    def register_metrics():
        return [Component("plain_metric", "x.y:Metric")]
    """
    make_plugin_distribution(tmp_path, monkeypatch, "plain-dist", "plain", source)
    assert registry.component_family("loss", "plain_loss") == "tensor"
    assert registry.component_family("compositor", "plain_blend") == "blend"
    assert registry.component_family("metric", "plain_metric") == "cumulative"
    assert hookspecs.DEFAULT_FAMILY == {"loss": "tensor", "compositor": "blend", "metric": "cumulative"}


def test_component_family_of_the_builtins():
    expected = {
        ("loss", "weighted_bce"): "tensor",
        ("loss", "ttest"): "pixel_masks",
        ("loss", "mse_reconstruction"): "pixel_masks",
        ("loss", "segmentation_ce"): "pixel_masks",
        ("loss", "disentangle"): "multitask",
        ("compositor", "alpha_blend"): "blend",
        ("compositor", "simple"): "blend",
        ("metric", "froc"): "cumulative",
    }
    assert {key: registry.component_family(*key) for key in expected} == expected
    with pytest.raises(ComponentNotFoundError, match="no loss named 'nope'"):
        registry.component_family("loss", "nope")


def test_unknown_family_fails_the_plugin_with_its_name(tmp_path, monkeypatch):
    source = """
    from monai_mammo.hookspecs import Component, hookimpl

    @hookimpl
    def register_losses():
        return [Component("odd_loss", "x.y:Loss", "calls itself a volume loss", family="volumetric")]
    """
    make_plugin_distribution(tmp_path, monkeypatch, "odd-dist", "odd", source)
    with pytest.warns(RuntimeWarning, match=r"plugin 'odd' \(distribution odd-dist 0.0.1\) was skipped"):
        plugins = registry.list_plugins()
    odd = [p for p in plugins if p["name"] == "odd"][0]
    assert odd["status"] == "failed" and odd["hooks"] == []
    assert "'odd_loss' names family 'volumetric'" in odd["error"]
    assert "known loss families: tensor, pixel_masks, multitask" in odd["error"]
    losses = registry.list_components()["loss"]
    assert "odd_loss" not in losses and "weighted_bce" in losses  # the others keep working


def test_accept_families_rejects_with_component_plugin_and_needed_family(tmp_path, monkeypatch):
    make_plugin_distribution(tmp_path, monkeypatch, "acme-losses", "acme", LOSS_PLUGIN.format(name="half_l1"))
    monkeypatch.setenv(registry.PLUGINS_ENV_VAR, "acme")  # the built-ins and acme, whatever else is installed
    registry.reset_registry()
    with pytest.raises(IncompatibleComponentError) as excinfo:
        registry.build_loss("half_l1", accept_families=["multitask"], scale=2.0)
    message = str(excinfo.value)
    assert message.startswith("loss 'half_l1' (family 'tensor', plugin 'acme' of acme-losses) cannot be used here")
    assert "needs a loss of family 'multitask': " + hookspecs.FAMILIES["loss"]["multitask"] in message
    assert message.endswith("Usable loss names: disentangle, dual_branch, latent_cadx, latent_cadx_rpn")
    # several accepted families: both named, every usable loss listed
    with pytest.raises(IncompatibleComponentError) as excinfo:
        registry.build_loss("disentangle", accept_families=["pixel_masks", "tensor"])
    message = str(excinfo.value)
    assert "plugin 'builtin' of monai-mammo" in message and "'pixel_masks': " in message and "; or 'tensor': " in message
    assert message.endswith("Usable loss names: alignment, half_l1, mse_reconstruction, segmentation_ce, ttest, weighted_bce")
    # an accepted family builds, a bare string works too
    assert registry.build_loss("half_l1", accept_families="tensor", scale=2.0).scale == 2.0
    assert isinstance(excinfo.value, ValueError)  # MONAI's config errors and callers catch ValueError


def test_accept_families_checks_before_building(tmp_path, monkeypatch):
    source = """
    from monai_mammo.hookspecs import Component, hookimpl

    def explode(**kwargs):
        raise AssertionError("built although its family was rejected")

    @hookimpl
    def register_compositors():
        return [Component("explosive", explode, "must never be built here")]
    """
    make_plugin_distribution(tmp_path, monkeypatch, "boom-dist", "boom", source)
    with pytest.raises(IncompatibleComponentError, match="compositor 'explosive'"):
        registry.get_registry().build("compositor", "explosive", accept_families=["no_such_family"])


def test_env_var_restricts_third_party_plugins(tmp_path, monkeypatch):
    make_plugin_distribution(tmp_path / "a", monkeypatch, "keep-dist", "keep", LOSS_PLUGIN.format(name="kept"))
    make_plugin_distribution(tmp_path / "b", monkeypatch, "drop-dist", "drop", LOSS_PLUGIN.format(name="dropped"))
    monkeypatch.setenv(registry.PLUGINS_ENV_VAR, "keep")
    registry.reset_registry()
    losses = registry.list_components()["loss"]
    assert "kept" in losses and "dropped" not in losses and "weighted_bce" in losses
    monkeypatch.setenv(registry.PLUGINS_ENV_VAR, "")
    registry.reset_registry()
    assert {p["name"] for p in registry.list_plugins()} == {registry.BUILTIN_PLUGIN}


def test_factory_path_that_does_not_import_names_the_component(tmp_path, monkeypatch):
    source = """
    from monai_mammo.hookspecs import Component, hookimpl

    @hookimpl
    def register_losses():
        return [Component("ghost", "no_such_pkg.losses:Ghost", "missing")]
    """
    make_plugin_distribution(tmp_path, monkeypatch, "ghost-dist", "ghost", source)
    with pytest.raises(ImportError, match="loss 'ghost' of plugin 'ghost'"):
        registry.get_loss("ghost")


def test_registry_accepts_explicit_entry_points():
    from importlib import metadata

    builtin_only = [ep for ep in metadata.entry_points(group="monai_mammo") if ep.name == "builtin"]
    table = ComponentRegistry(entry_points=builtin_only, allowed=None).list_components()
    assert "weighted_bce" in table["loss"]
