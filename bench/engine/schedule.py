"""Learning-rate schedules as plain functions of the iteration (so stages and ranks agree exactly)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from bench.errors import BenchError


@dataclass(frozen=True)
class Schedule:
    """lr at iteration t of T.

    constant: lr. multistep: lr x 0.1 at 3/8, 5/8 and 7/8 of T (Inverting Gradients).
    cosine: linear warm-up from 0 over `warmup` iterations, then a half cosine from lr down to `lr_end`.
    """

    kind: Literal["constant", "multistep", "cosine"] = "constant"
    lr: float = 0.1
    lr_end: float = 0.0
    warmup: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("constant", "multistep", "cosine"):
            raise BenchError(f"unknown schedule {self.kind!r}; use constant, multistep or cosine")

    def __call__(self, t: int, total: int) -> float:
        if self.kind == "constant":
            return self.lr
        if self.kind == "multistep":
            milestones = [int(total * f) for f in (3 / 8, 5 / 8, 7 / 8)]
            return self.lr * 0.1 ** sum(t >= m for m in milestones)
        if t < self.warmup:
            return self.lr * (t + 1) / self.warmup
        span = max(total - self.warmup, 1)
        progress = (t - self.warmup) / span
        return self.lr_end + (self.lr - self.lr_end) * 0.5 * (1 + math.cos(math.pi * progress))
