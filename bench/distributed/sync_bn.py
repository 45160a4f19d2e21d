"""Train-mode BatchNorm with whole-batch statistics when the batch is split over ranks.

Each rank sums its shard's x and x^2 per channel and counts its elements; one differentiable all-reduce
combines them, and mean = E[x], var = E[x^2] - E[x]^2 (biased, as BN normalises with) are the whole
batch's. The gradient of every rank's objective flows back through the all-reduce to every other rank's
activations, so losses and gradients equal those of one process holding the whole batch. The counts are
summed too, so unequal shards are exact. In eval mode the running statistics are used, as in BN.

`torch.nn.SyncBatchNorm` is not used because it refuses CPU tensors and its backward is first-order only;
gradient inversion differentiates the dummy gradient (a backward) once more.

Example:
    >>> model = synchronise_batchnorm(case.build_model(), shard)  # same state dict keys as before
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from bench.engine.collective import Collective, Shard
from bench.errors import BenchError

_PLAIN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def whole_batch_moments(x: torch.Tensor, collective: Collective) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-channel mean, biased variance and element count of x over all ranks (mean and var differentiable)."""
    channels = x.shape[1]
    dims = [d for d in range(x.dim()) if d != 1]
    count = x.new_full((1,), x.numel() // channels if channels else 0)
    if collective.world_size == 1:  # one process: BN's own two-pass variance
        return x.mean(dims), x.var(dims, unbiased=False), count[0]
    # one collective per layer: sums, sums of squares and the count travel together
    packed = collective.all_sum(torch.cat([x.sum(dims), (x * x).sum(dims), count]))
    total = packed[-1].detach()
    mean = packed[:channels] / total
    var = packed[channels : 2 * channels] / total - mean.pow(2)
    return mean, var.clamp_min(0), total


class SynchronisedBatchNorm(_BatchNorm):
    """A BN layer (same parameters, buffers and state dict keys) whose batch statistics span all ranks.

    Built from an existing BN layer, sharing its parameter and buffer tensors. For timm's BatchNormAct2d
    the layer's `drop` and `act` children are kept and applied after the normalisation, as there.
    """

    def __init__(self, source: _BatchNorm, collective: Collective) -> None:
        super().__init__(source.num_features, source.eps, source.momentum, source.affine, source.track_running_stats)
        self.collective = collective
        self.weight, self.bias = source.weight, source.bias
        self.running_mean, self.running_var = source.running_mean, source.running_var
        self.num_batches_tracked = source.num_batches_tracked
        self.input_dims = _input_dims(source)
        for name in ("drop", "act"):
            if hasattr(source, name):
                self.add_module(name, getattr(source, name))
        self.train(source.training)

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() not in self.input_dims:
            raise ValueError(f"expected {' or '.join(f'{d}D' for d in self.input_dims)} input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        updating = self.training and self.track_running_stats
        momentum = 0.0 if self.momentum is None else self.momentum
        if updating and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average, as BN does
                momentum = 1.0 / float(self.num_batches_tracked)
        batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        if not batch_stats:
            y = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        else:
            mean, var, count = whole_batch_moments(x, self.collective)
            if updating:
                with torch.no_grad():
                    unbiased = var * (count / (count - 1).clamp_min(1))
                    self.running_mean.lerp_(mean.to(self.running_mean), momentum)
                    self.running_var.lerp_(unbiased.to(self.running_var), momentum)
            # per-channel scale and shift, so the activations see one multiply and one add: the second-order
            # graph keeps no activation-sized intermediate beyond what BN's own double backward keeps
            scale = torch.rsqrt(var + self.eps)
            if self.affine:
                scale = scale * self.weight
            shift = -mean * scale
            if self.affine:
                shift = shift + self.bias
            shape = (1, -1) + (1,) * (x.dim() - 2)
            y = x * scale.view(shape) + shift.view(shape)
        if "drop" in self._modules:
            y = self.drop(y)
        if "act" in self._modules:
            y = self.act(y)
        return y

    def extra_repr(self) -> str:
        return super().extra_repr() + f", world_size={self.collective.world_size}"


def _input_dims(source: _BatchNorm) -> tuple[int, ...]:
    if isinstance(source, nn.BatchNorm1d):
        return (2, 3)
    if isinstance(source, nn.BatchNorm3d):
        return (5,)
    return (4,)


def synchronisable(module: _BatchNorm) -> bool:
    """Whether `SynchronisedBatchNorm` can stand in for this BN layer."""
    if type(module) in _PLAIN or isinstance(module, SynchronisedBatchNorm):
        return True
    # timm's BN + drop + activation layer (its forward is exactly that sequence); a model holding one has
    # imported timm.layers, so nothing is imported here
    timm_layers = sys.modules.get("timm.layers")
    return timm_layers is not None and type(module) is timm_layers.BatchNormAct2d


def synchronise_batchnorm(model: nn.Module, shard: Shard) -> nn.Module:
    """Replace every BN layer of `model` (in place) by a `SynchronisedBatchNorm` over `shard.collective`.

    Returns the model (a new module when `model` itself is a BN layer). Layers already synchronised keep
    their collective; a BN layer shared by two parents is replaced by one shared module.
    """
    unsupported = sorted({type(m).__name__ for m in model.modules() if isinstance(m, _BatchNorm) and not synchronisable(m)})
    if unsupported:
        raise BenchError(f"cannot synchronise BatchNorm layers of type {', '.join(unsupported)} across ranks")
    replaced: dict[int, nn.Module] = {}

    def convert(module: nn.Module) -> nn.Module:
        if isinstance(module, _BatchNorm) and not isinstance(module, SynchronisedBatchNorm):
            if id(module) not in replaced:
                replaced[id(module)] = SynchronisedBatchNorm(module, shard.collective)
            return replaced[id(module)]
        for name, child in list(module.named_children()):
            new = convert(child)
            if new is not child:
                setattr(module, name, new)
        return module

    return convert(model)
