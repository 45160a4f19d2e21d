"""Quality against compute: per setting (a table's group at one batch size), every attack's gain over the prior
floor against the FLOPs spent (log axis), the mean over its runs with the 95% interval as a band; the
floor is the line at 0 dB. Drawn from the runs' traces (bench.leaderboard.traces.gain_curves).

File names: `psnr_gain-vs-flops-<8 hex digits of the setting>.png`, the same setting always giving the same
name.

Example:
    >>> [(name, len(png)) for name, png, title in compute_plots(records)]
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.leaderboard.aggregate import GAIN_METRIC
from bench.leaderboard.figures import DPI, FIGSIZE, FLOOR_STYLE, png_bytes, slug_digest, wrap_parts
from bench.leaderboard.traces import GainCurves, gain_curves
from bench.record import Record


def compute_plot_name(curves: GainCurves) -> str:
    slug = f"{curves.table.group.slug()}_{curves.table.column_axis}={curves.column}"
    return f"{GAIN_METRIC}-vs-flops-{slug_digest(slug)}.png"


def compute_plot_png(curves: GainCurves) -> bytes:
    from matplotlib.figure import Figure  # on use: loading the leaderboard does not pay for matplotlib

    figure = Figure(figsize=FIGSIZE, dpi=DPI)
    axes = figure.add_subplot()
    for curve in curves.curves:
        xs, means, cis, _ = zip(*curve.points)
        (line,) = axes.plot(xs, means, label=curve.label, linewidth=1.4, drawstyle="steps-post")
        lows = [m - c for m, c in zip(means, cis)]
        highs = [m + c for m, c in zip(means, cis)]
        axes.fill_between(xs, lows, highs, step="post", alpha=0.18, color=line.get_color(), linewidth=0)
    axes.axhline(0.0, linewidth=1.0, label="prior floor (0 dB)", **FLOOR_STYLE)
    axes.set_xscale("log")
    axes.set_xlabel("FLOPs spent (log scale)")
    axes.set_ylabel(f"{GAIN_METRIC} ↑ (dB): mean and 95% CI over runs")
    axes.set_title(wrap_parts(curves.parts), fontsize=8)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, title="attack", title_fontsize=7)
    figure.tight_layout()
    return png_bytes(figure)


def compute_plots(records: Sequence[Record]) -> list[tuple[str, bytes, str]]:
    """(file name, PNG, setting) of every setting whose attack runs carry traces."""
    return [
        (compute_plot_name(c), compute_plot_png(c), " · ".join([*c.parts, f"{GAIN_METRIC} against FLOPs"]))
        for c in gain_curves(records)
    ]
