"""Defenses a client applies before it shares its update (docs: ALGORITHMS.md, "Defenses and federated updates").

Each defense is a frozen dataclass registered under a short name. Its fields are its public parameters
(the threat model gives them to the attacker); its random draws come from the client's own generator and
are never shown. Two kinds:
- per-sample (DP-SGD): changes how each local step's gradient is computed (see bench.client);
- on the shared update (noise, pruning, quantisation): transforms the update after local training.

In a sweep a defense is written `name` or `name(value, key=value)`; positional values fill the fields in
the order they are declared:

    defenses: [none, "dp(clip=1, sigma=0.5)", "prune(0.9)", "quantize(bits=4)", half, sign, "noise(0.01)"]

Example:
    >>> parse_defense("prune(0.9)")
    Prune(ratio=0.9)
"""

from __future__ import annotations

import ast
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch

from bench.errors import BenchError
from bench.privacy import epsilon, steps_per_image
from bench.registry import Registry

Tensors = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Defense:
    """The base: shares the update as it is ("none")."""

    name: ClassVar[str] = "none"
    per_sample: ClassVar[bool] = False  # acts inside every local step, on per-sample gradients

    def applied(self, update: Tensors, generator: torch.Generator) -> Tensors:
        """The update as the client shares it."""
        return update

    def privacy(self, batch_size: int, local_batch_size: int, local_steps: int) -> dict[str, float]:
        """The privacy budget the defense certifies for one client's update ({} when it certifies none): a
        batch of `batch_size` images trained on in `local_steps` steps of `local_batch_size`."""
        return {}

    def refusal(self, batch_size: int) -> str | None:
        """Why a client batch of `batch_size` images cannot be defended so, or None."""
        return None

    def replayed(self, update: Tensors) -> Tensors:
        """What an attacker reproduces of the defense on one dummy client's update before the clients' updates
        are averaged: the defense itself where it is a public rule without random draws that gradients pass
        (pruning), else nothing (noise and DP draws are unknown; quantisation and sign pass no gradient)."""
        return update

    @property
    def zeros_visible(self) -> bool:
        """The shared update's zeros mark the entries the defense removed, so an attacker matches only the
        others (bench.engine.update.visible_mask)."""
        return False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **dataclasses.asdict(self)}

    def spec(self) -> str:
        """The sweep syntax for this defense, parameters at their defaults left out: "dp(clip=1, sigma=0.5)"."""
        values = ", ".join(
            f"{f.name}={getattr(self, f.name):g}"
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != f.default
        )
        return f"{self.name}({values})" if values else self.name


DEFENSES: Registry[type[Defense]] = Registry("defense")


def register_defense(name: str, description: str) -> Callable[[type[Defense]], type[Defense]]:
    def add(cls: type[Defense]) -> type[Defense]:
        cls.name = name
        DEFENSES.add(name, cls, description)
        return cls

    return add


register_defense("none", "the update as computed")(Defense)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise BenchError(message)


@register_defense("dp", "DP-SGD (Abadi et al. 2016): per-sample clipping to C, Gaussian noise sigma*C, then the mean")
@dataclass(frozen=True)
class DPSGD(Defense):
    """Every local step: per-sample gradients clipped to norm `clip`, summed, N(0, sigma^2 clip^2 I) added,
    scaled as the client's loss scales a sum of per-sample losses (1/b for the mean).

    Accounting (bench.privacy, dp-accounting's RDP accountant): per round the client's batch of B images
    is sampled from its data at q = B / data_size and each image meets m = ceil(n b / B) of the n noisy
    local steps of b images; the rounds compose. The default of one round is the budget of the attacked
    update alone; data_size defaults to CIFAR-10's 50,000 training images.
    """

    per_sample: ClassVar[bool] = True
    clip: float
    sigma: float
    delta: float = 1e-5
    data_size: int = 50_000
    rounds: int = 1

    def __post_init__(self) -> None:
        _require(self.clip > 0 and self.sigma >= 0, f"dp needs clip > 0 and sigma >= 0, got {self.spec()}")
        _require(0 < self.delta < 1 and self.data_size >= 1 and self.rounds >= 1, f"dp needs 0 < delta < 1, data_size >= 1 and rounds >= 1, got {self.spec()}")

    def privatised(self, clipped_sum: Tensors, scale: float, generator: torch.Generator) -> Tensors:
        """(sum of clipped per-sample gradients + N(0, sigma^2 C^2 I)) x scale."""
        std = self.sigma * self.clip
        return {n: (s + std * torch.randn(s.shape, generator=generator).to(s)) * scale for n, s in clipped_sum.items()}

    def refusal(self, batch_size: int) -> str | None:
        if batch_size > self.data_size:
            return f"{self.spec()}: a client batch of {batch_size} images cannot come from data_size {self.data_size}"
        return None

    def privacy(self, batch_size: int, local_batch_size: int, local_steps: int) -> dict[str, float]:
        m = steps_per_image(batch_size, local_batch_size, local_steps)
        spent = epsilon(self.sigma, batch_size / self.data_size, m, self.rounds, self.delta)
        return {"epsilon": spent, "delta": self.delta}


@register_defense("noise", "additive Gaussian noise N(0, std^2) on every entry, no clipping (DLG's defense)")
@dataclass(frozen=True)
class GaussianNoise(Defense):
    std: float

    def __post_init__(self) -> None:
        _require(self.std >= 0, f"noise needs std >= 0, got {self.spec()}")

    def applied(self, update: Tensors, generator: torch.Generator) -> Tensors:
        if self.std == 0:
            return update  # adding zeros would still turn -0.0 into +0.0
        return {n: g + self.std * torch.randn(g.shape, generator=generator).to(g) for n, g in update.items()}


