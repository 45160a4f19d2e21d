"""Per-channel dataset normalisation: pixel space [0, 1] <-> the model's input space."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Normalization:
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tensor(self.mean, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)
        return mean, std

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(pixels)
        return (pixels - mean) / std

    def denormalize(self, inputs: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(inputs)
        return inputs * std + mean

    def box(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Lower and upper bounds of valid images in input space: [-mu/sigma, (1-mu)/sigma]."""
        mean, std = self._stats(like)
        return -mean / std, (1 - mean) / std

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict) -> "Normalization":
        return cls(tuple(data["mean"]), tuple(data["std"]))
