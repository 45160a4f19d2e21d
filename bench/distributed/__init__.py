"""Distributed gradient inversion: one dummy batch split over ranks, with exactly the single-process maths.

- `TorchCollective` (differentiable all-reduce over torch.distributed), `open_world`: from
  `bench.engine.collective`, the one module saying how ranks share a batch.
- `sync_bn`: `synchronise_batchnorm`, train-mode BN with whole-batch statistics across ranks.
- `client`: `distributed_leak`, the victim's update for a batch split over ranks (whole-batch BN statistics).
- `launch`: `spawn_local` (`--nproc N`), `world_from_env` (torchrun or a spawned rank), `is_writer`.

Example:
    >>> with world("cpu") as collective:  # None in a single process
    ...     attack = create_attack(name, device="cpu", collective=collective)
"""

from bench.distributed.client import distributed_leak
from bench.distributed.launch import (
    is_writer,
    rank_device,
    should_spawn,
    spawn_local,
    world,
    world_from_env,
)
from bench.distributed.sync_bn import SynchronisedBatchNorm, synchronise_batchnorm
from bench.engine.collective import TorchCollective, close_world, open_world

__all__ = [
    "SynchronisedBatchNorm",
    "TorchCollective",
    "close_world",
    "distributed_leak",
    "is_writer",
    "open_world",
    "rank_device",
    "should_spawn",
    "spawn_local",
    "synchronise_batchnorm",
    "world",
    "world_from_env",
]
