"""Records -> tables: one table per group, rows = methods, columns = batch size, repetition rate, or a
setting of the client's update (its defense, local steps or number of clients).

A group is everything that must be equal for runs to be averaged: the track (attacks or label-recovery
methods), the threat model, dataset, model, image size, the axes that are not the column axis (the
repetition rate for a table over batch sizes and vice versa; both for a table over an update setting,
whose threat model then leaves that setting out) and any other scenario setting that differs from its
default (training steps, BN mode, ...). Inside a group a cell holds the runs of one method and budget at
one column value, which differ only by seed.

Tables whose records carry the facts of a defended update (bench.client) end in fact rows: the privacy
budget epsilon at its delta where a column's defense certifies one, and the mean cosine of the shared
update to the undefended one (1 for an undefended column), each over the column's cases.

Example:
    >>> tables = aggregate(load_records(Path("runs/quick")), rows="attack", columns="batch_size", metric="psnr")
    >>> tables[0].rows[0].cells[0].text(2)
    '23.10 ± 0.40 (2/3)'
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Literal

from bench.compute import flops_text
from bench.defenses import Defense
from bench.errors import BenchError
from bench.leaderboard.stats import CellStats, fixed
from bench.leaderboard.strength import defense_order
from bench.metrics.catalog import METRICS
from bench.record import Record, canonical_json
from bench.scenario import Scenario
from bench.threat import BN_LEVELS, ThreatModel
from bench.update import ClientUpdate

RowAxis = Literal["attack", "label_method"]
COMPUTE_ROW = "compute (FLOPs per run)"
ColumnAxis = Literal["batch_size", "repetition", "defense", "local_steps", "clients"]
Column = float | Defense  # a column's value: a number, or the defense of a table over defenses

ROW_AXES: dict[str, str] = {"attack": "attack", "label_method": "label method"}
COLUMN_AXES: dict[str, str] = {"batch_size": "B", "repetition": "r", "defense": "defense", "local_steps": "steps", "clients": "K"}
SCENARIO_AXES = ("batch_size", "repetition")  # every table holds these fixed or as its columns
UPDATE_AXES = ("defense", "local_steps", "clients")  # settings of the client's update (bench.update)
COSINE_FACT = "cosine_to_undefended"  # the update facts the fact rows show (bench.client)
EPSILON_FACT, DELTA_FACT = "epsilon", "delta"
# Scenario fields that are the group's named parts, the table's axes or the averaged-over seed; every
# other field appears in the title when it differs from its default. data_path is machine-specific.
_NAMED_FIELDS = {"dataset", "model", "image_size", "batch_size", "repetition", "threat", "seed", "data_path"}
_DEFAULTS = Scenario().to_dict()
# Decimals per metric: dB values to 0.01, fractions and distances in [0, 1] to 0.001, MSE finer.
_DIGITS = {"mse": 4, "mse_best_match": 4, "label_count_mae": 2}
# The gain over the prior floor decides which cells are marked as reconstructing (bench.floors); the
# marks appear in tables of PSNR and of the gain itself.
GAIN_METRIC = "psnr_gain"
FLOOR_MARKED_METRICS = frozenset({"psnr", GAIN_METRIC})
FLOOR_PREFIX = "prior-"  # the prior-only floors are registered as attacks named prior-<prior>
RANDOM_START = "noise"  # where optimisation starts: a reference row, not a floor
REFERENCE_ORDER = ("floor", "random start")  # reference rows follow the attacks in this order


def reference_role(method: str) -> str | None:
    """What a reference row is ('floor', 'random start'), shown beside its name; None for an attack."""
    if method.startswith(FLOOR_PREFIX):
        return "floor"
    return "random start" if method == RANDOM_START else None


def digits_for(metric: str) -> int:
    if metric in _DIGITS:
        return _DIGITS[metric]
    return 2 if METRICS.get(metric).obj.unit == "dB" else 3


def value_text(value: Column) -> str:
    """'4', '0.5', or a defense as a sweep writes it: 'dp(clip=1, sigma=0.5)'."""
    return value.spec() if isinstance(value, Defense) else f"{value:g}"


def axis_text(axis: str, value: Column) -> str:
    """'B=4', 'r=0.5', 'steps=5', or the defense itself: 'prune(ratio=0.9)'."""
    return value_text(value) if axis == "defense" else f"{COLUMN_AXES[axis]}={value_text(value)}"


def column_value(scenario: dict, axis: str) -> Column:
    """The value of `axis` in a record's scenario (a defense, or a number)."""
    if axis not in UPDATE_AXES:
        return float(scenario[axis])
    value = getattr(ClientUpdate.from_dict(scenario["threat"].get("update", {})), axis)
    return value if axis == "defense" else float(value)


