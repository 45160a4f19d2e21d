"""How the ranks holding one dummy batch share it: which slice each optimises, how partial results combine.

A single process holds the whole batch (`Solo`, `Shard.whole`). Under torch.distributed each rank holds a
contiguous slice (`TorchCollective`, `shard_for`) and partial sums combine with a differentiable
all-reduce, so every rank sees the objective of the whole batch. Terms computed from combined quantities
(the gradient distance, the BN term) are identical on all ranks, so each rank back-propagates 1/W of them:
the sum over ranks of the per-rank objectives is exactly the single-process objective, which is what
differentiable collectives differentiate. The engine, the distributed client and the runner all use this
one abstraction; `open_world` / `close_world` join and leave the process group.

`TorchCollective.all_sum` is a differentiable all-reduce: its backward all-reduces the incoming gradients,
so a rank's gradient w.r.t. its own inputs is the derivative of the SUM of every rank's objective. The
backward is itself an `all_sum`, so second-order graphs (a dummy gradient differentiated again) stay exact.
The backend follows the device: NCCL for CUDA tensors, gloo for CPU tensors. Every collective runs under a
bounded timeout, so a dead rank makes the others fail instead of waiting forever.

Example:
    >>> collective = open_world("cpu", rank=0, world_size=2, port=29500)
    >>> collective.all_sum(torch.ones(3, requires_grad=True))  # tensor([2., 2., 2.]) on both ranks
    >>> shard_for(batch_size, collective).take(whole_batch)  # this rank's rows
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

import torch
import torch.distributed as dist

from bench.errors import BenchError

DEFAULT_TIMEOUT_S = 90.0


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


class _AllSum(torch.autograd.Function):
    """Sum over ranks; the backward sums the incoming gradients over ranks (the adjoint of a sum).

    The same semantics as `torch.distributed.nn.functional.all_reduce`, which current torch releases
    deprecate with a warning on every call; the backward applies this function again, so it is
    differentiable to any order.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, group: dist.ProcessGroup | None) -> torch.Tensor:
        ctx.group = group
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
        return out

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _AllSum.apply(grad_output, ctx.group), None


class TorchCollective:
    """The collective over an initialised torch.distributed process group."""

    def __init__(self, group: dist.ProcessGroup | None = None) -> None:
        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError("torch.distributed is not initialised; call open_world first")
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)

    def all_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        return _AllSum.apply(tensor, self.group)

    def all_sum_values(self, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.detach().clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=self.group)
        return out

    def __repr__(self) -> str:
        return f"TorchCollective(rank={self.rank}, world_size={self.world_size}, backend={dist.get_backend(self.group)})"


def backend_for(device: torch.device | str) -> str:
    """NCCL for CUDA devices, gloo otherwise (CPU)."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def open_world(
    device: torch.device | str,
    rank: int,
    world_size: int,
    address: str = "127.0.0.1",
    port: int = 29500,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    backend: str | None = None,
) -> TorchCollective:
    """Join the process group of `world_size` ranks rendezvousing at address:port (every rank calls this).

    The backend follows the device unless given (`backend_for`). A rank that does not arrive, or stops
    answering, makes the others raise after `timeout_s` seconds.
    """
    device = torch.device(device)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(
            backend or backend_for(device),
            init_method=f"tcp://{address}:{port}",
            rank=rank,
            world_size=world_size,
            timeout=timedelta(seconds=timeout_s),
        )
    return TorchCollective()


def close_world() -> None:
    """Leave the process group (no-op when none is open)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
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