@register_defense("prune", "gradient pruning: per tensor, zero the fraction `ratio` of entries smallest in magnitude")
@dataclass(frozen=True)
class Prune(Defense):
    """floor(ratio x n) entries of every n-entry tensor are zeroed (DLG, Sec. 6); the attacker sees the zeros."""

    ratio: float

    def __post_init__(self) -> None:
        _require(0 <= self.ratio < 1, f"prune needs 0 <= ratio < 1, got {self.spec()}")

    @property
    def zeros_visible(self) -> bool:
        return self.ratio > 0

    def applied(self, update: Tensors, generator: torch.Generator) -> Tensors:
        return self.replayed(update)

    def replayed(self, update: Tensors) -> Tensors:
        """The same rule on the dummy's own magnitudes: differentiable almost everywhere (mask times value)."""
        return {n: self._pruned(g) for n, g in update.items()}

    def _pruned(self, g: torch.Tensor) -> torch.Tensor:
        count = math.floor(self.ratio * g.numel() + 1e-9)  # the tolerance keeps 0.29 x 100 at 29
        if count == 0:
            return g
        flat = g.flatten().clone()
        flat[torch.topk(flat.abs(), count, largest=False).indices] = 0
        return flat.view_as(g)


@register_defense("half", "half-precision transmission: every entry rounded to float16")
@dataclass(frozen=True)
class Half(Defense):
    def applied(self, update: Tensors, generator: torch.Generator) -> Tensors:
        return {n: g.half().to(g.dtype) for n, g in update.items()}


@register_defense("quantize", "k-bit uniform quantisation per tensor: 2^k levels from its minimum to its maximum")
@dataclass(frozen=True)
class Quantize(Defense):
    """Each entry is rounded to the nearest of 2^bits evenly spaced levels spanning its tensor's range."""

    bits: int

    def __post_init__(self) -> None:
        _require(1 <= self.bits <= 16, f"quantize needs 1 <= bits <= 16, got {self.spec()}")

    def applied(self, update: Tensors, generator: torch.Generator) -> Tensors:
        return {n: self._quantized(g) for n, g in update.items()}

    def _quantized(self, g: torch.Tensor) -> torch.Tensor:
        low, high = g.min(), g.max()
        if high == low:
            return g
        step = (high - low) / (2**self.bits - 1)
        return low + torch.round((g - low) / step) * step


@register_defense("sign", "signSGD: only the sign of every entry")
@dataclass(frozen=True)
class Sign(Defense):
    def applied(self, update: Tensors, generator: torch.Generator) -> Tensors:
        return {n: torch.sign(g) for n, g in update.items()}


# ---- parsing -------------------------------------------------------------------------------------------

SYNTAX = "write a defense as name or name(value, key=value), e.g. prune(0.9) or dp(clip=1, sigma=0.5)"


def _literal(node: ast.AST, text: str) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise BenchError(f"defense {text!r}: parameters must be numbers; {SYNTAX}") from None


def _checked(cls: type[Defense], values: dict[str, Any], text: str) -> Defense:
    """An instance of `cls` from `values`, or one line naming what is wrong."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        takes = ", ".join(fields) or "no parameters"
        raise BenchError(f"defense {text!r}: {cls.name} has no parameter {', '.join(unknown)}; it takes {takes}")
    missing = [n for n, f in fields.items() if n not in values and f.default is dataclasses.MISSING]
    if missing:
        raise BenchError(f"defense {text!r}: {cls.name} needs {', '.join(missing)}")
    for name, value in values.items():
        integer = fields[name].type == "int"
        if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
            raise BenchError(f"defense {text!r}: {name} must be {'an integer' if integer else 'a number'}, got {value!r}")
        values[name] = value if integer else float(value)
    return cls(**values)


def parse_defense(text: str) -> Defense:
    """A defense from its sweep syntax (`prune(0.9)`, `dp(clip=1, sigma=0.5)`, `sign`); one-line errors."""
    try:
        node = ast.parse(str(text).strip(), mode="eval").body
    except SyntaxError:
        raise BenchError(f"defense {text!r}: {SYNTAX}") from None
    if isinstance(node, ast.Name):
        name, args, keywords = node.id, [], []
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and all(k.arg for k in node.keywords):
        name, args, keywords = node.func.id, node.args, node.keywords
    else:
        raise BenchError(f"defense {text!r}: {SYNTAX}")
    cls = DEFENSES.get(name).obj
    names = [f.name for f in dataclasses.fields(cls)]
    if len(args) > len(names):
        takes = f"at most {len(names)} values ({', '.join(names)})" if names else "no parameters"
        raise BenchError(f"defense {text!r}: {name} takes {takes}")
    values = {n: _literal(a, text) for n, a in zip(names, args)}
    for keyword in keywords:
        if keyword.arg in values:
            raise BenchError(f"defense {text!r}: {keyword.arg} is given twice")
        values[keyword.arg] = _literal(keyword.value, text)
    return _checked(cls, values, text)


def defense_from_dict(data: dict[str, Any]) -> Defense:
    """The inverse of `Defense.to_dict` (case files, records)."""
    values = dict(data)
    name = values.pop("name", "none")
    return _checked(DEFENSES.get(name).obj, values, name)
