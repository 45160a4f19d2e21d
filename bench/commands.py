"""The CLI's subcommands, one function each; argument parsing lives in bench.cli."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import textwrap
import time
from pathlib import Path

from tabulate import tabulate

from bench.attack import ATTACKS
from bench.case import check_case_folder, load_case, save_case
from bench.defaults import DEFAULT_PRESET
from bench.client import simulate
from bench.distributed.launch import (
    is_writer,
    launched,
    local_world_size_from_env,
    probes_output,
    rank_device,
    should_spawn,
    spawn_local,
    world,
    world_size_from_env,
)
from bench.errors import BenchError
from bench.files import write_atomic
from bench.labels import LABELS
from bench.metrics import MetricConfig
from bench.progress import Progress
from bench.record import Record
from bench.preflight import check_device, check_scenario, check_writable, validate
from bench.report import closing_line, failure_lines, method_text, runs, skip_lines
from bench.runner import RunOptions, already_ok, run_cells
from bench.settings import differences, folder_name, settings_text
from bench.sweep import Sweep, check_attack_options, expand, load_preset, load_sweep_file, override, scenarios, variants
from bench.threat import ThreatModel
from bench.tune import apply_tuned, load_tuned
from bench.update import ClientUpdate

PER_RUN_TABLE = "runs.txt"  # beside the records: one row per run of the last `bench run` into the folder


def _preset_or_file(args: argparse.Namespace) -> Sweep:
    """The sweep that `bench run`'s flags change: `--config`, `--preset`, or the default preset."""
    if args.config is not None and args.preset is not None:
        raise BenchError("give either --config or --preset, not both")
    if args.config is not None:
        return load_sweep_file(args.config)
    return load_preset(DEFAULT_PRESET if args.preset is None else args.preset)


def _sweep_from_args(args: argparse.Namespace, base: Sweep) -> Sweep:
    """`base` with the flags given on top, checked as one (bench.cli names each flag's destination after the
    Sweep field it sets)."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(Sweep) if hasattr(args, f.name)}
    if given.get("budget") is not None and (given.get("track") or base.track) == "attacks":
        given["budgets"] = {}  # a budget given on the command line caps every attack, a preset's per-attack ones too
    if getattr(args, "attack_option", None):  # field by field over each of the sweep's own settings
        options = {name: base.attack_options_for(name) for name in base.attack_options}
        for name, option, value in args.attack_option:
            for setting in options.setdefault(name, [{}]):
                setting[option] = value
        given["attack_options"] = {name: sets[0] if len(sets) == 1 else sets for name, sets in options.items()}
    return override(base, **given)


def run_sweep(args: argparse.Namespace) -> Sweep:
    """The sweep `bench run` runs: the preset or file with the flags on top, named after what the flags
    change (`quick+budget=2`), so that its records never land in the preset's folder."""
    base = _preset_or_file(args)
    sweep = _sweep_from_args(args, base)
    changes = differences(base, sweep)
    return dataclasses.replace(sweep, name=folder_name(base.name, changes)) if changes else sweep


def records_folder(args: argparse.Namespace, sweep: Sweep) -> Path:
    tuned = "+tuned" if getattr(args, "tuned", None) else ""  # tuned options never land among the defaults' records
    return Path(f"runs/{sweep.name}{tuned}" if args.out is None else _folder(args.out))


