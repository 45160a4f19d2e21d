"""Leaderboard: records -> tables (mean ± 95% CI over seeds, n_ok/n_total) -> Markdown, LaTeX, CSV, HTML;
PNG plots and image grids; a static site (bench.leaderboard.site).

Example:
    >>> print(write_leaderboard(Path("runs/quick"), format="md"))
    >>> tables = aggregate(load_runs(Path("runs/quick")), rows="attack", columns="batch_size", metric="psnr")
    >>> render(tables, "latex")
"""

from bench.leaderboard.aggregate import (
    COLUMN_AXES,
    DEFAULT_VIEWS,
    ROW_AXES,
    Group,
    Row,
    Table,
    View,
    aggregate,
    tables_for,
)
from bench.leaderboard.plots import plot_name, plot_png, plot_table, write_attack_grids, write_plots
from bench.leaderboard.render import LEGEND, RENDERERS, latex_escape, render
from bench.leaderboard.runs import Sweep, load_runs, load_sweep, load_sweeps
from bench.leaderboard.stats import CellStats, mean_ci95, t_quantile
from bench.leaderboard.write import board_tables, views_for, with_varied_views, write_leaderboard

__all__ = [
    "COLUMN_AXES",
    "DEFAULT_VIEWS",
    "LEGEND",
    "RENDERERS",
    "ROW_AXES",
    "CellStats",
    "Group",
    "Row",
    "Sweep",
    "Table",
    "View",
    "aggregate",
    "board_tables",
    "latex_escape",
    "load_runs",
    "load_sweep",
    "load_sweeps",
    "mean_ci95",
    "plot_name",
    "plot_png",
    "plot_table",
    "render",
    "t_quantile",
    "tables_for",
    "views_for",
    "with_varied_views",
    "write_attack_grids",
    "write_leaderboard",
    "write_plots",
]
