"""Sweeps -> the site's files: view models built from the aggregated tables (the same `aggregate` that
every other format renders), turned into HTML by the Jinja2 templates beside this module.

Layout of a site (every name short and stable; nothing depends on time or on the order of arguments):

    index.html  style.css  site.js  manifest.txt
    <sweep>/index.html            the sweep's tables, plots and reconstructions
    <sweep>/plots/<plot name>     bench.leaderboard.plots.plot_name
    <sweep>/records/<run id>.json every record of the sweep, copied byte for byte
    <sweep>/records/<run id>.png  the image grids the page shows, copied byte for byte

Example:
    >>> files = build_site(load_sweeps([Path("leaderboard/records/quick")]))
    >>> sorted(files)[:3]
    ['index.html', 'manifest.txt', 'quick/index.html']
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from PIL import Image

from bench.leaderboard.aggregate import (
    DEFAULT_VIEWS,
    ROW_AXES,
    Table,
    View,
    Column,
    aggregate,
    digits_for,
    metric_value,
    value_text,
    without_repeats,
)
from bench.leaderboard.compute_plots import compute_plots
from bench.leaderboard.plots import X_LABELS, claims_for, plot_name, table_plots
from bench.leaderboard.render import LEGEND
from bench.leaderboard.runs import Sweep
from bench.leaderboard.site.showcase import showcase
from bench.leaderboard.stats import CellStats, fixed
from bench.leaderboard.traces import has_traces, target_legend, target_tables
from bench.leaderboard.write import DEFAULT_TARGET_GAIN, with_varied_views
from bench.metrics.catalog import METRICS
from bench.record import Record
from bench.threat import ThreatModel

HERE = Path(__file__).parent
MANIFEST = "manifest.txt"
RECORDS = "records"  # per sweep: its record files and the grids shown (a folder named "runs" is git-ignored)
STATIC = ("style.css", "site.js")
TRACKS = {"attack": "attacks", "label_method": "label recovery"}
FILTER_KEYS = {"batch_size": "b", "repetition": "r"}  # the page's filters, by table axis
SHOWN_METRICS = ("psnr", "psnr_gain", "ssim", "lpips", "label_acc")  # under each reconstruction, when present
IMAGE_WIDTH = 360  # pixels a run's grid is scaled up to at most (whole multiples, no smoothing)


@dataclass(frozen=True)
class Link:
    href: str
    text: str


@dataclass(frozen=True)
class CellView:
    text: str
    value: str  # the mean as a sort key, "" when the cell has none
    title: str
    column: str
    above_floor: bool | None


@dataclass(frozen=True)
class RowView:
    label: str
    floor: bool
    cells: tuple[CellView, ...]
    counts: CellStats
    s_per_run: tuple[str, str]  # (text, sort key)
    total_h: tuple[str, str]
    records: tuple[Link, ...]


@dataclass(frozen=True)
class TableView:
    anchor: str
    title: str
    footnote: str
    first_header: str
    better: str
    axis: str
    columns: tuple[tuple[str, str], ...]  # (header, column value)
    threat: str
    b_values: str
    r_values: str
    rows: tuple[RowView, ...]
    facts: tuple[tuple[str, tuple[str, ...]], ...]  # rows beneath: the update's DP budget and distortion
    plots: tuple[tuple[str, int, int], ...]  # (path, width, height)
    claims: tuple[str, ...]


@dataclass(frozen=True)
class ViewSection:
    heading: str
    tables: tuple[TableView, ...]


@dataclass(frozen=True)
class Shot:
    roles: str
    image: str
    width: int
    height: int
    setting: str
    numbers: tuple[str, ...]
    record: Link


@dataclass(frozen=True)
class SweepSummary:
    name: str
    href: str
    setting: str
    runs: int
    n_ok: int
    n_failed: int
    n_skipped: int
    commits: str
    run_s: float
    run_time: str


@dataclass(frozen=True)
class TargetView:
    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, tuple[str, ...]], ...]
    footnote: str


@dataclass(frozen=True)
class ComputeSection:
    """Quality against compute, where the runs carry traces: the FLOPs to a target gain and the plots."""

    legend: str
    targets: tuple[TargetView, ...]
    plots: tuple[tuple[str, int, int, str], ...]  # (path, width, height, setting)


@dataclass(frozen=True)
class SweepPage:
    summary: SweepSummary
    sections: tuple[ViewSection, ...]
    filters: tuple[tuple[str, str, tuple[str, ...]], ...]  # (key, label, options)
    showcase_metric: str
    showcase: tuple[tuple[str, tuple[Shot, ...]], ...]
    has_floor: bool
    has_marks: bool
    compute: ComputeSection | None = None


def above_floor(cell: CellStats) -> bool | None:
    """Whether the cell is significantly above the prior floor (its 95% CI clear of it), as the aggregation
    marks it in `CellStats.above_floor`; None where the runs carry no gain over the floor."""
    return cell.above_floor


def _unique(values: Iterable) -> list:
    return list(dict.fromkeys(values))


def _sort_key(value: float | None) -> str:
    return "" if value is None else f"{value:.12g}"


def _axis_values(table: Table, axis: str) -> list[float]:
    return list(table.columns) if table.column_axis == axis else [table.group.fixed_value(axis)]


def _values_text(values: Iterable[float]) -> str:
    return ", ".join(f"{v:g}" for v in sorted(set(values)))


def duration_text(seconds: float) -> str:
    """'45 s', '17 min', '3.3 h'."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def setting_text(tables: Sequence[Table]) -> str:
    """What the tables' runs share and span: tracks, threat models, data, model, size, B, r, settings."""
    groups = [t.group for t in tables]
    parts = [
        ", ".join(_unique(TRACKS[g.track] for g in groups)),
        "; ".join(_unique(g.threat_text() for g in groups)),
        ", ".join(_unique(g.dataset for g in groups)),
        ", ".join(_unique(g.model for g in groups)),
        ", ".join(_unique(f"{g.image_size} px" for g in groups)),
        "B = " + _values_text(v for t in tables for v in _axis_values(t, "batch_size")),
        "r = " + _values_text(v for t in tables for v in _axis_values(t, "repetition")),
        *_unique(s for g in groups for s in g.settings),
    ]
    return " · ".join(parts)


