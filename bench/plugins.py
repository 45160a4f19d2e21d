"""Everything that registers: the built-in modules, then the plugins.

A plugin is a module whose import registers attacks, label-recovery methods, models, datasets, metrics or
defenses with the registries' own decorators (`bench.attack.register_attack`, ...). It is found two ways:

- an installed distribution declares it in the entry-point group `gibench.plugins`, e.g. in its
  pyproject.toml: `[project.entry-points."gibench.plugins"]` then `my-attacks = "my_attacks"`;
- the environment variable `GIBENCH_PLUGINS` lists module names, comma-separated, importable from
  `sys.path` (PYTHONPATH), for work not yet packaged.

An entry point may also name a function (`"my_attacks:register"`), which is called without arguments.
Every process loads the plugins itself, from its own environment: each rank of a distributed run does.
A plugin that cannot be loaded, or that registers a name already taken, ends the command with one line
naming it. `declared_plugins()` finds plugins without importing them, so that `bench ls` stays fast
(no torch) where there are none.

Example:
    >>> [plugin.summary() for plugin in load_plugins()]
    ['my-attacks (entry point of my-dist 0.1, my_attacks): attacks my-attack']
"""

from __future__ import annotations

import importlib
import os
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any

from bench.errors import BenchError

BUILT_IN = ("bench.models", "bench.data", "bench.metrics", "bench.labels", "bench.floors", "baselines", "attacks")
ENTRY_POINT_GROUP = "gibench.plugins"
ENV_VARIABLE = "GIBENCH_PLUGINS"


class PluginError(BenchError):
    pass


@dataclass(frozen=True)
class PluginSource:
    """Where a plugin is declared: `name` (the entry point's name, or the module's for GIBENCH_PLUGINS),
    `target` (what is loaded: 'module' or 'module:function') and `origin` (which distribution, or the variable)."""

    name: str
    target: str
    origin: str
    entry_point: metadata.EntryPoint | None = field(default=None, compare=False)

    def __str__(self) -> str:
        """'cosine-adam (entry point of my-dist 0.1, my_attacks)', 'my_attacks (GIBENCH_PLUGINS)'."""
        return f"{self.name} ({self.origin}{'' if self.target == self.name else f', {self.target}'})"


@dataclass(frozen=True)
class Plugin:
    """A loaded plugin: where it came from and the names it registered, by kind (as `bench ls` names kinds)."""

    source: PluginSource
    added: dict[str, tuple[str, ...]]

    def summary(self) -> str:
        """'my-attacks (entry point of my-dist 0.1, my_attacks): attacks my-attack'."""
        added = "; ".join(f"{kind} {', '.join(names)}" for kind, names in self.added.items()) or "registered nothing"
        return f"{self.source}: {added}"


def declared_plugins() -> list[PluginSource]:
    """The plugins declared by installed distributions and by GIBENCH_PLUGINS, none of them imported."""
    sources = []
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = entry_point.dist
        origin = f"entry point of {dist.name} {dist.version}" if dist is not None else "entry point"
        sources.append(PluginSource(entry_point.name, entry_point.value, origin, entry_point))
    declared = {s.target for s in sources}
    for module in os.environ.get(ENV_VARIABLE, "").split(","):
        module = module.strip()
        if module and module not in declared:
            sources.append(PluginSource(module, module, ENV_VARIABLE))
            declared.add(module)
    return sources


_LOADED: dict[PluginSource, Plugin] = {}


def load_plugins() -> list[Plugin]:
    """Import the built-in registering modules, then every declared plugin not loaded yet (once each)."""
    for module in BUILT_IN:
        importlib.import_module(module)
    for source in declared_plugins():
        if source not in _LOADED:
            _LOADED[source] = _load(source)
    return list(_LOADED.values())


def loaded_plugins() -> list[Plugin]:
    """The plugins this process has loaded so far."""
    return list(_LOADED.values())


def registries() -> dict[str, Any]:
    """Every registry, by the name `bench ls` gives its kind."""
    from bench.attack import ATTACKS
    from bench.data import DATASETS
    from bench.defenses import DEFENSES
    from bench.labels import LABELS
    from bench.metrics import METRICS
    from bench.models import MODELS

    return {"attacks": ATTACKS, "labels": LABELS, "models": MODELS, "datasets": DATASETS, "metrics": METRICS,
            "defenses": DEFENSES}  # fmt: skip


def _names() -> dict[str, set[str]]:
    return {kind: set(registry.names()) for kind, registry in registries().items()}


def _load(source: PluginSource) -> Plugin:
    before = _names()
    try:
        loaded = source.entry_point.load() if source.entry_point is not None else importlib.import_module(source.target)
        if callable(loaded) and not isinstance(loaded, ModuleType):
            loaded()
    except Exception as err:  # whatever the plugin raised: one line naming it
        problem = " ".join(traceback.format_exception_only(type(err), err)[-1].split())
        raise PluginError(f"plugin {source} failed to load: {problem}") from None
    after = _names()
    added = {kind: tuple(sorted(after[kind] - before[kind])) for kind in after if after[kind] - before[kind]}
    return Plugin(source, added)
