"""What each client shares: local training, a defense, and the mean over the clients of one round.

- FedSGD (local_steps = 1, today's default): the gradient of the client's loss over its B images at theta_0.
- FedAvg (local_steps = n > 1; McMahan et al. 2017, attacked in Geiping et al. 2020, Sec. 5): n SGD steps at
  learning rate `local_lr` on minibatches of `local_batch_size` b (None: all B images each step); the client
  shares delta = theta_0 - theta_n. Order convention: step i trains on images [j b, (j + 1) b) of the
  client's batch with j = i mod (B / b): the batch's own order, no shuffling, E = n b / B local epochs.
- Aggregation: `clients` K clients of B images each, every one with its own data, labels and train-mode BN
  statistics, and every one applying the defense to its own update; the server sees the mean of the K
  shared updates (secure aggregation shows nothing else).
- Defense (bench.defenses): DP-SGD acts in every local step, the others on the update after training.

The whole configuration is public: it sits in the threat model, so the attacker knows it, though never
the defense's random draws. `local_steps`, `local_batch_size` and `local_lr` are the client's settings, not
the attacker's: an attack unrolls the same steps (bench.engine.update).

Example:
    >>> update = ClientUpdate(local_steps=5, local_lr=1e-4, clients=2, defense=parse_defense("prune(0.9)"))
    >>> delta = trained_delta(weights, inputs, labels, update, gradient_step(model, constants, loss))
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, get_args

import torch
from torch import nn
from torch.func import functional_call

from bench.defenses import Defense, defense_from_dict
from bench.errors import BenchError
from bench.loss import LossSpec

Tensors = dict[str, torch.Tensor]
StepGradient = Callable[[Tensors, torch.Tensor, torch.Tensor], Tensors]  # (weights, images, targets) -> gradient
UpdateKind = Literal["fedsgd", "fedavg"]  # a gradient (one local step) or a weight difference (several)
UPDATE_KINDS: tuple[str, ...] = get_args(UpdateKind)


@dataclass(frozen=True)
class ClientUpdate:
    """The public recipe of every client's shared update; the defaults are one client's plain FedSGD gradient.

    local_lr defaults to 1e-4, Geiping et al.'s FedAvg experiment (inversefed `loss_steps`).
    """

    local_steps: int = 1
    local_batch_size: int | None = None
    local_lr: float = 1e-4
    clients: int = 1
    defense: Defense = field(default_factory=Defense)

    def __post_init__(self) -> None:
        counts = (self.local_steps, self.clients, 1 if self.local_batch_size is None else self.local_batch_size)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in counts):
            raise BenchError(
                f"local_steps, clients and local_batch_size must be integers, got {self.local_steps!r}, "
                f"{self.clients!r} and {self.local_batch_size!r}"
            )
        if not isinstance(self.local_lr, (int, float)) or isinstance(self.local_lr, bool):
            raise BenchError(f"local_lr must be a number, got {self.local_lr!r}")
        if self.local_steps < 1 or self.clients < 1:
            raise BenchError(f"local_steps and clients must be at least 1, got {self.local_steps} and {self.clients}")
        if self.local_batch_size is not None and self.local_batch_size < 1:
            raise BenchError(f"local_batch_size must be at least 1, got {self.local_batch_size}")
        if not self.local_lr > 0:
            raise BenchError(f"local_lr must be positive, got {self.local_lr}")

    @property
    def kind(self) -> UpdateKind:
        return "fedsgd" if self.local_steps == 1 else "fedavg"

    def minibatch(self, batch_size: int) -> int:
        """b, the images of one local step."""
        return batch_size if self.kind == "fedsgd" or self.local_batch_size is None else self.local_batch_size

    def refusal(self, batch_size: int, bn_mode: str) -> str | None:
        """Why a client of `batch_size` images in `bn_mode` cannot run this recipe, or None."""
        b = self.minibatch(batch_size)
        if batch_size % b:
            return f"local_batch_size {b} must divide the client's batch of {batch_size}"
        if self.local_steps * b < batch_size:
            return f"{self.local_steps} local steps of {b} images never reach all {batch_size} images of the batch"
        if self.defense.per_sample and bn_mode == "train":
            return (
                f"{self.defense.name} needs per-sample gradients, which train-mode BatchNorm mixes across "
                f"samples; set bn_mode: eval (Opacus likewise refuses BatchNorm)"
            )
        return self.defense.refusal(batch_size)

    def privacy(self, batch_size: int) -> dict[str, float]:
        """The defense's certified budget for this recipe ({} without one)."""
        return self.defense.privacy(batch_size, self.minibatch(batch_size), self.local_steps)

    def to_dict(self) -> dict[str, Any]:
        """Canonical form: only what differs from the default, so older run ids stay unchanged; the local
        batch size and learning rate of FedSGD act on nothing and are left out."""
        data: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            inert = self.kind == "fedsgd" and f.name in ("local_batch_size", "local_lr")
            if value != default and not inert:
                data[f.name] = value.to_dict() if isinstance(value, Defense) else value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ClientUpdate":
        values = dict(data)
        if "defense" in values:
            values["defense"] = defense_from_dict(values["defense"])
        return cls(**values)

    def short(self) -> str:
        parts = []
        if self.kind == "fedavg":
            b = "B" if self.local_batch_size is None else self.local_batch_size
            parts.append(f"FedAvg {self.local_steps} steps of {b}, lr {self.local_lr:g}")
        if self.clients > 1:
            parts.append(f"{self.clients} clients")
        if self.defense != Defense():
            parts.append(self.defense.spec())
        return ", ".join(parts) or "FedSGD"


