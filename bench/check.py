"""`bench check`: a regression gate that decides on distributions over seeds and holds on any machine.

A suite is one sweep file or a folder of them (the shipped one: `bench/presets/check/`); any sweep works,
attacks and label methods registered by plugins included. An entry is one method on one scenario over the
sweep's seeds; its reference (a JSON file) keeps every seed's value of each checked metric (`psnr_gain`, the
gain over the prior floor, and `label_acc`), their spread, the values the same seeds gave with other CPUs'
kernels imitated (`bench.kernels`), the minimum effect derived from them, and the machine it was made on.
`bench.check_rule` decides: an entry regresses when its mean drop over the seeds is larger than its minimum
effect and clearly so (a one-sided paired t-test at 1%), or when an entry significantly above the prior floor
falls back to it, or when a seed's run fails that did not.

`--update` writes the reference: the suite here, then once per imitated kernel setting in a fresh process
(the kernels are chosen when the libraries start), so the minimum effects are measured on this machine.
The suite runs on one CPU thread: its values do not depend on the core count, and a busy machine does not
slow it down by oversubscribing threads.

Example:
    >>> result = run_check(only=["llg"])
    >>> [v.regressed for v in result.verdicts]
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bench import kernels
from bench.attack import ATTACKS
from bench.check_rule import ALPHA, GAIN_METRIC, Judgement, above_floor_p, judge, min_effect
from bench.environment import git_commit
from bench.errors import BenchError
from bench.files import write_atomic
from bench.labels import LABELS
from bench.metrics import METRICS, MetricConfig
from bench.plugins import load_plugins
from bench.preflight import check_writable
from bench.record import Record, run_id
from bench.runner import RunOptions, run_cells
from bench.sweep import Cell, expand, load_sweep_file

SUITE_DIR = Path(__file__).resolve().parent / "presets" / "check"
REFERENCE = SUITE_DIR / "reference.json"
REFERENCE_SCHEMA = 2
CHECKED_METRICS = (GAIN_METRIC, "label_acc")
RESTORE = "restore it (git checkout) or rewrite it with `bench check --update`"


@dataclass(frozen=True)
class Entry:
    """One method on one scenario, over the sweep's seeds: its cells in seed order."""

    key: str
    method: str
    budget: int | None
    cells: tuple[Cell, ...]

    @property
    def seeds(self) -> list[int]:
        return [c.scenario.seed for c in self.cells]

    @property
    def label(self) -> str:
        """The key without its hash, for tables."""
        return self.key.rsplit(" | ", 1)[0]


@dataclass(frozen=True)
class Verdict:
    """The gate's verdict on one metric (or the status) of one entry."""

    key: str
    metric: str
    regressed: bool
    reference: tuple[float, ...] = ()
    now: tuple[float, ...] = ()
    judgement: Judgement | None = None
    note: str = ""
    seconds: float = 0.0  # the entry's runs, all seeds

    @property
    def label(self) -> str:
        return self.key.rsplit(" | ", 1)[0]


@dataclass
class CheckResult:
    verdicts: list[Verdict]
    machine: dict
    reference_machine: dict
    differences: list[str]
    runs: int
    wall_s: float
    cpu_s: float
    reference_path: Path
    kernel_runs: dict[str, float] = field(default_factory=dict)  # imitated setting -> its wall seconds

    @property
    def regressed(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.regressed]


def suite_files(suite: Path) -> list[Path]:
    """The sweep files of a suite: the file itself, or a folder's `*.yaml` in name order."""
    suite = Path(suite)
    if suite.is_dir():
        files = sorted(suite.glob("*.yaml"))
        if not files:
            raise BenchError(f"suite folder {suite} holds no sweep file (*.yaml)")
        return files
    if not suite.is_file():
        raise BenchError(f"suite {suite} does not exist (give a sweep file or a folder of them)")
    return [suite]


def _entry_key(cell: Cell, method: str) -> str:
    """Stable name of an entry: the method, its budget (iterations or FLOPs), the options the sweep gives it
    and its scenario without the seed."""
    scenario = cell.scenario.to_dict()
    scenario.pop("seed")
    named = {"scenario": scenario, "method": method, "budget": cell.budget}
    settings = [] if cell.budget is None else [f"{cell.budget} it"]
    if cell.flops is not None:
        named["flops"] = cell.flops
        settings.append(f"{cell.flops:.3g} FLOPs")
    if cell.options:
        named["options"] = cell.options
        settings += [f"{name}={value}" for name, value in sorted(cell.options.items())]
    s = cell.scenario
    shown = f" ({'; '.join(settings)})" if settings else ""
    return f"{method}{shown} | {s.model} {s.image_size}px B={s.batch_size} r={s.repetition:g} | {run_id(named)}"


