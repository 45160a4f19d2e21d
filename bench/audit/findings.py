"""From an audit's records to its findings: at each defense and batch size, how much of the labels and of the
images an attacker recovers, and whether that is a leak.

The statistics are the leaderboard's (`aggregate`, `CellStats`: mean ± 95% CI over the cases). A method
leaks where its gain over what an attacker gets without the update lies above 0 with 95% confidence
(`CellStats.above_floor`, the one-sided paired t-test of every table's `*`), with every case counted (a failed
run leaves the claim unproven):
- images: the attack's PSNR minus the stronger prior floor's on the same case (`psnr_gain`, bench.floors);
- labels: the method's count-aware accuracy minus the expected accuracy of guessing the labels from the class
  frequencies alone (bench.audit.guess), a one-sample test against that number.

Example:
    >>> findings = collect(records, target)
    >>> findings[("none", 8)].best("images").method, findings[("none", 8)].images_leak
    ('dlg', True)
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.audit.target import Target
from bench.leaderboard import CellStats, Row, Table, aggregate
from bench.leaderboard.aggregate import GAIN_METRIC, ColumnFacts, reference_role
from bench.record import Record
from bench.update import ClientUpdate

IMAGE_METRICS = ("psnr_gain", "psnr", "ssim", "label_acc", "psnr_floor")
GUESS = "prior-guess"  # the label floor's row in plots: a prior-only reference, drawn dashed like the image floors


@dataclass(frozen=True)
class Leak:
    """One method at one (defense, batch size): `cell` holds its headline metric (the gain over the floor
    for an attack, the label accuracy for a label method) with the per-case gains; `more` other metrics."""

    method: str
    cell: CellStats
    budget: int | None = None
    more: dict[str, CellStats] = field(default_factory=dict)
    skipped: str | None = None  # why every run was skipped

    @property
    def leaks(self) -> bool:
        return bool(self.cell.above_floor)


@dataclass(frozen=True)
class Finding:
    """What leaks at one (defense, batch size): label methods and attacks, best first (those that leak, then
    by the mean)."""

    defense: str
    batch_size: int
    repetition: float
    labels: tuple[Leak, ...]
    images: tuple[Leak, ...]
    guess: float  # the expected accuracy of guessing the labels from the class frequencies (bench.audit.guess)
    facts: ColumnFacts = ColumnFacts()

    def methods(self, kind: str) -> tuple[Leak, ...]:
        """The label methods ("labels") or the attacks ("images"), best first."""
        return self.labels if kind == "labels" else self.images

    def best(self, kind: str) -> Leak | None:
        """The best method that has a value: the best that leaks where one does."""
        return next((leak for leak in self.methods(kind) if leak.cell.values), None)

    def leaking(self, kind: str) -> Leak | None:
        """The best method among those that leak; None when none does."""
        return next((leak for leak in self.methods(kind) if leak.leaks), None)

    @property
    def labels_leak(self) -> bool:
        return self.leaking("labels") is not None

    @property
    def images_leak(self) -> bool:
        return self.leaking("images") is not None


def defense_of(record: Record) -> str:
    """The defense of a record's update, in its sweep syntax ("none" for none)."""
    return ClientUpdate.from_dict(record.config["scenario"]["threat"].get("update", {})).defense.spec()


def _cells(records: Sequence[Record], rows: str, metric: str) -> dict[tuple[str, int, str, int | None], tuple[CellStats, ColumnFacts]]:
    """(defense, batch size, method, budget) -> its cell of `metric` and the column's update facts."""
    found = {}
    for table in aggregate(records, rows, "batch_size", metric):
        defense = table.group.threat.update.defense.spec()
        for i, column in enumerate(table.columns):
            facts = table.facts[i] if table.facts else ColumnFacts()
            for row in table.rows:
                if row.cells[i].n_total:
                    found[(defense, int(column), row.method, row.budget)] = (row.cells[i], facts)
    return found


def _skip_reason(cell: CellStats, records: dict[str, Record]) -> str | None:
    if cell.n_total and cell.n_skipped == cell.n_total:
        return records[cell.run_ids[0]].error
    return None


def collect(records: Sequence[Record], target: Target) -> dict[tuple[str, int], Finding]:
    """Every (defense, batch size) of the records with its findings (module docstring)."""
    by_id = {r.run_id: r for r in records}
    labels: dict[tuple[str, int], list[Leak]] = defaultdict(list)
    facts: dict[tuple[str, int], ColumnFacts] = {}
    for (defense, b, method, _), (cell, column_facts) in _cells(records, "label_method", "label_acc").items():
        gains = tuple(v - target.guess_accuracy[b] for v in cell.values)
        labels[(defense, b)].append(Leak(method, dataclasses.replace(cell, gains=gains), skipped=_skip_reason(cell, by_id)))
        facts.setdefault((defense, b), column_facts)
    images: dict[tuple[str, int], list[Leak]] = defaultdict(list)
    more = {metric: _cells(records, "attack", metric) for metric in IMAGE_METRICS}
    for key, (cell, column_facts) in more[GAIN_METRIC].items():
        defense, b, method, budget = key
        extra = {metric: found[key][0] for metric, found in more.items() if key in found}
        images[(defense, b)].append(Leak(method, cell, budget, extra, _skip_reason(cell, by_id)))
        if column_facts.cosine.values or column_facts.epsilons:
            facts[(defense, b)] = column_facts
    findings = {}
    for key in sorted(set(labels) | set(images), key=lambda k: (k[1], k[0] != "none", k[0])):
        defense, b = key
        findings[key] = Finding(
            defense, b, target.repetition[b], tuple(sorted(labels[key], key=_best_first)),
            tuple(sorted(images[key], key=_best_first)), target.guess_accuracy[b], facts.get(key, ColumnFacts()),
        )  # fmt: skip
    return findings


def _best_first(leak: Leak) -> tuple:
    mean = leak.cell.mean
    return (not leak.leaks, mean is None, -(mean or 0.0), leak.method)


def over_batch_sizes(tables: Sequence[Table], extra_rows: dict | None = None) -> list[Table]:
    """One table over B per setting from tables that differ only in their fixed repetition rate (the audit
    draws every batch size at its own natural rate): columns gathered, one row per method (its budget may
    differ by batch size), so the leaderboard's plot of a metric against B draws them. `extra_rows` maps a
    setting's defense to reference rows (method, {batch size: cell}) added beneath, e.g. the label guess."""
    merged: dict = {}
    for table in tables:
        merged.setdefault(dataclasses.replace(table.group, fixed=()), []).append(table)
    result = []
    for group, parts in merged.items():
        columns = tuple(sorted({c for t in parts for c in t.columns}))
        cells = {(row.method, c): cell for t in parts for row in t.rows for c, cell in zip(t.columns, row.cells)}
        methods = list(dict.fromkeys(row.method for t in parts for row in t.rows))
        references = (extra_rows or {}).get(group.threat.update.defense.spec(), {})
        cells.update({(m, float(b)): cell for m, by_b in references.items() for b, cell in by_b.items()})
        rows = tuple(
            Row(m, None, _label(m), tuple(cells.get((m, c), CellStats()) for c in columns), None, 0.0)
            for m in [*methods, *references]
        )
        result.append(dataclasses.replace(parts[0], group=group, columns=columns, rows=rows, facts=(), achieved=()))
    return result


def _label(method: str) -> str:
    role = reference_role(method)
    return method if role is None else f"{method} ({role})"
