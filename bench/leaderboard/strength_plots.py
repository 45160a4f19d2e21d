"""Plots of a table over defenses, one per kind of defense: the table's metric (mean and 95% CI per method;
for the PSNR gain, the prior floor is the line at 0 dB) against the defense's strength, and beside it the
distortion of the shared update, its cosine to the undefended update, against the same axis.

The x axis of each kind (bench.leaderboard.strength): DP-SGD's certified epsilon at its delta (log scale;
no defense is epsilon = infinity, drawn one decade right of the largest budget and labelled so), the
pruned fraction (no defense at 0), the noise's standard deviation (log; no defense one decade left of the
smallest), the bits per entry (no defense at 32). A kind without a strength parameter (half, sign) is
placed beside no defense on a categorical axis.

Example:
    >>> plot = strength_plot(table, "dp")   # the data drawn: ticks, one series per row, the cosine
    >>> [(kind, len(png)) for kind, png in strength_plots(table)]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.defenses import Defense
from bench.leaderboard.aggregate import GAIN_METRIC, ROW_AXES, Table
from bench.leaderboard.figures import DPI, FLOOR_STYLE, png_bytes, wrap_parts
from bench.leaderboard.strength import STRENGTHS, Strength, is_none
from bench.metrics.catalog import METRICS

FIGSIZE = (11.2, 4.2)  # two panels side by side
COSINE_LABEL = "cosine to the undefended update"


@dataclass(frozen=True)
class Series:
    """One line: (x, mean, 95% CI half-width) by increasing x; reference rows (floors) are drawn dashed."""

    label: str
    reference: bool
    points: tuple[tuple[float, float, float], ...]


@dataclass(frozen=True)
class StrengthPlot:
    """What a kind's plot draws. ticks: (x, label) of every column placed, no defense included."""

    kind: str
    metric: str
    row_axis: str
    x_label: str
    log: bool
    ticks: tuple[tuple[float, str], ...]
    series: tuple[Series, ...]
    cosine: Series | None
    title: str


def defense_kinds(table: Table) -> list[str]:
    """The kinds of defense among the table's columns, in column order (no defense is not a kind)."""
    return list(dict.fromkeys(d.name for d in table.columns if isinstance(d, Defense) and not is_none(d)))


def _epsilon(table: Table, column: int) -> float | None:
    epsilons = table.facts[column].epsilons if table.facts else ()
    return epsilons[0] if len(epsilons) == 1 else None  # no single budget: the column cannot be placed


def _beyond(x: float, placed: list[float]) -> float:
    """Where an x a log axis cannot hold (infinity, 0) is drawn: one decade beyond the plotted strengths."""
    if not placed:
        return 1.0
    if x > 0:
        return 10.0 ** (math.floor(math.log10(max(placed))) + 1)
    return 10.0 ** (math.floor(math.log10(min(placed))) - 1)


def _positions(table: Table, kind: str) -> list[tuple[int, float, str]]:
    """(column index, x, tick label) of no defense and every column of `kind`."""
    picked = [i for i, d in enumerate(table.columns) if is_none(d) or d.name == kind]
    strength: Strength | None = STRENGTHS.get(kind)
    if strength is None:
        return [(i, float(n), table.columns[i].spec()) for n, i in enumerate(picked)]
    raw = []
    for i in picked:
        defense = table.columns[i]
        if is_none(defense):
            raw.append((i, strength.none_at, strength.none_text))
            continue
        x = _epsilon(table, i) if strength.axis == "epsilon" else float(getattr(defense, strength.parameter))
        if x is not None:
            raw.append((i, x, "ε=∞" if math.isinf(x) else f"{x:.3g}"))
    if not strength.log:
        return raw
    placed = [x for _, x, _ in raw if 0 < x < math.inf]
    return [(i, x if 0 < x < math.inf else _beyond(x, placed), text) for i, x, text in raw]


