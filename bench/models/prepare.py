"""The client's model: built from a seed, optionally loaded from local weights, optionally trained here.

Example:
    >>> arch = Architecture("resnet18", num_classes=10, image_size=32)
    >>> model = prepare_model(arch, seed=0, train=TrainSpec(steps=100, lr=0.01, batch_size=32), dataset=data)
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from bench.data import ImageSource
from bench.errors import BenchError
from bench.models import Architecture, build_model
from bench.models.training import trained_state
from bench.models.weights import load_pretrained


@dataclass(frozen=True)
class TrainSpec:
    """Plain SGD on the client's dataset before the leaked round (see `bench.models.training`)."""

    steps: int
    lr: float = 0.01
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 0 or self.lr <= 0 or self.batch_size < 1:
            raise BenchError(f"training needs steps >= 0, lr > 0 and batch size >= 1, got {self}")


def prepare_model(
    arch: Architecture,
    seed: int,
    weights: str | None = None,
    train: TrainSpec | None = None,
    dataset: ImageSource | None = None,
    cache_dir: str | None = None,
) -> nn.Module:
    """Build `arch` under `seed`, load `weights` (a local checkpoint) if given, then train if `train` asks."""
    model = build_model(arch, seed)
    if weights is not None:
        load_pretrained(model, weights, seed, arch.options.get("head_init", "default"))
    if train is not None and train.steps > 0:
        if dataset is None:
            raise BenchError("training the model before the leaked round needs a dataset")
        state = trained_state(
            arch, model.state_dict(), dataset, train.steps, train.lr, train.batch_size, train.seed,
            arch.image_size, cache_dir,
        )  # fmt: skip
        model.load_state_dict(state)
    return model
