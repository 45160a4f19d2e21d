"""Restarts: run an optimisation several times from fresh initialisations and keep the best run.

"Best" is the lowest final gradient loss (Inverting Gradients' `scoring_choice="loss"`); a run whose loss is
not finite (a diverged run) is never chosen over a finite one.

Example:
    >>> best = best_of_restarts(lambda r: run_loop(objective, fresh_variables(r), config), restarts=8)
    >>> best.index, best.losses
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

from bench.errors import BenchError

R = TypeVar("R")


@dataclass
class BestRun(Generic[R]):
    index: int  # which restart won
    result: R
    losses: list[float]  # every restart's final gradient loss, in order


def best_of_restarts(run: Callable[[int], R], restarts: int, loss: Callable[[R], float] | None = None) -> BestRun[R]:
    """Call `run(r)` for r = 0 .. restarts-1 and keep the result with the lowest loss (first on ties).

    `loss` reads a result's score; by default its `gradient_loss` attribute (a `LoopResult`).
    Only the best result is kept in memory.
    """
    if restarts < 1:
        raise BenchError(f"restarts must be at least 1, got {restarts}")
    score = loss or (lambda result: float(result.gradient_loss))
    best: tuple[float, int, R] | None = None
    losses: list[float] = []
    for r in range(restarts):
        result = run(r)
        value = score(result)
        losses.append(value)
        key = value if math.isfinite(value) else math.inf  # NaN never wins, nor compares
        if best is None or key < best[0]:
            best = (key, r, result)
    _, index, result = best
    return BestRun(index, result, losses)