def _summary(sweep: Sweep, primary: Sequence[Table]) -> SweepSummary:
    """The index's line for a sweep, from the tables in which every record counts exactly once."""
    counts: Counter = Counter()
    commits: Counter = Counter()
    for table in primary:
        counts.update(table.counts())
        commits.update(dict(table.commits))
    run_s = sum(row.wall_h_total for table in primary for row in table.rows) * 3600.0
    return SweepSummary(
        sweep.name, f"{sweep.name}/index.html", setting_text(primary), sum(counts.values()),
        counts["ok"], counts["failed"], counts["skipped"], ", ".join(sorted(commits)), run_s, duration_text(run_s),
    )  # fmt: skip


def _record_links(table: Table, cells: Sequence[CellStats], records: dict[str, Record]) -> tuple[Link, ...]:
    """A link to each run's record (failed and skipped runs too), ordered by column and seed."""
    links = []
    for index, (column, cell) in enumerate(zip(table.columns, cells)):  # columns are in order
        for run_id in cell.run_ids:
            record = records[run_id]
            status = "" if record.status == "ok" else f" ({record.status}: {record.error})" if record.error else f" ({record.status})"
            text = f"{table.column_text(index)} · seed {record.config['scenario']['seed']}{status}"
            links.append((index, record.config["scenario"]["seed"], run_id, Link(f"{RECORDS}/{run_id}.json", text)))
    return tuple(link for *_, link in sorted(links))


def _cell_view(cell: CellStats, text: str, column: Column) -> CellView:
    title = f"{cell.n_ok} ok, {cell.n_failed} failed, {cell.n_skipped} skipped"
    return CellView(text, _sort_key(cell.mean), title, value_text(column), above_floor(cell))


