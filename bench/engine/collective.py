"""Which slice of the dummy batch this process optimises, and how partial results combine.

A single process holds the whole batch (`Shard.whole`). Under torch.distributed each rank holds a slice
and partial sums combine with a differentiable all-reduce, so every rank sees the objective of the whole
batch. Terms computed from combined quantities (the gradient distance, the BN term) are identical on all
ranks, so each rank back-propagates 1/W of them: the sum over ranks of the per-rank objectives is exactly
the single-process objective, which is what differentiable collectives differentiate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from bench.errors import BenchError


class Collective(Protocol):
    rank: int
    world_size: int

    def all_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum over ranks, differentiable (backward sums the incoming gradients over ranks)."""
        ...

    def all_sum_values(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum over ranks of values that need no gradient (reporting, bookkeeping)."""
        ...


class Solo:
    """The single-process collective: sums over one rank are the identity."""

    rank = 0
    world_size = 1

    def all_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def all_sum_values(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor


@dataclass(frozen=True)
class Shard:
    """Samples [start, stop) of a batch of `total` held by this process."""

    start: int
    stop: int
    total: int
    collective: Collective

    @classmethod
    def whole(cls, total: int) -> "Shard":
        return cls(0, total, total, Solo())

    @property
    def size(self) -> int:
        return self.stop - self.start

    @property
    def world_size(self) -> int:
        return self.collective.world_size

    @property
    def distributed(self) -> bool:
        return self.collective.world_size > 1

    def take(self, whole_batch: torch.Tensor) -> torch.Tensor:
        """This shard's rows of a tensor that every rank can build for the whole batch."""
        return whole_batch[self.start : self.stop]


def split_evenly(total: int, world_size: int, rank: int) -> tuple[int, int]:
    """Contiguous [start, stop) of rank `rank` when `total` samples are split over `world_size` ranks."""
    base, extra = divmod(total, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def check_splittable(total: int, world_size: int) -> None:
    """Every rank must hold at least one sample of a sharded batch."""
    if total < world_size:
        raise BenchError(f"a batch of {total} cannot be split over {world_size} ranks; use at most {total}")


def shard_for(total: int, collective: Collective | None) -> Shard:
    """This rank's contiguous shard of a batch of `total` samples (the whole batch for one process)."""
    if collective is None or collective.world_size == 1:
        return Shard.whole(total)
    check_splittable(total, collective.world_size)
    start, stop = split_evenly(total, collective.world_size, collective.rank)
    return Shard(start, stop, total, collective)
