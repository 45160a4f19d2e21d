"""Sweeps: a grid over attacks x scenarios, defined by a YAML file, a shipped preset, or flags.

Example:
    >>> sweep = load_preset("smoke")
    >>> cells = expand(sweep)
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.errors import BenchError
from bench.record import run_id
from bench.scenario import Scenario
from bench.threat import ThreatModel

PRESET_DIR = Path(__file__).resolve().parent / "presets"
TRACKS = ("attacks", "labels")
INFEASIBLE = ("refuse", "skip")


@dataclass(frozen=True)
class Sweep:
    """A grid. Every list field is one axis; `budget` caps every attack's iterations (None: the paper's);
    `budgets` overrides it per attack, with one budget or a list of them (one cell per budget).

    `model_options` maps a model name to its options ({convnet: {width: 8}}): a model not named keeps its
    builder's defaults. `infeasible`: "refuse" ends the sweep before any work when a cell's batch cannot be
    sampled (e.g. more distinct labels than classes); "skip" records such cells as skipped, with the reason.
    """

    name: str = "custom"
    description: str = ""
    track: str = "attacks"
    attacks: tuple[str, ...] = ("all",)
    label_methods: tuple[str, ...] = ("all",)
    models: tuple[str, ...] = ("convnet",)
    datasets: tuple[str, ...] = ("embedded",)
    data_path: str | None = None
    image_size: int = 32
    batch_sizes: tuple[int, ...] = (4,)
    repetitions: tuple[float, ...] = (0.0,)
    labels_known: tuple[bool, ...] = (False,)
    bn_stats: tuple[str, ...] = ("exact",)
    seeds: tuple[int, ...] = (0,)
    budget: int | None = None
    budgets: dict[str, int | list[int]] = field(default_factory=dict)
    label_source: str = "dataset"
    bn_mode: str = "train"
    num_classes: int | None = None
    model_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    weights: str | None = None
    train_steps: int = 0
    client_memory: str = "full"
    infeasible: str = "refuse"

    def __post_init__(self) -> None:
        if self.infeasible not in INFEASIBLE:
            raise BenchError(f"infeasible must be one of {', '.join(INFEASIBLE)}, got {self.infeasible!r}")
        for model, options in self.model_options.items():
            if not isinstance(options, dict):
                raise BenchError(
                    f"model_options maps a model name to its options, e.g. {{convnet: {{width: 8}}}}; "
                    f"got {model}: {options!r}"
                )

    def budgets_for(self, attack: str) -> list[int | None]:
        """The budgets `attack` runs at: its own (one or a list) or the sweep's `budget`."""
        given = self.budgets.get(attack, self.budget)
        return list(given) if isinstance(given, (list, tuple)) else [given]

    def options_for(self, model: str) -> dict[str, Any]:
        """The options written for `model` (none for a model the sweep does not name)."""
        return dict(self.model_options.get(model, {}))




@dataclass(frozen=True)
class Cell:
    """One run of the sweep: an attack with a budget, or a label-recovery method, on a scenario.

    `skip` (not part of the run's configuration) is why the cell cannot run, when the sweep skips such cells.
    """

    scenario: Scenario
    attack: str | None = None
    budget: int | None = None
    label_method: str | None = None
    skip: str | None = None

    def config(self) -> dict:
        if self.label_method is not None:
            return {"scenario": self.scenario.to_dict(), "label_method": self.label_method}
        return {"scenario": self.scenario.to_dict(), "attack": self.attack, "budget": self.budget}

    @property
    def method(self) -> str:
        return self.label_method if self.label_method is not None else self.attack

    @property
    def run_id(self) -> str:
        return run_id(self.config())


_TUPLE_FIELDS = {f.name for f in dataclasses.fields(Sweep) if str(f.type).startswith("tuple")}


def sweep_from_dict(data: dict, source: str) -> Sweep:
    if not isinstance(data, dict):
        raise BenchError(f"{source}: a sweep must be a mapping of field: value")
    known = {f.name for f in dataclasses.fields(Sweep)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise BenchError(f"{source}: unknown sweep field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    values = {k: tuple(v) if k in _TUPLE_FIELDS and isinstance(v, list) else v for k, v in data.items()}
    for key in _TUPLE_FIELDS & set(values):
        if not isinstance(values[key], tuple):
            values[key] = (values[key],)
    return Sweep(**values)


def load_sweep_file(path: str | Path) -> Sweep:
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"sweep file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        raise BenchError(f"{path}: malformed YAML{line}") from None
    return sweep_from_dict(data or {}, str(path))


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name: str) -> Sweep:
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise BenchError(f"unknown preset {name!r}; known: {', '.join(preset_names())}")
    return load_sweep_file(path)


def override(sweep: Sweep, **values: Any) -> Sweep:
    """Replace fields given on the command line; None leaves the sweep's value."""
    given = {k: (tuple(v) if k in _TUPLE_FIELDS else v) for k, v in values.items() if v is not None}
    return dataclasses.replace(sweep, **given)


def expand(sweep: Sweep, method_names: list[str]) -> list[Cell]:
    """All cells of the grid, in a deterministic order (scenario-major, so a case is built once).

    `method_names` are attacks for the attack track and label-recovery methods for the label track.
    """
    if sweep.track not in TRACKS:
        raise BenchError(f"unknown track {sweep.track!r}; use {' or '.join(TRACKS)}")
    cells = []
    axes = itertools.product(
        sweep.datasets, sweep.models, sweep.batch_sizes, sweep.repetitions, sweep.labels_known, sweep.bn_stats, sweep.seeds
    )
    for dataset, model, batch_size, repetition, labels_known, bn_stats, seed in axes:
        scenario = Scenario(
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
            threat=ThreatModel(labels_known=bool(labels_known), bn_stats=bn_stats),
            bn_mode=sweep.bn_mode,
            client_memory=sweep.client_memory,
            seed=int(seed),
        )
        for name in method_names:
            if sweep.track == "labels":
                cells.append(Cell(scenario, label_method=name))
            else:
                cells.extend(Cell(scenario, attack=name, budget=budget) for budget in sweep.budgets_for(name))
    return cells
