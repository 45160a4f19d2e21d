"""The engine's `Collective` over torch.distributed, and opening/closing the process group.

`all_sum` is a differentiable all-reduce: its backward all-reduces the incoming gradients, so a rank's
gradient w.r.t. its own inputs is the derivative of the SUM of every rank's objective. The backward is
itself an `all_sum`, so second-order graphs (a dummy gradient differentiated again) stay exact.

The backend follows the device: NCCL for CUDA tensors, gloo for CPU tensors. Every collective runs under
a bounded timeout, so a dead rank makes the others fail instead of waiting forever.

Example:
    >>> collective = open_world("cpu", rank=0, world_size=2, port=29500)
    >>> collective.all_sum(torch.ones(3, requires_grad=True))  # tensor([2., 2., 2.]) on both ranks
"""

from __future__ import annotations

from datetime import timedelta

import torch
import torch.distributed as dist

DEFAULT_TIMEOUT_S = 90.0


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
    """`bench.engine.collective.Collective` over an initialised torch.distributed process group."""

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
) -> TorchCollective:
    """Join the process group of `world_size` ranks rendezvousing at address:port (every rank calls this).

    A rank that does not arrive, or stops answering, makes the others raise after `timeout_s` seconds.
    """
    device = torch.device(device)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(
            backend_for(device),
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