def functional_state(model: nn.Module) -> tuple[Tensors, Tensors]:
    """Copies of the model's trainable parameters (requiring grad) and of everything else it holds."""
    weights = {n: p.detach().clone().requires_grad_() for n, p in model.named_parameters() if p.requires_grad}
    constants = {n: t.detach().clone() for n, t in model.state_dict().items() if n not in weights}
    return weights, constants


def gradient_step(model: nn.Module, constants: Tensors, loss: LossSpec, create_graph: bool = False) -> StepGradient:
    """The plain step gradient: the client's loss on a minibatch, differentiated w.r.t. the weights.

    Train-mode BN updates the running statistics in `constants` in place; the step never reads them.
    """

    def step(weights: Tensors, inputs: torch.Tensor, targets: torch.Tensor) -> Tensors:
        logits = functional_call(model, {**constants, **weights}, (inputs,))
        grads = torch.autograd.grad(loss(logits, targets), list(weights.values()), create_graph=create_graph)
        return dict(zip(weights, grads))

    return step


def minibatches(batch_size: int, update: ClientUpdate) -> list[slice]:
    """The images of every local step, by the order convention of the module docstring."""
    b = update.minibatch(batch_size)
    return [slice((i % (batch_size // b)) * b, (i % (batch_size // b) + 1) * b) for i in range(update.local_steps)]


def trained_delta(
    weights: Tensors, inputs: torch.Tensor, targets: torch.Tensor, update: ClientUpdate, step: StepGradient
) -> Tensors:
    """theta_0 - theta_n after the update's local steps from `weights` (one step: the gradient itself).

    Differentiable in `inputs` when `step` builds a graph (the attacker's unrolled update)."""
    if update.kind == "fedsgd":
        return step(weights, inputs, targets)
    theta = dict(weights)
    for images in minibatches(len(inputs), update):
        grads = step(theta, inputs[images], targets[images])
        theta = {n: theta[n] - update.local_lr * grads[n] for n in theta}
    return {n: weights[n] - theta[n] for n in weights}


def mean_update(updates: list[Tensors]) -> Tensors:
    """What the server sees of K clients' updates: their mean (one client's update unchanged)."""
    if len(updates) == 1:
        return updates[0]
    return {n: sum(u[n] for u in updates) / len(updates) for n in updates[0]}
