"""The runner: cells of a sweep -> client simulation -> attack or label method -> metrics -> records.

Every outcome is a record (ok / failed / skipped), written atomically as soon as it exists; `resume`
skips cells already recorded as ok, so an interrupted sweep picks up where it stopped.

Example:
    >>> records = run_cells(expand(load_preset("smoke"), ["noise"]), out_dir=Path("runs/smoke"))
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from bench.attack import Reconstruction, create_attack
from bench.case import Case, Secret
from bench.client import batch_facts, simulate
from bench.data import open_dataset
from bench.environment import environment
from bench.errors import BenchError
from bench.labels import LABELS, missing_need, recover_labels
from bench.metrics import MetricConfig, label_scores, score
from bench.progress import Progress
from bench.record import Record, load_record, save_record
from bench.sampler import sample_batch
from bench.sweep import Cell


@dataclass(frozen=True)
class RunOptions:
    device: str = "cpu"
    metric: MetricConfig = field(default_factory=MetricConfig)
    resume: bool = False
    save_images: bool = True


def validate(cells: list[Cell]) -> None:
    """Fail before anything runs when a cell cannot be sampled or names an unknown method."""
    seen: set[str] = set()
    for cell in cells:
        if cell.label_method is not None:
            LABELS.get(cell.label_method)
        else:
            create_attack(cell.attack)
        scenario = cell.scenario
        if scenario.key() in seen:
            continue
        seen.add(scenario.key())
        if scenario.weights is not None and not Path(scenario.weights).is_file():
            raise BenchError(f"weights file {scenario.weights} not found; pass a local checkpoint with --weights")
        dataset = open_dataset(scenario.dataset, scenario.data_path)
        sample_batch(
            dataset,
            scenario.batch_size,
            scenario.repetition,
            scenario.seed,
            scenario.num_classes or dataset.num_classes,
            scenario.label_source,
        )


def check_writable(folder: Path) -> None:
    """Refuse an output folder that cannot be written, before running anything (nothing is created)."""
    probe_dir = folder
    while not probe_dir.exists():
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise BenchError(f"output folder {folder}: {probe_dir} is not a folder")
    import os

    if not os.access(probe_dir, os.W_OK | os.X_OK):
        raise BenchError(f"output folder {folder} is not writable")


def peak_memory(device: torch.device) -> int | None:
    """Peak bytes: the device allocator's on CUDA, the process's peak resident set on CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    try:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
    except ImportError:
        return None


def _error_line(err: BaseException) -> str:
    return traceback.format_exception_only(type(err), err)[-1].strip()


def attack_case(
    cell: Cell, case: Case, secret: Secret, options: RunOptions, progress: Progress | None = None
) -> tuple[Record, Reconstruction | None]:
    """Run one attack cell on an already simulated case; every outcome becomes a record."""
    device = torch.device(options.device)
    base = dict(
        run_id=cell.run_id, config=cell.config(), environment=environment(device), batch=batch_facts(secret)
    )
    attack = create_attack(cell.attack, device=device)
    reason = attack.requires.incompatibility(case.threat, case.has_bn_layers(), case.batch_size)
    if reason:
        return Record(status="skipped", error=reason, **base), None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        callback = progress.run_callback(cell) if progress else None
        rec = attack.reconstruct(case, budget=cell.budget, seed=cell.scenario.seed, progress=callback)
        scores = score(rec, secret, options.metric)
    except Exception as err:  # a failing attack is a result, not a crash of the sweep
        return Record(status="failed", error=_error_line(err), **base), None
    finally:
        if progress:
            progress.end_run()
    wall = time.perf_counter() - start
    cost = {
        "wall_s": wall,
        "cpu_s": time.process_time() - cpu_start,
        "iterations": rec.iterations,
        "s_per_iteration": wall / rec.iterations if rec.iterations else None,
        "peak_memory_bytes": peak_memory(device),
    }
    extra = {k: v for k, v in rec.extra.items() if isinstance(v, (str, int, float, bool, type(None), list, dict))}
    metrics = {**scores.summary}
    per_image = {**scores.per_image, "attack_extra": extra}
    return Record(status="ok", metrics=metrics, per_image=per_image, cost=cost, **base), rec


def recover_case(cell: Cell, case: Case, secret: Secret, options: RunOptions) -> Record:
    """Run one label-recovery cell: predicted label multiset -> label metrics."""
    device = torch.device(options.device)
    base = dict(
        run_id=cell.run_id, config=cell.config(), environment=environment(device), batch=batch_facts(secret)
    )
    reason = missing_need(case, LABELS.get(cell.label_method).info.get("needs", ()))
    if reason:
        return Record(status="skipped", error=reason, **base)
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        predicted = recover_labels(cell.label_method, case)
        scores = label_scores(secret.labels, predicted)
    except Exception as err:
        return Record(status="failed", error=_error_line(err), **base)
    cost = {"wall_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu_start, "iterations": 0}
    per_image = {"true_labels": secret.labels.tolist(), "predicted_labels": predicted.tolist()}
    return Record(status="ok", metrics=scores.to_dict(), per_image=per_image, cost=cost, **base)


def already_ok(cell: Cell, out_dir: Path) -> Record | None:
    path = out_dir / f"{cell.run_id}.json"
    if not path.is_file():
        return None
    try:
        record = load_record(path)
    except BenchError:
        return None  # unreadable: run it again
    return record if record.status == "ok" else None


def run_cells(
    cells: list[Cell],
    out_dir: Path,
    options: RunOptions = RunOptions(),
    progress: Progress | None = None,
    on_record: Callable[[Record], None] | None = None,
) -> list[Record]:
    """Run every cell, writing each record as soon as it exists; a case is simulated once per scenario."""
    records: list[Record] = []
    cached: tuple[str, Case, Secret] | None = None
    for cell in cells:
        done = already_ok(cell, out_dir) if options.resume else None
        if done is not None:
            records.append(done)
            if progress:
                progress.cell_done(done, resumed=True)
            continue
        key = cell.scenario.key()
        try:
            if cached is None or cached[0] != key:
                cached = None
                cached = (key, *simulate(cell.scenario, options.device))
        except BenchError:
            raise
        except Exception as err:  # the client itself failed (e.g. out of memory): record it for this cell
            record = Record(
                run_id=cell.run_id, config=cell.config(), status="failed",
                error=f"client simulation: {_error_line(err)}", environment=environment(options.device),
            )
        else:
            _, case, secret = cached
            if cell.label_method is not None:
                record = recover_case(cell, case, secret, options)
            else:
                record, rec = attack_case(cell, case, secret, options, progress)
                if rec is not None and options.save_images:
                    save_images(record, rec, secret, out_dir)
        save_record(record, out_dir)
        records.append(record)
        if progress:
            progress.cell_done(record)
        if on_record:
            on_record(record)
    return records


def save_images(record: Record, rec: Reconstruction, secret: Secret, out_dir: Path) -> None:
    """Ground truth above, the one-to-one assigned reconstruction below, as `<run_id>.png`."""
    from bench.grid import save_grid

    assignment = record.per_image.get("assignment")
    save_grid(rec.images, secret.images, assignment, out_dir / f"{record.run_id}.png")
