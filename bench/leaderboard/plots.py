"""PNG plots of tables (matplotlib's Agg canvas, no pyplot state): one line per row with 95% CI error bars.

Shipped plots: PSNR against batch size, one line per attack; label accuracy against repetition rate, one
line per label-recovery method (one plot per batch size); PSNR gain over the prior floor against batch
size and repetition rate when the records carry it. Prior-floor rows are dashed grey lines, a gain plot
draws the floor at 0 dB, and a paper's number (bench.claims) is a star where the plot covers its setting.

A table over defenses gets one plot per kind of defense: its metric against the defense's strength, with
the update's distortion beside it (bench.leaderboard.strength_plots). A table over local steps or clients
is plotted like one over batch sizes.

File names are short and stable: `<metric>-vs-<B|r|steps|K>-<8 hex digits of the group>.png`, and
`<metric>-vs-<kind of defense>-<8 hex digits>.png`, the same group always giving the same name whatever
else the records hold. The setting is in the plot's title and in `index.md` beside the plots.

Example:
    >>> write_plots(tables_for(load_runs(Path("runs/quick"))), Path("plots"))
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from bench.claims import PaperPoint, paper_points
from bench.files import write_atomic
from bench.grid import GRID_FOLDER, save_attack_grid
from bench.leaderboard.aggregate import COLUMN_AXES, GAIN_METRIC, ROW_AXES, SCENARIO_AXES, Table, value_text
from bench.leaderboard.compute_plots import compute_plots
from bench.leaderboard.figures import DPI, FIGSIZE, FLOOR_STYLE, png_bytes, slug_digest, wrap_parts
from bench.leaderboard.runs import Sweep
from bench.leaderboard.strength_plots import strength_plots
from bench.metrics.catalog import METRICS

X_LABELS = {
    "batch_size": "batch size B",
    "repetition": "label repetition rate r = 1 - U/B",
    "defense": "defense strength",
    "local_steps": "local steps n",
    "clients": "clients K",
}
PLOT_INDEX = "index.md"


def plot_name(table: Table) -> str:
    """'psnr-vs-B-1f3a9c0d.png': the metric, the column axis and a hash of the table's group."""
    return f"{table.metric}-vs-{COLUMN_AXES[table.column_axis]}-{slug_digest(table.group.slug())}.png"


def claims_for(table: Table) -> list[PaperPoint]:
    """The papers' numbers this table can be read against: same track, metric and method, the group's
    fixed axis at the claim's value and the claim's column value among the table's columns."""
    methods = {row.method for row in table.rows}
    return [
        claim
        for claim in paper_points()
        if table.column_axis in SCENARIO_AXES and not table.group.threat.update.to_dict()
        and claim.track == table.row_axis and claim.metric == table.metric and claim.method in methods
        and all(math.isclose(claim.at(axis), value) for axis, value in table.group.fixed)
        and any(math.isclose(claim.at(table.column_axis), c) for c in table.columns)
    ]  # fmt: skip


def plot_png(table: Table) -> bytes | None:
    """One line per row (mean, CI error bars) over the table's columns; None when no cell has a value.

    Reference rows (the prior floors, the random start) are dashed grey; where the table marks cells above
    the prior floor, those points are ringed, as the tables mark them with *.
    """
    if table.column_axis == "defense":  # defenses are plotted by kind (strength_plots)
        return None
    series = []
    for row in table.rows:
        points = [
            (x, c.mean, c.ci95 or 0.0, table.marks_floor and bool(c.above_floor))
            for x, c in zip(table.columns, row.cells)
            if c.mean is not None
        ]
        if points:
            series.append((row, points))
    if not series:
        return None
    # imported here so that loading the leaderboard (and the CLI) does not pay for matplotlib
    from matplotlib.figure import Figure

    figure = Figure(figsize=FIGSIZE, dpi=DPI)
    axes = figure.add_subplot()
    colours = {}
    for row, points in series:
        xs, ys, errs, marked = zip(*points)
        style = FLOOR_STYLE if row.is_reference else {}
        drawn = axes.errorbar(
            xs, ys, yerr=errs, label=row.label, marker="o", markersize=4, capsize=3, linewidth=1.2, **style
        )
        colours.setdefault(row.method, drawn.lines[0].get_color())
        ringed = [(x, y) for x, y, m in zip(xs, ys, marked) if m]
        if ringed:
            axes.scatter(*zip(*ringed), s=110, facecolors="none", edgecolors="black", linewidths=1.0, zorder=3)
    if any(m for _, points in series for *_, m in points):
        axes.scatter([], [], s=110, facecolors="none", edgecolors="black", label="* above the prior floor (95% CI)")
    if table.metric == GAIN_METRIC:
        axes.axhline(0.0, linewidth=1.0, label="prior floor (0 dB)", **FLOOR_STYLE)
    for claim in claims_for(table):  # a star in the method's colour
        axes.plot([claim.at(table.column_axis)], [claim.value], marker="*", markersize=13, linestyle="none",
                  color=colours.get(claim.method, "black"), markeredgecolor="black", markeredgewidth=0.6,
                  label=f"paper: {claim.method} {claim.value:g}")  # fmt: skip
    if table.column_axis == "batch_size" and len(table.columns) > 1 and table.columns[-1] / table.columns[0] >= 4:
        axes.set_xscale("log", base=2)
    axes.set_xticks(table.columns, [value_text(c) for c in table.columns])
    unit = METRICS.get(table.metric).obj.unit
    axes.set_xlabel(X_LABELS[table.column_axis])
    axes.set_ylabel(f"{table.metric} {table.arrow}" + (f" ({unit})" if unit else ""))
    axes.set_title(wrap_parts(table.group.parts()), fontsize=8)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, title=ROW_AXES[table.row_axis], title_fontsize=7)
    figure.tight_layout()
    return png_bytes(figure)


