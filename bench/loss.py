"""The client's training loss, recorded in the Case so the attacker's dummy gradient uses the same one."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from bench.errors import BenchError


@dataclass(frozen=True)
class LossSpec:
    """Cross-entropy with a stated reduction. `target` may be class indices or class probabilities.

    reduction="mean" is FedSGD's average over the batch (the papers' setting); "sum" scales by B.
    """

    name: Literal["cross_entropy"] = "cross_entropy"
    reduction: Literal["mean", "sum"] = "mean"

    def __post_init__(self) -> None:
        if self.name != "cross_entropy":
            raise BenchError(f"unsupported client loss {self.name!r}")
        if self.reduction not in ("mean", "sum"):
            raise BenchError(f"loss reduction must be mean or sum, got {self.reduction!r}")

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target, reduction=self.reduction)

    def per_sample_scale(self, batch_size: int) -> float:
        """Factor turning a sum of per-sample losses into this loss (1/B for the mean)."""
        return 1.0 / batch_size if self.reduction == "mean" else 1.0

    def to_dict(self) -> dict:
        return asdict(self)
