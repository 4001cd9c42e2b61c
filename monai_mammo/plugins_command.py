"""``monai-mammo plugins``: what was loaded, from which distribution, with which hooks, and the call
contract (family, :data:`monai_mammo.hookspecs.FAMILIES`) each component implements."""

from __future__ import annotations

import argparse
import json

from monai_mammo import hookspecs, registry

KIND_TITLES = {"loss": "Losses", "compositor": "Compositors", "metric": "Metrics"}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def run(args: argparse.Namespace) -> int:
    plugins = registry.list_plugins()
    components = registry.get_registry().describe_components()
    if args.json:
        listing = {"plugins": plugins, "components": components, "families": hookspecs.FAMILIES}
        print(json.dumps(listing, indent=2))
        return 0
    print("Plugins:")
    for plugin in plugins:
        hooks = ", ".join(plugin["hooks"]) or "-"
        origin = f"{plugin['distribution']} {plugin['version']}"
        print(f"  {plugin['name']:<16} {origin:<28} {plugin['status']:<7} hooks: {hooks}")
        if plugin["error"]:
            print(f"  {'':<20} error: {plugin['error']}")
    for kind, entries in components.items():
        print(f"\n{KIND_TITLES.get(kind, kind)} (name, family, plugin, description):")
        for entry in entries:
            print(f"  {entry['name']:<28} {entry['family']:<12} [{entry['plugin']}] {entry['description']}")
    print("\nFamilies (the call contract a bundle config accepts with accept_families=[...]):")
    for kind, families in hookspecs.FAMILIES.items():
        for family, contract in families.items():
            print(f"  {kind:<10} {family:<12} {contract}")
    return 0
