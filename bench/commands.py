"""The CLI's subcommands, one function each; argument parsing lives in bench.cli."""

from __future__ import annotations

import argparse
from pathlib import Path

from tabulate import tabulate

from bench.attack import ATTACKS
from bench.case import load_case, save_case
from bench.client import simulate
from bench.data import DATASETS
from bench.distributed.launch import is_writer, rank_device, world
from bench.errors import BenchError
from bench.labels import LABELS
from bench.metrics import METRICS, MetricConfig
from bench.models import MODELS
from bench.progress import Progress
from bench.record import Record
from bench.runner import RunOptions, check_writable, run_cells, validate
from bench.scenario import Scenario
from bench.sweep import expand, load_preset, load_sweep_file, override, preset_names
from bench.threat import ThreatModel

DEFAULT_PRESET = "quick"


def cmd_ls(args: argparse.Namespace) -> int:
    if args.what == "presets":
        print(tabulate([(n, load_preset(n).description) for n in preset_names()], headers=["preset", "description"]))
        return 0
    registry = {"attacks": ATTACKS, "labels": LABELS, "models": MODELS, "datasets": DATASETS, "metrics": METRICS}[args.what]
    rows = []
    for entry in registry.entries():
        row = [entry.name, entry.description]
        if args.what == "attacks":
            row.append(entry.obj.requires.short())
        if args.what == "labels":
            row.append(", ".join(entry.info.get("needs", ())))
        rows.append(row)
    headers = {"attacks": ["attack", "description", "requires"], "labels": ["method", "description", "needs"]}
    print(tabulate(rows, headers=headers.get(args.what, [args.what[:-1], "description"])))
    return 0


def _sweep_from_args(args: argparse.Namespace):
    if args.config and args.preset:
        raise BenchError("give either --config or --preset, not both")
    sweep = load_sweep_file(args.config) if args.config else load_preset(args.preset or DEFAULT_PRESET)
    return override(
        sweep,
        track=args.track,
        label_methods=args.label_methods,
        attacks=args.attacks,
        models=args.models,
        datasets=args.datasets,
        data_path=args.data_path,
        image_size=args.image_size,
        batch_sizes=args.batch_sizes,
        repetitions=args.repetitions,
        labels_known=args.labels_known,
        bn_stats=args.bn_stats,
        seeds=args.seeds,
        budget=args.budget,
        label_source=args.label_source,
        num_classes=args.num_classes,
        weights=args.weights,
        train_steps=args.train_steps,
        bn_mode=args.bn_mode,
    )


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def summary_table(records: list[Record]) -> str:
    """One line per run: the scenario, the status and the headline metrics."""
    labels_only = all("label_method" in r.config for r in records)
    rows = []
    for r in records:
        s, m = r.config["scenario"], r.metrics
        row = [r.config.get("attack") or r.config.get("label_method"), s["model"], s["batch_size"], f"{s['repetition']:g}"]
        if labels_only:
            row += [s["seed"], r.status, _fmt(m.get("label_acc"), 3), _fmt(m.get("label_precision"), 3),
                    _fmt(m.get("label_recall"), 3), _fmt(m.get("label_count_mae"), 3)]
        else:
            row += [ThreatModel.from_dict(s["threat"]).short(), s["seed"], r.status, _fmt(m.get("psnr")),
                    _fmt(m.get("psnr_gain")), _fmt(m.get("ssim"), 3), _fmt(m.get("lpips"), 3), _fmt(m.get("label_acc"), 3),
                    _fmt(r.cost.get("wall_s"), 1) if r.cost else "-"]
        rows.append(row)
    if labels_only:
        headers = ["method", "model", "B", "r", "seed", "status", "label acc ↑", "precision ↑", "recall ↑", "count MAE ↓"]
    else:
        headers = ["attack", "model", "B", "r", "threat", "seed", "status", "PSNR ↑", "gain ↑", "SSIM ↑", "LPIPS ↓",
                   "label acc ↑", "time s"]
    return tabulate(rows, headers=headers)


