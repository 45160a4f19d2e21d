"""PNG plots of tables (matplotlib's Agg canvas, no pyplot state): one line per row with 95% CI error bars.

Shipped plots: PSNR against batch size, one line per attack; label accuracy against repetition rate, one
line per label-recovery method (one plot per batch size). File names come from the group, so the same
records always give the same files: `<metric>-vs-<axis>__<group slug>.png`.

Example:
    >>> write_plots(load_records(Path("runs/quick")), Path("leaderboard/plots"))
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from bench.files import write_atomic
from bench.grid import GRID_FOLDER, save_attack_grid
from bench.leaderboard.aggregate import REFERENCE_ROLES, ROW_AXES, Table, axis_text
from bench.metrics.catalog import METRICS
from bench.record import Record

FIGSIZE = (6.4, 4.0)  # inches; at DPI 100 a plot is 640 x 400 pixels
DPI = 100
X_LABELS = {"batch_size": "batch size B", "repetition": "label repetition rate r = 1 - U/B"}
TITLE_WIDTH = 90  # characters per title line: at fontsize 8 a longer line overflows a 640-pixel plot


def wrap_parts(parts: Sequence[str], width: int = TITLE_WIDTH) -> str:
    """The parts joined by " · ", broken into lines of at most `width` characters between parts."""
    lines = [""]
    for part in parts:
        joined = f"{lines[-1]} · {part}" if lines[-1] else part
        if len(joined) <= width or not lines[-1]:
            lines[-1] = joined
        else:
            lines.append(part)
    return "\n".join(lines)


def plot_path(table: Table, out_dir: Path) -> Path:
    return Path(out_dir) / f"{table.metric}-vs-{table.column_axis}__{table.group.slug()}.png"


def plot_table(table: Table, path: Path) -> Path | None:
    """One line per row (mean, CI error bars) over the table's columns; None when no cell has a value.

    Reference rows (the prior floors, the random start) are dashed; where the table marks cells above the
    prior floor, those points are ringed, as the tables mark them with *.
    """
    series = []
    for row in table.rows:
        points = [
            (x, c.mean, c.ci95 or 0.0, table.marks_floor and bool(c.above_floor))
            for x, c in zip(table.columns, row.cells)
            if c.mean is not None
        ]
        if points:
            series.append((row.label, row.method in REFERENCE_ROLES, points))
    if not series:
        return None
    # imported here so that loading the leaderboard (and the CLI) does not pay for matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=FIGSIZE, dpi=DPI)
    axes = figure.add_subplot()
    for label, reference, points in series:
        xs, ys, errs, marked = zip(*points)
        style = {"linestyle": "--", "marker": "s", "alpha": 0.7} if reference else {"marker": "o"}
        axes.errorbar(xs, ys, yerr=errs, label=label, markersize=4, capsize=3, linewidth=1.2, **style)
        ringed = [(x, y) for x, y, m in zip(xs, ys, marked) if m]
        if ringed:
            axes.scatter(*zip(*ringed), s=110, facecolors="none", edgecolors="black", linewidths=1.0, zorder=3)
    if any(m for _, _, points in series for *_, m in points):
        axes.scatter([], [], s=110, facecolors="none", edgecolors="black", label="* above the prior floor (95% CI)")
    if table.column_axis == "batch_size" and len(table.columns) > 1 and table.columns[-1] / table.columns[0] >= 4:
        axes.set_xscale("log", base=2)
    axes.set_xticks(table.columns, [axis_text(table.column_axis, c).split("=")[1] for c in table.columns])
    unit = METRICS.get(table.metric).obj.unit
    axes.set_xlabel(X_LABELS[table.column_axis])
    axes.set_ylabel(f"{table.metric} {table.arrow}" + (f" ({unit})" if unit else ""))
    axes.set_title(wrap_parts(table.group.parts()), fontsize=8)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, title=ROW_AXES[table.row_axis], title_fontsize=7)
    figure.tight_layout()
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    write_atomic(path, buffer.getvalue())
    return path


def find_run_grids(runs_dir: Path, run_ids: set[str]) -> dict[str, Path]:
    """run id -> its grid `<run id>.png`, anywhere below runs_dir (records may lie in subfolders)."""
    return {p.stem: p for p in sorted(Path(runs_dir).rglob("*.png")) if p.stem in run_ids}


def write_attack_grids(records: Sequence[Record], run_grids: dict[str, Path], out_dir: Path) -> list[Path]:
    """Per attack, its ok runs' grids stacked into `<out_dir>/grids/<attack>.png`, each captioned."""
    found: dict[str, list[tuple[tuple, str, Path]]] = defaultdict(list)
    for r in records:
        if "attack" in r.config and r.status == "ok" and r.run_id in run_grids:
            s = r.config["scenario"]
            order = (s["dataset"], s["model"], s["image_size"], s["batch_size"], s["repetition"], s["seed"], r.run_id)
            caption = (
                f"{s['dataset']} {s['model']} {s['image_size']} px B={s['batch_size']} r={s['repetition']:g} "
                f"seed {s['seed']} ({r.run_id[:8]})"
            )  # the setting, so a grid names the table it belongs to
            found[str(r.config["attack"])].append((order, caption, run_grids[r.run_id]))
    paths = []
    for attack in sorted(found):
        items = [(caption, path) for _, caption, path in sorted(found[attack])]
        target = Path(out_dir) / GRID_FOLDER / f"{attack}.png"
        paths.append(save_attack_grid([p for _, p in items], target, [c for c, _ in items]))
    return paths


def write_plots(
    tables: Sequence[Table], out_dir: Path, records: Sequence[Record] = (), runs_dir: Path | None = None
) -> list[Path]:
    """A plot of every table that has data, plus per-attack image grids of `records` when runs_dir holds
    their run grids."""
    written = []
    for table in tables:
        path = plot_table(table, plot_path(table, out_dir))
        if path is not None:
            written.append(path)
    if runs_dir is not None:
        written += write_attack_grids(records, find_run_grids(runs_dir, {r.run_id for r in records}), out_dir)
    return written