def column_order(axis: str, value: Column) -> tuple:
    """Columns in increasing value; defenses none first, then by kind and increasing strength."""
    return defense_order(value) if axis == "defense" else (value,)


def _setting_texts(name: str, value: object) -> list[str]:
    """'train_steps=100'; a mapping gives one 'name.key=value' per key ('model_options.width=8')."""
    if isinstance(value, dict):
        return [text for key in sorted(value) for text in _setting_texts(f"{name}.{key}", value[key])]
    if name == "weights" and isinstance(value, str):
        value = PurePath(value).name  # the file, not where it lies on one machine
    return [f"{name}={value if isinstance(value, (str, int, float)) else json.dumps(value, sort_keys=True)}"]


@dataclass(frozen=True)
class Group:
    """What the runs of one table share."""

    track: str
    threat: ThreatModel
    dataset: str
    model: str
    image_size: int
    fixed: tuple[tuple[str, float], ...]  # (axis, value) of each of B and r that is not the column axis
    settings: tuple[str, ...]

    def sort_key(self) -> tuple:
        return (
            self.track, not self.threat.labels_known, BN_LEVELS.index(self.threat.bn_stats),
            not self.threat.batch_size_known, self.dataset, self.model, self.image_size,
            tuple(value for _, value in self.fixed), self.settings, _update_order(self.threat.update),
        )

    def fixed_value(self, axis: str) -> float:
        return dict(self.fixed)[axis]

    def threat_text(self) -> str:
        return self.threat.short() + ("" if self.threat.batch_size_known else ", batch size hidden")

    def parts(self) -> list[str]:
        fixed = [axis_text(axis, value) for axis, value in self.fixed]
        return [self.threat_text(), self.dataset, self.model, f"{self.image_size} px", *fixed, *self.settings]

    def slug(self) -> str:
        """A file-name-safe, deterministic name for this group."""
        text = "_".join([self.track, *self.parts()]).lower().replace(", ", "_").replace(" ", "-")
        return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9.=_-]+", "-", text)).strip("-")


@dataclass(frozen=True)
class Row:
    """One method (at one budget) across the table's columns, with the compute it used."""

    method: str
    budget: int | None
    label: str
    cells: tuple[CellStats, ...]
    wall_s_mean: float | None
    wall_h_total: float
    options: str = ""  # the attack options that set this row apart from the method's other rows ("lr=0.5")
    flops: int | None = None  # the runs' compute budget in FLOPs, when they ran at one (`compute`)

    @property
    def is_floor(self) -> bool:
        """A prior-only floor (what an attacker who ignores the gradient outputs), not an attack."""
        return reference_role(self.method) == "floor"

    @property
    def is_reference(self) -> bool:
        """A floor or the random start: drawn dashed, listed after the attacks."""
        return reference_role(self.method) is not None


@dataclass(frozen=True)
class ColumnFacts:
    """What the shared updates of one column's cases were (from the records' update facts).

    epsilons: the distinct budgets certified at `delta` (math.inf: sigma = 0 certifies none); () without DP.
    cosine: the cosine of each case's shared update to its undefended one (1 for an undefended case, by
    definition); empty when the table's records carry no such fact.
    """

    epsilons: tuple[float, ...] = ()
    delta: float | None = None
    cosine: CellStats = CellStats()

    def epsilon_text(self) -> str:
        """'2.31 at δ=1e-05', '0.5–0.7 at δ=1e-05' where the cases differ, '–' without a budget."""
        if not self.epsilons:
            return "–"
        low, high = min(self.epsilons), max(self.epsilons)
        spent = _epsilon(low) if low == high else f"{_epsilon(low)}–{_epsilon(high)}"
        return f"{spent} at " + ("δ differing" if self.delta is None else f"δ={self.delta:g}")


