"""Compute in FLOPs, counted the same way on every machine.

Definition: the floating-point operations of the matrix products and convolutions an attack runs (forward,
backward and the second-order backward of its dummy gradient), as `torch.utils.flop_counter.FlopCounterMode`
counts them (a multiply-add is 2 FLOPs); element-wise work (activations, normalisation, the optimiser's
update, distances built from sums) is not counted. FLOPs depend on shapes only, so each kind of evaluation
an attack performs (a dummy gradient with its second-order backward, a candidate comparison without a
graph, a label method's passes) is counted once under FlopCounterMode and then multiplied by the number of
such evaluations: every seed, restart, L-BFGS closure and combination step. Seeds evaluated together in one
`torch.func.vmap` computation are counted per seed (one seed's cost times the seeds), so a run's FLOPs do not
depend on how its seeds were batched.

The runner opens a `FlopMeter` around a run (`metering`, scoped like torch's own modes); the engine reports
its evaluations through `evaluation`. Outside a meter `evaluation` just computes. Costs are kept per kind
for the process (`KIND_COSTS`), keyed by everything that decides them (see `Objective.flops_key`).

A dry meter (`dry=True`) counts a run without computing it: an evaluation whose cost is known returns a
stand-in result (`replay`), so an attack's own control flow runs at the cost of its bookkeeping. The
runner uses it to find the iteration budget that spends a FLOPs budget (bench.compute_budget).

Example:
    >>> with metering() as meter:
    ...     rec = attack.reconstruct(case, budget=100)
    >>> meter.flops, meter.by_kind()
"""

from __future__ import annotations

import contextvars
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from torch.utils.flop_counter import FlopCounterMode

T = TypeVar("T")
KEPT_KINDS = 512  # per process: one integer each
KIND_COSTS: OrderedDict[Hashable, int] = OrderedDict()  # FLOPs of one evaluation of each kind (one seed x seeds)


def count_flops(compute: Callable[[], T]) -> tuple[T, int]:
    """`compute()` and the FLOPs FlopCounterMode counts in it."""
    with FlopCounterMode(display=False) as counter:
        result = compute()
    return result, int(counter.get_total_flops())


def flops_text(value: float | None) -> str:
    """'3.21e9', '4.50e10'; '0' for none spent; '–' for no value."""
    if value is None:
        return "–"
    if value == 0:
        return "0"
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa}e{int(exponent)}"


@dataclass
class KindCount:
    label: str
    flops: int  # of one evaluation
    evaluations: int = 0


@dataclass
class FlopMeter:
    """FLOPs spent so far in one run, per kind of evaluation.

    `limit`: the run's FLOPs budget, read by open-ended optimisers (L-BFGS) to stop when it is spent.
    `dry`: count without computing where a stand-in result is available.
    """

    limit: int | None = None
    dry: bool = False
    flops: int = 0
    kinds: dict[Hashable, KindCount] = field(default_factory=dict)
    last: Hashable | None = None  # the kind of the latest evaluation
    whole: FlopCounterMode | None = None  # counting everything instead (see `run_meter`)
    _depth: int = 0

    def spent(self) -> int:
        """FLOPs spent so far."""
        return self.flops if self.whole is None else int(self.whole.get_total_flops())

    def by_kind(self) -> dict[str, dict[str, int]]:
        """{label: {"flops": of one evaluation, "evaluations": n}}, kinds with one label merged when equal."""
        if self.whole is not None:
            return {"whole run (FlopCounterMode)": {"flops": self.spent(), "evaluations": 1}}
        out: dict[str, dict[str, int]] = {}
        for kind in self.kinds.values():
            same = kind.label not in out or out[kind.label]["flops"] == kind.flops
            label = kind.label if same else f"{kind.label} ({kind.flops})"
            entry = out.setdefault(label, {"flops": kind.flops, "evaluations": 0})
            entry["evaluations"] += kind.evaluations
        return out

    def evaluations_left(self) -> int | None:
        """How many more evaluations of the latest kind the limit affords (None: no limit, or none seen yet)."""
        if self.limit is None or self.last is None:
            return None
        each = self.kinds[self.last].flops
        return max(0, (self.limit - self.flops) // each) if each else None

    def charge(self, key: Hashable, label: str, flops: int) -> None:
        kind = self.kinds.setdefault(key, KindCount(label, flops))
        kind.evaluations += 1
        self.flops += flops
        self.last = key

    def evaluate(
        self,
        key: Hashable,
        label: str,
        compute: Callable[[], T],
        seeds: int = 1,
        one_seed: Callable[[], object] | None = None,
        replay: Callable[[], T] | None = None,
    ) -> T:
        if self._depth:  # inside a counted evaluation: its cost is already the outer one's
            return compute()
        self._depth += 1
        try:
            cost = KIND_COSTS.get(key)
            if cost is not None:
                KIND_COSTS.move_to_end(key)
                result = replay() if self.dry and replay is not None else compute()
            elif one_seed is not None:
                cost = seeds * count_flops(one_seed)[1]
                result = compute()
            else:
                result, cost = count_flops(compute)
        finally:
            self._depth -= 1
        _remember(key, cost)
        self.charge(key, label, cost)
        return result


def _remember(key: Hashable, cost: int) -> None:
    KIND_COSTS[key] = cost
    KIND_COSTS.move_to_end(key)
    while len(KIND_COSTS) > KEPT_KINDS:
        KIND_COSTS.popitem(last=False)


_METER: contextvars.ContextVar[FlopMeter | None] = contextvars.ContextVar("flop_meter", default=None)


@contextmanager
def metering(limit: int | None = None, dry: bool = False) -> Iterator[FlopMeter]:
    """Count the FLOPs of the evaluations made inside the block (see the module docstring)."""
    meter = FlopMeter(limit=limit, dry=dry)
    token = _METER.set(meter)
    try:
        yield meter
    finally:
        _METER.reset(token)


@contextmanager
def run_meter(metered: bool, limit: int | None = None) -> Iterator[FlopMeter]:
    """The meter of one attack run: its counted evaluations, or, for an attack outside the engine's counting
    (`metered` false), everything FlopCounterMode sees in the block (exact, slower)."""
    if metered:
        with metering(limit) as meter:
            yield meter
        return
    with FlopCounterMode(display=False) as counter:
        yield FlopMeter(limit=limit, whole=counter)


def current_meter() -> FlopMeter | None:
    return _METER.get()


def evaluation(
    key: Hashable,
    label: str,
    compute: Callable[[], T],
    seeds: int = 1,
    one_seed: Callable[[], object] | None = None,
    replay: Callable[[], T] | None = None,
) -> T:
    """`compute()`, counted by the current meter as one evaluation of kind `key` (`label` names it in records).

    `one_seed`, for `seeds` evaluated together: one seed's equivalent evaluation, counted (run once per
    kind and process, its result discarded) and multiplied by `seeds`. `replay`: a stand-in result of the
    same shape, returned by a dry meter instead of computing once the kind's cost is known.
    """
    meter = _METER.get()
    if meter is None:
        return compute()
    return meter.evaluate(key, label, compute, seeds, one_seed, replay)


def is_dry() -> bool:
    meter = _METER.get()
    return meter is not None and meter.dry