def _table_view(table: Table, records: dict[str, Record], plots: tuple[tuple[str, int, int], ...]) -> TableView:
    rows = []
    for row, texts in zip(table.rows, table.text_rows(mark_floor=False)):  # marked by above_floor
        counts = CellStats(
            n_ok=sum(c.n_ok for c in row.cells), n_failed=sum(c.n_failed for c in row.cells),
            n_skipped=sum(c.n_skipped for c in row.cells),
        )  # fmt: skip
        cells = tuple(_cell_view(c, text, x) for c, text, x in zip(row.cells, texts[1:], table.columns))
        rows.append(RowView(
            row.label, row.is_floor, cells, counts, (texts[-2], _sort_key(row.wall_s_mean)),
            (texts[-1], _sort_key(row.wall_h_total)), _record_links(table, row.cells, records),
        ))  # fmt: skip
    return TableView(
        plot_name(table).removesuffix(".png"), table.title, table.footnote, table.headers()[0], table.better,
        FILTER_KEYS.get(table.column_axis, ""),  # a table over an update setting has no column filter
        tuple((table.column_text(i), value_text(c)) for i, c in enumerate(table.columns)),
        table.group.threat_text(),
        " ".join(f"{v:g}" for v in _axis_values(table, "batch_size")),
        " ".join(f"{v:g}" for v in _axis_values(table, "repetition")),
        tuple(rows), tuple((label, tuple(texts)) for label, texts in table.fact_rows()), plots,
        tuple(f"{c.text()}; {c.setting}" for c in claims_for(table)),
    )


def _heading(view: View) -> str:
    unit = METRICS.get(view.metric).obj.unit
    metric = f"{view.metric} {METRICS.get(view.metric).obj.arrow()}" + (f" ({unit})" if unit else "")
    return f"{ROW_AXES[view.rows].capitalize()}s: {metric} against {X_LABELS[view.columns]}"


def _numbers(record: Record) -> tuple[str, ...]:
    """The record's headline metrics as the tables write them, and the method's own time."""
    shown = []
    for name in SHOWN_METRICS:
        value = metric_value(record, name) if name in METRICS else None
        if value is not None:
            metric = METRICS.get(name).obj
            unit = f" {metric.unit}" if metric.unit else ""
            shown.append(f"{name} {metric.arrow()} {fixed(value, digits_for(name))}{unit}")
    wall = (record.cost or {}).get("wall_s")
    if isinstance(wall, (int, float)):
        shown.append(f"time {wall:.1f} s")
    return tuple(shown)