def _local_ranks(nproc: int) -> tuple[int, int]:
    """(world size, ranks on this machine) of the run: `--nproc` when this process starts the ranks, the
    launcher's variables under a launch, else one."""
    if should_spawn(nproc):
        return nproc, nproc
    if launched():
        return world_size_from_env(), local_world_size_from_env()
    return 1, 1


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def summary_table(records: list[Record]) -> str:
    """One line per run: the scenario, the status and the headline metrics."""
    labels_only = all("label_method" in r.config for r in records)
    updates = [ThreatModel.from_dict(r.config["scenario"]["threat"]).update for r in records]
    show_update = labels_only and any(u != ClientUpdate() for u in updates)
    rows = []
    for r, update in zip(records, updates):
        s, m = r.config["scenario"], r.metrics
        row = [method_text(r), s["model"], s["batch_size"], f"{s['repetition']:g}"]
        if labels_only:
            row += [update.short()] if show_update else []
            row += [s["seed"], r.status, _fmt(m.get("label_acc"), 3), _fmt(m.get("label_precision"), 3),
                    _fmt(m.get("label_recall"), 3), _fmt(m.get("label_count_mae"), 3)]
        else:
            row += [ThreatModel.from_dict(s["threat"]).short(), s["seed"], r.status, _fmt(m.get("psnr")),
                    _fmt(m.get("psnr_gain")), _fmt(m.get("ssim"), 3), _fmt(m.get("lpips"), 3), _fmt(m.get("label_acc"), 3),
                    _fmt(r.cost.get("wall_s"), 1) if r.cost else "-"]
        rows.append(row + [(r.error or "").splitlines()[0] if r.error else ""])  # why a run was skipped or failed
    if labels_only:
        headers = ["method", "model", "B", "r", *(["update"] if show_update else []), "seed", "status", "label acc ↑",
                   "precision ↑", "recall ↑", "count MAE ↓"]  # fmt: skip
    else:
        headers = ["attack", "model", "B", "r", "threat", "seed", "status", "PSNR ↑", "gain ↑", "SSIM ↑", "LPIPS ↓",
                   "label acc ↑", "time s"]
    return tabulate(rows, headers=headers + ["reason"])


def comparison(records: list[Record]) -> str:
    """The leaderboard's tables of a run's records: methods x batch size (label track: x repetition rate),
    mean ± 95% CI over seeds, n_ok/n_total, prior-floor rows among the attacks when they ran."""
    from bench.leaderboard import board_tables, render

    return render(board_tables(records), "md").rstrip() if records else ""


def where_to_find(records: list[Record], out_dir: Path) -> str:
    """Write the per-run table beside the records (`runs.txt`) and say where it and the site can be had."""
    per_run = out_dir / PER_RUN_TABLE
    try:
        write_atomic(per_run, summary_table(records) + "\n")
        lines = [f"per-run table: {per_run} (--per-run prints it instead of the comparison)"]
    except OSError as err:
        lines = [f"per-run table not written ({per_run}: {err.strerror or err}); --per-run prints it"]
    lines.append(f"site: python -m bench leaderboard --runs {out_dir} --site site")
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    sweep = run_sweep(args)
    if sweep.track == "labels":
        methods = LABELS.select(sweep.label_methods)
    else:
        methods = ATTACKS.select(sweep.attacks)
        for name in sweep.budgets:  # a budget for a name no attack has is a typo
            ATTACKS.get(name)
        check_attack_options(sweep)
    tuned = load_tuned(args.tuned) if args.tuned is not None else None
    world_size, local_ranks = _local_ranks(args.nproc)
    if args.shard_above is not None and world_size == 1:
        raise BenchError("--shard-above applies to runs on several ranks (--nproc N or torchrun)")
    device = check_device(args.device, local_ranks)
    metric = MetricConfig(lpips_weights=args.lpips_weights)
    cells = expand(sweep, methods) if tuned is None else apply_tuned(expand(sweep, methods), tuned)
    cells = validate(cells, world_size, args.shard_above, skip_infeasible=sweep.infeasible == "skip", metric=metric)
    out_dir = records_folder(args, sweep)
    if probes_output():
        check_writable(out_dir)
    if should_spawn(args.nproc):
        return spawn_local(args.nproc, args.argv)
    with world(device) as collective:
        options = RunOptions(
            device=str(rank_device(device)),
            metric=metric,
            resume=args.resume,
            save_images=not args.no_images,
            collective=collective,
            shard_above=args.shard_above,
            fail_fast=args.fail_fast,
        )
        if not is_writer(collective):
            run_cells(cells, out_dir, options)
            return 0
        ranks = f", {world_size} ranks" if world_size > 1 else ""
        print(f"{runs(len(cells))} ({sweep.name}, {sweep.track}{ranks}): {', '.join(methods)} -> {out_dir}")
        print(f"settings (as a sweep file):\n{textwrap.indent(settings_text(sweep), '  ')}", flush=True)
        reused = {c.run_id for c in cells if already_ok(c, out_dir)} if args.resume else set()
        progress = Progress(len(cells), lines=None if sys.stdout.isatty() else sys.stdout)
        try:
            records = run_cells(cells, out_dir, options, progress)
        except KeyboardInterrupt:
            progress.close()
            print(f"interrupted: {progress.done} of {len(cells)} runs done; rerun with --resume", file=sys.stderr)
            return 130
        finally:
            progress.close()
    print(summary_table(records) if args.per_run else comparison(records))
    for line in skip_lines(records) + failure_lines(records, out_dir):
        print(line)
    print(closing_line(records, sum(r.run_id in reused for r in records), time.monotonic() - started, out_dir))
    print(where_to_find(records, out_dir))
    failed = [r for r in records if r.status == "failed"]
    if failed and args.fail_fast:
        print(f"stopped at the first failure (--fail-fast), {len(records)} of {len(cells)} runs done:", file=sys.stderr)
        print(failed[0].traceback or failed[0].error, file=sys.stderr, end="")
    return 1 if failed else 0


