"""Sweeps: a grid over attacks x scenarios, defined by a YAML file, a shipped preset, or flags.

Example:
    >>> sweep = load_preset("smoke")
    >>> cells = expand(sweep)
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from annotated_types import Ge, Gt, MinLen
from pydantic import PlainValidator

from bench.attack import attack_config, config_values
from bench.defaults import DEFAULT_SCENARIO
from bench.defenses import parse_defense
from bench.errors import BenchError
from bench.record import run_id
from bench.scenario import Scenario
from bench.threat import ThreatModel
from bench.update import ClientUpdate
from bench.typed import Axis, Count, Name, NonNegative, Rate, Seed, check_fields

PRESET_DIR = Path(__file__).resolve().parent / "presets"
# Fields only one track reads: giving them to the other track is a mistake, not a no-op.
TRACK_OF_FIELD = {
    "attacks": "attacks", "budget": "attacks", "budgets": "attacks", "attack_options": "attacks", "compute": "attacks",
    "label_methods": "labels",
}  # fmt: skip
SWEEP_ONLY = ("name", "description", "track", "settings")  # fields a setting cannot change
SETTING_NAMES = {"models", "datasets"}  # given on the command line, they name a setting of their own



def _budgets(value: object) -> object:
    """One budget or a non-empty list of them, each an int >= 1 (one check, so an error names the attack)."""
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ValueError("give one budget or a non-empty list of them")
    for v in values:
        if not isinstance(v, int) or isinstance(v, bool):
            raise ValueError("Input should be a valid integer")
        if v < 1:
            raise ValueError("Input should be greater than or equal to 1")
    return value


Budgets = Annotated[int | list[int], PlainValidator(_budgets)]


def flops_value(value: object) -> int:
    """A FLOPs count: a positive whole number, written 10000000000, 1e10 or "1e10" (YAML reads 1e10 as text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("Input should be a number of FLOPs, e.g. 1e10")
    try:
        number = float(value)
    except ValueError:
        raise ValueError("Input should be a number of FLOPs, e.g. 1e10") from None
    if not (1 <= number < float("inf")):
        raise ValueError("Input should be a number of FLOPs of at least 1")
    return int(number)


Flops = Annotated[int | float | str, PlainValidator(flops_value)]

@dataclass(frozen=True)
class Sweep:
    """A grid. Every tuple field is one axis; `budget` caps every attack's iterations (None: the paper's);
    `budgets` overrides it per attack, with one budget or a list of them (one cell per budget).
    `attack_options` maps an attack to fields of its Config ({dlg: {lr: 0.5}}), or to a list of such settings
    (one cell per setting, like a list of budgets), checked against the Config's types
    (`check_attack_options`); an attack not named keeps its registered settings.

    `model_options` maps a model name to its options ({convnet: {width: 8}}): a model not named keeps its
    builder's defaults. `infeasible`: "refuse" ends the sweep before any work when a cell's batch cannot be
    sampled (e.g. more distinct labels than classes); "skip" records such cells as skipped, with the reason.
    `defenses`, `local_steps` and `clients` are axes of every client's update (bench.update); a defense is
    written `name` or `name(value, key=value)` (bench.defenses), e.g. [none, "dp(clip=1, sigma=0.5)", "prune(0.9)"].
    Each field's annotation is its rule (bench.typed), checked on construction, whatever the source.
    `model_seed` fixes the model's weights (and what `train_steps` trains from) across seeds, so that seeds
    vary only the client's batch; None draws them from each seed.
    `compute` gives every attack run the same FLOPs instead of iterations (bench.compute_budget): each attack's
    iteration budget is derived from what its iterations cost on the cell's case; it replaces `budget(s)`.
    `settings` lists several settings in one sweep, each a mapping of the fields it changes (models,
    datasets, bn_mode, compute, ...): the sweep is the union of their grids (see `variants`).

    The scenario's defaults are the one default scenario (bench.defaults): what `bench case make` simulates
    without flags and what a sweep file leaves out. A sweep file may use the command line's names and values
    (`labels: [known, unknown]`, `batch-sizes`).
    """

    name: str = "custom"
    description: str = ""
    track: Literal["attacks", "labels"] = "attacks"
    attacks: Axis[Name] = ("all",)
    label_methods: Axis[Name] = ("all",)
    models: Axis[Name] = (DEFAULT_SCENARIO["model"],)
    datasets: Axis[Name] = (DEFAULT_SCENARIO["dataset"],)
    data_path: Name | None = None
    image_size: Count = DEFAULT_SCENARIO["image_size"]
    batch_sizes: Axis[Count] = (DEFAULT_SCENARIO["batch_size"],)
    repetitions: Axis[Rate] = (DEFAULT_SCENARIO["repetition"],)
    labels_known: Axis[bool] = (DEFAULT_SCENARIO["labels"] == "known",)
    bn_stats: Axis[Literal["none", "running", "exact"]] = (DEFAULT_SCENARIO["bn_stats"],)
    seeds: Axis[Seed] = (DEFAULT_SCENARIO["seed"],)
    budget: Count | None = None
    budgets: dict[str, Budgets] = field(default_factory=dict)
    attack_options: dict[Name, dict[Name, Any] | Annotated[list[dict[Name, Any]], MinLen(1)]] = field(default_factory=dict)
    label_source: Literal["dataset", "model"] = "dataset"
    bn_mode: Literal["train", "eval"] = "train"
    num_classes: Annotated[int, Ge(2)] | None = None  # one class: the loss and every gradient are zero
    model_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    weights: Name | None = None
    train_steps: NonNegative = 0
    model_seed: Seed | None = None
    client_memory: Literal["full", "low"] = "full"
    infeasible: Literal["refuse", "skip"] = "refuse"
    defenses: Axis[Name] = ("none",)
    local_steps: Axis[Count] = (1,)
    clients: Axis[Count] = (1,)
    local_batch_size: Count | None = None
    local_lr: Annotated[float, Gt(0.0)] = 1e-4
    compute: Flops | None = None
    settings: tuple[dict[str, Any], ...] = ()

    def __post_init__(self) -> None:
        check_fields(self)
        if self.compute is not None:
            object.__setattr__(self, "compute", flops_value(self.compute))
            if self.budget is not None or self.budgets:
                raise BenchError("compute gives every attack the same FLOPs: give it or budget(s), not both")
        for text in self.defenses:
            parse_defense(text)
        for steps, clients in itertools.product(self.local_steps, self.clients):
            ClientUpdate(steps, self.local_batch_size, self.local_lr, clients)
        for index, setting in enumerate(self.settings):
            _setting_sweep(self, setting, index)

    def budgets_for(self, attack: str) -> list[int | None]:
        """The budgets `attack` runs at: its own (one or a list) or the sweep's `budget`."""
        given = self.budgets.get(attack, self.budget)
        return list(given) if isinstance(given, (list, tuple)) else [given]

    def attack_options_for(self, attack: str) -> list[dict[str, Any]]:
        """The settings `attack` runs with: each a mapping of Config fields ({} for an attack not named)."""
        given = self.attack_options.get(attack, {})
        return [dict(options) for options in given] if isinstance(given, list) else [dict(given)]

    def options_for(self, model: str) -> dict[str, Any]:
        """The options written for `model` (none for a model the sweep does not name)."""
        return dict(self.model_options.get(model, {}))


@dataclass(frozen=True)
class Cell:
    """One run of the sweep: an attack with a budget, or a label-recovery method, on a scenario.

    `options` are fields of the attack's Config given by the sweep; the run's configuration holds the whole
    resolved Config (defaults included, `attack_options`), so a changed setting is another run.
    `skip` (not part of the run's configuration) is why the cell cannot run, when the sweep skips such cells.
    `tuning` (recorded, not part of the configuration: the options are) names the study that chose `options`.
    """

    scenario: Scenario
    attack: str | None = None
    budget: int | None = None
    label_method: str | None = None
    skip: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    flops: int | None = None  # the run's compute budget in FLOPs (the iteration budget is derived from it)
    tuning: dict | None = None  # the study its options come from (bench.tune; not part of the run's configuration)

    def config(self) -> dict:
        if self.label_method is not None:
            return {"scenario": self.scenario.to_dict(), "label_method": self.label_method}
        config = {"scenario": self.scenario.to_dict(), "attack": self.attack, "budget": self.budget,
                  "attack_options": self.resolved_options}
        return config if self.flops is None else {**config, "flops": self.flops}

    @functools.cached_property
    def attack_config(self) -> Any:
        """The attack's Config: its defaults with the variant's and the sweep's settings (bench.attack)."""
        return attack_config(self.attack, self.options)

    @property
    def resolved_options(self) -> dict[str, Any]:
        """The attack's whole Config as JSON values, as the run's configuration holds it."""
        return config_values(self.attack_config)

    @property
    def method(self) -> str:
        return self.label_method if self.label_method is not None else self.attack

    @property
    def run_id(self) -> str:
        return run_id(self.config())


_TUPLE_FIELDS = {f.name for f in dataclasses.fields(Sweep) if isinstance(f.default, tuple)} - {"settings"}


def _as_fields(data: dict[str, Any]) -> dict[str, Any]:
    """YAML values as the Sweep's fields take them: lists become tuples, a single value of an axis a 1-tuple."""
    values = {k: tuple(v) if k in _TUPLE_FIELDS and isinstance(v, list) else v for k, v in data.items()}
    for key in _TUPLE_FIELDS & set(values):
        if not isinstance(values[key], tuple):
            values[key] = (values[key],)
    return values


def _setting_sweep(sweep: Sweep, setting: object, index: int) -> Sweep:
    """The sweep of one of `sweep.settings`: the sweep's fields with the setting's on top."""
    where = f"settings[{index}]"
    if not isinstance(setting, dict):
        raise BenchError(f"{where}: a setting must be a mapping of field: value")
    known = {f.name for f in dataclasses.fields(Sweep)} - set(SWEEP_ONLY)
    unknown = sorted(set(setting) - known)
    if unknown:
        raise BenchError(f"{where}: unknown or sweep-wide field(s) {', '.join(unknown)}")
    # the other track's fields are the sweep's own business (checked where the file is read), as its base's are
    values = {k: v for k, v in _as_fields(setting).items() if TRACK_OF_FIELD.get(k, sweep.track) == sweep.track}
    if "compute" in values:  # a setting's compute replaces the sweep's budgets, and the other way round
        values = {"budget": None, "budgets": {}, **values}
    elif "budget" in values or "budgets" in values:
        values = {"compute": None, **values}
    try:
        return dataclasses.replace(sweep, settings=(), **values)
    except BenchError as err:
        raise BenchError(f"{where}: {err}") from None


def variants(sweep: Sweep) -> list[Sweep]:
    """The sweep of each of its settings, in order; the sweep itself when it lists none."""
    return [_setting_sweep(sweep, setting, i) for i, setting in enumerate(sweep.settings)] or [sweep]


def _check_track(sweep: Sweep, given: dict[str, Any]) -> None:
    """Refuse fields given for the track the sweep does not run (e.g. attacks for the label track)."""
    wrong = [k for k, v in given.items() if v is not None and TRACK_OF_FIELD.get(k, sweep.track) != sweep.track]
    if wrong:
        track = TRACK_OF_FIELD[wrong[0]]
        raise BenchError(f"{', '.join(wrong)}: for the {track} track only; this sweep runs the {sweep.track} track")


# The command line's names for Sweep fields named otherwise, and its words for their values.
FLAG_NAMES = {"labels": "labels_known"}
LABEL_WORDS = {"known": True, "unknown": False}


def labels_known_values(values: Any) -> list:
    """`labels` as the command line writes them (known, unknown) as the booleans of `labels_known`."""
    words = values if isinstance(values, (list, tuple)) else [values]
    for word in words:
        if isinstance(word, str) and word.lower() not in LABEL_WORDS:
            raise BenchError(f"labels: expected known or unknown, got {word!r}")
    return [LABEL_WORDS[v.lower()] if isinstance(v, str) else v for v in words]


def _field_names(data: dict, source: str) -> dict[str, Any]:
    """A sweep file's keys as Sweep fields: the flags' names (`labels`, `batch-sizes`) are read too."""
    values: dict[str, Any] = {}
    keys: dict[str, str] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        name = FLAG_NAMES.get(name, name)
        if name in values:
            raise BenchError(f"{source}: {keys[name]} and {key} set the same field; give one of them")
        keys[name] = str(key)
        try:
            values[name] = labels_known_values(value) if name == "labels_known" else value
        except BenchError as err:
            raise BenchError(f"{source}: {err}") from None
    return values


def sweep_from_dict(data: dict, source: str) -> Sweep:
    if not isinstance(data, dict):
        raise BenchError(f"{source}: a sweep must be a mapping of field: value")
    data = _field_names(data, source)
    known = {f.name for f in dataclasses.fields(Sweep)}
    unknown = sorted(set(data) - known)
    if unknown:
        names = sorted(known - set(FLAG_NAMES.values()) | set(FLAG_NAMES))
        raise BenchError(f"{source}: unknown sweep field(s) {', '.join(unknown)}; known: {', '.join(names)}")
    values = _as_fields(data)
    if isinstance(values.get("settings"), list):  # each setting may use the flags' names, as the sweep may
        values["settings"] = tuple(
            _field_names(setting, f"{source}: settings[{i}]") if isinstance(setting, dict) else setting
            for i, setting in enumerate(values["settings"])
        )
    try:
        sweep = Sweep(**values)
        _check_track(sweep, values)
        for index, setting in enumerate(sweep.settings):
            try:
                _check_track(sweep, setting)
            except BenchError as err:
                raise BenchError(f"settings[{index}]: {err}") from None
    except BenchError as err:
        raise BenchError(f"{source}: {err}") from None
    return sweep


def load_sweep_file(path: str | Path) -> Sweep:
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"sweep file {path} " + ("is not a file" if path.exists() else "does not exist"))
    try:
        data = yaml.load(path.read_text(), Loader=_Loader)
    except UnicodeDecodeError:
        raise BenchError(f"{path} is not a text file (a YAML sweep is expected)") from None
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        raise BenchError(f"{path}: malformed YAML{line}") from None
    if isinstance(data, dict):
        data.setdefault("name", path.stem)  # records of a file without a name go to runs/<file name>
    return sweep_from_dict(data or {"name": path.stem}, str(path))


