"""The runner: cells of a sweep -> client simulation -> attack -> metrics -> one record per run.

Example:
    >>> records = run_cells(expand(load_preset("smoke"), ["noise"]), out_dir=Path("runs/smoke"))
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import torch

from bench.attack import create_attack
from bench.case import Case, Secret
from bench.client import batch_facts, simulate
from bench.data import open_dataset
from bench.environment import environment
from bench.errors import BenchError
from bench.metrics import MetricConfig, score
from bench.record import Record, save_record
from bench.sampler import sample_batch
from bench.scenario import Scenario
from bench.sweep import Cell


@dataclass(frozen=True)
class RunOptions:
    device: str = "cpu"
    metric: MetricConfig = MetricConfig()


def validate(cells: Iterable[Cell]) -> None:
    """Fail before anything runs when a cell cannot be sampled (one clear line)."""
    seen: set[str] = set()
    for cell in cells:
        scenario = cell.scenario
        key = scenario.key()
        if key in seen:
            continue
        seen.add(key)
        dataset = open_dataset(scenario.dataset, scenario.data_path)
        sample_batch(
            dataset,
            scenario.batch_size,
            scenario.repetition,
            scenario.seed,
            scenario.num_classes or dataset.num_classes,
            scenario.label_source,
        )
        create_attack(cell.attack)


def check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-probe"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise BenchError(f"output folder {folder} is not writable ({err.strerror})") from None


def _peak_memory(device: torch.device) -> int | None:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    try:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # process peak RSS, bytes
    except ImportError:
        return None


def attack_case(cell: Cell, case: Case, secret: Secret, options: RunOptions) -> Record:
    """Run one cell on an already simulated case; every outcome becomes a record (ok/failed/skipped)."""
    device = torch.device(options.device)
    env = environment(device)
    base = dict(run_id=cell.run_id, config=cell.config(), environment=env, batch=batch_facts(secret))
    try:
        attack = create_attack(cell.attack)
    except BenchError as err:
        return Record(status="failed", error=str(err), **base)
    reason = attack.requires.incompatibility(case.threat, case.has_bn_layers())
    if reason:
        return Record(status="skipped", error=reason, **base)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        rec = attack.reconstruct(case, budget=cell.budget, seed=cell.scenario.seed)
        scores = score(rec, secret, options.metric)
    except Exception as err:  # a failing attack is a result, not a crash of the sweep
        detail = traceback.format_exception_only(type(err), err)[-1].strip()
        return Record(status="failed", error=detail, **base)
    wall = time.perf_counter() - start
    cost = {
        "wall_s": wall,
        "cpu_s": time.process_time() - cpu_start,
        "iterations": rec.iterations,
        "s_per_iteration": wall / rec.iterations if rec.iterations else None,
        "peak_memory_bytes": _peak_memory(device),
    }
    return Record(status="ok", metrics=scores.summary, per_image=scores.per_image, cost=cost, **base)


def run_cells(
    cells: list[Cell],
    out_dir: Path,
    options: RunOptions = RunOptions(),
    on_record: Callable[[Record], None] | None = None,
) -> list[Record]:
    """Run every cell, writing each record as soon as it exists; cases are simulated once per scenario."""
    records: list[Record] = []
    cached: tuple[str, Case, Secret] | None = None
    for cell in cells:
        key = cell.scenario.key()
        if cached is None or cached[0] != key:
            case, secret = simulate(cell.scenario, options.device)
            cached = (key, case, secret)
        _, case, secret = cached
        record = attack_case(cell, case, secret, options)
        save_record(record, out_dir)
        records.append(record)
        if on_record:
            on_record(record)
    return records


def scenario_label(scenario: Scenario) -> str:
    return f"{scenario.model} B={scenario.batch_size} r={scenario.repetition:g}"
