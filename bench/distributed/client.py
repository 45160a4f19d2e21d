"""The victim's update computed the way a data-parallel client computes it, for batches split over ranks.

Each rank holds a contiguous shard of the batch. BN layers in train mode normalise with the whole batch's
statistics (synchronised BN), each rank differentiates its share of the batch loss (the sum over its
samples times the client's per-sample scale, 1/B for the mean) and the shares are summed over ranks. The
uploaded BN statistics are the whole batch's, combined from every rank's sums, never one rank's.

Example:
    >>> shard = shard_for(case.batch_size, collective)
    >>> gradients, bn_stats = distributed_leak(model, shard.take(inputs), shard.take(labels), loss, shard)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from bench.case import BatchNormStats
from bench.distributed.sync_bn import synchronise_batchnorm
from bench.engine.collective import Shard
from bench.loss import LossSpec
from bench.models import watch_bn_inputs


@contextmanager
def record_whole_batch_bn_inputs(model: nn.Module, shard: Shard) -> Iterator[dict[str, BatchNormStats]]:
    """Per BN layer, the mean and biased variance of its input over the whole batch (all ranks).

    Sums are accumulated in float64 so E[x^2] - E[x]^2 matches a two-pass variance in the input's dtype.
    """
    stats: dict[str, BatchNormStats] = {}

    def capture(name: str, x: torch.Tensor) -> None:
        x = x.detach()
        dims = [d for d in range(x.dim()) if d != 1]
        wide = x.double()
        count = wide.new_full((1,), x.numel() // x.shape[1])
        packed = shard.collective.all_sum_values(torch.cat([wide.sum(dims), wide.pow(2).sum(dims), count]))
        channels = x.shape[1]
        mean = packed[:channels] / packed[-1]
        var = (packed[channels : 2 * channels] / packed[-1] - mean.pow(2)).clamp_min(0)
        stats[name] = BatchNormStats(mean.to(x.dtype), var.to(x.dtype))

    with watch_bn_inputs(model, capture):
        yield stats


def distributed_leak(
    model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, loss: LossSpec, shard: Shard
) -> tuple[dict[str, torch.Tensor], dict[str, BatchNormStats]]:
    """`bench.client.leak` on the whole batch, computed from this rank's shard (same result on every rank).

    `inputs` and `labels` are this rank's rows of the batch (of several ranks: one process calls `leak`).
    The model's BN layers are synchronised in place; like `leak`, train-mode BN updates the running
    statistics (with the whole batch's statistics).
    """
    if not shard.distributed:
        raise ValueError("distributed_leak shares a batch between ranks; a single process calls bench.client.leak")
    if inputs.shape[0] != shard.size or labels.shape[0] != shard.size:
        raise ValueError(f"shard holds {shard.size} samples, got {inputs.shape[0]} inputs and {labels.shape[0]} labels")
    model = synchronise_batchnorm(model, shard)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = [p for p in model.parameters() if p.requires_grad]
    with record_whole_batch_bn_inputs(model, shard) as bn_stats:
        logits = model(inputs)
    share = F.cross_entropy(logits, labels, reduction="sum") * loss.per_sample_scale(shard.total)
    grads = torch.autograd.grad(share, params)
    # one all-reduce for the whole update instead of one per parameter tensor
    flat = shard.collective.all_sum_values(torch.cat([g.reshape(-1) for g in grads]))
    summed = flat.split([g.numel() for g in grads])
    return {n: s.view_as(g) for n, s, g in zip(names, summed, grads)}, dict(bn_stats)