def strength_plot(table: Table, kind: str) -> StrengthPlot | None:
    """The data of `kind`'s plot over a table over defenses; None when no cell of it has a value."""
    positions = _positions(table, kind)
    series = []
    for row in table.rows:
        points = sorted(
            (x, row.cells[i].mean, row.cells[i].ci95 or 0.0) for i, x, _ in positions if row.cells[i].mean is not None
        )
        if points:
            series.append(Series(row.label, row.is_reference, tuple(points)))
    if not series:
        return None
    cosines = sorted(
        (x, table.facts[i].cosine.mean, table.facts[i].cosine.ci95 or 0.0)
        for i, x, _ in positions
        if table.facts and table.facts[i].cosine.mean is not None
    )
    strength = STRENGTHS.get(kind)
    x_label = strength.label if strength else f"{kind} (no strength parameter)"
    deltas = {table.facts[i].delta for i, *_ in positions if table.facts and table.facts[i].epsilons}
    if strength and strength.axis == "epsilon" and len(deltas) == 1 and None not in deltas:
        x_label = x_label.replace("δ", f"δ={deltas.pop():g}")
    ticks = {}
    for _, x, text in sorted(positions, key=lambda p: (p[1], p[0])):
        ticks.setdefault(x, text)  # no defense comes first where a column shares its place (sigma = 0)
    return StrengthPlot(
        kind, table.metric, table.row_axis, x_label, bool(strength and strength.log), tuple(ticks.items()), tuple(series),
        Series("cosine", False, tuple(cosines)) if cosines else None,
        wrap_parts([*table.group.parts(), f"defense: {kind}"], width=150),
    )


def _draw(axes, series: Series) -> None:
    xs, ys, errs = zip(*series.points)
    style = FLOOR_STYLE if series.reference else {}
    axes.errorbar(xs, ys, yerr=errs, label=series.label, marker="o", markersize=4, capsize=3, linewidth=1.2, **style)


def strength_figure(plot: StrengthPlot):
    """The plot as a matplotlib Figure: the metric on the left, the cosine on the right, the same x axis."""
    from matplotlib.figure import Figure  # imported on use: loading the leaderboard does not pay for it

    figure = Figure(figsize=FIGSIZE, dpi=DPI)
    metric_axes, cosine_axes = figure.subplots(1, 2)
    for series in plot.series:
        _draw(metric_axes, series)
    if plot.metric == GAIN_METRIC:
        metric_axes.axhline(0.0, linewidth=1.0, label="prior floor (0 dB)", **FLOOR_STYLE)
    info = METRICS.get(plot.metric).obj
    metric_axes.set_ylabel(f"{plot.metric} {info.arrow()}" + (f" ({info.unit})" if info.unit else ""))
    metric_axes.legend(fontsize=7, title=ROW_AXES[plot.row_axis], title_fontsize=7)
    if plot.cosine is not None:
        _draw(cosine_axes, plot.cosine)
    else:
        cosine_axes.text(0.5, 0.5, "no update facts recorded", ha="center", va="center", transform=cosine_axes.transAxes)
    cosine_axes.set_ylabel(COSINE_LABEL)
    for axes in (metric_axes, cosine_axes):
        if plot.log:
            axes.set_xscale("log")
        axes.set_xticks([x for x, _ in plot.ticks], [text for _, text in plot.ticks], fontsize=7)
        axes.minorticks_off()
        axes.set_xlabel(plot.x_label)
        axes.grid(alpha=0.3)
    figure.suptitle(plot.title, fontsize=8)
    figure.tight_layout()
    return figure


def strength_plots(table: Table) -> list[tuple[str, bytes]]:
    """(kind, PNG) for every kind of defense in a table over defenses that has a value to draw."""
    plots = (strength_plot(table, kind) for kind in defense_kinds(table))
    return [(plot.kind, png_bytes(strength_figure(plot))) for plot in plots if plot is not None]
