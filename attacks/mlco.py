"""Minimum Loss Combinatorial Optimisation (MLCO), the multi-seed part of E2EGI (Li et al., IEEE JBHI 2022,
"E2EGI: End-to-End Gradient Inversion in Federated Learning"; zhaohuali/E2EGI, `kernels/MLCO.py`).

With n_seed dummy batches and a budget of E iterations:
- init: every seed is optimised on its own for T_init = ceil(0.3 E) iterations;
- combine: greedy, slot by slot, from the seed with the lowest gradient loss (see `combine`);
- R = ceil(0.3 E / T_in) inner rounds: every seed runs T_in iterations with the Group term pulling it toward
  the combined batch, then the seeds are combined again;
- final: T_end = ceil(0.4 E) iterations from the latest combined batch, noise and Group term off. (The
  authors' code starts this stage from the consensus of the last round instead; the combination it has just
  computed is discarded there. Here the final stage starts from the latest combination.)

The learning-rate range [lr, lr_end] is split linearly over the stages in proportion to their lengths, and
each stage runs its own cosine over its share. As in the authors' formulas the stage lengths are rounded up,
so the sequential length can exceed E (E = 24,000 gives 7,200 + 8 x 1,000 + 9,600 = 24,800).

Small budgets keep the paper's shape: T_in = min(1000, ceil(1000 * E / 24000)) keeps the paper's ratio of T_in
to E, so a budget below the paper's has about its 8 inner rounds (E = 240: 72 + 8 x 10 + 96; E = 100:
30 + 6 x 5 + 40, fewer rounds where T_in rounds up), and at least one inner round for any E >= 1. This
scaling is ours: the authors' `run.py` keeps T_in = 1,000 at every budget, so below E = 24,000 it runs
fewer inner rounds (R = ceil(0.3 E / 1000): a single round of 1,000 iterations for any E <= 3,333).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch

from bench.engine.collective import Shard
from bench.engine.loop import LoopResult
from bench.errors import BenchError

PAPER_BUDGET = 24_000  # the paper's total iterations E
PAPER_T_IN = 1_000  # the paper's inner-round length at that budget


@dataclass(frozen=True)
class Stage:
    """One stage of the plan: its length, its lr range (a cosine from lr_start to lr_stop) and its terms."""

    name: str  # "init", "round-1" ... "round-R", "final"
    iterations: int
    lr_start: float
    lr_stop: float
    noise: float  # Langevin noise factor alpha_n (0: off)
    group: float  # weight of the Group term (0: off)

    @property
    def per_seed(self) -> bool:
        """Every seed runs this stage and the seeds are combined after it (all stages but the final one)."""
        return self.name != "final"

    def to_dict(self) -> dict:
        return asdict(self)


def _ceil(x: float) -> int:
    # rounding first keeps a product like 0.3 * E that lands a hair above an integer from rounding up
    return math.ceil(round(x, 9))


def inner_length(budget: int, t_in: int = PAPER_T_IN) -> int:
    """T_in for a budget: `t_in` at and above the paper's budget, scaled down in proportion below it."""
    return max(1, min(t_in, _ceil(t_in * budget / PAPER_BUDGET)))


def stage_plan(
    budget: int,
    lr: float,
    lr_end: float,
    t_in: int = PAPER_T_IN,
    noise: float = 0.2,
    group: float = 0.01,
    init_rate: float = 0.3,
    rounds_rate: float = 0.3,
    end_rate: float = 0.4,
) -> list[Stage]:
    """The MLCO stages for a budget of `budget` iterations (see the module docstring).

    Example:
        >>> [(s.name, s.iterations) for s in stage_plan(240, 0.1046, 1e-3)][:2]
        [('init', 72), ('round-1', 10)]
    """
    if budget < 1:
        raise BenchError(f"the iteration budget must be at least 1, got {budget}")
    if lr <= lr_end:
        raise BenchError(f"the learning rate ({lr}) must exceed its final value ({lr_end})")
    t_inner = inner_length(budget, t_in)
    rounds = max(1, _ceil(rounds_rate * budget / t_inner))
    lengths = [("init", max(1, _ceil(init_rate * budget)), noise, 0.0)]
    lengths += [(f"round-{r + 1}", t_inner, noise, group) for r in range(rounds)]
    lengths += [("final", max(1, _ceil(end_rate * budget)), 0.0, 0.0)]
    total = sum(n for _, n, _, _ in lengths)
    stages, done = [], 0
    for index, (name, n, stage_noise, stage_group) in enumerate(lengths):
        start = lr - (lr - lr_end) * done / total
        done += n
        stop = lr_end if index == len(lengths) - 1 else lr - (lr - lr_end) * done / total
        stages.append(Stage(name, n, start, stop, stage_noise, stage_group))
    return stages


def total_iterations(plan: Sequence[Stage], n_seed: int) -> int:
    """Optimisation steps an MLCO run of `plan` takes over all its seeds: every seed runs the per-seed
    stages, one batch runs the final stage (E = 240, 8 seeds: 8 x (72 + 8 x 10) + 96 = 1,312)."""
    return sum(stage.iterations * (n_seed if stage.per_seed else 1) for stage in plan)


