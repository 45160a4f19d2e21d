"""Comparisons read off the runs' traces (bench.trace): every run's quality against the FLOPs it had spent.

- `at_flops`: each attack run as it stood at a given compute, its best reconstruction within that many FLOPs
  (the trace entry with the most FLOPs not above it; a run with no entry that early has no value yet, and a
  record without a trace, from before traces, has none at all). The tables of those records compare every
  attack at the same compute, whatever each was given.
- `target_tables`: the FLOPs each attack needs to reach a gain of `target` dB over the prior floor: per cell
  the median over its runs of the FLOPs at the first checkpoint that reaches it (a run that never does counts
  as infinitely many, so the median is "not reached" when half the runs miss), with the runs that reach it,
  like a time-to-result benchmark.
- `gain_curves`: per table of the gain and column, the mean gain over the runs against FLOPs, with its 95%
  interval, for the quality-against-compute plots (bench.leaderboard.compute_plots).

Example:
    >>> tables = board_tables(at_flops(records, 1e11), views)
    >>> print(render_targets(target_tables(records, 10.0), "md"))
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from bench.compute import flops_text
from bench.errors import BenchError
from bench.leaderboard.aggregate import GAIN_METRIC, Column, Table, aggregate, axis_text, run_flops
from bench.leaderboard.render import render
from bench.leaderboard.stats import mean_ci95
from bench.record import Record

TRACE_METRICS = ("psnr", "psnr_gain", "label_acc")  # what a trace entry scores
CURVE_POINTS = 60


def entry_at(trace: Sequence[dict], flops: float) -> dict | None:
    """The trace's entry with the most FLOPs not above `flops` (the run's best reconstruction within them)."""
    within = [entry for entry in trace if entry.get("flops") is not None and entry["flops"] <= flops]
    return within[-1] if within else None


def at_flops_legend(flops: float) -> str:
    return (
        f"Read at {flops_text(flops)} FLOPs: each attack run's best reconstruction within that compute (the last "
        "checkpoint of its trace not above it; a run without a checkpoint that early, or without a trace, gives no "
        "value)."
    )


def check_trace_metrics(metrics: Sequence[str]) -> None:
    """Tables read off traces hold only what a trace entry scores."""
    other = [m for m in metrics if m not in TRACE_METRICS]
    if other:
        raise BenchError(f"--at-flops reads {', '.join(TRACE_METRICS)} from the traces, not {', '.join(other)}")


def at_flops(records: Sequence[Record], flops: float) -> list[Record]:
    """Every attack run as it stood at `flops` FLOPs (see the module docstring); other records unchanged."""
    read = []
    for record in records:
        if "attack" not in record.config or record.status != "ok":
            read.append(record)
            continue
        entry = entry_at(record.trace, flops)
        metrics = {} if entry is None else {k: entry[k] for k in TRACE_METRICS if entry.get(k) is not None}
        cost = {**record.cost, "flops": None if entry is None else entry["flops"]}
        read.append(dataclasses.replace(record, metrics=metrics, cost=cost))
    return read


def flops_to(record: Record, target: float) -> float | None:
    """FLOPs at the run's first checkpoint whose gain reaches `target` (math.inf: never); None without a
    trace (a failed run never reaches it)."""
    if record.status == "failed":
        return math.inf
    if record.status != "ok" or not record.trace:
        return None
    for entry in record.trace:
        gain = entry.get(GAIN_METRIC)
        if gain is not None and gain >= target:
            return float(entry["flops"])
    return math.inf


@dataclass(frozen=True)
class TargetCell:
    flops: tuple[float, ...]  # per run with a trace (or failed): FLOPs to the target, math.inf when never
    n_skipped: int = 0

    @property
    def reached(self) -> int:
        return sum(math.isfinite(f) for f in self.flops)

    @property
    def median(self) -> float | None:
        return statistics.median(self.flops) if self.flops else None

    def text(self) -> str:
        """'3.21e9 (4/5)': the median FLOPs (4 of 5 runs reach the target); 'not reached (1/5)'."""
        if not self.flops:
            return "skipped" if self.n_skipped else ""
        median = self.median
        return f"{flops_text(median) if math.isfinite(median) else 'not reached'} ({self.reached}/{len(self.flops)})"


@dataclass(frozen=True)
class TargetTable:
    """FLOPs to reach a gain of `target` dB over the prior floor, per attack and column (one attack table)."""

    source: Table  # the gain table whose groups, columns and runs this one reads
    target: float
    rows: tuple[tuple[str, tuple[TargetCell, ...]], ...]
    marks_floor = False

    @property
    def title(self) -> str:
        return " · ".join([*self.source.group.parts(), f"FLOPs to a gain of {self.target:g} dB ↓"])

    def headers(self) -> list[str]:
        columns = (self.source.column_text(i) for i in range(len(self.source.columns)))
        return [f"attack (FLOPs to +{self.target:g} dB ↓)", *columns]

    def text_rows(self, mark_floor: bool = False) -> list[list[str]]:
        return [[label, *(cell.text() for cell in cells)] for label, cells in self.rows]

    @property
    def footnote(self) -> str:
        runs = sum(len(cell.flops) for _, cells in self.rows for cell in cells)
        return f"{runs} runs with a trace · {self.source.provenance}"


def target_legend(target: float) -> str:
    return (
        f"FLOPs to reach a gain of {target:g} dB over the prior floor: median over the runs of the FLOPs at the "
        "first checkpoint of its trace that reaches it (a run that never does counts as infinite, so the median "
        "is 'not reached' when half the runs miss); (k/n): runs that reach it / runs. Lower is better."
    )


def render_targets(tables: Sequence[TargetTable], format: str) -> str:
    """The time-to-target tables in `format` after their legend; CSV holds only the tables of means."""
    if not tables or format == "csv":
        return ""
    return render(tables, format, target_legend(tables[0].target))  # type: ignore[arg-type]


def has_traces(records: Sequence[Record]) -> bool:
    return any(record.trace for record in records)


def target_tables(records: Sequence[Record], target: float, columns: str = "batch_size") -> list[TargetTable]:
    """A time-to-target table per attack table of the gain whose runs carry traces (see the module docstring)."""
    by_id = {r.run_id: r for r in records}
    tables = []
    for table in aggregate(records, "attack", columns, GAIN_METRIC):
        runs = [by_id[i] for row in table.rows for cell in row.cells for i in cell.run_ids]
        if not has_traces(runs):
            continue
        rows = []
        for row in table.rows:
            if row.is_reference:
                continue  # a floor never gains over itself; the random start never leaves it
            cells = []
            for cell in row.cells:
                reached = [flops_to(by_id[i], target) for i in cell.run_ids]
                cells.append(TargetCell(tuple(sorted(f for f in reached if f is not None)), cell.n_skipped))
            rows.append((row.label, tuple(cells)))
        tables.append(TargetTable(table, target, tuple(rows)))
    return tables


@dataclass(frozen=True)
class Curve:
    label: str
    points: tuple[tuple[float, float, float, int], ...]  # (FLOPs, mean gain, 95% CI half-width, runs)


@dataclass(frozen=True)
class GainCurves:
    """The gain against FLOPs of every attack in one setting: a table's group at one column value."""

    table: Table
    column: Column
    curves: tuple[Curve, ...]

    @property
    def parts(self) -> list[str]:
        return [*self.table.group.parts(), axis_text(self.table.column_axis, self.column)]


