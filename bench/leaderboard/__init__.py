"""Leaderboard: records -> tables (mean ± 95% CI over seeds, n_ok/n_total) -> Markdown, LaTeX, CSV, HTML;
PNG plots and image grids.

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
from bench.leaderboard.plots import plot_table, write_attack_grids, write_plots
from bench.leaderboard.render import LEGEND, RENDERERS, latex_escape, render
from bench.leaderboard.runs import load_runs
from bench.leaderboard.stats import CellStats, mean_ci95, t_quantile
from bench.leaderboard.write import views_for, write_leaderboard

__all__ = [
    "COLUMN_AXES",
    "DEFAULT_VIEWS",
    "LEGEND",
    "RENDERERS",
    "ROW_AXES",
    "CellStats",
    "Group",
    "Row",
    "Table",
    "View",
    "aggregate",
    "latex_escape",
    "load_runs",
    "mean_ci95",
    "plot_table",
    "render",
    "t_quantile",
    "tables_for",
    "views_for",
    "write_attack_grids",
    "write_leaderboard",
    "write_plots",
]