def _epsilon(value: float) -> str:
    return "∞" if math.isinf(value) else f"{value:.3g}"


@dataclass(frozen=True)
class Table:
    group: Group
    metric: str
    row_axis: str
    column_axis: str
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    commits: tuple[tuple[str, int], ...]
    devices: tuple[tuple[str, int], ...]
    facts: tuple[ColumnFacts, ...] = ()  # per column; () when no record carries update facts
    achieved: tuple[tuple[float, ...], ...] = ()  # per column: the repetition rates its runs achieved
    compute: tuple[str, ...] = ()  # per column: the FLOPs per attack run; () when no record counted them

    def column_text(self, index: int) -> str:
        """The column's heading: a repetition rate as the runs achieved it (r = 0.9 at B = 8 runs at
        0.875), and beside another axis's value the achieved rate where it is not the group's fixed one."""
        column = self.columns[index]
        rates = self.achieved[index] if self.achieved else ()
        rate = f"{rates[0]:.3g}" if len(rates) == 1 else None
        if self.column_axis == "repetition":
            return axis_text("repetition", column) if rate is None or math.isclose(rates[0], column) else f"r={rate}"
        fixed = dict(self.group.fixed).get("repetition")
        if rate is None or fixed is None or math.isclose(rates[0], fixed):
            return axis_text(self.column_axis, column)
        return f"{axis_text(self.column_axis, column)} (r={rate})"

    @property
    def arrow(self) -> str:
        return METRICS.get(self.metric).obj.arrow()

    @property
    def better(self) -> str:
        return METRICS.get(self.metric).obj.better

    @property
    def digits(self) -> int:
        return digits_for(self.metric)

    @property
    def title(self) -> str:
        unit = METRICS.get(self.metric).obj.unit
        return " · ".join([*self.group.parts(), f"{self.metric} {self.arrow}" + (f" ({unit})" if unit else "")])

    @property
    def marks_floor(self) -> bool:
        """Whether cells significantly above the prior floor are marked (see `CellStats.above_floor`)."""
        return self.metric in FLOOR_MARKED_METRICS and any(c.gains for row in self.rows for c in row.cells)

    def headers(self) -> list[str]:
        first = f"{ROW_AXES[self.row_axis]} ({self.metric} {self.arrow})"
        return [first, *(self.column_text(i) for i in range(len(self.columns))), "s/run", "total h"]

    def text_rows(self, mark_floor: bool = True) -> list[list[str]]:
        """Each row's cells as text, then the fact rows; `mark_floor=False` leaves out the * (the site
        draws its own mark)."""
        mark = mark_floor and self.marks_floor
        return [
            [
                row.label,
                *(cell.text(self.digits, mark) for cell in row.cells),
                "-" if row.wall_s_mean is None else _small(row.wall_s_mean),
                _small(row.wall_h_total),
            ]
            for row in self.rows
        ] + [[label, *texts, "", ""] for label, texts in self.fact_rows()]

    def fact_rows(self) -> list[tuple[str, list[str]]]:
        """(label, text per column) of the update's facts: the DP budget, the cosine to the undefended update."""
        rows = []
        if any(f.epsilons for f in self.facts):
            rows.append(("DP budget ε", [f.epsilon_text() for f in self.facts]))
        if any(f.cosine.values for f in self.facts):
            rows.append(("cosine to undefended update", [f.cosine.text(3) or "–" for f in self.facts]))
        if self.compute:
            rows.append((COMPUTE_ROW, list(self.compute)))
        return rows

    def counts(self) -> Counter:
        total: Counter = Counter()
        for row in self.rows:
            for cell in row.cells:
                total.update(ok=cell.n_ok, failed=cell.n_failed, skipped=cell.n_skipped)
        return total

    @property
    def footnote(self) -> str:
        c = self.counts()
        total = c["ok"] + c["failed"] + c["skipped"]
        runs = f"{total} run{'' if total == 1 else 's'}: {c['ok']} ok, {c['failed']} failed, {c['skipped']} skipped"
        return " · ".join([runs, self.provenance])

    @property
    def provenance(self) -> str:
        """The commits and devices the table's runs come from."""
        return " · ".join([_listing("commit", self.commits), _listing("device", self.devices)])


