"""Large batches on small machines: the client's update computed with bounded memory, still exact.

- Eval-mode BN (or no BN): samples do not interact, so the batch is processed in chunks; each chunk
  contributes (sum of its per-sample losses) x the client's per-sample scale, and BN input moments are
  accumulated as sums and sums of squares. Exact up to the order of floating-point summation.
- Train-mode BN: samples interact through the batch statistics, so chunks would change the result.
  Instead the whole batch goes through at once with activation checkpointing (every child of every
  nn.Sequential is recomputed during the backward pass instead of stored). The recomputation sees the same
  batch, hence the same statistics: exact, at the price of one extra forward pass.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from bench.case import BatchNormStats
from bench.loss import LossSpec
from bench.models import batchnorm_layers, watch_bn_inputs

EVAL_CHUNK = 16  # samples per chunk; small enough for ResNet-50 at 224 px on a laptop


@contextmanager
def checkpointed(model: nn.Module) -> Iterator[nn.Module]:
    """Recompute the children of every nn.Sequential during backward instead of storing activations."""
    patched: list[nn.Module] = []
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            for child in module:
                original = child.forward
                child.forward = (lambda f: (lambda *a, **k: checkpoint(f, *a, use_reentrant=False, **k)))(original)
                patched.append(child)
    try:
        yield model
    finally:
        for child in patched:
            del child.forward  # drop the instance attribute; the class's forward is back


@contextmanager
def accumulate_bn_moments(model: nn.Module) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Per BN layer: [sum, sum of squares, count] of its inputs over all chunks."""
    moments: dict[str, list[torch.Tensor]] = {}

    def add(name: str, x: torch.Tensor) -> None:
        x = x.detach().double()
        dims = [d for d in range(x.dim()) if d != 1]
        parts = [x.sum(dims), x.pow(2).sum(dims), torch.tensor(x.numel() / x.shape[1], dtype=torch.float64)]
        moments[name] = [a + b for a, b in zip(moments[name], parts)] if name in moments else parts

    with watch_bn_inputs(model, add):
        yield moments


def leak_in_chunks(
    model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, loss: LossSpec, chunk: int | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, BatchNormStats]]:
    """The eval-mode update of the whole batch, accumulated over chunks of `chunk` samples."""
    if model.training and batchnorm_layers(model):
        raise ValueError("chunked gradients are exact only without train-mode BN; use the checkpointed path")
    chunk = chunk or EVAL_CHUNK
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    total = [torch.zeros_like(p) for p in params.values()]
    scale = loss.per_sample_scale(len(inputs))
    with accumulate_bn_moments(model) as moments:
        for start in range(0, len(inputs), chunk):
            x, y = inputs[start : start + chunk], labels[start : start + chunk]
            value = F.cross_entropy(model(x), y, reduction="sum") * scale
            for acc, g in zip(total, torch.autograd.grad(value, list(params.values()))):
                acc.add_(g)
    stats = {}
    for name, (s, ss, n) in moments.items():
        mean = s / n
        stats[name] = BatchNormStats(mean.float(), (ss / n - mean.pow(2)).float())
    return dict(zip(params, total)), stats
