"""Import every module that registers something, so the registries are complete."""

from __future__ import annotations

import importlib

MODULES = ("bench.models", "bench.data", "bench.metrics", "bench.labels", "bench.floors", "baselines", "attacks")


def load_plugins() -> None:
    for name in MODULES:
        importlib.import_module(name)
