"""`bench audit`: check, calibrate, plan, run, report.

1. Every flag, the model file and class, its arguments and weights, the image folder and every case are
   checked (bench.audit.options, bench.audit.target); a problem is one line and exit code 2, with nothing
   written.
2. A short calibration times the user's model (bench.audit.calibrate); the budgets are fitted to
   `--max-minutes` (bench.audit.plan) and the estimate is printed before the runs start.
3. The runs go through the benchmark's runner (`run_cells`: the client's simulation, label methods, attacks,
   the prior floors, records and image grids), with a progress bar on a terminal, into a partial folder.
4. The report is written beside the records and the folder is put in place of `--out` (bench.audit.folder).
"""

from __future__ import annotations

import argparse
import time

from bench.audit.calibrate import calibrate
from bench.audit.folder import RECORDS, check_report_folder, report_folder
from bench.audit.options import AuditOptions
from bench.audit.plan import fit_plan, not_run
from bench.audit.report import AuditRun, Times, write_report
from bench.audit.target import Target, checked_scenarios, inspect_target
from bench.labels import LABELS, load_methods
from bench.leaderboard.site.pages import duration_text
from bench.preflight import check_device, check_writable
from bench.progress import Progress
from bench.runner import RunOptions, run_cells
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


def _plan_text(options: AuditOptions, plan, cells: list[Cell]) -> str:
    per_b = [
        f"B = {b}: " + (", ".join(f"{a} {n:,}" for (a, bb), n in sorted(plan.budgets.items()) if bb == b) or "no attack")
        for b in options.batch_sizes
    ]
    return f"{len(cells)} runs; iterations per run: " + "; ".join(per_b)


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
    print(f"estimate: {duration_text(spent + plan.estimate_s)} in all, of the {options.max_minutes:g} min allowed", flush=True)

    with report_folder(options.out) as partial:
        progress = Progress(len(cells))
        try:
            records = run_cells(cells, partial / RECORDS, RunOptions(device=options.device), progress)
        finally:
            progress.close()
        times = Times(checks_s, calibration.seconds, plan.estimate_s, time.monotonic() - started)
        run = AuditRun(options, target, calibration, plan, records, times, getattr(args, "argv", ()))
        report = write_report(partial, run)
    for block in report["verdict"]:
        print(f"{block['heading']}:")
        for sentence in block["sentences"]:
            print(f"  {sentence}")
    runs = report["runs"]
    print(
        f"{runs['ok']}/{runs['total']} runs ok, {runs['failed']} failed, {runs['skipped']} skipped; took "
        f"{duration_text(time.monotonic() - started)} (estimate {duration_text(spent + plan.estimate_s)})"
    )
    print(f"report: {options.out / 'index.html'}")
    return 0
