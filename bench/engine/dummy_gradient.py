"""The dummy gradient: the client's own loss on the dummy batch, differentiated with a graph."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.engine.collective import Shard
from bench.loss import LossSpec


def trainable_parameters(model: nn.Module) -> list[torch.Tensor]:
    """The parameters whose gradients the client shares, in `named_parameters` order."""
    return [p for p in model.parameters() if p.requires_grad]


def dummy_gradient(
    model: nn.Module,
    params: list[torch.Tensor],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    loss: LossSpec,
    shard: Shard,
    create_graph: bool = True,
) -> list[torch.Tensor]:
    """Gradient of `loss` over the whole dummy batch w.r.t. `params`.

    `targets` are class indices or class probabilities (soft labels). A single process calls the client's
    loss itself, so true images and labels give the target gradient bit for bit. Across ranks each rank
    differentiates its share of the batch loss (sum over its samples, scaled as the client's reduction
    scales the whole batch) and the shares are summed with a differentiable all-reduce.
    """
    logits = model(inputs)
    if not shard.distributed:
        value = loss(logits, targets)
    else:
        value = F.cross_entropy(logits, targets, reduction="sum") * loss.per_sample_scale(shard.total)
    grads = torch.autograd.grad(value, params, create_graph=create_graph)
    if not shard.distributed:
        return list(grads)
    return [shard.collective.all_sum(g) for g in grads]