def _small(value: float) -> str:
    """Two decimals; a positive amount that would print as 0.00 shows as <0.01 (it was not free)."""
    return "<0.01" if 0 < value < 0.005 else fixed(value, 2)


def _listing(name: str, counted: tuple[tuple[str, int], ...]) -> str:
    if len(counted) == 1:
        return f"{name} {counted[0][0]}"
    return f"{name}s differ: " + ", ".join(f"{value} ({n} run{'' if n == 1 else 's'})" for value, n in counted)


def _short_commit(commit: str | None) -> str:
    if not commit:
        return "unknown"
    head, sep, tail = commit.partition("+")  # keep a "+dirty" mark
    return head[:10] + sep + tail


def _method(record: Record) -> tuple[str, str]:
    """(track, method name) of a record; a config with neither key is an error, never skipped."""
    for axis in ROW_AXES:
        if axis in record.config:
            return axis, str(record.config[axis])
    raise BenchError(f"record {record.run_id} has neither 'attack' nor 'label_method' in its config")


def _group(record: Record, track: str, columns: str) -> Group:
    try:
        scenario = record.config["scenario"]
        threat = ThreatModel.from_dict(scenario["threat"])
        if columns in UPDATE_AXES:  # the column's setting is left out of the threat model the runs share
            plain = getattr(ClientUpdate(), columns)
            threat = dataclasses.replace(threat, update=dataclasses.replace(threat.update, **{columns: plain}))
        settings = tuple(
            text
            for k, v in sorted(scenario.items())
            if k not in _NAMED_FIELDS and (k not in _DEFAULTS or v != _DEFAULTS[k])
            for text in _setting_texts(k, v)
        )
        fixed = tuple((axis, float(scenario[axis])) for axis in SCENARIO_AXES if axis != columns)
        return Group(
            track, threat, str(scenario["dataset"]), str(scenario["model"]), int(scenario["image_size"]), fixed, settings
        )
    except (KeyError, TypeError, ValueError) as err:
        raise BenchError(f"record {record.run_id} has an incomplete scenario ({type(err).__name__}: {err})") from None


def metric_value(record: Record, metric: str) -> float | None:
    """The record's finite value of `metric`; None for a run that is not ok or has no such value."""
    value = record.metrics.get(metric) if record.status == "ok" else None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _cell(records: list[Record], metric: str) -> CellStats:
    status = Counter("ok" if r.status == "ok" else "skipped" if r.status == "skipped" else "failed" for r in records)
    values = tuple(v for v in (metric_value(r, metric) for r in records) if v is not None)
    gains = tuple(v for v in (metric_value(r, GAIN_METRIC) for r in records) if v is not None)
    run_ids = tuple(sorted(r.run_id for r in records))
    return CellStats(values, status["ok"], status["failed"], status["skipped"], run_ids=run_ids, gains=gains)


def _row(
    label: str, key: RowKey, options: str, columns: tuple[Column, ...], by_column: dict[Column, list[Record]], metric: str
) -> Row:
    runs = [r for c in columns for r in by_column.get(c, [])]
    walls = sorted(float(r.cost["wall_s"]) for r in runs if isinstance((r.cost or {}).get("wall_s"), (int, float)))
    return Row(
        key[0],
        key[1],
        label,
        tuple(_cell(by_column.get(c, []), metric) for c in columns),
        math.fsum(walls) / len(walls) if walls else None,
        math.fsum(walls) / 3600.0,
        options,
        key[3],
    )


RowKey = tuple[str, int | None, str | None, int | None]  # method, budget, attack options (canonical JSON; None:
# not recorded), FLOPs budget
OPTIONS_KEY = "attack_options"  # a record's resolved attack Config (records from before it lack it)


def _options_key(record: Record) -> str | None:
    options = record.config.get(OPTIONS_KEY)
    return None if options is None else canonical_json(options)


def options_texts(keys: Iterable[str | None]) -> dict[str | None, str]:
    """For one method's option sets: what sets each apart, as 'lr=0.5, tv=0.01' (the fields whose values differ
    among them), or 'options not recorded' for records from before options were; '' for a single set."""
    keys = list(dict.fromkeys(keys))
    if len(keys) < 2:
        return {key: "" for key in keys}
    parsed = {key: json.loads(key) for key in keys if key is not None}
    fields = sorted({f for options in parsed.values() for f in options})
    differing = [f for f in fields if len({json.dumps(o.get(f), sort_keys=True) for o in parsed.values()}) > 1]
    texts = {key: ", ".join(t for f in differing for t in _setting_texts(f, o.get(f))) for key, o in parsed.items()}
    return {**texts, **({None: "options not recorded"} if None in keys else {})}


