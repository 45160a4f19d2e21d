"""Distances between the dummy gradient and the leaked one, over a subset of layers with weights.

- "l2_squared": sum over layers of ||g'_l - g*_l||^2 (DLG, iDLG).
- "l2": sum over layers of ||g'_l - g*_l||_2, un-squared per layer (GradInversion).
- "cosine": 1 - <g', g*> / (|g'| |g*|) with all selected layers concatenated (Inverting Gradients, E2EGI).
Per-layer weights multiply each layer's contribution (for cosine: its dot product and squared norms).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch

from bench.errors import BenchError

Distance = Literal["l2_squared", "l2", "cosine"]


@dataclass(frozen=True)
class GradientDistance:
    kind: Distance = "cosine"
    layers: tuple[int, ...] | None = None  # indices into the parameter list; None: all
    layer_weights: tuple[float, ...] | None = None  # one per selected layer; None: all 1

    def __post_init__(self) -> None:
        if self.kind not in ("l2_squared", "l2", "cosine"):
            raise BenchError(f"unknown gradient distance {self.kind!r}; use l2_squared, l2 or cosine")

    def select(self, count: int) -> tuple[list[int], list[float]]:
        indices = list(self.layers) if self.layers is not None else list(range(count))
        weights = list(self.layer_weights) if self.layer_weights is not None else [1.0] * len(indices)
        if len(weights) != len(indices):
            raise BenchError(f"{len(weights)} layer weights for {len(indices)} layers")
        if any(i < -count or i >= count for i in indices):
            raise BenchError(f"layer index out of range for {count} parameter tensors")
        return indices, weights

    def __call__(self, dummy: Sequence[torch.Tensor], target: Sequence[torch.Tensor]) -> torch.Tensor:
        indices, weights = self.select(len(target))
        if self.kind == "cosine":
            dot = sum(w * (dummy[i] * target[i]).sum() for i, w in zip(indices, weights))
            dummy_sq = sum(w * dummy[i].pow(2).sum() for i, w in zip(indices, weights))
            target_sq = sum(w * target[i].pow(2).sum() for i, w in zip(indices, weights))
            return 1 - dot / (dummy_sq.sqrt() * target_sq.sqrt()).clamp_min(1e-30)
        if self.kind == "l2_squared":
            return sum(w * (dummy[i] - target[i]).pow(2).sum() for i, w in zip(indices, weights))
        return sum(w * (dummy[i] - target[i]).flatten().norm() for i, w in zip(indices, weights))


def masked(distance: GradientDistance, masks: Sequence[torch.Tensor]):
    """`distance` over the surviving entries only: the dummy's entries where a mask is 0 are zeroed, as the
    target's are, so they add nothing to any term (for cosine: to neither the dot product nor the norms)."""

    def over_surviving(dummy: Sequence[torch.Tensor], target: Sequence[torch.Tensor]) -> torch.Tensor:
        return distance([d * m for d, m in zip(dummy, masks)], target)

    return over_surviving
