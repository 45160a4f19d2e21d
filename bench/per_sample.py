"""Per-sample gradients (torch.func: vmap over grad) and DP-SGD's clipped sum of them.

A sample's gradient is that of its own cross-entropy, as if it were a batch of one. This is defined only
when samples do not interact: train-mode BatchNorm normalises each sample with the whole batch's
statistics, so DP-SGD runs with eval-mode BN (the Scenario refuses the other combination).

Example:
    >>> grads = per_sample_gradients(model, weights, constants, inputs, labels)  # name -> B x shape
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

Tensors = dict[str, torch.Tensor]
CHUNK = 16  # samples whose gradients are held at once; bounds memory on large models


def per_sample_gradients(model: nn.Module, weights: Tensors, constants: Tensors, inputs: torch.Tensor, targets: torch.Tensor) -> Tensors:
    """Gradient of each sample's cross-entropy w.r.t. `weights`, stacked on a leading batch axis.

    `constants` are the model's other tensors (buffers, frozen parameters); `targets` class indices or
    class probabilities.
    """

    def sample_loss(w: Tensors, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, {**constants, **w}, (x.unsqueeze(0),))
        return F.cross_entropy(logits, y.unsqueeze(0), reduction="sum")

    return vmap(grad(sample_loss), in_dims=(None, 0, 0))(weights, inputs, targets)


def clipped_sum(
    model: nn.Module, weights: Tensors, constants: Tensors, inputs: torch.Tensor, targets: torch.Tensor, clip: float
) -> Tensors:
    """sum_i g_i * min(1, C / ||g_i||), with ||g_i|| the norm over all of sample i's gradient tensors."""
    total = {n: torch.zeros_like(w) for n, w in weights.items()}
    for start in range(0, len(inputs), CHUNK):
        grads = per_sample_gradients(model, weights, constants, inputs[start : start + CHUNK], targets[start : start + CHUNK])
        norms = torch.stack([g.flatten(1).pow(2).sum(1) for g in grads.values()]).sum(0).sqrt()
        factors = (clip / norms).clamp(max=1.0)  # a zero gradient gives inf, clamped to 1
        for name, g in grads.items():
            total[name] += torch.tensordot(factors, g, dims=1)
    return total