def run_flops(record: Record) -> int | None:
    """The FLOPs a run spent (bench.compute); None for a run that did not count them (older records)."""
    value = (record.cost or {}).get("flops") if record.status == "ok" else None
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _compute_text(runs: list[Record]) -> str:
    """A column's compute per attack run: its FLOPs budget when the attacks shared one, else the range of
    what they spent (the references, which spend none, apart)."""
    attacks = [r for r in runs if "attack" in r.config and not reference_role(str(r.config["attack"]))]
    budgets = {r.config.get("flops") for r in attacks if r.status != "skipped"}
    if len(budgets) == 1 and None not in budgets:
        return flops_text(budgets.pop())
    spent = [f for f in (run_flops(r) for r in attacks) if f]
    if not spent:
        return "–"
    low, high = min(spent), max(spent)
    return flops_text(low) if flops_text(low) == flops_text(high) else f"{flops_text(low)}–{flops_text(high)}"


def _counted(values: Iterable[str]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(Counter(values).items()))


def _facts(columns: tuple[Column, ...], by_column: dict[Column, list[Record]]) -> tuple[ColumnFacts, ...]:
    """Each column's update facts over its cases (one case per distinct scenario, whatever the methods)."""
    # per case, a record carrying facts wins over one without (a run skipped before the case was built)
    cases = [{canonical_json(r.config["scenario"]): r for r in sorted(by_column[c], key=lambda r: bool(r.update))} for c in columns]
    if not any(r.update for case in cases for r in case.values()):
        return ()  # records from before update facts, or of undefended plain updates: no fact rows
    measured = any(COSINE_FACT in r.update for case in cases for r in case.values())
    facts = []
    for case in cases:
        epsilons = tuple(sorted({
            math.inf if r.update[EPSILON_FACT] is None else float(r.update[EPSILON_FACT])
            for r in case.values() if EPSILON_FACT in r.update
        }))  # fmt: skip
        deltas = sorted({float(r.update[DELTA_FACT]) for r in case.values() if DELTA_FACT in r.update})
        cosines = tuple(
            float(r.update[COSINE_FACT]) if COSINE_FACT in r.update else 1.0
            for r in case.values()
            if measured and (COSINE_FACT in r.update or column_value(r.config["scenario"], "defense") == Defense())
        )  # an undefended update is its own undefended update
        facts.append(ColumnFacts(epsilons, deltas[0] if len(deltas) == 1 else None, CellStats(cosines, len(cosines))))
    return tuple(facts)


def _table(group: Group, runs: list[Record], rows: str, columns: str, metric: str) -> Table:
    column_values = tuple(sorted({column_value(r.config["scenario"], columns) for r in runs}, key=lambda c: column_order(columns, c)))
    cells: dict[RowKey, dict[Column, list[Record]]] = defaultdict(lambda: defaultdict(list))
    by_column: dict[Column, list[Record]] = defaultdict(list)
    for r in runs:
        value = column_value(r.config["scenario"], columns)
        cells[(_method(r)[1], r.config.get("budget"), _options_key(r), r.config.get("flops"))][value].append(r)
        by_column[value].append(r)
    def order(key: RowKey) -> tuple:
        role = reference_role(key[0])
        budget = -1 if key[1] is None else key[1]
        return (-1 if role is None else REFERENCE_ORDER.index(role), key[0], budget, key[2] or "", key[3] or 0)

    keys = sorted(cells, key=order)
    budgets = {m: len({(b, f) for method, b, _, f in keys if method == m}) for m, *_ in keys}
    options = {m: options_texts(o for method, _, o, _ in keys if method == m) for m, *_ in keys}

    def label(method: str, budget: int | None, key: str | None, flops: int | None) -> str:
        # a method run at several budgets (of iterations or FLOPs) or option sets gets one row for each, named
        # by what sets it apart; references say what they are
        given = f"{flops_text(flops)} FLOPs" if flops is not None else f"{'default' if budget is None else budget} it"
        notes = [given] if budgets[method] > 1 else []
        notes += [options[method][key]] if options[method][key] else []
        name = f"{method} ({', '.join(notes)})" if notes else method
        role = reference_role(method)
        return name if role is None else f"{name} ({role})"

    return Table(
        group, metric, rows, columns, column_values,
        tuple(_row(label(*key), key, options[key[0]][key[2]], column_values, cells[key], metric) for key in keys),
        _counted(_short_commit(r.environment.get("git_commit")) for r in runs),
        _counted(str(r.environment.get("device") or "unknown") for r in runs),
        _facts(column_values, by_column),
        tuple(_achieved(by_column[c]) for c in column_values),
        tuple(_compute_text(by_column[c]) for c in column_values) if _counts_compute(runs) else (),
    )


