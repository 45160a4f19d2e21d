"""Leaderboard: records -> tables (mean ± 95% CI over seeds, n_ok/n_total) -> Markdown, LaTeX, CSV, HTML;
PNG plots and image grids.

Example:
    >>> print(write_leaderboard(Path("runs/quick"), format="md"))
    >>> tables = aggregate(load_runs(Path("runs/quick")), rows="attack", columns="batch_size", metric="psnr")
    >>> render(tables, "latex")
"""

from bench.leaderboard.aggregate import COLUMN_AXES, ROW_AXES, Group, Row, Table, aggregate
from bench.leaderboard.plots import PLOT_VIEWS, PlotView, plot_table, write_attack_grids, write_plots
from bench.leaderboard.render import LEGEND, RENDERERS, latex_escape, render
from bench.leaderboard.runs import load_runs
from bench.leaderboard.stats import CellStats, mean_ci95, t_quantile
from bench.leaderboard.write import DEFAULT_VIEWS, View, views_for, write_leaderboard

__all__ = [
    "aggregate",
    "render",
    "write_leaderboard",
    "write_plots",
    "write_attack_grids",
    "plot_table",
    "load_runs",
    "mean_ci95",
    "t_quantile",
    "latex_escape",
    "CellStats",
    "Group",
    "Row",
    "Table",
    "View",
    "PlotView",
    "DEFAULT_VIEWS",
    "PLOT_VIEWS",
    "ROW_AXES",
    "COLUMN_AXES",
    "LEGEND",
    "RENDERERS",
    "views_for",
]
