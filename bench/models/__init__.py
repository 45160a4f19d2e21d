"""Model architectures under one registry.

Every builder has the signature ``build(num_classes, channels, image_size, **options) -> nn.Module``.
Weights never download: pretrained weights come from a local path (see `bench.models.weights`).

Example:
    >>> arch = Architecture("resnet18", num_classes=10, channels=3, image_size=32, options={"small_stem": True})
    >>> model = build_model(arch, seed=0)
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator

import torch
from torch import nn

from bench.registry import Registry

ModelBuilder = Callable[..., nn.Module]
MODELS: Registry[ModelBuilder] = Registry("model")


@dataclass(frozen=True)
class Architecture:
    """Enough to rebuild a model's structure; its weights travel separately (Case file, checkpoint)."""

    name: str
    num_classes: int
    channels: int = 3
    image_size: int = 32
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Architecture":
        return cls(**data)

    def key(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def build_model(arch: Architecture, seed: int = 0) -> nn.Module:
    """Build `arch` with its initial weights drawn from `seed`, without touching the global RNG."""
    builder = MODELS.get(arch.name).obj
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return builder(num_classes=arch.num_classes, channels=arch.channels, image_size=arch.image_size, **arch.options)


def classifier_names(model: nn.Module) -> tuple[str, str | None]:
    """Parameter names of the last fully connected layer's weight and bias (the label-leaking layer)."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = (name, module)
    if last is None:
        raise ValueError("model has no nn.Linear classifier")
    name, module = last
    prefix = f"{name}." if name else ""
    return prefix + "weight", (prefix + "bias" if module.bias is not None else None)


def batchnorm_layers(model: nn.Module) -> dict[str, nn.modules.batchnorm._BatchNorm]:
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}


@contextmanager
def watch_bn_inputs(model: nn.Module, seen: Callable[[str, torch.Tensor], None]) -> Iterator[None]:
    """Call `seen(layer name, input)` for every BN layer's input during the forward passes in the block."""

    def hook(name: str):
        return lambda module, inputs, output: seen(name, inputs[0])

    handles = [m.register_forward_hook(hook(n)) for n, m in batchnorm_layers(model).items()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


# Builders register themselves on import; they need MODELS defined above.
from bench.models import convnet, lenet, resnet, timm_models  # noqa: E402,F401
