"""The runner: cells of a sweep -> client simulation -> attack or label method -> metrics -> records.

Every outcome is a record (ok / failed / skipped), written atomically as soon as it exists; `resume`
skips cells already recorded as ok, so an interrupted sweep picks up where it stopped.

Example:
    >>> records = run_cells(expand(load_preset("smoke"), ["noise"]), out_dir=Path("runs/smoke"))
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from bench.attack import Reconstruction, attack_from_config
from bench.case import Case, Secret
from bench.client import batch_facts, simulate
from bench.compute import run_meter
from bench.compute_budget import ComputeTooSmall, plan_budget
from bench.cost import measure
from bench.environment import environment
from bench.errors import BenchError
from bench.files import remove_dead_leftovers
from bench.floors import FLOORS, floor_metrics, floor_psnrs, floor_reconstruction
from bench.labels import LABELS, missing_need, recover_labels
from bench.metrics import MetricConfig, label_scores, score
from bench.progress import Progress
from bench.record import Record, load_record, save_record
from bench.sweep import Cell
from bench.trace import Tracer


@dataclass(frozen=True)
class RunOptions:
    """How cells run. With a collective of W ranks, cells whose batch is at most `shard_above` run one per
    rank concurrently; larger batches (all of them when `shard_above` is None) are sharded over all ranks."""

    device: str = "cpu"
    metric: MetricConfig = field(default_factory=MetricConfig)
    resume: bool = False
    save_images: bool = True
    collective: Any = None
    shard_above: int | None = None
    wait_timeout_s: float = 24 * 3600.0
    fail_fast: bool = False  # stop at the first failed run


def _error_line(err: BaseException) -> str:
    return traceback.format_exception_only(type(err), err)[-1].strip()


def _failed(err: BaseException, base: dict, stage: str = "") -> Record:
    """A failed run's record: the exception's last line as `error`, its whole traceback as `traceback`."""
    text = "".join(traceback.format_exception(err))
    return Record(status="failed", error=stage + _error_line(err), traceback=text, **base)


def _record_fields(cell: Cell, secret: Secret | None, options: RunOptions) -> dict:
    """What every record of `cell` carries, whatever its outcome."""
    return dict(
        run_id=cell.run_id,
        config=cell.config(),
        environment=environment(options.device, _world_size(options)),
        batch=batch_facts(secret) if secret is not None else {},
        update=dict(secret.facts) if secret is not None else {},
        tuning=cell.tuning,
    )


def attack_case(
    cell: Cell,
    case: Case,
    secret: Secret,
    options: RunOptions,
    client_cost: dict,
    progress: Progress | None = None,
    floors: Callable[[], dict[str, float]] | None = None,
) -> tuple[Record, Reconstruction | None]:
    """Run one attack cell on an already simulated case; every outcome becomes a record. The cost is the
    attack's own (scoring apart, in `score_s`); `client_cost` is what simulating the case cost; `floors`
    gives the prior floors' PSNRs on this case (computed here when not given), for `psnr_gain`; it is
    called only once the attack is known to run on the case, so a case the attack skips costs no floors."""
    device = torch.device(options.device)
    base = _record_fields(cell, secret, options)
    attack = attack_from_config(cell.attack, cell.attack_config, device, options.collective)
    reason = attack.incompatibility(case)
    if reason:
        return Record(status="skipped", error=reason, **base), None
    floors = functools.cache(floors or (lambda: floor_psnrs(case, secret, options.metric)))
    try:
        callback = progress.run_callback(cell) if progress else None
        pay_lazy_imports()
        floors()  # before the run: the trace's gains need them, and their time is not the attack's
        plan = None if cell.flops is None else plan_budget(
            cell.attack, case, cell.flops, device, cell.scenario.seed, cell.attack_config
        )
        budget = cell.budget if plan is None else plan.budget
        with run_meter(attack.flops_metered, cell.flops) as meter:
            tracer = Tracer(secret, floors, options.metric, meter.spent, callback)
            with measure(device) as cost:
                if cell.attack in FLOORS:  # a scoring reference: told which items the clients hold, never their images
                    rec = floor_reconstruction(cell.attack, case, secret)
                else:
                    rec = attack.reconstruct(case, budget=budget, seed=cell.scenario.seed, progress=tracer.progress())
        with measure(device) as scoring:
            scores = score(rec, secret, options.metric)
        floor_values = floors()
        flops, scale = _run_flops(meter.spent(), options)
    except ComputeTooSmall as err:  # a property of the cell, like an incompatible threat model
        return Record(status="skipped", error=str(err), **base), None
    except Exception as err:  # a failing attack is a result, not a crash of the sweep
        if _world_size(options) > 1:
            raise  # the ranks' collectives no longer line up: stop, and let the launcher stop the others
        return _failed(err, base), None
    finally:
        if progress:
            progress.end_run()
    # checkpoints are the runner's work, not the attack's
    cost.update(wall_s=cost["wall_s"] - tracer.overhead_s, cpu_s=cost["cpu_s"] - tracer.overhead_cpu_s)
    cost.update(
        iterations=rec.iterations,
        s_per_iteration=cost["wall_s"] / rec.iterations if rec.iterations else None,
        score_s=scoring["wall_s"],
        trace_s=tracer.overhead_s,
        flops=flops,
        flops_by_kind=meter.by_kind(),
        client=client_cost,
    )
    if plan is not None:
        cost["compute"] = {**plan.to_dict(), "stopped": rec.extra.get("stopped")}
    extra = {k: v for k, v in rec.extra.items() if isinstance(v, (str, int, float, bool, type(None), list, dict))}
    metrics = {**scores.summary, **floor_metrics(scores.summary["psnr"], floor_values)}
    per_image = {**scores.per_image, "attack_extra": extra}
    trace = tracer.entries(metrics, flops, cost["wall_s"], rec.iterations, rec.extra.get("gradient_loss"), scale)
    return Record(status="ok", metrics=metrics, per_image=per_image, cost=cost, trace=trace, **base), rec


def _run_flops(local: int, options: RunOptions) -> tuple[int, float]:
    """The run's FLOPs over every rank sharing it, and their ratio to this process's."""
    if _world_size(options) == 1 or local == 0:
        return local, 1.0
    total = int(options.collective.all_sum_values(torch.tensor([float(local)], dtype=torch.float64)).item())
    return total, total / local


def pay_lazy_imports() -> None:
    """Import what torch.optim imports on an optimizer's first step (torch._dynamo, about 1.5 s on a CPU),
    once per process and before any attack is timed, so the first run of a sweep is not charged for it."""
    import torch._dynamo  # noqa: F401


def recover_case(cell: Cell, case: Case, secret: Secret, options: RunOptions, client_cost: dict) -> Record:
    """Run one label-recovery cell: predicted label multiset -> label metrics; the cost is the method's own,
    `client_cost` what simulating the case cost."""
    base = _record_fields(cell, secret, options)
    reason = missing_need(case, LABELS.get(cell.label_method).info.get("needs", ()))
    if reason:
        return Record(status="skipped", error=reason, **base)
    try:
        with measure(options.device) as cost:
            predicted = recover_labels(cell.label_method, case)
        scores = label_scores(secret.labels, predicted)
    except Exception as err:
        return _failed(err, base)
    cost.update(iterations=0, client=client_cost)
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


def _world_size(options: RunOptions) -> int:
    return 1 if options.collective is None else options.collective.world_size


def _run_one(cell: Cell, options: RunOptions, cache: dict, progress: Progress | None) -> tuple[Record, Reconstruction | None, Secret | None]:
    """Simulate the cell's case (once per scenario) and run its method."""
    if cell.skip is not None:
        return Record(status="skipped", error=cell.skip, **_record_fields(cell, None, options)), None, None
    key = (cell.scenario.key(), options.collective is not None)  # a sharded case differs in placement only
    try:
        if cache.get("key") != key:
            cache.clear()
            with measure(options.device) as client_cost:
                case, secret = simulate(cell.scenario, options.device, options.collective)
            cache.update(key=key, case=case, secret=secret, client_cost=client_cost)
    except BenchError:
        raise
    except Exception as err:  # the client itself failed (e.g. out of memory): a result for this cell
        if _world_size(options) > 1:
            raise
        return _failed(err, _record_fields(cell, None, options), stage="client simulation: "), None, None
    case, secret, client_cost = cache["case"], cache["secret"], cache["client_cost"]
    if cell.label_method is not None:
        return recover_case(cell, case, secret, options, client_cost), None, secret
    def floors() -> dict[str, float]:  # once per scenario, like the case: every attack's gain is over the same floor
        if "floors" not in cache:
            cache["floors"] = floor_psnrs(case, secret, options.metric)
        return cache["floors"]

    record, rec = attack_case(cell, case, secret, options, client_cost, progress, floors)
    return record, rec, secret