def _counts_compute(runs: list[Record]) -> bool:
    """Whether a table states its compute: its runs counted FLOPs and it has an attack row besides the references."""
    counted = any(run_flops(r) is not None for r in runs)
    return counted and any(not reference_role(_method(r)[1]) for r in runs)


def _achieved(runs: list[Record]) -> tuple[float, ...]:
    """The distinct repetition rates the runs' batches achieved (runs skipped before sampling have none)."""
    rates = {round(float(r.batch["repetition_achieved"]), 12) for r in runs if "repetition_achieved" in (r.batch or {})}
    return tuple(sorted(rates))


def aggregate(
    records: Iterable[Record],
    rows: RowAxis = "attack",
    columns: ColumnAxis = "batch_size",
    metric: str = "psnr",
) -> list[Table]:
    """Group `records` into tables of `metric`, sorted by group; see the module docstring.

    rows picks the track: "attack" tables hold attack records, "label_method" tables the label track.
    """
    if rows not in ROW_AXES:
        raise BenchError(f"unknown row axis {rows!r}; choose {', '.join(ROW_AXES)}")
    if columns not in COLUMN_AXES:
        raise BenchError(f"unknown column axis {columns!r}; choose {', '.join(COLUMN_AXES)}")
    METRICS.get(metric)  # an unknown metric raises with the closest names
    grouped: dict[Group, list[Record]] = defaultdict(list)
    for record in records:
        track, _ = _method(record)
        if track == rows:
            grouped[_group(record, track, columns)].append(record)
    return [_table(group, grouped[group], rows, columns, metric) for group in sorted(grouped, key=Group.sort_key)]


@dataclass(frozen=True)
class View:
    """One family of tables (and their plots): the track (rows), the metric and the column axis."""

    rows: str
    metric: str
    columns: str


DEFAULT_VIEWS: tuple[View, ...] = (
    View("attack", "psnr", "batch_size"),
    View("label_method", "label_acc", "repetition"),
)


def tables_for(records: Iterable[Record], views: Sequence[View] = DEFAULT_VIEWS) -> list[Table]:
    """Every table of every view, in view order, but those `without_repeats` leaves out."""
    records = list(records)
    return without_repeats([table for view in views for table in aggregate(records, view.rows, view.columns, view.metric)])


def without_repeats(tables: Sequence[Table]) -> list[Table]:
    """`tables` but the one-column tables that repeat another's cells.

    A table over an update setting (defense, local steps, clients) with one column holds cells that a table
    over B or r holds as well; a one-column table over B or r all of whose runs a table over an update
    setting with two or more columns shows (same metric) adds nothing either.
    """
    shown = {run for t in tables if t.column_axis in UPDATE_AXES and len(t.columns) > 1 for run in _runs(t)}
    return [t for t in tables if not _repeats(t, shown)]


def _runs(table: Table) -> set[tuple[str, str]]:
    return {(table.metric, run) for row in table.rows for cell in row.cells for run in cell.run_ids}


def _repeats(table: Table, shown: set[tuple[str, str]]) -> bool:
    if len(table.columns) != 1:
        return False
    return table.column_axis in UPDATE_AXES or _runs(table) <= shown


def _update_order(update: ClientUpdate) -> tuple:
    """Tables of one setting that differ only in the clients' update: local steps, clients, then the
    defense from none to strongest (the order of the columns of a table over defenses)."""
    return (update.local_steps, update.clients, defense_order(update.defense))