def cmd_tune(args: argparse.Namespace) -> int:
    from bench.tune import check_stored, plan_studies, run_study, tuning_table, write_tuned

    started = time.monotonic()
    sweep = run_sweep(args)
    if sweep.track != "attacks":
        raise BenchError("bench tune tunes attacks; label-recovery methods have no options to tune")
    methods = ATTACKS.select(sweep.attacks)
    check_attack_options(sweep)
    seeds = tuple(args.tune_seeds)
    overlap = sorted(set(seeds) & {s for variant in variants(sweep) for s in variant.seeds})
    if overlap:
        raise BenchError(
            f"--tune-seeds overlap the sweep's seeds ({', '.join(map(str, overlap))}): the seeds the attacks are "
            f"scored on must stay apart from those they are tuned on"
        )
    spaces = search_spaces(methods, args.space or [])
    untuned = [name for name in methods if name not in spaces]
    device = check_device(args.device)
    metric = MetricConfig(lpips_weights=args.lpips_weights)
    tuning_sweep = override(sweep, seeds=list(seeds))
    cells = validate(expand(tuning_sweep, list(spaces)), skip_infeasible=sweep.infeasible == "skip", metric=metric)
    out_dir = Path(_folder(args.out))
    check_writable(out_dir)
    print(f"tuning {', '.join(spaces)} ({sweep.name}): {args.trials} trials each on seeds {', '.join(map(str, seeds))} -> {out_dir}")
    if untuned:
        print(f"not tuned (no search space): {', '.join(untuned)}")
    print(f"settings (as a sweep file):\n{textwrap.indent(settings_text(tuning_sweep), '  ')}", flush=True)
    options = RunOptions(device=str(device), metric=metric, resume=True, save_images=False)
    bar = sys.stderr.isatty()
    studies = plan_studies(cells, spaces, seeds)
    check_stored(out_dir, studies)
    try:
        for study in studies:
            run_study(study, args.trials, args.sampler_seed, out_dir, options, bar)
            write_tuned(out_dir)  # each finished study is usable at once
    except KeyboardInterrupt:
        print(f"interrupted; the same command resumes the studies in {out_dir}", file=sys.stderr)
        return 130
    path = write_tuned(out_dir)
    print(tuning_table(path))
    print(f"tuned options: {path} (python -m bench run ... --tuned {path}) · {time.monotonic() - started:.0f} s")
    return 0


def search_spaces(methods: list[str], given: list[tuple[str, str, object]]) -> dict:
    """Each attack's search space with the --space ranges on top; attacks without one are left out."""
    from bench.search_space import space_for

    ranges: dict[str, dict] = {}
    for name, option, value in given:
        if name not in methods:
            raise BenchError(f"--space {name}.{option}: {name!r} is not one of the attacks tuned ({', '.join(methods)})")
        ranges.setdefault(name, {})[option] = value
    spaces = {name: space_for(name, ranges.get(name)) for name in methods}
    spaces = {name: space for name, space in spaces.items() if space}
    if not spaces:
        raise BenchError(f"none of {', '.join(methods)} has a search space to tune (give ranges with --space)")
    return spaces


def _folder(text: str) -> str:
    if not text.strip():
        raise BenchError("--out needs a folder name, got an empty one")
    return text


