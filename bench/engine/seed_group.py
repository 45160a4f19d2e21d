"""Several seeds optimised side by side: G independent dummy batches stacked into one tensor of G x B images.

Each seed keeps its own objective (its own forward pass, so train-mode BN and the BN prior see that seed's
batch alone); the loop back-propagates the sum. Adam, signed steps, the box and the noise all act element by
element, so one loop over the stack takes exactly the steps G separate loops would take, while a
group-consistency target (the seeds' mean) can be refreshed between iterations (see `run_loop`).

Example:
    >>> group = SeedGroup(objective, seeds=8)
    >>> result = run_loop(group, Variables(stacked, labels=group.stack(labels)), config, box, None, gen,
    ...                   refresh_consensus=lambda done, images: group.mean(images))
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from bench.engine.collective import Shard
from bench.engine.objective import Evaluation, Objective
from bench.errors import BenchError


@dataclass
class SeedGroup:
    base: Objective
    seeds: int
    shard: Shard = field(init=False)  # the stack, so the loop draws noise for all G x B images

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise BenchError(f"a seed group needs at least one seed, got {self.seeds}")
        if self.base.shard.distributed:
            raise BenchError("a group of seeds runs in a single process; use one rank")
        self.shard = Shard.whole(self.seeds * self.base.shard.total)

    def stack(self, per_seed: torch.Tensor) -> torch.Tensor:
        """One seed's tensor (B x ...) repeated for every seed: G*B x ... (e.g. the labels)."""
        return per_seed.repeat(self.seeds, *([1] * (per_seed.dim() - 1)))

    def split(self, stacked: torch.Tensor) -> list[torch.Tensor]:
        """The stack's seeds, each B x ..."""
        return list(stacked.chunk(self.seeds))

    def mean(self, stacked: torch.Tensor) -> torch.Tensor:
        """The seeds' pixel-wise mean batch (GradInversion's "lazy" consensus), B x ..."""
        return stacked.detach().unflatten(0, (self.seeds, -1)).mean(0)

    def evaluate(
        self, inputs: torch.Tensor, targets: torch.Tensor, consensus: torch.Tensor | None = None
    ) -> Evaluation:
        parts = [self.base.evaluate(x, y, consensus) for x, y in zip(self.split(inputs), self.split(targets))]
        return Evaluation(
            backward=torch.stack([p.backward for p in parts]).sum(),
            gradient_loss=sum(p.gradient_loss for p in parts),
            total=sum(p.total for p in parts),
        )

    def gradient_loss(self, inputs: torch.Tensor, targets: torch.Tensor) -> float:
        """The sum over seeds of their gradient distances."""
        return sum(self.seed_losses(inputs, targets))

    def seed_losses(self, inputs: torch.Tensor, targets: torch.Tensor) -> list[float]:
        """Each seed's gradient distance, in stack order."""
        return [self.base.gradient_loss(x, y) for x, y in zip(self.split(inputs), self.split(targets))]
