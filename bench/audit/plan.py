"""The audit's budgets: iterations per attack and batch size, fitted to the time allowed.

What is left of `--max-minutes` once the calibration has run pays first for every case (the client, the prior
floors, the label methods: `Calibration.case_s` for each of the cases), then a reserve for the report; the
rest is shared equally among the (attack, batch size) pairs, each running once per case and defense, so at
every batch size each attack gets the same wall time per run (and every defense the same iterations).
An attack's budget is what its share buys at its calibrated cost, capped at its paper budget (the time it
leaves goes to the others) and at least `MIN_ITERATIONS` (the time that takes beyond its share comes from the
others). Where the time left cannot run every attack at `MIN_ITERATIONS`, the most expensive is not run at
that batch size, with the reason, until the others fit.

The batch sizes run one after another, and before each but the first, the budgets of those left are fitted
again to the time then left, at the pace each attack (and the cases' own work) has run so far: its measured
seconds over the seconds the calibration predicted for the same work (`Pace`, at least 1). A machine that
turned busier, or an attack slower than its first iterations, shrinks the later budgets rather than delaying
the end of the audit; time saved (an optimiser that stopped early) goes to the later batch sizes.

Example:
    >>> plan = fit_plan(calibration, runs_per_pair=5, cases=5, available_s=1200.0)
    >>> plan.budgets[("dlg", 1)], plan.estimate_s
    (300, 1130.4)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from bench.audit.calibrate import CASES, AttackCost, Calibration
from bench.errors import BenchError

MIN_ITERATIONS = 10
REPORT_RESERVE_S = 15.0  # the report: tables, a few plots, copying grids


@dataclass
class Plan:
    """Budgets and what is not run, by (attack, batch size); the estimate of the work it plans; `refits`:
    (batch size, paces) of every batch size whose budgets were fitted again before it ran (`adopt`)."""

    budgets: dict[tuple[str, int], int] = field(default_factory=dict)
    dropped: dict[tuple[str, int], str] = field(default_factory=dict)
    cases_s: float = 0.0
    runs_s: float = 0.0
    report_s: float = REPORT_RESERVE_S
    refits: list[tuple[int, dict[str, float]]] = field(default_factory=list)

    @property
    def estimate_s(self) -> float:
        """Seconds the planned work should take from now: cases, runs and the report."""
        return self.cases_s + self.runs_s + self.report_s

    def adopt(self, other: "Plan", batch_size: int, paces: dict[str, float]) -> None:
        """Take `other`'s budgets (and what it leaves out) at `batch_size`, fitted at `paces` (Pace; kept for
        the cases and the attacks that run there)."""
        for table in (self.budgets, self.dropped):
            for key in [k for k in table if k[1] == batch_size]:
                del table[key]
        self.budgets.update({k: n for k, n in other.budgets.items() if k[1] == batch_size})
        self.dropped.update({k: r for k, r in other.dropped.items() if k[1] == batch_size})
        self.refits.append((batch_size, {n: p for n, p in paces.items() if n == CASES or (n, batch_size) in self.budgets}))

    def to_dict(self) -> dict:
        return {
            "budgets": [{"attack": a, "batch_size": b, "iterations": n} for (a, b), n in sorted(self.budgets.items())],
            "not_run": [{"attack": a, "batch_size": b, "reason": r} for (a, b), r in sorted(self.dropped.items())],
            "cases_s": self.cases_s, "runs_s": self.runs_s, "report_s": self.report_s, "estimate_s": self.estimate_s,
            "refits": [{"batch_size": b, "paces": paces} for b, paces in self.refits],
        }  # fmt: skip


def _affordable(cost: AttackCost, seconds: float) -> int:
    """Iterations one run of `seconds` buys (it may be below 1)."""
    return math.floor((seconds - cost.fixed_s - cost.score_s) / cost.per_iteration_s)


def fit_plan(
    calibration: Calibration, runs_per_pair: int, cases: int, available_s: float, spent_s: float = 0.0, strict: bool = True
) -> Plan:
    """Budgets for every calibrated (attack, batch size) within `available_s` seconds (module docstring).

    `runs_per_pair`: the runs of one attack at one batch size (cases x defenses); `cases` per (batch size,
    defense); `spent_s` what the audit took so far. Too little time for the cases themselves, or for any
    attack at all, is one line (BenchError) naming the minutes that would do; with `strict` off (a refit in
    the middle of an audit) every attack is then left out, with the reason.
    """
    plan = Plan(cases_s=cases * sum(calibration.case_s.values()))
    left = available_s - plan.cases_s - plan.report_s
    needed = plan.cases_s + plan.report_s + sum(runs_per_pair * c.seconds(MIN_ITERATIONS) for c in calibration.costs.values())
    if not strict and (left <= 0 or not _fits_any(calibration, runs_per_pair, left)):
        plan.dropped = {k: "no time left for it at the pace the audit ran so far" for k in calibration.costs}
        return plan
    if left <= 0 or (calibration.costs and not _fits_any(calibration, runs_per_pair, left)):
        raise BenchError(
            f"--max-minutes leaves {max(available_s, 0) / 60:.1f} min after the calibration; the cases alone take "
            f"{plan.cases_s / 60:.1f} min and every attack at {MIN_ITERATIONS} iterations {needed / 60:.1f} min: "
            f"ask for at least {math.ceil((needed + spent_s) / 60 * 1.1)} minutes, or fewer batch "
            "sizes, cases or defenses"
        )
    active = dict(calibration.costs)
    while sum(runs_per_pair * c.seconds(MIN_ITERATIONS) for c in active.values()) > left:
        dearest = max(active, key=lambda k: (active[k].seconds(MIN_ITERATIONS), k))
        plan.dropped[dearest] = (
            f"the time allowed cannot run every attack at {MIN_ITERATIONS} iterations and this one is the most expensive "
            f"({active[dearest].seconds(MIN_ITERATIONS):.2g} s per run at {MIN_ITERATIONS}); raise --max-minutes"
        )
        del active[dearest]
    while len(plan.budgets) < len(active):
        free = [k for k in active if k not in plan.budgets]
        rest = left - sum(runs_per_pair * active[k].seconds(n) for k, n in plan.budgets.items())
        afforded = {k: _affordable(active[k], rest / len(free) / runs_per_pair) for k in free}
        capped = {k: active[k].paper_budget for k in free if active[k].paper_budget is not None and afforded[k] >= active[k].paper_budget}
        short = {k: MIN_ITERATIONS for k in free if afforded[k] < MIN_ITERATIONS}
        plan.budgets.update(capped or short or afforded)  # capped ones leave time to the others; short ones take it
    plan.runs_s = sum(runs_per_pair * calibration.costs[k].seconds(n) for k, n in plan.budgets.items())
    return plan


def _fits_any(calibration: Calibration, runs_per_pair: int, left: float) -> bool:
    """Whether the time left runs at least one (attack, batch size) at MIN_ITERATIONS."""
    return any(runs_per_pair * c.seconds(MIN_ITERATIONS) <= left for c in calibration.costs.values())


def not_run(calibration: Calibration, plan: Plan) -> list[str]:
    """What was left out and why, one line per reason: 'e2egi, gradinversion at B = 1, 8: <reason>'."""
    left_out: dict[str, dict[str, list[int]]] = {}
    for (attack, b), reason in sorted({**calibration.excluded, **plan.dropped}.items()):
        left_out.setdefault(reason, {}).setdefault(attack, []).append(b)
    lines = []
    for reason, attacks in left_out.items():
        by_sizes: dict[tuple[int, ...], list[str]] = {}
        for attack, sizes in attacks.items():
            by_sizes.setdefault(tuple(sizes), []).append(attack)
        where = "; ".join(f"{', '.join(names)} at B = {', '.join(map(str, sizes))}" for sizes, names in by_sizes.items())
        lines.append(f"{where}: {reason}")
    return lines


class Pace:
    """How long the audit's work took against what the calibration predicted for it, per attack and for the
    cases (`CASES`): measured and predicted seconds, summed over the batch sizes run so far."""

    # Never below 1: work that ran faster than calibrated (an optimiser that stopped early) may not do so at the
    # next batch size, and the time it saved reaches the batch sizes left anyway, through the time left. Above
    # 4 is a measuring accident, not the machine.
    LIMITS = (1.0, 4.0)

    def __init__(self) -> None:
        self.measured: dict[str, float] = {}
        self.predicted: dict[str, float] = {}

    def add(self, name: str, measured: float, predicted: float) -> None:
        self.measured[name] = self.measured.get(name, 0.0) + measured
        self.predicted[name] = self.predicted.get(name, 0.0) + predicted

    def paces(self, names: Iterable[str]) -> dict[str, float]:
        """measured / predicted for each of `names` (within LIMITS); a name not run yet gets the pace of all the
        work so far, and 1 before any."""
        low, high = self.LIMITS
        total = sum(self.predicted.values())
        overall = sum(self.measured.values()) / total if total > 0 else 1.0
        ratio = {n: self.measured[n] / p for n, p in self.predicted.items() if p > 0}
        return {n: min(max(ratio.get(n, overall), low), high) for n in names}