class _Loader(yaml.SafeLoader):
    """YAML as a sweep file means it: `1e-4` is a number (YAML 1.1, PyYAML's default, reads it as text)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name: str) -> Sweep:
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise BenchError(f"unknown preset {name!r}; known: {', '.join(preset_names())}")
    return load_sweep_file(path)


def override(sweep: Sweep, **values: Any) -> Sweep:
    """Replace fields given on the command line (None leaves the sweep's value); checked like a file's.
    A field given here also replaces it in every setting of the sweep; a model or dataset given here replaces
    the settings themselves (the command line names the setting: it runs on the sweep's common fields)."""
    given = {k: (tuple(v) if k in _TUPLE_FIELDS else v) for k, v in values.items() if v is not None}
    if given.get("compute") is not None and given.get("budget") is not None:
        raise BenchError("give iterations (--budget) or FLOPs (--flops), not both")
    if given.get("compute") is not None:  # FLOPs given on the command line replace every budget
        given.update(budget=None, budgets={})
    elif given.get("budget") is not None or given.get("budgets"):
        given["compute"] = None
    if "labels_known" in given:
        given["labels_known"] = tuple(labels_known_values(given["labels_known"]))
    settings = () if SETTING_NAMES & set(given) else tuple(_without(setting, given) for setting in sweep.settings)
    changed = dataclasses.replace(sweep, **given, settings=settings)
    _check_track(changed, given)
    return changed


def _without(setting: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    budgets = {"budget", "budgets", "compute"}
    replaced = set(given) | (budgets if budgets & set(given) else set())
    return {k: v for k, v in setting.items() if k not in replaced}


def check_attack_options(sweep: Sweep) -> None:
    """Refuse, with one line, options for an attack that does not exist, or that its Config does not take."""
    for variant in variants(sweep):
        for name in variant.attack_options:
            for options in variant.attack_options_for(name):
                attack_config(name, options)


def scenarios(sweep: Sweep) -> Iterator[Scenario]:
    """The grid's scenarios, in a deterministic order (setting after setting)."""
    for variant in variants(sweep):
        yield from _scenarios(variant)


def _scenarios(sweep: Sweep) -> Iterator[Scenario]:
    axes = itertools.product(
        sweep.datasets, sweep.models, sweep.batch_sizes, sweep.repetitions, sweep.labels_known, sweep.bn_stats,
        sweep.defenses, sweep.local_steps, sweep.clients, sweep.seeds,
    )  # fmt: skip
    for dataset, model, batch_size, repetition, labels_known, bn_stats, defense, steps, clients, seed in axes:
        update = ClientUpdate(steps, sweep.local_batch_size, sweep.local_lr, clients, parse_defense(defense))
        yield Scenario(
            dataset=dataset,
            data_path=sweep.data_path,
            image_size=sweep.image_size,
            batch_size=int(batch_size),
            repetition=float(repetition),
            label_source=sweep.label_source,
            model=model,
            num_classes=sweep.num_classes,
            model_options=sweep.options_for(model),
            weights=sweep.weights,
            train_steps=sweep.train_steps,
            model_seed=sweep.model_seed,
            threat=ThreatModel(labels_known=bool(labels_known), bn_stats=bn_stats, update=update),
            bn_mode=sweep.bn_mode,
            client_memory=sweep.client_memory,
            seed=int(seed),
        )


def expand(sweep: Sweep, method_names: list[str]) -> list[Cell]:
    """All cells of the grid, in a deterministic order (scenario-major, so a case is built once).

    `method_names` are attacks for the attack track and label-recovery methods for the label track.
    """
    cells = []
    for variant in variants(sweep):
        for scenario in _scenarios(variant):
            for name in method_names:
                if variant.track == "labels":
                    cells.append(Cell(scenario, label_method=name))
                    continue
                budgets = [None] if variant.compute is not None else variant.budgets_for(name)
                for budget, options in itertools.product(budgets, variant.attack_options_for(name)):
                    cells.append(Cell(scenario, attack=name, budget=budget, options=options, flops=variant.compute))
    return cells
