"""The optimisation loop shared by every gradient-matching attack.

Per iteration: evaluate the objective, back-propagate, optionally replace the image gradient by its sign,
step (Adam or L-BFGS) at the scheduled learning rate, project onto the valid box, optionally add
Langevin-style noise lr_t * alpha_n * N(0, 1) and project again. Optionally keep the iterate with the
lowest gradient loss (the best iterate) instead of the last one; for a group of seeds, each seed keeps its
own best iterate. A `refresh_consensus` callback may replace the group-consistency target after any
iteration (GradInversion's periodically refreshed mean).

After every iteration `report(done, loss, current)` is called; `current()` is what the loop would return
if it stopped there (without another evaluation), for the runner's trace of the run (bench.trace).
L-BFGS steps stop where the run's FLOPs budget is spent (bench.compute: each step's closure evaluations
are cut to what the budget still affords), and the run ends once a step no longer moves (the gradient is
below L-BFGS's tolerance, so every later step would return at once); `LoopResult.stopped` says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Callable, Literal, Protocol

import torch

from bench.attack import Progress, Reconstruction, report
from bench.compute import current_meter, is_dry
from bench.engine.collective import Shard
from bench.engine.objective import Evaluation
from bench.engine.schedule import Schedule
from bench.errors import BenchError


@dataclass(frozen=True)
class LoopConfig:
    iterations: int
    optimizer: Literal["adam", "lbfgs"] = "adam"
    schedule: Schedule = field(default_factory=Schedule)
    signed: bool = False
    boxed: bool = True
    noise: float = 0.0
    keep_best: bool = False
    stop_below: float | None = None  # stop once the gradient loss falls below this (iDLG)


@dataclass
class Variables:
    """What the loop optimises: the shard's dummy images, and either fixed labels or label logits."""

    images: torch.Tensor
    labels: torch.Tensor | None = None
    label_logits: torch.Tensor | None = None

    def targets(self) -> torch.Tensor:
        return self.labels if self.label_logits is None else self.label_logits.softmax(dim=1)

    def leaves(self) -> list[torch.Tensor]:
        return [self.images] + ([self.label_logits] if self.label_logits is not None else [])

    def snapshot(self, seed: int = 0, seeds: int = 1) -> "Variables":
        """A detached copy of one seed's rows (of the whole stack for one seed)."""

        def rows(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.detach().chunk(seeds)[seed].clone()

        labels = self.labels if self.labels is None or seeds == 1 else self.labels.chunk(seeds)[seed]
        return Variables(rows(self.images), labels, rows(self.label_logits))

    def replace_seed(self, seed: int, seeds: int, kept: "Variables") -> None:
        """Overwrite one seed's rows in place with `kept`, a snapshot of that seed."""
        with torch.no_grad():
            self.images.chunk(seeds)[seed].copy_(kept.images)
            if self.label_logits is not None:
                self.label_logits.chunk(seeds)[seed].copy_(kept.label_logits)


class LoopObjective(Protocol):
    """What the loop optimises: an `Objective` (one seed) or a `SeedGroup` (seeds stacked)."""

    shard: Shard
    seeds: int

    def differentiate(
        self, inputs: torch.Tensor, targets: torch.Tensor, consensus: torch.Tensor | None, leaves: list[torch.Tensor]
    ) -> Evaluation: ...

    def seed_losses(self, inputs: torch.Tensor, targets: torch.Tensor) -> list[float]: ...


@dataclass
class LoopResult:
    images: torch.Tensor
    label_logits: torch.Tensor | None
    gradient_loss: float  # for a group of seeds: the sum over seeds
    trace: list[float]  # per iteration (for a group: the sum over seeds)
    iterations: int
    seed_losses: list[float] = field(default_factory=list)  # per seed; [gradient_loss] for one seed
    seed_traces: list[list[float]] = field(default_factory=list)  # per seed; [trace] for one seed
    stopped: str | None = None  # why the loop ended before its iterations (converged), else None

    def per_seed(self) -> list["LoopResult"]:
        """One result per seed of a group (the result itself for one seed)."""
        seeds = len(self.seed_losses)
        if seeds <= 1:
            return [self]
        logits = [None] * seeds if self.label_logits is None else list(self.label_logits.chunk(seeds))
        return [
            LoopResult(images, lg, loss, trace, self.iterations, [loss], [trace], self.stopped)
            for images, lg, loss, trace in zip(self.images.chunk(seeds), logits, self.seed_losses, self.seed_traces)
        ]


# report(iterations done, current loss, current): `current()` is the result if the loop stopped now
LoopReport = Callable[[int, float, Callable[[], LoopResult]], None]


def reporting(
    progress: Progress | None, output: Callable[[LoopResult], Reconstruction], offset: int = 0, per_iteration: int = 1
) -> LoopReport | None:
    """The loop's report for an attack's `progress`: iteration `offset + done * per_iteration` of the run,
    and `output(result)` as the attack's reconstruction at that point (bench.attack.report)."""
    if progress is None:
        return None

    def loop_report(done: int, loss: float, current: Callable[[], LoopResult]) -> None:
        report(progress, offset + done * per_iteration, loss, lambda: output(current()))

    return loop_report


def iteration_budget(budget: int | None, paper: int) -> int:
    """The iterations to run: the caller's `budget`, or the paper's count when it is None."""
    iterations = paper if budget is None else budget
    if iterations < 1:
        raise BenchError(f"the iteration budget must be at least 1, got {iterations}")
    return iterations


Noise = torch.Generator | Sequence[torch.Generator]


def noise_like(images: torch.Tensor, shard: Shard, generator: Noise) -> torch.Tensor:
    """N(0, 1) noise for this shard, drawn for the whole batch so every world size draws the same numbers.

    With one generator per seed (`seed_streams`), each seed's rows of a stack are drawn from its own.
    """
    if not isinstance(generator, torch.Generator):
        rows = images.chunk(len(generator))
        return torch.cat([noise_like(r, Shard.whole(len(r)), g) for r, g in zip(rows, generator)])
    whole = torch.randn((shard.total, *images.shape[1:]), generator=generator, device=generator.device)
    return shard.take(whole).to(images)


def seed_streams(generator: torch.Generator, seeds: int, draws: int, shape: Sequence[int]) -> list[torch.Generator]:
    """One generator per seed, drawing what `seeds` runs drawing one after another from `generator` would.

    Run s draws `draws` tensors of `shape`; its generator starts where run s - 1 would have left
    `generator`. The states are found by drawing those tensors once (mt19937 cannot skip ahead), and
    `generator` is left where the last run would leave it. Example: stages of MLCO run their seeds
    together while each seed keeps the noise it gets when the seeds run one after another.
    """
    streams = []
    for _ in range(seeds):
        stream = torch.Generator(device=generator.device)
        stream.set_state(generator.get_state())
        streams.append(stream)
        for _ in range(draws):
            torch.randn(tuple(shape), generator=generator, device=generator.device)
    return streams


ConsensusRefresh = Callable[[int, torch.Tensor], torch.Tensor | None]


def run_loop(
    objective: LoopObjective,
    variables: Variables,
    config: LoopConfig,
    box: tuple[torch.Tensor, torch.Tensor] | None = None,
    consensus: torch.Tensor | None = None,
    generator: Noise | None = None,
    report: LoopReport | None = None,
    refresh_consensus: ConsensusRefresh | None = None,
) -> LoopResult:
    """Optimise `variables` for `config.iterations` steps (fewer when `config.stop_below` is reached, an
    L-BFGS step no longer moves, or an L-BFGS run has spent the FLOPs budget).

    `refresh_consensus(done, images)` is called after every iteration with the number of iterations done
    and the current images (detached); a tensor it returns becomes the consensus from the next iteration on.
    """
    for leaf in variables.leaves():
        leaf.requires_grad_(True)
    if config.optimizer == "adam":
        optimizer = torch.optim.Adam(variables.leaves(), lr=config.schedule.lr)
    elif config.optimizer == "lbfgs":
        if objective.shard.distributed:
            raise BenchError("L-BFGS is not available with a sharded batch; use an Adam-based attack")
        optimizer = torch.optim.LBFGS(variables.leaves(), lr=config.schedule.lr)
    else:
        raise BenchError(f"unknown optimizer {config.optimizer!r}; use adam or lbfgs")
    if config.noise and generator is None:
        raise ValueError("noise needs a generator")

    seeds = objective.seeds
    trace: list[float] = []
    seed_traces: list[list[float]] = [[] for _ in range(seeds)]
    best_losses: list[float] = [float("inf")] * seeds
    best: list[Variables | None] = [None] * seeds
    done = 0
    stopped: str | None = None
    last: dict[str, Evaluation] = {}

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        evaluation = objective.differentiate(variables.images, variables.targets(), consensus, variables.leaves())
        if config.signed:
            variables.images.grad.sign_()
        last["evaluation"] = evaluation
        return evaluation.backward

    for t in range(config.iterations):
        lr = config.schedule(t, config.iterations)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if config.optimizer == "lbfgs":
            moved = _lbfgs_step(optimizer, closure)
            if moved is None:
                break  # the FLOPs budget is spent
            if not moved:
                stopped = "converged: the gradient is below L-BFGS's tolerance"
        else:
            closure()
            # the images are still the evaluated iterate until the step: copy them only when they are the best
            if config.keep_best:
                for seed, loss in enumerate(last["evaluation"].seed_losses):
                    if loss < best_losses[seed]:
                        best_losses[seed], best[seed] = loss, variables.snapshot(seed, seeds)
            optimizer.step()
        with torch.no_grad():
            if box is not None and config.boxed:
                _project(variables.images, box)
            if config.noise:
                variables.images.add_(noise_like(variables.images, objective.shard, generator), alpha=lr * config.noise)
                if box is not None and config.boxed:
                    _project(variables.images, box)
        done = t + 1
        if refresh_consensus is not None:
            fresh = refresh_consensus(done, variables.images.detach())
            consensus = consensus if fresh is None else fresh
        evaluation = last["evaluation"]
        trace.append(evaluation.gradient_loss)
        for seed_trace, loss in zip(seed_traces, evaluation.seed_losses):
            seed_trace.append(loss)
        if report:

            def current(losses: list[float] = list(evaluation.seed_losses), done: int = done) -> LoopResult:
                return _with_best(variables.snapshot(), losses, best, best_losses, seeds, trace, done, seed_traces)

            report(done, evaluation.total, current)
        if config.stop_below is not None and evaluation.gradient_loss < config.stop_below:
            stopped = f"converged: the gradient loss is below {config.stop_below:g}"
        if stopped:
            break

    final = variables.snapshot()
    final_losses = objective.seed_losses(final.images, final.targets())
    result = _with_best(final, final_losses, best, best_losses, seeds, trace, done, seed_traces)
    result.stopped = stopped
    return result


def _with_best(
    snapshot: Variables, losses: list[float], best: list[Variables | None], best_losses: list[float], seeds: int,
    trace: list[float], done: int, seed_traces: list[list[float]],
) -> LoopResult:
    """The result from `snapshot` (with each seed's `losses`), each seed replaced by its kept best iterate
    where that one's loss is lower."""
    losses = list(losses)
    for seed, kept in enumerate(best):
        if kept is not None and best_losses[seed] < losses[seed]:
            snapshot.replace_seed(seed, seeds, kept)
            losses[seed] = best_losses[seed]
    return LoopResult(snapshot.images, snapshot.label_logits, sum(losses), trace, done, losses, seed_traces)


def _lbfgs_step(optimizer: torch.optim.LBFGS, closure: Callable[[], torch.Tensor]) -> bool | None:
    """One L-BFGS step, its closure evaluations cut to what the run's FLOPs budget still affords; whether it
    moved the iterate (False: converged), None when the budget affords no evaluation."""
    meter = current_meter()
    left = None if meter is None else meter.evaluations_left()
    if left == 0:
        return None
    group = optimizer.param_groups[0]
    if left is not None:
        group["max_iter"] = min(optimizer.defaults["max_iter"], left)
        group["max_eval"] = min(optimizer.defaults["max_eval"], left)
    state = optimizer.state[group["params"][0]]
    before = state.get("n_iter", 0)
    optimizer.step(closure)
    return is_dry() or state.get("n_iter", 0) > before


def _project(images: torch.Tensor, box: tuple[torch.Tensor, torch.Tensor]) -> None:
    images.copy_(torch.max(torch.min(images, box[1]), box[0]))
