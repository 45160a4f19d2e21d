"""`bench audit`: check, calibrate, plan, run, report.

1. Every flag, the model file and class, its arguments and weights, the image folder and every case are
   checked (bench.audit.options, bench.audit.target); a problem is one line and exit code 2, with nothing
   written.
2. A short calibration times the user's model (bench.audit.calibrate); the budgets are fitted to
   `--max-minutes` (bench.audit.plan) and the estimate is printed before the runs start.
3. The runs go through the benchmark's runner (`run_cells`: the client's simulation, label methods, attacks,
   the prior floors, records and image grids), one batch size after another (the budgets of those left
   fitted again to the time left at the pace measured so far), with a progress bar on a terminal, into a
   partial folder.
4. The report is written beside the records and the folder is put in place of `--out` (bench.audit.folder).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.audit.calibrate import CASES, Calibration, calibrate
from bench.audit.folder import RECORDS, check_report_folder, report_folder
from bench.audit.options import AuditOptions
from bench.audit.plan import Pace, Plan, fit_plan, not_run
from bench.audit.report import AuditRun, Times, write_report
from bench.audit.target import Target, checked_scenarios, inspect_target
from bench.labels import LABELS, load_methods
from bench.preflight import check_device, check_writable
from bench.progress import Progress
from bench.runner import RunOptions, run_cells
from bench.record import Record
from bench.scenario import Scenario
from bench.sweep import Cell


def audit_cells(options: AuditOptions, scenarios: dict[tuple[int, str, int], Scenario], budgets: dict[tuple[str, int], int]) -> list[Cell]:
    """Every run, case by case (a case is simulated once): the label methods, then each planned attack."""
    load_methods()
    cells = []
    for (b, defense, seed), scenario in scenarios.items():
        cells += [Cell(scenario, label_method=m) for m in LABELS.names()]
        cells += [Cell(scenario, attack=a, budget=budgets[(a, b)]) for a in options.attacks if (a, b) in budgets]
    return cells


def run_batch_sizes(
    options: AuditOptions, scenarios: dict[tuple[int, str, int], Scenario], calibration: Calibration, plan: Plan,
    folder: Path, deadline: float,
) -> list[Record]:
    """Run every batch size's cells in turn, fitting the budgets of those left to the time left at the pace
    measured so far (bench.audit.plan); `plan` ends up holding the budgets that ran. A progress bar on a terminal."""
    runs_per_pair = options.cases * len(options.defenses)
    progress = Progress(len(audit_cells(options, scenarios, plan.budgets)))
    records: list[Record] = []
    pace = Pace()
    try:
        for i, b in enumerate(options.batch_sizes):
            if i:
                paces = pace.paces([*options.attacks, CASES])
                rest = calibration.part(options.batch_sizes[i:], paces)
                plan.adopt(fit_plan(rest, runs_per_pair, options.cases, deadline - time.monotonic(), strict=False), b, paces)
                shown = ", ".join(f"{n} {p:.2f}x" for n, p in sorted(plan.refits[-1][1].items()))
                print(f"B = {b}: time taken so far against the calibration's: {shown}; {_budgets_text(plan, b)}", flush=True)
            cells = audit_cells(options, {k: s for k, s in scenarios.items() if k[0] == b}, plan.budgets)
            later = audit_cells(options, {k: s for k, s in scenarios.items() if k[0] > b}, plan.budgets)
            progress.sweep.total = progress.sweep.n + len(cells) + len(later)
            start = time.monotonic()
            done = run_cells(cells, folder, RunOptions(device=options.device), progress)
            _measure(pace, done, time.monotonic() - start, calibration, plan, b, options)
            records += done
    finally:
        progress.close()
    return records


def _measure(pace: Pace, done: list[Record], seconds: float, calibration: Calibration, plan: Plan, b: int, options: AuditOptions) -> None:
    """Add one batch size's work to `pace`: each attack's runs (its own time and scoring) against their
    calibrated cost, and the rest of the time (clients, floors, label methods) against the cases' cost."""
    attacks_s = 0.0
    for attack in options.attacks:
        if (attack, b) not in plan.budgets:
            continue
        runs = [r for r in done if r.config.get("attack") == attack]
        measured = sum(float(r.cost.get("wall_s", 0.0)) + float(r.cost.get("score_s", 0.0)) for r in runs if r.cost)
        pace.add(attack, measured, len(runs) * calibration.costs[(attack, b)].seconds(plan.budgets[(attack, b)]))
        attacks_s += measured
    cases = options.cases * sum(s for (bb, _), s in calibration.case_s.items() if bb == b)
    pace.add(CASES, max(seconds - attacks_s, 0.0), cases)


