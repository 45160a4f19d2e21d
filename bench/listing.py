"""`bench ls`: what is registered, read from an index so that listing imports no numerical library.

The registries fill when their modules are imported, and those modules import torch (over a second).
`bench/listing.json` holds what `bench ls` shows of each registry: one row per registered name, its
description and the kind's extra column (an attack's requirements, a label method's needs, a defense's
parameters), and the presets with their descriptions. The registrations stay the one way to register:
the index is generated from them (`python -m bench.listing` rewrites it after a registration changes)
and `tests/test_listing.py` fails when the two disagree.

Example:
    >>> rows("attacks")[0][:2]
    ['dlg', 'DLG: joint images and soft labels, squared L2 gradient match, L-BFGS (Zhu et al. 2019)']
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

INDEX_FILE = Path(__file__).with_name("listing.json")

# what `bench ls WHAT` prints: its column headers (the name, the description, then any extra column)
HEADERS: dict[str, list[str]] = {
    "attacks": ["attack", "description", "requires"],
    "labels": ["method", "description", "needs"],
    "models": ["model", "description"],
    "datasets": ["dataset", "description"],
    "metrics": ["metric", "description"],
    "defenses": ["defense", "description", "parameters"],
    "presets": ["preset", "description"],
}
LISTS = tuple(HEADERS)


def rows(what: str) -> list[list[str]]:
    """The index's rows for `bench ls WHAT`, sorted by name."""
    return json.loads(INDEX_FILE.read_text())[what]


def cmd_ls(args: argparse.Namespace) -> int:
    """The index's rows; where plugins are declared, they are loaded and their rows follow, marked as such."""
    from tabulate import tabulate

    from bench.plugins import declared_plugins

    table, headers = rows(args.what), HEADERS[args.what]
    if declared_plugins():
        from bench.plugins import load_plugins, registries

        plugins = load_plugins()
        registry = registries().get(args.what)
        table = [[*row, "built-in"] for row in table] + [
            [*index_row(args.what, registry.get(name)), plugin.source.name]
            for plugin in plugins
            for name in plugin.added.get(args.what, ())
        ]
        headers = [*headers, "from"]
    print(tabulate(table, headers=headers))
    if declared_plugins():
        print(f"\nplugins (rows marked with their name; {INDEX_FILE.name} indexes the built-ins only):")
        for plugin in plugins:
            print(f"  {plugin.summary()}")
    return 0


def index_row(what: str, entry: Any) -> list[str]:
    """What `bench ls WHAT` shows of one registered entry: its name, description and the kind's extra column."""
    extra = {
        "attacks": lambda: [entry.obj.requires.short()],
        "labels": lambda: [", ".join(entry.info.get("needs", ()))],
        "defenses": lambda: [", ".join(f.name for f in dataclasses.fields(entry.obj))],
    }
    return [entry.name, entry.description, *extra.get(what, lambda: [])()]


def build_index() -> dict[str, list[list[str]]]:
    """The index as the built-in registrations give it (imports every registering module; plugins' names
    are left out)."""
    from bench.plugins import load_plugins, registries
    from bench.sweep import load_preset, preset_names

    from_plugins = {(kind, name) for plugin in load_plugins() for kind, names in plugin.added.items() for name in names}
    index = {
        what: [index_row(what, e) for e in registry.entries() if (what, e.name) not in from_plugins]
        for what, registry in registries().items()
    }
    index["presets"] = [[name, load_preset(name).description] for name in preset_names()]
    return index


def write_index() -> None:
    from bench.files import write_atomic

    kinds = [
        f"{json.dumps(what)}: [\n" + ",\n".join(f"  {json.dumps(row, ensure_ascii=False)}" for row in table) + "\n ]"
        for what, table in build_index().items()
    ]
    text = "{\n " + ",\n ".join(kinds) + "\n}\n"  # one row a line, so a change reads as one changed line
    write_atomic(INDEX_FILE, text.encode())


if __name__ == "__main__":
    write_index()
    print(f"wrote {INDEX_FILE}")