def _write(record: Record, rec: Reconstruction | None, secret: Secret | None, out_dir: Path, options: RunOptions) -> None:
    if rec is not None and secret is not None and options.save_images:
        save_images(record, rec, secret, out_dir)
    save_record(record, out_dir)


def run_cells(
    cells: list[Cell],
    out_dir: Path,
    options: RunOptions = RunOptions(),
    progress: Progress | None = None,
    on_record: Callable[[Record], None] | None = None,
) -> list[Record]:
    """Run every cell, writing each record as soon as it exists; a case is simulated once per scenario.

    Under W ranks (options.collective) cells are placed deterministically: sharded cells run on all ranks
    together with rank 0 writing; the others go to rank j % W by their order among unsharded cells, so
    `--resume` works with any W. Rank 0 returns every record; other ranks return their own.
    """
    world = _world_size(options)
    rank = 0 if options.collective is None else options.collective.rank
    sharded = [world > 1 and (options.shard_above is None or c.scenario.batch_size > options.shard_above) for c in cells]
    solo_index = {i: j for j, i in enumerate(i for i, s in enumerate(sharded) if not s)}
    solo_options = dataclasses.replace(options, collective=None)
    if rank == 0:
        remove_dead_leftovers(out_dir)
    records: dict[int, Record] = {}
    cache: dict = {}
    started = time.time()
    for i, cell in enumerate(cells):
        if sharded[i]:
            done = _agreed_done(cell, out_dir, options)
            run_options, writer = options, rank == 0
        elif solo_index[i] % world == rank:
            done = already_ok(cell, out_dir) if options.resume else None
            run_options, writer = solo_options, True
        else:
            continue  # another rank's cell
        if done is not None:
            records[i] = done
            if progress:
                progress.cell_done(done, resumed=True)
            continue
        record, rec, secret = _run_one(cell, run_options, cache, progress)
        if writer:
            try:
                _write(record, rec, secret, out_dir, options)
            except OSError as err:  # full disk, read-only file system: stop, every record so far is whole
                raise BenchError(
                    f"cannot write {err.filename or out_dir}: {err.strerror or err}; the records written so far are "
                    f"complete: run the same command with --resume to continue"
                ) from None
        records[i] = record
        if progress:
            progress.cell_done(record)
        if on_record:
            on_record(record)
        if options.fail_fast and record.status == "failed":
            if world > 1:  # the other ranks are the launcher's to stop
                print(record.traceback, file=sys.stderr, end="")
                raise BenchError(f"{cell.method} failed, stopping (--fail-fast): {record.error}")
            break
    if world > 1 and rank == 0:
        records.update(_collect_others(cells, records, out_dir, options, started))
    return [records[i] for i in sorted(records)]