def suite_entries(
    suite: Path = SUITE_DIR,
    budget_scale: float = 1.0,
    only: Sequence[str] | None = None,
    stand_ins: dict[str, str] | None = None,
) -> tuple[list[Entry], list[Cell]]:
    """The suite's entries and their cells in run order (scenario-major, so each case is simulated once).

    `budget_scale` scales every budget (an entry keeps its key, so a weakened run is compared with the
    reference); `stand_ins` maps a method of the suite to a registered method that runs in its place,
    compared with the original's reference (how the gate's power is shown on weakened variants).
    """
    stand_ins = dict(stand_ins or {})
    offered: set[str] = set()
    grouped: dict[str, list[Cell]] = {}
    ordered: list[Cell] = []
    methods: dict[str, tuple[str, int | None]] = {}
    for path in suite_files(suite):
        sweep = load_sweep_file(path)
        registry, patterns = (LABELS, sweep.label_methods) if sweep.track == "labels" else (ATTACKS, sweep.attacks)
        names = registry.select(patterns)
        offered.update(names)
        for cell in expand(sweep, [n for n in names if not only or n in only]):
            key = _entry_key(cell, cell.method)
            if key in grouped and cell.scenario.seed in [c.scenario.seed for c in grouped[key]]:
                raise BenchError(f"{path}: entry {key.rsplit(' | ', 1)[0]} appears twice in the suite")
            run = _scaled(_stood_in(cell, stand_ins), budget_scale)
            grouped.setdefault(key, []).append(run)
            methods[key] = (cell.method, cell.budget)
            ordered.append(run)
    unknown = sorted(set(only or ()) - offered)
    if unknown:
        raise BenchError(f"--only {', '.join(unknown)}: not in the check suite, which has {', '.join(sorted(offered))}")
    missing = sorted(set(stand_ins) - offered)
    if missing:
        raise BenchError(f"stand-in for {', '.join(missing)}: not in the check suite")
    if not ordered:
        raise BenchError("the check suite selected no runs")
    entries = [
        Entry(key, *methods[key], tuple(sorted(cells, key=lambda c: c.scenario.seed))) for key, cells in grouped.items()
    ]
    return entries, ordered


def _stood_in(cell: Cell, stand_ins: dict[str, str]) -> Cell:
    """The cell with its method replaced by its stand-in, when the stand-in is a method of the same kind (an
    attack for an attack: "e2egi" names both an attack and a label method)."""
    name = stand_ins.get(cell.method)
    if name is None:
        return cell
    if name not in ATTACKS and name not in LABELS:
        ATTACKS.get(name)  # unknown: raises with the closest names
    if cell.label_method is not None:
        return dataclasses.replace(cell, label_method=name) if name in LABELS else cell
    return dataclasses.replace(cell, attack=name) if name in ATTACKS else cell


def _scaled(cell: Cell, budget_scale: float) -> Cell:
    if budget_scale == 1.0 or cell.budget is None:
        return cell
    return dataclasses.replace(cell, budget=max(1, int(cell.budget * budget_scale)))


def load_reference(path: Path | None = None) -> dict:
    """A reference file, refused with one line when missing, truncated, of another schema or shape."""
    path = REFERENCE if path is None else Path(path)
    if not path.is_file():
        raise BenchError(f"no reference values at {path}; create them with `bench check --update`")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BenchError(f"{path} is not valid JSON ({err}); {RESTORE}") from None
    entries = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(entries, dict) or not all(_well_formed(e) for e in entries.values()):
        raise BenchError(f"{path} is not a reference file (entries of seeds, status and metrics); {RESTORE}")
    if data.get("schema") != REFERENCE_SCHEMA:
        raise BenchError(f"{path} has reference schema {data.get('schema')!r}, expected {REFERENCE_SCHEMA}; {RESTORE}")
    return data


def _well_formed(entry: object) -> bool:
    if not isinstance(entry, dict) or not isinstance(entry.get("metrics"), dict):
        return False
    seeds, status = entry.get("seeds"), entry.get("status")
    if not isinstance(seeds, list) or not isinstance(status, list) or len(seeds) != len(status):
        return False
    return all(
        isinstance(m, dict) and isinstance(m.get("values"), list) and len(m["values"]) == len(seeds)
        and isinstance(m.get("min_effect"), (int, float))
        for m in entry["metrics"].values()
    )  # fmt: skip


