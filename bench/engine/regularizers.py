"""Image priors. Per-image terms are averaged over the whole batch; a shard contributes its partial sum.

- total_variation: anisotropic TV, mean|dx| + mean|dy| per image (Inverting Gradients).
- l2_norm: ||x_i||_2 per image (GradInversion's alpha_l2, E2EGI's input norm).
- group_distance: distance of each image to its group-consensus image: "mse" (E2EGI: mean of squares) or
  "l2" (GradInversion: un-squared norm).
- bn_statistics: sum over BN layers of ||mu_l(x') - mu_l||_2 + ||var_l(x') - var_l||_2 (un-squared), with the
  dummy batch's statistics over the whole batch (combined across ranks); with K clients, the mean over the
  clients of each client's own statistics (as the clients' uploaded ones are aggregated).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Literal

import torch
from torch import nn

from bench.case import BatchNormStats
from bench.engine.collective import Shard
from bench.models import watch_bn_inputs


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Per-image anisotropic TV, shape (B,)."""
    dx = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().flatten(1).mean(1)
    dy = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().flatten(1).mean(1)
    return dx + dy


def l2_norm(x: torch.Tensor) -> torch.Tensor:
    """Per-image Euclidean norm, shape (B,)."""
    return x.flatten(1).norm(dim=1)


def group_distance(x: torch.Tensor, consensus: torch.Tensor, kind: Literal["mse", "l2"] = "mse") -> torch.Tensor:
    """Per-image distance to the consensus image, shape (B,)."""
    diff = (x - consensus).flatten(1)
    return diff.pow(2).mean(1) if kind == "mse" else diff.norm(dim=1)


def batch_mean(per_image: torch.Tensor, shard: Shard) -> torch.Tensor:
    """This shard's share of the mean over the whole batch (the shares sum to the batch mean)."""
    return per_image.sum() / shard.total


@contextmanager
def capture_bn_inputs(model: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Inputs of every BN layer during the forward passes inside the block (graph kept)."""
    seen: dict[str, torch.Tensor] = {}
    with watch_bn_inputs(model, seen.__setitem__):
        yield seen


def batch_moments(x: torch.Tensor, shard: Shard) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and biased variance per channel over the whole batch (all ranks), differentiable."""
    dims = [d for d in range(x.dim()) if d != 1]
    if not shard.distributed:
        return x.mean(dims), x.var(dims, unbiased=False)
    count = x.numel() // x.shape[1] * shard.total / shard.size
    total = shard.collective.all_sum(torch.stack([x.sum(dims), x.pow(2).sum(dims)]))
    mean = total[0] / count
    return mean, total[1] / count - mean.pow(2)


def bn_statistics(
    inputs: dict[str, torch.Tensor], prior: dict[str, BatchNormStats], shard: Shard, clients: int = 1
) -> torch.Tensor:
    """Sum over BN layers of un-squared distances between the dummy batch's statistics and the prior.

    With `clients` K > 1 each layer's input holds the K clients' rows one after the other (one process)."""
    terms = []
    for name, x in inputs.items():
        if clients == 1:
            mean, var = batch_moments(x, shard)
        else:
            moments = [batch_moments(part, shard) for part in x.chunk(clients)]
            mean, var = (torch.stack(m).mean(0) for m in zip(*moments))
        target = prior[name]
        terms.append((mean - target.mean.to(mean)).norm() + (var - target.var.to(var)).norm())
    return torch.stack(terms).sum() if terms else torch.zeros(())