def table_plots(table: Table) -> list[tuple[str, bytes]]:
    """(file name, PNG) of every plot of the table: its own, or one per kind of defense it spans."""
    if table.column_axis == "defense":
        return [(f"{table.metric}-vs-{kind}-{slug_digest(table.group.slug())}.png", data) for kind, data in strength_plots(table)]
    data = plot_png(table)
    return [] if data is None else [(plot_name(table), data)]


def plot_table(table: Table, path: Path) -> Path | None:
    """Write the table's plot to `path` atomically; None (and no file) when no cell has a value."""
    data = plot_png(table)
    if data is None:
        return None
    write_atomic(path, data)
    return path


def plot_index(named: Sequence[tuple[str, str]]) -> str:
    """Markdown: each plot file with its setting and metric (its table's title)."""
    lines = ["| plot | setting |", "|---|---|"]
    lines += [f"| [{name}]({name}) | {title} |" for name, title in named]
    return "\n".join(lines) + "\n"


def write_attack_grids(sweeps: Sequence[Sweep], out_dir: Path) -> list[Path]:
    """Per attack, its ok runs' grids stacked into `<out_dir>/grids/<attack>.png`, each captioned."""
    found: dict[str, list[tuple[tuple, str, Path]]] = defaultdict(list)
    for sweep, r in ((sweep, r) for sweep in sweeps for r in sweep.records):
        grid = sweep.grid(r.run_id)
        if "attack" in r.config and r.status == "ok" and grid is not None:
            s = r.config["scenario"]
            order = (s["dataset"], s["model"], s["image_size"], s["batch_size"], s["repetition"], s["seed"], r.run_id)
            caption = (
                f"{s['dataset']} {s['model']} {s['image_size']} px B={s['batch_size']} r={s['repetition']:g} "
                f"seed {s['seed']} ({r.run_id[:8]})"
            )  # the setting, so a grid names the table it belongs to
            found[str(r.config["attack"])].append((order, caption, grid))
    paths = []
    for attack in sorted(found):
        items = [(caption, path) for _, caption, path in sorted(found[attack])]
        target = Path(out_dir) / GRID_FOLDER / f"{attack}.png"
        paths.append(save_attack_grid([p for _, p in items], target, [c for c, _ in items]))
    return paths


def write_plots(tables: Sequence[Table], out_dir: Path, sweeps: Sequence[Sweep] = ()) -> list[Path]:
    """A plot of every table that has data and their `index.md`, plus per-attack image grids of the
    sweeps' runs and, where the runs carry traces, their gain against FLOPs (bench.leaderboard.compute_plots)."""
    records = [r for sweep in sweeps for r in sweep.records]
    drawn = [(name, data, table.title) for table in tables for name, data in table_plots(table)]
    written, named = [], []
    for name, data, title in [*drawn, *compute_plots(records)]:
        path = Path(out_dir) / name
        write_atomic(path, data)
        written.append(path)
        named.append((name, title))
    if named:
        write_atomic(Path(out_dir) / PLOT_INDEX, plot_index(named))
    if sweeps:
        written += write_attack_grids(sweeps, out_dir)
    return written