def cmd_case(args: argparse.Namespace) -> int:
    if args.case_command == "show":
        print(load_case(args.folder).summary())
        return 0
    (scenario,) = scenarios(_sweep_from_args(args, Sweep()))  # the default scenario with the flags on top
    out = Path(_folder(args.out))
    check_case_folder(out)
    check_scenario(scenario)
    check_writable(out)
    case, secret = simulate(scenario)
    try:
        folder = save_case(case, out, None if args.no_secret else secret)
    except OSError as err:
        raise BenchError(f"cannot write the case to {out}: {err.strerror or err}; nothing was replaced") from None
    print(f"wrote {folder}")
    print(case.summary())
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from bench.leaderboard import views_for, write_leaderboard

    if args.tuned is not None:
        return _tuning_comparison(args)
    views = views_for(args.metrics, args.columns)
    if args.site is not None:
        from bench.leaderboard.site import check_site_folder, write_site

        if args.at_flops is not None:
            raise BenchError("--at-flops renders tables (--format, --out, --plots); the site draws every run's trace whole")
        check_site_folder(Path(args.site))  # before any work
    if args.site is None or args.out is not None or args.plots is not None:
        # args.out stays a string: a trailing slash means "folder" and Path() would drop it.
        text = write_leaderboard(
            args.runs, args.out, args.format, plots_dir=args.plots, views=views, flops=args.at_flops,
            target_gain=args.target_gain,
        )  # fmt: skip
        if args.out is None and args.site is None:
            print(text, end="")
    if args.site is not None:
        print(f"site: {write_site(args.runs, args.site, views)}")
    return 0


def _tuning_comparison(args: argparse.Namespace) -> int:
    from bench.leaderboard.tuning import tuning_comparison

    if args.site is not None or args.plots is not None or args.at_flops is not None or args.format != "md":
        raise BenchError("--tuned renders one Markdown table (with --runs and --out only)")
    text = tuning_comparison(args.runs, args.tuned)
    if args.out is None:
        print(text, end="")
    else:
        write_atomic(Path(args.out), text)
    return 0


def cmd_claims(args: argparse.Namespace) -> int:
    from bench.leaderboard.claims import write_claims

    if not Path(args.board).is_dir():
        raise BenchError(f"board folder {args.board} does not exist (pass --board with the folder holding records/)")
    text = write_claims(args.board, args.out)
    if args.out is None:
        print(text, end="")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from bench.check import REFERENCE, SUITE_DIR, run_check
    from bench.check_report import report_text, write_junit

    if args.suite is not None and args.reference is None:
        raise BenchError("--suite needs --reference: the file that holds (or, with --update, will hold) its reference")
    if args.imitate is not None and not args.update:
        raise BenchError("--imitate measures minimum effects while writing a reference: give it with --update")
    if args.update and args.junit:
        raise BenchError("--junit writes verdicts, and --update gives none: run the check without --update")
    for folder in filter(None, [args.out, args.junit and str(Path(args.junit).parent)]):
        check_writable(Path(folder))
    if args.junit and Path(args.junit).is_dir():
        raise BenchError(f"--junit {args.junit} is a folder; give a file name")
    imitate = None if args.imitate is None else [s for s in args.imitate if s != "none"]
    result = run_check(
        suite=Path(args.suite) if args.suite is not None else SUITE_DIR,
        reference=Path(args.reference) if args.reference is not None else REFERENCE,
        update=args.update,
        imitate=imitate,
        budget_scale=args.budget_scale,
        only=args.only,
        out_dir=Path(args.out) if args.out is not None else None,
    )
    if args.update:
        kernels = ", ".join(f"{s} ({t:.0f} s)" for s, t in result.kernel_runs.items()) or "none"
        print(
            f"reference written to {result.reference_path}: {result.runs} runs here in {result.wall_s:.0f} s "
            f"({result.cpu_s:.0f} s CPU); minimum effects measured under imitated kernels: {kernels}"
        )
        return 0
    print(report_text(result))
    if args.junit:
        write_junit(result, Path(args.junit))
        print(f"JUnit XML written to {args.junit}")
    return 1 if result.regressed else 0