def _describe(options: AuditOptions, target: Target) -> str:
    bn = f"{target.bn_layers} BN layers" if target.bn_layers else "no BN layers"
    return "\n".join([
        f"model: {target.description}, {target.parameters:,} parameters, {bn}",
        f"data: {target.images} images in {target.num_classes} classes, {target.channels} channel(s), {options.image_size} px",
        f"client: {options.update('none').short()}, BN {options.bn_mode}; attacker: labels "
        f"{'known' if options.labels_known else 'unknown'}, BN statistics {target.bn_stats}",
        f"cases: {options.cases} per batch size ({', '.join(map(str, options.batch_sizes))}) and defense "
        f"({', '.join(options.defenses)})",
    ])  # fmt: skip


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def _budgets_text(plan: Plan, batch_size: int) -> str:
    return "iterations per run: " + (", ".join(f"{a} {n:,}" for (a, b), n in sorted(plan.budgets.items()) if b == batch_size) or "no attack")


def _plan_text(options: AuditOptions, plan: Plan, cells: list[Cell]) -> str:
    return f"{len(cells)} runs; " + "; ".join(f"B = {b}: {_budgets_text(plan, b)}" for b in options.batch_sizes)


def cmd_audit(args: argparse.Namespace) -> int:
    started = time.monotonic()
    options = AuditOptions.from_args(args)
    check_report_folder(options.out)
    check_writable(options.out.parent)
    check_device(options.device)
    target = inspect_target(options)
    scenarios = checked_scenarios(options, target)
    print(_describe(options, target), flush=True)
    checks_s = time.monotonic() - started

    calibration = calibrate(options, scenarios)
    spent = time.monotonic() - started
    available = options.max_minutes * 60 - spent
    plan = fit_plan(calibration, options.cases * len(options.defenses), options.cases, available, spent)
    for line in not_run(calibration, plan):
        print(f"not run: {line}")
    cells = audit_cells(options, scenarios, plan.budgets)
    print(f"calibration: {calibration.seconds:.0f} s; {_plan_text(options, plan, cells)}")
    print(f"estimate: {_minutes(spent + plan.estimate_s)} in all, of the {options.max_minutes:g} min allowed", flush=True)

    with report_folder(options.out) as partial:
        records = run_batch_sizes(options, scenarios, calibration, plan, partial / RECORDS, deadline=started + options.max_minutes * 60)
        times = Times(checks_s, calibration.seconds, plan.estimate_s, time.monotonic() - started)
        report = write_report(partial, AuditRun(options, target, calibration, plan, records, times, getattr(args, "argv", ())))
    for block in report["verdict"]:
        print(f"{block['heading']}:")
        for sentence in block["sentences"]:
            print(f"  {sentence}")
    runs = report["runs"]
    print(
        f"{runs['ok']}/{runs['total']} runs ok, {runs['failed']} failed, {runs['skipped']} skipped; took "
        f"{_minutes(time.monotonic() - started)} (estimate {_minutes(spent + plan.estimate_s)})"
    )
    print(f"report: {options.out / 'index.html'}")
    return 0
