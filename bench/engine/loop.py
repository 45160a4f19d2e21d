"""The optimisation loop shared by every gradient-matching attack.

Per iteration: evaluate the objective, back-propagate, optionally replace the image gradient by its sign,
step (Adam or L-BFGS) at the scheduled learning rate, project onto the valid box, optionally add
Langevin-style noise lr_t * alpha_n * N(0, 1) and project again. Optionally keep the iterate with the
lowest gradient loss (the best iterate) instead of the last one. A `refresh_consensus` callback may
replace the group-consistency target after any iteration (GradInversion's periodically refreshed mean).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

import torch

from bench.attack import Progress
from bench.engine.collective import Shard
from bench.engine.objective import Objective
from bench.engine.schedule import Schedule
from bench.engine.seed_group import SeedGroup
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


@dataclass
class LoopResult:
    images: torch.Tensor
    label_logits: torch.Tensor | None
    gradient_loss: float
    trace: list[float]
    iterations: int


def iteration_budget(budget: int | None, paper: int) -> int:
    """The iterations to run: the caller's `budget`, or the paper's count when it is None."""
    iterations = paper if budget is None else budget
    if iterations < 1:
        raise BenchError(f"the iteration budget must be at least 1, got {iterations}")
    return iterations


def noise_like(images: torch.Tensor, shard: Shard, generator: torch.Generator) -> torch.Tensor:
    """N(0, 1) noise for this shard, drawn for the whole batch so every world size draws the same numbers."""
    whole = torch.randn((shard.total, *images.shape[1:]), generator=generator, device=generator.device)
    return shard.take(whole).to(images)


ConsensusRefresh = Callable[[int, torch.Tensor], torch.Tensor | None]


def run_loop(
    objective: Objective | SeedGroup,
    variables: Variables,
    config: LoopConfig,
    box: tuple[torch.Tensor, torch.Tensor] | None = None,
    consensus: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    progress: Progress | None = None,
    refresh_consensus: ConsensusRefresh | None = None,
) -> LoopResult:
    """Optimise `variables` for `config.iterations` steps (fewer when `config.stop_below` is reached).

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

    trace: list[float] = []
    best_loss, best = float("inf"), None
    done = 0
    last: dict[str, float] = {}

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        evaluation = objective.evaluate(variables.images, variables.targets(), consensus)
        evaluation.backward.backward(inputs=variables.leaves())
        if config.signed:
            variables.images.grad.sign_()
        last["gradient_loss"], last["total"] = evaluation.gradient_loss, evaluation.total
        return evaluation.backward

    for t in range(config.iterations):
        lr = config.schedule(t, config.iterations)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if config.optimizer == "lbfgs":
            optimizer.step(closure)
        else:
            closure()
            # the images are still the evaluated iterate until the step: copy them only when they are the best
            if config.keep_best and last["gradient_loss"] < best_loss:
                best_loss, best = last["gradient_loss"], _snapshot(variables)
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
        loss = last["gradient_loss"]
        trace.append(loss)
        if progress:
            progress(done, last["total"])
        if config.stop_below is not None and loss < config.stop_below:
            break

    final = _snapshot(variables)
    final_loss = objective.gradient_loss(final.images, final.targets())
    if best is not None and best_loss < final_loss:
        final, final_loss = best, best_loss
    return LoopResult(final.images, final.label_logits, final_loss, trace, done)


def _snapshot(variables: Variables) -> Variables:
    logits = variables.label_logits
    return Variables(
        variables.images.detach().clone(), variables.labels, None if logits is None else logits.detach().clone()
    )


def _project(images: torch.Tensor, box: tuple[torch.Tensor, torch.Tensor]) -> None:
    images.copy_(torch.max(torch.min(images, box[1]), box[0]))
