"""Budgets in compute: the iteration budget at which an attack spends a given number of FLOPs on a case.

An attack's FLOPs at budget b, f(b), are counted by running it on the case under a dry meter
(bench.compute): the first evaluation of each kind is computed and counted, every later one is replaced by
a stand-in, so the attack's own control flow (its stages, seeds, restarts and combination steps) runs at
the cost of its bookkeeping. FLOPs depend on shapes only, so f(b) is exact for every attack whose number of
evaluations does not depend on the values it computes. The plan is the largest b with f(b) <= the budget,
found by doubling and then interpolation between the bracketing budgets.

L-BFGS (DLG, iDLG) evaluates its closure a data-dependent number of times per step; under a dry meter each
step evaluates it once, so the plan gives the most steps the budget could pay for, and the run itself
stops where the FLOPs are spent (bench.engine.loop), or earlier when L-BFGS converges (recorded).
An attack whose FLOPs do not grow with its budget (the floors, the random start) runs at its own budget.
An attack outside the engine's counting (`Attack.flops_metered` false) is planned from two real runs at
budgets 1 and 2, assuming its FLOPs grow linearly with the budget.

Plans are kept for the process per attack, case shape and budget, so a sweep plans each setting once.

Example:
    >>> plan = plan_budget("e2egi", case, flops=10**11)
    >>> plan.budget, plan.planned_flops
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.attack import Attack, attack_config, attack_from_config
from bench.case import Case
from bench.compute import FlopMeter, metering
from bench.errors import BenchError

KEPT_PLANS = 256
SEARCH_LIMIT = 2**31  # a budget this large that still fits the FLOPs: the attack's compute does not grow
_plans: OrderedDict[tuple, ComputePlan] = OrderedDict()


class ComputeTooSmall(BenchError):
    """The FLOPs budget does not pay for one iteration of the attack on this case."""


@dataclass(frozen=True)
class ComputePlan:
    flops: int  # the budget asked for
    budget: int | None  # the attack's iteration budget (None: its compute does not depend on it)
    planned_flops: int  # what the attack spends at that budget (for L-BFGS: at most)
    probes: int  # attack runs counted to find it
    seconds: float  # their wall time

    def to_dict(self) -> dict:
        return asdict(self)


def _case_key(case: Case) -> tuple:
    """What decides an attack's FLOPs on a case besides the attack: the model, its mode and the shapes."""
    return (case.architecture.key(), case.bn_mode, case.num_images, case.image_shape, repr(case.threat), repr(case.loss))


def plan_budget(
    name: str, case: Case, flops: int, device: torch.device | str = "cpu", seed: int = 0, config: Any = None
) -> ComputePlan:
    """The largest iteration budget at which attack `name` (with its resolved `config`, by default its
    registered one) spends at most `flops` FLOPs on `case`."""
    config = attack_config(name) if config is None else config
    attack = attack_from_config(name, config, device)
    key = (name, repr(config), _case_key(case), torch.device(device).type, flops)
    if key in _plans:
        _plans.move_to_end(key)
        return _plans[key]
    started = time.perf_counter()
    counted: dict[int, int] = {}

    def cost(budget: int) -> int:
        if budget not in counted:
            counted[budget] = _flops_at(lambda: attack_from_config(name, config, device), case, budget, seed)
        return counted[budget]

    budget = _search(cost, flops, name, metered=attack.flops_metered)
    planned = cost(budget if budget is not None else 1)
    plan = ComputePlan(flops, budget, planned, len(counted), time.perf_counter() - started)
    _plans[key] = plan
    while len(_plans) > KEPT_PLANS:
        _plans.popitem(last=False)
    return plan


def _flops_at(make: Callable[[], Attack], case: Case, budget: int, seed: int) -> int:
    attack = make()
    if not attack.flops_metered:  # a real run, counted whole
        with FlopCounterMode(display=False) as counter:
            attack.reconstruct(case, budget=budget, seed=seed)
        return int(counter.get_total_flops())
    return dry_count(attack, case, budget, seed).flops


def dry_count(attack: Attack, case: Case, budget: int | None, seed: int = 0) -> FlopMeter:
    """The FLOPs `attack` spends on `case` at `budget`, counted without computing (see the module docstring;
    an upper bound for L-BFGS, whose closure evaluations depend on the values)."""
    with metering(dry=True) as meter:
        attack.reconstruct(case, budget=budget, seed=seed)
    return meter


def _search(cost: Callable[[int], int], flops: int, name: str, metered: bool) -> int | None:
    first = cost(1)
    if first == 0:
        return None  # no FLOPs at any budget: the floors, the random start
    if first > flops:
        raise ComputeTooSmall(f"{flops:.3g} FLOPs do not pay for one iteration of {name} here (it takes {first:.3g})")
    if not metered:  # two real runs; their difference is the cost of one iteration
        step = cost(2) - first
        return None if step <= 0 else 1 + (flops - first) // step
    low, high = 1, 2
    slope = cost(2) - first
    if slope > 0 and cost(2) <= flops:  # a guess from the first step, exact for compute linear in the budget
        guess = max(2, 1 + (flops - first) // slope)
        low, high = (guess, guess + 1) if cost(guess) <= flops else (2, guess)
        if high == low + 1 and cost(high) <= flops:
            low, high = high, 2 * high
    while cost(high) <= flops:  # double until the budget is passed
        if high >= SEARCH_LIMIT:
            return None
        low, high = high, high * 2
    tries = 0
    while high - low > 1:  # the largest budget that fits lies in [low, high): interpolate, halving every third try
        if tries % 3 == 2:
            middle = (low + high) // 2
        else:
            guess = low + (flops - cost(low)) * (high - low) // max(cost(high) - cost(low), 1)
            middle = min(max(guess, low + 1), high - 1)
        if cost(middle) <= flops:
            low = middle
            if high - low > 1 and cost(low + 1) > flops:
                high = low + 1
        else:
            high = middle
        tries += 1
    return low
