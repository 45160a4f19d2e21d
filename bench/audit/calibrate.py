"""A short timed calibration on the user's own model and data, from which the audit's budgets are fitted.

At every batch size, on the first case (seed 0) of every defense, the client's simulation, the prior floors
and every label method are timed once (what each case costs whatever the attacks do); on the undefended
case, every attack that applies runs at two small budgets (`BUDGETS` iterations) and its wall time is fitted
as fixed + per-iteration x budget, with the scoring of one reconstruction timed beside it. An attack whose
requirements the case does not meet is left out with the reason (`Attack.incompatibility`, as the runner
would skip it), and so is one that fails here (with its error).

Example:
    >>> calibration = calibrate(options, scenarios)
    >>> calibration.costs[("dlg", 1)].seconds(100)   # one run of DLG at 100 iterations, scoring included
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from tqdm import tqdm

from bench.attack import create_attack
from bench.audit.options import AuditOptions
from bench.client import simulate
from bench.floors import floor_psnrs
from bench.labels import LABELS, load_methods, missing_need, recover_labels
from bench.metrics import MetricConfig, score
from bench.runner import pay_lazy_imports
from bench.scenario import Scenario

BUDGETS = (1, 4)  # iterations of the two timed runs of each attack
CASES = "cases"  # the key of the cases' own work (client, floors, label methods) among paces


@dataclass(frozen=True)
class AttackCost:
    """Seconds of one run: fixed + per_iteration x budget, plus scoring; `paper_budget` caps the budget
    (no audit runs an attack longer than its paper did)."""

    fixed_s: float
    per_iteration_s: float
    score_s: float
    paper_budget: int | None

    def seconds(self, budget: int) -> float:
        return self.fixed_s + self.per_iteration_s * budget + self.score_s

    def at_pace(self, pace: float) -> "AttackCost":
        """The cost when everything runs `pace` times as long as calibrated."""
        return AttackCost(self.fixed_s * pace, self.per_iteration_s * pace, self.score_s * pace, self.paper_budget)

    def to_dict(self) -> dict:
        return {"fixed_s": self.fixed_s, "per_iteration_s": self.per_iteration_s, "score_s": self.score_s,
                "paper_budget": self.paper_budget}  # fmt: skip


@dataclass
class Calibration:
    """costs and excluded by (attack, batch size); case_s by (batch size, defense): one case's client,
    floors and label methods; seconds: the calibration's own wall time."""

    costs: dict[tuple[str, int], AttackCost] = field(default_factory=dict)
    excluded: dict[tuple[str, int], str] = field(default_factory=dict)
    case_s: dict[tuple[int, str], float] = field(default_factory=dict)
    seconds: float = 0.0

    def part(self, batch_sizes: Collection[int], paces: Mapping[str, float] | None = None) -> "Calibration":
        """The calibration of these batch sizes only, each attack's times multiplied by its pace in `paces`
        and the cases' by `paces[CASES]` (1 where none is given)."""
        paces = paces or {}
        return Calibration(
            {k: c.at_pace(paces.get(k[0], 1.0)) for k, c in self.costs.items() if k[1] in batch_sizes},
            {k: r for k, r in self.excluded.items() if k[1] in batch_sizes},
            {k: s * paces.get(CASES, 1.0) for k, s in self.case_s.items() if k[0] in batch_sizes},
            self.seconds,
        )

    def to_dict(self) -> dict:
        return {
            "budgets": list(BUDGETS),
            "attacks": [{"attack": a, "batch_size": b, **c.to_dict()} for (a, b), c in sorted(self.costs.items())],
            "excluded": [{"attack": a, "batch_size": b, "reason": r} for (a, b), r in sorted(self.excluded.items())],
            "case_s": [{"batch_size": b, "defense": d, "seconds": s} for (b, d), s in sorted(self.case_s.items())],
            "seconds": self.seconds,
        }


def fit_line(budgets: tuple[int, int], walls: tuple[float, float]) -> tuple[float, float]:
    """(fixed, per iteration) of two timed runs; timing noise never makes either negative, and the cost per
    iteration is at least a quarter of the mean cost per iteration (a conservative estimate when the second
    run happens to be faster than the first)."""
    (b1, b2), (w1, w2) = budgets, walls
    per_iteration = max((w2 - w1) / (b2 - b1), 0.25 * w2 / b2, 1e-6)
    return max(w1 - per_iteration * b1, 0.0), per_iteration


def _error_line(err: BaseException) -> str:
    return traceback.format_exception_only(type(err), err)[-1].strip()


def _timed(work) -> tuple[object, float]:
    start = time.perf_counter()
    result = work()
    return result, time.perf_counter() - start


def _case_seconds(scenario: Scenario, device: str) -> tuple[float, tuple]:
    """One case's client, floors and label methods, timed; the case for the attacks' calibration."""
    (case, secret), client_s = _timed(lambda: simulate(scenario, device))
    _, floors_s = _timed(lambda: floor_psnrs(case, secret))
    labels_s = 0.0
    for method in LABELS.names():
        if missing_need(case, LABELS.get(method).info.get("needs", ())) is None:
            labels_s += _timed(lambda: recover_labels(method, case))[1]
    return client_s + floors_s + labels_s, (case, secret)


def _attack_cost(name: str, case, secret, device: str) -> AttackCost | str:
    """The attack's fitted cost on this case, or why it is left out."""
    attack = create_attack(name, device=device)
    reason = attack.incompatibility(case)
    if reason:
        return reason
    walls = []
    try:
        for budget in BUDGETS:
            rec, wall = _timed(lambda: attack.reconstruct(case, budget=budget, seed=0))
            walls.append(wall)
        _, score_s = _timed(lambda: score(rec, secret, MetricConfig()))
    except Exception as err:  # an attack that cannot run on the user's model is a finding, not a crash
        return f"failed during calibration: {_error_line(err)}"
    fixed, per_iteration = fit_line(BUDGETS, (walls[0], walls[1]))
    return AttackCost(fixed, per_iteration, score_s, getattr(attack.config, "iterations", None))


def calibrate(options: AuditOptions, scenarios: Mapping[tuple[int, str, int], Scenario]) -> Calibration:
    """Time every batch size's first cases and the attacks on them (module docstring); a progress bar on a
    terminal."""
    load_methods()
    pay_lazy_imports()
    started = time.perf_counter()
    calibration = Calibration()
    seed = options.seeds[0]
    steps = len(options.batch_sizes) * (len(options.defenses) + len(options.attacks))
    with tqdm(total=steps, desc="calibrating", unit="step", file=sys.stderr, disable=not sys.stderr.isatty()) as bar:
        for b in options.batch_sizes:
            plain = None
            for defense in options.defenses:
                seconds, case = _case_seconds(scenarios[(b, defense, seed)], options.device)
                calibration.case_s[(b, defense)] = seconds
                plain = plain or case  # the undefended case ("none" comes first)
                bar.update(1)
            for name in options.attacks:
                bar.set_postfix_str(f"{name}, B={b}", refresh=False)
                found = _attack_cost(name, *plain, options.device)
                if isinstance(found, str):
                    calibration.excluded[(name, b)] = found
                else:
                    calibration.costs[(name, b)] = found
                bar.update(1)
    calibration.seconds = time.perf_counter() - started
    return calibration
