"""A sweep as its user writes it: the effective settings `bench run` prints before any work (a sweep file
that reproduces the run, under the command line's names), and what flags changed of a preset, which names
the run's own records folder.

Example:
    >>> differences(load_preset("quick"), override(load_preset("quick"), budget=2, seeds=[0]))
    ['budget=2', 'seeds=0']
    >>> folder_name("quick", ["budget=2", "seeds=0"])
    'quick+budget=2+seeds=0'
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Any

import yaml

from bench.sweep import FLAG_NAMES, SETTING_NAMES, TRACK_OF_FIELD, Sweep

# Shown whatever their value: what every run of the sweep depends on. Other fields are shown when they
# differ from their default.
ALWAYS_SHOWN = ("name", "track", "attacks", "label_methods", "budget", "compute", "models", "datasets", "image_size",
                "batch_sizes", "repetitions", "labels", "bn_stats", "seeds")  # fmt: skip
NOT_SETTINGS = ("name", "description")
_YAML_NAMES = {field: flag for flag, field in FLAG_NAMES.items()}
MAX_FOLDER_NAME = 100


def as_file(sweep: Sweep) -> dict[str, Any]:
    """The sweep's fields under the names a sweep file and the command line use, as plain YAML values,
    leaving out the fields of the track it does not run."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Sweep):
        if TRACK_OF_FIELD.get(f.name, sweep.track) != sweep.track:
            continue
        value = _plain(getattr(sweep, f.name))
        if f.name == "labels_known":
            value = ["known" if known else "unknown" for known in value]
        values[_YAML_NAMES.get(f.name, f.name)] = value
    return values


def settings_text(sweep: Sweep) -> str:
    """The effective settings as YAML: the fields every run depends on, then every other field that differs
    from its default."""
    values, defaults = as_file(sweep), as_file(dataclasses.replace(Sweep(), track=sweep.track))
    shown = {k: v for k, v in values.items() if k in ALWAYS_SHOWN or (k != "description" and v != defaults.get(k))}
    return yaml.safe_dump(shown, sort_keys=False, default_flow_style=None, width=200, allow_unicode=True).rstrip()


def differences(base: Sweep, sweep: Sweep) -> list[str]:
    """What `sweep` changes of `base`, one 'name=value' each, in the order of the sweep's fields. Budgets read
    as one setting: a budget given on the command line replaces the preset's per-attack budgets too."""
    before, after = as_file(base), as_file(sweep)
    # a flag that changes a field the settings hold changes it in each of them: the flag names the change
    replaced = bool(before.get("settings")) and not after.get("settings")  # by a model or dataset given
    changed = [
        k for k, v in after.items()
        if k not in (*NOT_SETTINGS, "settings") and (before.get(k) != v or (replaced and k in SETTING_NAMES))
    ]  # fmt: skip
    if "budgets" in changed:
        changed = [k for k in changed if k != "budgets"] + ([] if "budget" in changed else ["budget"])
    return [f"{k}={_compact(after[k])}" for k in changed]


def folder_name(base: str, changes: list[str]) -> str:
    """'quick+budget=2+seeds=0': file-name safe; a long one is cut and ends in a hash of the whole."""
    name = re.sub(r"[^A-Za-z0-9._,=+-]+", "_", "+".join([base, *changes]))
    if len(name) <= MAX_FOLDER_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: MAX_FOLDER_NAME - 9]}-{digest}"


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _compact(value: Any) -> str:
    """A value on a command line's terms: 'dlg,noise', 'dlg.lr=0.5', '300'."""
    if isinstance(value, list):
        return ",".join(_compact(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k}.{_compact(v)}" if isinstance(v, dict) else f"{k}={_compact(v)}" for k, v in value.items())
    return f"{value:g}" if isinstance(value, float) else str(value)