def _shot(sweep: Sweep, roles: tuple[str, ...], record: Record) -> tuple[Shot, Path]:
    grid = sweep.grid(record.run_id)
    with Image.open(grid) as image:
        width, height = image.size
    scale = max(1, min(4, IMAGE_WIDTH // width))
    s = record.config["scenario"]
    threat = ThreatModel.from_dict(s["threat"]).short()
    setting = f"B={s['batch_size']} · r={s['repetition']:g} · seed {s['seed']} · {threat}"
    shot = Shot(
        " · ".join(roles), f"{RECORDS}/{record.run_id}.png", width * scale, height * scale, setting, _numbers(record),
        Link(f"{RECORDS}/{record.run_id}.json", f"{record.run_id}.json"),
    )
    return shot, grid


def _filters(tables: Sequence[Table]) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """The page's filters with the values its tables hold: threat model, batch size, repetition rate."""

    def options(axis: str) -> tuple[str, ...]:
        return tuple(f"{v:g}" for v in sorted({v for t in tables for v in _axis_values(t, axis)}))

    threats = tuple(_unique(t.group.threat_text() for t in tables))
    return (("threat", "threat model", threats), ("b", "batch size B", options("batch_size")),
            ("r", "repetition rate r", options("repetition")))  # fmt: skip


def _reconstructions(sweep: Sweep, metric: str) -> tuple[list[tuple[str, tuple[Shot, ...]]], dict[str, Path]]:
    """Per attack, the shots of its best, median and worst run, and the grids they show."""
    shots, grids = [], {}
    for attack in sorted({str(r.config["attack"]) for r in sweep.records if "attack" in r.config}):
        runs = [r for r in sweep.records if r.config.get("attack") == attack]
        picked = []
        for pick in showcase(runs, metric, lambda run_id: sweep.grid(run_id) is not None):
            shot, grid = _shot(sweep, pick.roles, pick.record)
            grids[f"{sweep.name}/{shot.image}"] = grid
            picked.append(shot)
        if picked:
            shots.append((attack, tuple(picked)))
    return shots, grids


def _sweep_files(sweep: Sweep, views: Sequence[View]) -> tuple[SweepPage, dict[str, bytes | Path]]:
    """A sweep's page model and the files it needs, under `<sweep name>/`: its records, plots and grids."""
    records = {r.run_id: r for r in sweep.records}
    files: dict[str, bytes | Path] = {f"{sweep.name}/{RECORDS}/{rid}.json": path for rid, path in sweep.files.items()}
    views = with_varied_views(views, sweep.records)
    every = [(v, aggregate(sweep.records, v.rows, v.columns, v.metric)) for v in views]
    first_of_track = {v.rows: tables for v, tables in reversed(every)}  # every record counts once there
    kept = {id(t) for t in without_repeats([t for _, tables in every for t in tables])}
    families = [(v, [t for t in tables if id(t) in kept]) for v, tables in every]
    families = [(v, tables) for v, tables in families if tables]
    sections = []
    for view, tables in families:
        table_views = []
        for table in tables:
            drawn = table_plots(table)
            plots = tuple((f"plots/{name}", *Image.open(io.BytesIO(png)).size) for name, png in drawn)
            files.update({f"{sweep.name}/plots/{name}": png for name, png in drawn})
            table_views.append(_table_view(table, records, plots))
        sections.append(ViewSection(_heading(view), tuple(table_views)))
    metric = next((v.metric for v, _ in families if v.rows == "attack"), "psnr")
    shots, grids = _reconstructions(sweep, metric)
    files.update(grids)
    rows = [row for section in sections for table in section.tables for row in table.rows]
    compute, compute_files = _compute_section(sweep)
    files.update(compute_files)
    page = SweepPage(
        _summary(sweep, [t for tables in first_of_track.values() for t in tables]), tuple(sections),
        _filters([t for _, tables in families for t in tables]), metric, tuple(shots),
        any(row.floor for row in rows), any(cell.above_floor for row in rows for cell in row.cells), compute,
    )  # fmt: skip
    return page, files


def _compute_section(sweep: Sweep) -> tuple[ComputeSection | None, dict[str, bytes]]:
    """The section on quality against compute and its plots; none for records without traces."""
    if not has_traces(sweep.records):
        return None, {}
    targets = tuple(
        TargetView(t.title, tuple(t.headers()), tuple((row[0], tuple(row[1:])) for row in t.text_rows()), t.footnote)
        for t in target_tables(sweep.records, DEFAULT_TARGET_GAIN)
    )
    files, plots = {}, []
    for name, png, setting in compute_plots(sweep.records):
        files[f"{sweep.name}/plots/{name}"] = png
        plots.append((f"plots/{name}", *Image.open(io.BytesIO(png)).size, setting))
    return ComputeSection(target_legend(DEFAULT_TARGET_GAIN), targets, tuple(plots)), files


def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(HERE / "templates"), autoescape=True, undefined=StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
    )  # fmt: skip


def build_site(sweeps: Sequence[Sweep], views: Sequence[View] = DEFAULT_VIEWS) -> dict[str, bytes | Path]:
    """Every file of the site: relative path -> its bytes, or the file to copy byte for byte."""
    env = _environment()
    files: dict[str, bytes | Path] = {name: HERE / "static" / name for name in STATIC}
    pages = []
    for sweep in sorted(sweeps, key=lambda s: s.name):
        page, page_files = _sweep_files(sweep, views)
        files.update(page_files)
        html = env.get_template("sweep.html").render(page=page, legend=LEGEND, root="../")
        files[f"{sweep.name}/index.html"] = html.encode()
        pages.append(page)
    html = env.get_template("index.html").render(sweeps=[p.summary for p in pages], legend=LEGEND, root="")
    files["index.html"] = html.encode()
    files[MANIFEST] = "".join(f"{name}\n" for name in sorted([*files, MANIFEST])).encode()
    return dict(sorted(files.items()))
