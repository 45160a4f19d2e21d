"""The leaderboard of one or more runs folders: every table in one format, to a file or as text, and its
plots.

Example:
    >>> text = write_leaderboard(Path("runs/quick"), None, "md")
    >>> write_leaderboard([Path("runs/a"), Path("runs/b")], Path("board.tex"), "latex", Path("plots"))
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

from bench.compute import flops_text
from bench.errors import BenchError
from bench.files import write_atomic
from bench.leaderboard.aggregate import DEFAULT_VIEWS, GAIN_METRIC, UPDATE_AXES, Table, View, column_value, tables_for
from bench.leaderboard.plots import write_plots
from bench.leaderboard.render import EXTENSIONS, check_format, closing_note, legend, render
from bench.leaderboard.traces import at_flops, at_flops_legend, check_trace_metrics, render_targets, target_tables
from bench.leaderboard.runs import Sweep, load_sweeps
from bench.metrics.catalog import METRICS
from bench.record import Record

RunsDirs = str | Path | Sequence[str | Path]
DEFAULT_TARGET_GAIN = 10.0  # dB over the prior floor, for the tables of FLOPs to reach it
GAIN_VIEWS: tuple[View, ...] = (View("attack", GAIN_METRIC, "batch_size"), View("attack", GAIN_METRIC, "repetition"))


def views_for(metrics: Sequence[str] | None = None, columns: str | None = None) -> tuple[View, ...]:
    """Attack tables of `metrics` over `columns` (defaults: psnr over batch size), then the label track's."""
    if not metrics and not columns:
        return DEFAULT_VIEWS
    attack = tuple(View("attack", m, columns or "batch_size") for m in (metrics or ["psnr"]))
    return attack + DEFAULT_VIEWS[1:]


def _varies(records: Sequence[Record], axis: str) -> bool:
    return len({column_value(r.config["scenario"], axis) for r in records}) > 1


def with_varied_views(views: Sequence[View], records: Sequence[Record]) -> tuple[View, ...]:
    """`views` and the tables the records call for:
    - when the attack records carry the PSNR gain over the prior floor, its tables against the attack
      views' axis and each other axis the records vary (after the other attack views);
    - for each setting of the update the records vary (defense, local steps, clients), each view's
      metric against it (the attack views' and the gain's after the attack views, the label track's last).
    """
    attacks = [r for r in records if "attack" in r.config]
    labels = [r for r in records if "attack" not in r.config]
    first = [v for v in views if v.rows == "attack"]
    gain = GAIN_METRIC in METRICS and any(GAIN_METRIC in r.metrics for r in attacks)
    shown = {v.columns for v in first}
    varied = [
        v for v in GAIN_VIEWS
        if gain and v not in views and (v.columns in shown or _varies(attacks, v.columns))
    ]  # fmt: skip
    metrics = list(dict.fromkeys([*(v.metric for v in first), *([GAIN_METRIC] if gain else [])]))
    rest = [v for v in views if v.rows != "attack"]
    by_update = [View("attack", m, axis) for axis in UPDATE_AXES if _varies(attacks, axis) for m in metrics]
    labels_by_update = [View(v.rows, v.metric, axis) for axis in UPDATE_AXES if _varies(labels, axis) for v in rest]
    if not varied and not by_update and not labels_by_update:
        return tuple(views)
    added = [v for v in (*by_update, *labels_by_update) if v not in views]
    return (*first, *varied, *(v for v in added if v.rows == "attack"), *rest, *(v for v in added if v.rows != "attack"))


def board_tables(records: Sequence[Record], views: Sequence[View] = DEFAULT_VIEWS) -> list[Table]:
    """Every table of the views (and the gain tables, when present) over `records`; none is an error."""
    tables = tables_for(records, with_varied_views(views, records))
    if not tables:
        tracks = ", ".join(sorted({v.rows for v in views}))
        raise BenchError(f"no records belong to the tables asked for ({tracks})")
    return tables


def _read_at(table: Table, flops: float) -> Table:
    """An attack table read at `flops`: its compute row says so."""
    if table.row_axis != "attack":
        return table
    return dataclasses.replace(table, compute=tuple(f"≤ {flops_text(flops)}" for _ in table.columns))


def runs_folders(runs: RunsDirs) -> list[Path]:
    return [Path(runs)] if isinstance(runs, (str, Path)) else [Path(r) for r in runs]


def combined_records(sweeps: Sequence[Sweep]) -> list[Record]:
    """The records of all sweeps in one list; a run in two folders would count twice in every mean."""
    seen: dict[str, Path] = {}
    for sweep in sweeps:
        for record in sweep.records:
            if record.run_id in seen:
                raise BenchError(
                    f"run {record.run_id} is recorded twice: {seen[record.run_id]} and {sweep.files[record.run_id]}"
                )
            seen[record.run_id] = sweep.files[record.run_id]
    return sorted((r for s in sweeps for r in s.records), key=lambda r: r.run_id)


def leaderboard_path(out: str | Path, format: str) -> Path:
    """`out` itself, or `out/leaderboard.<ext>` when `out` is a folder (existing, or a str ending in a slash)."""
    if Path(out).is_dir() or str(out).endswith(("/", os.sep)):
        return Path(out) / f"leaderboard.{EXTENSIONS[format]}"
    return Path(out)


def write_leaderboard(
    runs: RunsDirs,
    out: str | Path | None = None,
    format: str = "md",
    plots_dir: str | Path | None = None,
    views: Sequence[View] = DEFAULT_VIEWS,
    flops: float | None = None,
    target_gain: float = DEFAULT_TARGET_GAIN,
) -> str:
    """Render the records under the runs folder(s) as one set of tables; write the text to `out` (file or
    folder) when given, and PNG plots (with their index) and per-attack grids to `plots_dir` when given.
    Returns the text. With `flops`, every attack run is read at that compute (bench.leaderboard.traces);
    when runs carry traces, tables of the FLOPs to a gain of `target_gain` dB over the floor follow.

    Every file is written atomically; a folder that cannot be written is a BenchError naming it.
    """
    check_format(format)
    sweeps = load_sweeps(runs_folders(runs))
    records = combined_records(sweeps)
    if flops is None:
        tables = board_tables(records, views)
        text = render(tables, format) + render_targets(target_tables(records, target_gain), format)
    else:
        check_trace_metrics([v.metric for v in views if v.rows == "attack"])
        tables = [_read_at(t, flops) for t in board_tables(at_flops(records, flops), views)]
        text = render(tables, format, f"{legend(tables)} {at_flops_legend(flops)}")
    for sweep in (s for s in sweeps if s.skipped):
        names = ", ".join(str(path.relative_to(sweep.folder)) for path, _ in sweep.skipped)
        text += closing_note(f"{len(sweep.skipped)} file(s) under {sweep.folder} skipped, not records: {names}", format)
    if out is not None:
        try:
            path = leaderboard_path(out, format)
            write_atomic(path, text)
        except OSError as err:
            raise BenchError(f"cannot write {out}: {err.strerror or err}") from None
    if plots_dir is not None:
        try:
            write_plots(tables, Path(plots_dir), sweeps)
        except OSError as err:
            raise BenchError(f"cannot write plots to {plots_dir}: {err.strerror or err}") from None
    for sweep in sweeps:
        sweep.notify()  # after the work succeeded: a refusal stays one line
    return text