def floor_tables(records: list[Record]) -> str:
    """The runs' gain over the prior floor, averaged over seeds: one table per setting, floor rows included."""
    from bench.leaderboard import aggregate, render

    tables = aggregate(records, rows="attack", columns="batch_size", metric="psnr_gain")
    return "\n" + render(tables, "md") if tables else ""


def cmd_run(args: argparse.Namespace) -> int:
    sweep = _sweep_from_args(args)
    if sweep.track == "labels":
        methods = LABELS.select(sweep.label_methods)
    else:
        methods = ATTACKS.select(sweep.attacks)
    cells = expand(sweep, methods)
    out_dir = Path(args.out or f"runs/{sweep.name}")
    with world(args.device) as collective:
        world_size = 1 if collective is None else collective.world_size
        cells = validate(cells, world_size, args.shard_above, skip_infeasible=sweep.infeasible == "skip")
        check_writable(out_dir)
        options = RunOptions(
            device=str(rank_device(args.device)),
            metric=MetricConfig(lpips_weights=args.lpips_weights),
            resume=args.resume,
            save_images=not args.no_images,
            collective=collective,
            shard_above=args.shard_above,
        )
        if not is_writer(collective):
            run_cells(cells, out_dir, options)
            return 0
        ranks = f", {world_size} ranks" if world_size > 1 else ""
        print(f"{len(cells)} runs ({sweep.name}, {sweep.track}{ranks}): {', '.join(methods)} -> {out_dir}", flush=True)
        progress = Progress(len(cells))
        try:
            records = run_cells(cells, out_dir, options, progress)
        finally:
            progress.close()
    print(summary_table(records))
    if sweep.track == "attacks":
        print(floor_tables(records), end="")
    counts = {s: sum(r.status == s for r in records) for s in ("ok", "failed", "skipped")}
    print(f"{counts['ok']}/{len(records)} ok, {counts['failed']} failed, {counts['skipped']} skipped; records in {out_dir}")
    for r in records:
        if r.status == "failed":
            print(f"failed: {r.config.get('attack') or r.config.get('label_method')} ({r.run_id}): {r.error}")
    return 1 if counts["failed"] else 0


def _given(**values):
    return {k: v for k, v in values.items() if v is not None}


def cmd_case(args: argparse.Namespace) -> int:
    if args.case_command == "show":
        print(load_case(args.folder).summary())
        return 0
    given = dict(
        dataset=args.dataset, data_path=args.data_path, image_size=args.image_size, batch_size=args.batch_size,
        repetition=args.repetition, label_source=args.label_source, model=args.model, num_classes=args.num_classes,
        weights=args.weights, train_steps=args.train_steps, bn_mode=args.bn_mode, seed=args.seed,
    )  # fmt: skip
    threat = ThreatModel(**_given(labels_known=args.labels_known, bn_stats=args.bn_stats))
    scenario = Scenario(**_given(**given), threat=threat)  # flags left out keep the Scenario's defaults
    case, secret = simulate(scenario)
    folder = save_case(case, args.out, None if args.no_secret else secret)
    print(f"wrote {folder}")
    print(case.summary())
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from bench.leaderboard import views_for, write_leaderboard

    # args.out stays a string: a trailing slash means "folder" and Path() would drop it.
    text = write_leaderboard(
        args.runs, args.out, args.format, plots_dir=args.plots, views=views_for(args.metrics, args.columns)
    )
    if args.out is None:
        print(text, end="")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from bench.check import REFERENCE, run_check

    verdicts = run_check(update=args.update, budget_scale=args.budget_scale, only=args.only)
    if args.update:
        print(f"reference values written to {REFERENCE}")
        return 0
    rows = [
        [v.key.rsplit(" | ", 1)[0], v.metric, _fmt(v.reference, 3), _fmt(v.value, 3), "REGRESSED" if v.regressed else "ok", v.note]
        for v in verdicts
    ]
    print(tabulate(rows, headers=["entry", "metric", "reference", "now", "verdict", "note"]))
    regressed = sorted({v.key.rsplit(" | ", 1)[0] for v in verdicts if v.regressed})
    if regressed:
        print(f"regressed: {'; '.join(regressed)}")
        return 1
    print(f"all {len(verdicts)} checks within tolerance")
    return 0
