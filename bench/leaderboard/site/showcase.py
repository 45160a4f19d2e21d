"""Which runs an attack's image grid shows: its best, median and worst run by one metric.

Candidates are the attack's ok runs that have a finite value of the metric and an image grid. They are
ordered best first (the metric's direction; ties by run id, so the choice is deterministic); the median
is the element at (n - 1) // 2 of that order. With fewer than three runs one run takes several roles.

Example:
    >>> [(pick.roles, pick.record.run_id) for pick in showcase(records, "psnr", has_grid)]
    [(('best',), 'a1...'), (('median',), 'b2...'), (('worst',), 'c3...')]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.leaderboard.aggregate import metric_value
from bench.metrics.catalog import METRICS
from bench.record import Record

ROLES = ("best", "median", "worst")


@dataclass(frozen=True)
class Pick:
    roles: tuple[str, ...]
    record: Record
    value: float


def showcase(records: Sequence[Record], metric: str, has_grid: Callable[[str], bool]) -> list[Pick]:
    """The best, median and worst of `records` (one attack's runs) by `metric`, best first."""
    scored = [(v, r) for r in records if (v := metric_value(r, metric)) is not None and has_grid(r.run_id)]
    if not scored:
        return []
    higher = METRICS.get(metric).obj.better == "higher"
    ordered = sorted(scored, key=lambda vr: (-vr[0] if higher else vr[0], vr[1].run_id))
    chosen = {"best": 0, "median": (len(ordered) - 1) // 2, "worst": len(ordered) - 1}
    picks = []
    for index in sorted(set(chosen.values())):
        value, record = ordered[index]
        picks.append(Pick(tuple(role for role in ROLES if chosen[role] == index), record, value))
    return picks