def _agreed_done(cell: Cell, out_dir: Path, options: RunOptions) -> Record | None:
    """For a sharded cell every rank must take the same decision: rank 0's view of the folder decides."""
    if not options.resume:
        return None
    done = already_ok(cell, out_dir) if options.collective.rank == 0 else None
    flag = torch.tensor([1.0 if done is not None else 0.0])
    if options.collective.all_sum_values(flag).item() == 0:
        return None
    return done if done is not None else load_record(out_dir / f"{cell.run_id}.json")


def _collect_others(
    cells: list[Cell], mine: dict[int, Record], out_dir: Path, options: RunOptions, started: float
) -> dict[int, Record]:
    """Rank 0 waits for the records the other ranks write (a failed rank is the launcher's to report).

    A record counts when written during this sweep, or, when resuming, when it was already ok.
    """
    found: dict[int, Record] = {}
    timeout_s = options.wait_timeout_s
    deadline = time.monotonic() + timeout_s
    pending = [i for i in range(len(cells)) if i not in mine]
    while pending:
        for i in list(pending):
            path = out_dir / f"{cells[i].run_id}.json"
            if not path.is_file():
                continue
            record = load_record(path)
            if path.stat().st_mtime >= started - 1 or (options.resume and record.status == "ok"):
                found[i] = record
                pending.remove(i)
        if pending:
            if time.monotonic() > deadline:
                raise BenchError(f"{len(pending)} runs of other ranks did not finish within {timeout_s:.0f} s")
            time.sleep(0.5)
    return found


def save_images(record: Record, rec: Reconstruction, secret: Secret, out_dir: Path) -> None:
    """Ground truth above, the one-to-one assigned reconstruction below, as `<run_id>.png`."""
    from bench.grid import save_grid

    assignment = record.per_image.get("assignment")
    save_grid(rec.images, secret.images, assignment, out_dir / f"{record.run_id}.png")