def _curve(label: str, traces: list[list[dict]]) -> Curve | None:
    """Mean and 95% CI of the runs' gains (each its best so far) on a geometric grid of FLOPs, from where
    the first run has a checkpoint to where the last one ends."""
    starts = [t[0]["flops"] for t in traces if t[0]["flops"] > 0]
    ends = [t[-1]["flops"] for t in traces]
    if not starts or max(ends) <= 0:
        return None
    low, high = min(starts), max(ends)
    grid = [low * (high / low) ** (i / (CURVE_POINTS - 1)) for i in range(CURVE_POINTS)] if high > low else [low]
    points = []
    for x in grid:
        entries = (entry_at(t, x * (1 + 1e-12)) for t in traces)
        gains = [e[GAIN_METRIC] for e in entries if e and e.get(GAIN_METRIC) is not None]
        if gains:
            mean, ci = mean_ci95(gains)
            points.append((x, mean, ci or 0.0, len(gains)))
    return Curve(label, tuple(points)) if points else None


def gain_curves(records: Sequence[Record]) -> list[GainCurves]:
    """For each attack table of the gain over batch sizes and each of its columns, every attack's curve
    (runs that spent FLOPs and carry a trace; the floors are the line at 0)."""
    by_id = {r.run_id: r for r in records}
    found = []
    for table in aggregate(records, "attack", "batch_size", GAIN_METRIC):
        for index, column in enumerate(table.columns):
            curves = []
            for row in table.rows:
                runs = [by_id[i] for i in row.cells[index].run_ids]
                traces = [r.trace for r in runs if r.trace and run_flops(r)]
                curve = None if row.is_reference or not traces else _curve(row.label, traces)
                if curve is not None:
                    curves.append(curve)
            if curves:
                found.append(GainCurves(table, column, tuple(curves)))
    return found
