"""A run's trace: its quality against compute, scored by the runner at checkpoints of the attack's progress.

An attack reports its iterations with `bench.attack.report(progress, iteration, loss, current)`;
`current()` returns its best reconstruction so far. The runner calls it at geometrically spaced iterations
(1, 2, 3, 5, 7, 10, 14, 20, ... each about sqrt(2) times the last) and scores the images against the
Secret, which the attack never sees: it hands images out, and nothing comes back. A run keeps at most
`MAX_ENTRIES` entries (denser ones are thinned to every other, from the end), and the last entry is always
the run's final reconstruction, equal to the record's metrics.

Each entry: the FLOPs spent so far (bench.compute), the attack's own wall seconds so far (scoring apart),
its iteration and loss as it reported them, and the PSNR (one-to-one pairing), the gain over the prior
floor and the label accuracy of the reconstruction. LPIPS is left to the final scoring.

Example:
    >>> tracer = Tracer(secret, floors, MetricConfig(), lambda: meter.flops)
    >>> rec = attack.reconstruct(case, progress=tracer.progress())
    >>> tracer.entries(final_metrics, flops=meter.flops, wall_s=cost["wall_s"], iterations=rec.iterations)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.attack import Progress, Reconstruction
from bench.case import Secret
from bench.floors import floor_metrics
from bench.metrics import MetricConfig, score

RATIO = math.sqrt(2.0)  # between checkpoints
MAX_ENTRIES = 20
TRACE_FIELDS = ("flops", "wall_s", "iteration", "loss", "psnr", "psnr_gain", "label_acc")


def checkpoint_after(iteration: int) -> int:
    """The first checkpoint iteration after `iteration`: ceil(sqrt(2)^k) for the smallest such k."""
    k = 0
    while math.ceil(RATIO**k - 1e-9) <= iteration:
        k += 1
    return math.ceil(RATIO**k - 1e-9)


def thinned(entries: list[dict], most: int) -> list[dict]:
    """Every other entry, counted from the last, until at most `most` remain (the spacing doubles)."""
    while len(entries) > most:
        entries = entries[::-1][::2][::-1]
    return entries


@dataclass
class Tracer:
    """The runner's side of a trace. `floors()` gives the prior floors' PSNRs of the case (for the gain);
    `flops()` the FLOPs spent so far; `forward(iteration, loss)` (a progress bar) sees every report."""

    secret: Secret
    floors: Callable[[], dict[str, float]]
    metric: MetricConfig
    flops: Callable[[], int]
    forward: Callable[[int, float], None] | None = None
    overhead_s: float = 0.0  # wall seconds spent on checkpoints (the attack's `current()` and scoring)
    overhead_cpu_s: float = 0.0
    _offered: list[dict] = field(default_factory=list)
    _due: int = 1
    _start: float = 0.0

    def __post_init__(self) -> None:
        self.metric = MetricConfig(**{**self.metric.to_dict(), "lpips": False, "pairing": "mse"})

    def progress(self) -> Progress:
        """The callback the attack gets (with `offer`, see bench.attack.report); nothing comes back from it."""
        self._start = time.perf_counter()
        return _Checkpoints(self.forward, self._offer)

    def _offer(self, iteration: int, loss: float, current: Callable[[], Reconstruction]) -> None:
        if iteration >= self._due:
            self._checkpoint(iteration, loss, current)

    def _checkpoint(self, iteration: int, loss: float, current: Callable[[], Reconstruction]) -> None:
        started, cpu = time.perf_counter(), time.process_time()
        wall_s = started - self._start - self.overhead_s
        flops = self.flops()
        reconstruction = current()
        if isinstance(reconstruction, Reconstruction):  # anything else is not a reconstruction to score
            summary = score(reconstruction, self.secret, self.metric).summary
            gain = floor_metrics(summary["psnr"], self.floors())["psnr_gain"]
            self._offered.append(_entry(flops, wall_s, iteration, loss, summary["psnr"], gain, summary.get("label_acc")))
        self._due = checkpoint_after(iteration)
        self.overhead_s += time.perf_counter() - started
        self.overhead_cpu_s += time.process_time() - cpu

    def entries(
        self, metrics: dict, flops: float, wall_s: float, iterations: int, loss: float | None, flops_scale: float = 1.0
    ) -> list[dict]:
        """The trace: the checkpoints before the final iteration, thinned, then the final reconstruction
        (`metrics`, the record's). `flops_scale` converts this process's FLOPs to the run's (several ranks)."""
        kept = [e for e in self._offered if e["iteration"] < iterations or not iterations]
        scores = (metrics.get("psnr"), metrics.get("psnr_gain"), metrics.get("label_acc"))
        final = _entry(flops, wall_s, iterations, loss, *scores)
        entries = [*thinned(kept, MAX_ENTRIES - 1), final]
        for entry in entries[:-1]:
            entry["flops"] = round(entry["flops"] * flops_scale)
        return entries


def _entry(flops: float, wall_s: float, iteration: int, loss: float | None, psnr, gain, label_acc) -> dict:
    return dict(zip(TRACE_FIELDS, (flops, wall_s, iteration, loss, psnr, gain, label_acc)))


@dataclass(frozen=True)
class _Checkpoints:
    """A progress callback with checkpoints: every report goes to `forward`, offers to `offer`."""

    forward: Callable[[int, float], None] | None
    offer: Callable[[int, float, Callable[[], Reconstruction]], None]

    def __call__(self, iteration: int, loss: float) -> None:
        if self.forward is not None:
            self.forward(iteration, loss)