def _higher_is_better(metric: str) -> bool:
    return METRICS.get(metric).info.get("better", "higher") == "higher"


def _values(records: Sequence[Record], metric: str) -> list[float] | None:
    """The metric of every seed's record, or None when a seed lacks it (then the entry does not check it)."""
    values = [r.metrics.get(metric) if r.status == "ok" else None for r in records]
    return None if any(v is None for v in values) else [float(v) for v in values]


def _entry_reference(entry: Entry, records: Sequence[Record], imitated: dict[str, dict]) -> dict:
    """The reference of one entry: per-seed values, spread, the imitated kernels' values, the minimum effect."""
    metrics = {}
    for metric in CHECKED_METRICS:
        values = _values(records, metric)
        if values is None:
            continue
        others = {}
        for setting, run in imitated.items():
            other = run.get(entry.key, {}).get(metric)
            if other is not None and len(other) == len(values):
                others[setting] = other
        derived = min_effect(metric, values, list(others.values()), _higher_is_better(metric))
        summary = {
            "values": values,
            "mean": float(np.mean(values)),
            "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            **({"above_floor_p": above_floor_p(values)} if metric == GAIN_METRIC else {}),
            "imitated": others,
            **derived,
        }
        metrics[metric] = summary
    return {
        "method": entry.method,
        "budget": entry.budget,
        "seeds": entry.seeds,
        "status": [r.status for r in records],
        "metrics": metrics,
    }


def _compare_entry(entry: Entry, records: Sequence[Record], expected: dict | None, differ: str) -> list[Verdict]:
    seconds = sum(r.cost.get("wall_s") or 0.0 for r in records)
    return [dataclasses.replace(v, seconds=seconds) for v in _entry_verdicts(entry, records, expected, differ)]


def _entry_verdicts(entry: Entry, records: Sequence[Record], expected: dict | None, differ: str) -> list[Verdict]:
    key = entry.key
    if expected is None:
        return [Verdict(key, "-", True, note="no reference value; run `bench check --update`")]
    if expected["seeds"] != entry.seeds:
        note = f"seeds {entry.seeds} differ from the reference's {expected['seeds']}; run `bench check --update`"
        return [Verdict(key, "seeds", True, note=note)]
    changed = [
        f"seed {seed}: {r.status} (reference {status})" + (f": {r.error}" if r.error else "")
        for seed, r, status in zip(entry.seeds, records, expected["status"])
        if r.status != status
    ]
    if changed:
        return [Verdict(key, "status", True, note="; ".join(changed))]
    verdicts = []
    for metric, ref in expected["metrics"].items():
        now = _values(records, metric)
        if now is None:
            verdicts.append(Verdict(key, metric, True, tuple(ref["values"]), note="no value now"))
            continue
        judgement = judge(metric, ref["values"], now, ref["min_effect"], _higher_is_better(metric))
        note = ""
        if judgement.regressed:
            why = "back at the prior floor; " if judgement.at_floor else ""
            note = (
                f"{why}mean drop {judgement.drop:.3g} > min effect {judgement.min_effect:.3g}, "
                f"p = {judgement.p_value:.2g} (alpha {ALPHA:g}); {differ}"
            )
        verdicts.append(Verdict(key, metric, judgement.regressed, tuple(ref["values"]), tuple(now), judgement, note))
    return verdicts


def _imitated_runs(suite: Path, only: Sequence[str] | None, settings: Sequence[str], folder: Path) -> tuple[dict, dict]:
    """Run the suite once per imitated kernel setting, each in a fresh process; return per setting the values
    of every entry ({key: {metric: values}}) and the setting's wall seconds."""
    root = str(Path(__file__).resolve().parents[1])  # the child imports this same code
    values, seconds = {}, {}
    for setting in settings:
        target = folder / f"{setting}.json"
        env = kernels.imitating(setting, folder / f"{setting}-cache")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "bench", "check", "--suite", str(suite), "--reference", str(target),
                   "--update", "--imitate", "none"] + (["--only", ",".join(only)] if only else [])  # fmt: skip
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        seconds[setting] = time.perf_counter() - started
        if done.returncode != 0:
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise BenchError(f"the suite under the {setting} kernels failed: {tail}")
        data = json.loads(target.read_text())
        values[setting] = {
            key: {m: s["values"] for m, s in entry["metrics"].items()} for key, entry in data["entries"].items()
        }
    return values, seconds


