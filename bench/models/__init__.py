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


HEAD_INITS = ("default", "normal")


def build_model(arch: Architecture, seed: int = 0) -> nn.Module:
    """Build `arch` with its initial weights drawn from `seed`, without touching the global RNG.

    The option `head_init` (every model takes it) chooses the classifier head's initialisation: "default"
    keeps the builder's own, "normal" draws it as E2EGI's client does (see `init_classifier`).
    """
    builder = MODELS.get(arch.name).obj
    options = dict(arch.options)
    head_init = head_init_of(options.pop("head_init", "default"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = builder(num_classes=arch.num_classes, channels=arch.channels, image_size=arch.image_size, **options)
    if head_init != "default":
        init_classifier(model, head_init, seed)
    return model


def head_init_of(value: Any) -> str:
    """A valid `head_init` option, or a one-line error naming the choices."""
    if value not in HEAD_INITS:
        from bench.errors import BenchError

        raise BenchError(f"head_init must be one of {', '.join(HEAD_INITS)}, got {value!r}")
    return value


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


def init_classifier(model: nn.Module, kind: str, seed: int) -> None:
    """Draw the last nn.Linear afresh on CPU under `seed`, whatever the device.

    "default": PyTorch's nn.Linear init. "normal": weights N(0, 0.01^2) and bias 0, the head E2EGI's client
    puts on its backbone (zhaohuali/E2EGI `training.py`, `--outlayer-state normal`, its default).
    """
    weight_name, _ = classifier_names(model)
    head = model.get_submodule(weight_name.rpartition(".")[0]) if "." in weight_name else model
    assert isinstance(head, nn.Linear)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = nn.Linear(head.in_features, head.out_features, bias=head.bias is not None)
        if head_init_of(kind) == "normal":
            nn.init.normal_(fresh.weight, mean=0.0, std=0.01)
            if fresh.bias is not None:
                nn.init.zeros_(fresh.bias)
    with torch.no_grad():
        head.weight.copy_(fresh.weight)
        if head.bias is not None:
            head.bias.copy_(fresh.bias)


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
from bench.models import convnet, lenet, resnet, timm_models, user_file  # noqa: E402,F401