@dataclass
class Combination:
    """The greedy combination: this shard's rows, the batch's gradient loss and where each slot came from."""

    images: torch.Tensor
    gradient_loss: float
    start_seed: int
    choices: list[int]  # choices[i]: the seed whose sample fills global slot i


# gradient_losses(batches) is the whole batch's gradient loss of each candidate batch (this shard's rows)
GradientLosses = Callable[[list[torch.Tensor]], list[float]]


def combine(
    candidates: Sequence[torch.Tensor],
    losses: Sequence[float],
    gradient_losses: GradientLosses,
    shard: Shard,
) -> Combination:
    """Greedy minimum-loss combination of the seeds' batches.

    Start from the seed with the lowest loss in `losses`; for each global slot i in turn, try every other
    seed's sample i in that slot and keep the one giving the lowest batch gradient loss (strictly lower than
    the current one; the first such seed on ties). The trials of one slot differ from the current batch in
    that slot alone, so they are independent and `gradient_losses` evaluates them together. `candidates`
    hold this shard's rows of every seed's batch; `gradient_losses` maps this shard's rows of each trial to
    the whole batch's gradient loss (collective calls in a sharded run, so every rank runs this same loop
    over global slots and only the rank holding slot i swaps its row).
    """
    if len(candidates) != len(losses) or not candidates:
        raise ValueError(f"{len(candidates)} candidate batches for {len(losses)} losses")
    start = min(range(len(candidates)), key=lambda s: losses[s])
    others = [seed for seed in range(len(candidates)) if seed != start]  # the slot already holds start's sample
    current = candidates[start].detach().clone()
    best = gradient_losses([current])[0]
    choices = [start] * shard.total
    for slot in range(shard.total):
        if not others:
            break
        local = slot - shard.start if shard.start <= slot < shard.stop else None
        trials = []
        for seed in others:
            trial = current.clone()
            if local is not None:
                trial[local] = candidates[seed][local]
            trials.append(trial)
        for seed, trial, loss in zip(others, trials, gradient_losses(trials)):
            if loss < best:
                best, current, choices[slot] = loss, trial, seed
    return Combination(current, best, start, choices)


def first_seed(
    candidates: Sequence[torch.Tensor],
    losses: Sequence[float],
    gradient_losses: GradientLosses,
    shard: Shard,
) -> Combination:
    """No combination (E2EGI's `combine=False` ablation): the first seed's batch stands in for the combined
    one as it is, whatever the losses, so the gradient loss never chooses among the seeds."""
    images = candidates[0].detach().clone()
    return Combination(images, gradient_losses([images])[0], 0, [0] * shard.total)


Combine = Callable[[Sequence[torch.Tensor], Sequence[float], GradientLosses, Shard], Combination]

# optimise(seeds, stage, consensus) runs one stage of the base inversion from each seed's images (left
# untouched) and returns one result per seed
Optimise = Callable[[list[torch.Tensor], Stage, torch.Tensor | None], list[LoopResult]]


@dataclass
class MLCOResult:
    images: torch.Tensor  # this shard's rows of the final batch
    gradient_loss: float
    trace: list[float]  # per sequential iteration: the lowest gradient loss over the seeds, then the final run
    iterations: int  # optimisation steps over all seeds and stages
    stages: list[dict] = field(default_factory=list)  # per stage: the seeds' losses, the combination's loss


def run_mlco(
    seeds: Sequence[torch.Tensor],
    plan: Sequence[Stage],
    optimise: Optimise,
    gradient_losses: GradientLosses,
    shard: Shard,
    combined_hook: Callable[[torch.Tensor, float], None] | None = None,
    combiner: Combine | None = None,
) -> MLCOResult:
    """Run the plan: per-seed stages each followed by a combination, then the final stage from the latest one.

    Every seed runs the same stages, so `optimise` may advance them together (see `bench.engine.seed_group`).
    `combined_hook(images, gradient_loss)` sees each combination as it is made; `combiner` replaces `combine`
    (None: MLCO's own), e.g. by `first_seed` for the ablation without it.
    """
    combiner = combine if combiner is None else combiner
    if len(plan) < 2 or plan[-1].per_seed or not all(stage.per_seed for stage in plan[:-1]):
        raise ValueError("an MLCO plan is per-seed stages followed by one final stage")
    seeds = list(seeds)
    combined: Combination | None = None
    trace: list[float] = []
    iterations = 0
    reports: list[dict] = []
    for stage in plan[:-1]:
        consensus = combined.images if combined is not None and stage.group else None
        results = optimise(seeds, stage, consensus)
        seeds = [result.images for result in results]
        losses = [result.gradient_loss for result in results]
        combined = combiner(seeds, losses, gradient_losses, shard)
        if combined_hook is not None:
            combined_hook(combined.images, combined.gradient_loss)
        trace.extend(min(step) for step in zip(*(result.trace for result in results)))
        iterations += sum(result.iterations for result in results)
        reports.append(
            {
                "name": stage.name,
                "seed_losses": losses,
                "combined_loss": combined.gradient_loss,
                "start_seed": combined.start_seed,
                "choices": combined.choices,
            }
        )
    final = optimise([combined.images], plan[-1], None)[0]
    trace.extend(final.trace)
    iterations += final.iterations
    reports.append({"name": plan[-1].name, "gradient_loss": final.gradient_loss})
    return MLCOResult(final.images, final.gradient_loss, trace, iterations, reports)
