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
    from tabulate import tabulate

    print(tabulate(rows(args.what), headers=HEADERS[args.what]))
    return 0


def build_index() -> dict[str, list[list[str]]]:
    """The index as the registrations give it (imports every registering module)."""
    from bench.attack import ATTACKS
    from bench.data import DATASETS
    from bench.defenses import DEFENSES
    from bench.labels import LABELS
    from bench.metrics import METRICS
    from bench.models import MODELS
    from bench.plugins import load_plugins
    from bench.sweep import load_preset, preset_names

    load_plugins()
    extra = {
        "attacks": lambda entry: [entry.obj.requires.short()],
        "labels": lambda entry: [", ".join(entry.info.get("needs", ()))],
        "defenses": lambda entry: [", ".join(f.name for f in dataclasses.fields(entry.obj))],
    }
    registries = {"attacks": ATTACKS, "labels": LABELS, "models": MODELS, "datasets": DATASETS,
                  "metrics": METRICS, "defenses": DEFENSES}  # fmt: skip
    index = {
        what: [[e.name, e.description, *extra.get(what, lambda _: [])(e)] for e in registry.entries()]
        for what, registry in registries.items()
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