def run_check(
    suite: Path = SUITE_DIR,
    reference: Path | None = None,
    update: bool = False,
    imitate: Sequence[str] | None = None,
    budget_scale: float = 1.0,
    only: Sequence[str] | None = None,
    out_dir: Path | None = None,
    stand_ins: dict[str, str] | None = None,
) -> CheckResult:
    """Run the suite and compare it with the reference, or (`update`) write the reference.

    `imitate`: with `update`, the kernel settings (`bench.kernels.KERNELS`) whose runs measure the minimum
    effects (None: every setting this CPU can imitate). The reference is read before the suite runs, so a
    damaged file costs no run; an update with `only` replaces those methods' entries and keeps the others.
    """
    reference_path = REFERENCE if reference is None else Path(reference)
    if update and (budget_scale != 1.0 or stand_ins):
        raise BenchError("--update writes the reference of the suite as it is: no --budget-scale or stand-ins")
    settings = kernels.imitable() if imitate is None else list(imitate)
    unknown = sorted(set(settings) - set(kernels.KERNELS))
    if unknown:
        raise BenchError(f"--imitate {', '.join(unknown)}: unknown kernel setting; known: {', '.join(kernels.KERNELS)}")
    load_plugins()  # every registered attack and label method, as `bench run` sees them
    entries, cells = suite_entries(suite, budget_scale, only, stand_ins)
    kept = load_reference(reference_path) if not update or (only and reference_path.exists()) else None
    if update:
        check_writable(reference_path.parent)
        moved = kernels.differences(kept["machine"], _machine_here()) if kept is not None else []
        if moved:
            raise BenchError(
                f"--update --only adds to a reference made on another machine ({', '.join(moved)}): "
                "rewrite the whole reference here (without --only)"
            )

    started, cpu_started = time.perf_counter(), time.process_time()
    options = RunOptions(metric=MetricConfig(lpips=False), save_images=out_dir is not None)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            records = run_cells(cells, Path(out_dir or tmp), options)
        machine = kernels.machine()
    finally:
        torch.set_num_threads(threads)
    by_key = {id(cell): record for cell, record in zip(cells, records)}
    per_entry = {e.key: [by_key[id(c)] for c in e.cells] for e in entries}
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started

    if update:
        with tempfile.TemporaryDirectory() as tmp:
            imitated, seconds = _imitated_runs(suite, only, settings, Path(tmp)) if settings else ({}, {})
        data = kept if kept is not None else {"entries": {}}
        # the methods updated lose every old entry (a changed budget or scenario leaves none behind)
        data["entries"] = {k: e for k, e in data["entries"].items() if e.get("method") not in (only or ())}
        for entry in entries:
            data["entries"][entry.key] = _entry_reference(entry, per_entry[entry.key], imitated)
        data.update(
            schema=REFERENCE_SCHEMA,
            rule=_rule_text(),
            machine=machine,
            commit=git_commit(),
            imitated={s: kernels.KERNELS[s] for s in settings},
        )
        data["entries"] = dict(sorted(data["entries"].items()))
        write_atomic(reference_path, json.dumps(data, indent=2) + "\n")
        return CheckResult([], machine, machine, [], len(records), wall, cpu, reference_path, seconds)

    assert kept is not None
    differences = kernels.differences(kept.get("machine", {}), machine)
    differ = "differs from the reference's machine: " + (", ".join(differences) if differences else "nothing (same CPU kernels and versions)")
    verdicts = [
        v for e in entries for v in _compare_entry(e, per_entry[e.key], kept["entries"].get(e.key), differ)
    ]
    return CheckResult(verdicts, machine, kept.get("machine", {}), differences, len(records), wall, cpu, reference_path)


def _machine_here() -> dict:
    """This machine as the gate sees it (one thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return kernels.machine()
    finally:
        torch.set_num_threads(threads)


def _rule_text() -> dict:
    from bench import check_rule

    return {
        "regressed": "one-sided paired t-test (scipy.stats.ttest_1samp of per-seed drops minus min_effect) rejects "
        f"'mean drop <= min_effect' at alpha {check_rule.ALPHA:g}; or, for psnr_gain, the reference is above the "
        f"floor (one-sided t-test, alpha {check_rule.ALPHA:g}) and the mean gain now is <= 0; or a seed's status changed",
        "min_effect": f"max(resolution {check_rule.RESOLUTION}, {check_rule.MARGIN:g} x the largest |median per-seed "
        "drop| of an imitated kernel run)",
    }


def fmt_values(values: Sequence[float]) -> str:
    if not values:
        return "-"
    mean = float(np.mean(values))
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return f"{mean:.3g} ± {sd:.2g}" if math.isfinite(sd) else f"{mean:.3g}"
