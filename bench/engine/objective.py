"""The attack objective: weighted gradient distance plus image priors, evaluated on one shard.

`Objective.evaluate` returns the value this process back-propagates (shared terms divided by the world
size, per-image terms as this shard's partial sums; their sum over ranks is the whole-batch objective)
and, for reporting, the gradient loss and the total of the whole batch.

The dummy update follows the Case's public recipe (`update`, bench.update), the one place every attack gets
it from: one client's plain FedSGD gradient is the dummy gradient of the whole dummy batch (the fast path,
also the only one across ranks); FedAvg and K aggregated clients are the unrolled `dummy_update` over
K*B dummy images, each client's B with its own forward passes (so its own train-mode BN statistics), in
gradient units (bench.engine.update). When the defense's zeros are visible (pruning), `visible` masks the
distance to the entries that survived. With K clients the BN prior compares each client's own batch
statistics, averaged over the clients as the clients' uploaded statistics are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
from torch import nn

from bench.case import BatchNormStats
from bench.compute import evaluation
from bench.engine.collective import Shard
from bench.engine.distances import GradientDistance, masked
from bench.engine.dummy_gradient import dummy_gradient
from bench.engine.regularizers import (
    batch_mean,
    bn_statistics,
    capture_bn_inputs,
    group_distance,
    l2_norm,
    total_variation,
)
from bench.engine.update import dummy_update, in_gradient_units, split_state
from bench.errors import BenchError
from bench.loss import LossSpec
from bench.update import ClientUpdate


@dataclass(frozen=True)
class Weights:
    """Weights of the objective's terms; 0 switches a term off."""

    gradient: float = 1.0
    tv: float = 0.0
    l2: float = 0.0
    bn: float = 0.0
    group: float = 0.0
    group_kind: Literal["mse", "l2"] = "mse"


@dataclass
class Evaluation:
    backward: torch.Tensor  # this process's share, to call .backward() on
    gradient_loss: float  # whole batch (for a group of seeds: the sum over seeds)
    total: float  # whole batch (for a group of seeds: the sum over seeds)
    per_seed: list[float] | None = None  # each seed's gradient loss, for a group of seeds

    @property
    def seed_losses(self) -> list[float]:
        return [self.gradient_loss] if self.per_seed is None else self.per_seed


@dataclass
class Objective:
    """One seed's objective on this process's shard of the dummy batch."""

    model: nn.Module
    params: list[torch.Tensor]
    target: list[torch.Tensor]
    loss: LossSpec
    shard: Shard
    distance: GradientDistance = field(default_factory=GradientDistance)
    weights: Weights = field(default_factory=Weights)
    bn_prior: dict[str, BatchNormStats] | None = None
    update: ClientUpdate = field(default_factory=ClientUpdate)  # the clients' public recipe
    visible: list[torch.Tensor] | None = None  # 1 where the shared update kept an entry (pruning), else None
    seeds: ClassVar[int] = 1
    _flops_key: tuple | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.shard.distributed and not self.plain:
            raise BenchError(f"a sharded attack matches one client's FedSGD gradient, not {self.update.short()}")

    @property
    def plain(self) -> bool:
        """One client's FedSGD gradient: the dummy gradient of the whole dummy batch (the fast path)."""
        return self.update.kind == "fedsgd" and self.update.clients == 1

    def dummy(self, inputs: torch.Tensor, targets: torch.Tensor, create_graph: bool = True) -> list[torch.Tensor]:
        """The update the clients would share for the dummy batch, in `params` order."""
        if self.plain:
            return dummy_gradient(self.model, self.params, inputs, targets, self.loss, self.shard, create_graph)
        weights, constants = split_state(self.model, self.params)
        shared = dummy_update(self.model, weights, constants, inputs, targets, self.loss, self.update, create_graph)
        # without a graph, a FedAvg delta would still hang on the weights through theta_0 - theta_n
        return in_gradient_units(shared if create_graph else [g.detach() for g in shared], self.update)

    def match(self, grads: list[torch.Tensor]) -> torch.Tensor:
        """The gradient distance of a dummy update to the shared one (over the visible entries only)."""
        distance = self.distance if self.visible is None else masked(self.distance, self.visible)
        return distance(grads, self.target)

    def flops_key(self) -> tuple:
        """What decides the FLOPs of an evaluation besides its tensors' shapes (bench.compute): the model's
        layers and mode, the parameters differentiated, the shared update's recipe and the loss."""
        if self._flops_key is None:
            shapes = tuple(tuple(p.shape) for p in self.params)
            self._flops_key = (repr(self.model), self.model.training, shapes, repr(self.update), repr(self.loss))
        return self._flops_key

    def gradient_loss(self, inputs: torch.Tensor, targets: torch.Tensor) -> float:
        """The gradient distance alone, without a second-order graph (for candidate comparisons)."""
        key = ("compare", self.flops_key(), inputs.shape, targets.shape, targets.dtype)
        return evaluation(
            key, f"comparison (B={inputs.shape[0]})",
            lambda: float(self.match(self.dummy(inputs, targets, create_graph=False))), replay=lambda: 1.0,
        )  # fmt: skip

    def seed_losses(self, inputs: torch.Tensor, targets: torch.Tensor) -> list[float]:
        return [self.gradient_loss(inputs, targets)]

    def evaluate(
        self, inputs: torch.Tensor, targets: torch.Tensor, consensus: torch.Tensor | None = None
    ) -> Evaluation:
        if self.plain:
            with capture_bn_inputs(self.model) as bn_inputs:
                grads = self.dummy(inputs, targets)
        else:
            grads, bn_inputs = self.dummy(inputs, targets), self._client_bn_inputs(inputs)
        grad_loss, shared, local = self.terms(grads, bn_inputs, inputs, consensus)
        total_local = self.shard.collective.all_sum_values(local.detach())
        return Evaluation(
            backward=shared / self.shard.world_size + local,
            gradient_loss=float(grad_loss.detach()),
            total=float(shared.detach() + total_local),
        )

    def differentiate(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        consensus: torch.Tensor | None,
        leaves: list[torch.Tensor],
    ) -> Evaluation:
        """`evaluate`, back-propagated into the gradients of `leaves` (what the optimisation loop calls)."""

        def compute() -> Evaluation:
            result = self.evaluate(inputs, targets, consensus)
            result.backward.backward(inputs=leaves)
            return result

        return evaluation(
            step_key(self.flops_key(), inputs, targets, consensus, leaves), f"gradient step (B={inputs.shape[0]})",
            compute, replay=lambda: stand_in(leaves, 1),
        )  # fmt: skip

    def _client_bn_inputs(self, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every BN layer's input at theta_0, each client's B images in a forward pass of their own (the
        clients' exact statistics are taken so), client after client along the batch; {} without a BN prior."""
        if not (self.weights.bn > 0 and self.bn_prior is not None):
            return {}
        per_client: dict[str, list[torch.Tensor]] = {}
        for images in inputs.chunk(self.update.clients):
            with capture_bn_inputs(self.model) as seen:
                self.model(images)
            for name, x in seen.items():
                per_client.setdefault(name, []).append(x)
        return {name: torch.cat(xs) for name, xs in per_client.items()}

    def terms(
        self,
        grads: list[torch.Tensor],
        bn_inputs: dict[str, torch.Tensor],
        inputs: torch.Tensor,
        consensus: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(gradient distance, shared terms, this shard's per-image terms) from the dummy gradient.

        Shared terms (the weighted gradient distance and BN prior) are the whole batch's on every rank;
        per-image terms (TV, L2 norm, group) are this shard's partial sums of batch means.
        """
        w = self.weights
        grad_loss = self.match(grads)
        shared = w.gradient * grad_loss
        if w.bn > 0 and self.bn_prior is not None:
            shared = shared + w.bn * bn_statistics(bn_inputs, self.bn_prior, self.shard, self.update.clients)
        local = torch.zeros((), device=inputs.device)
        if w.tv:
            local = local + w.tv * batch_mean(total_variation(inputs), self.shard)
        if w.l2:
            local = local + w.l2 * batch_mean(l2_norm(inputs), self.shard)
        if w.group and consensus is not None:
            local = local + w.group * batch_mean(group_distance(inputs, consensus, w.group_kind), self.shard)
        return grad_loss, shared, local


def step_key(
    flops_key: tuple,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    consensus: torch.Tensor | None,
    leaves: list[torch.Tensor],
) -> tuple:
    """The kind of an evaluation back-propagated into `leaves` (bench.compute)."""
    shapes = tuple(tuple(leaf.shape) for leaf in leaves)
    targets_kind = (targets.shape, targets.dtype, targets.requires_grad)
    return ("step", flops_key, inputs.shape, targets_kind, shapes, consensus is not None)


def stand_in(leaves: list[torch.Tensor], seeds: int) -> Evaluation:
    """What a dry meter returns for a step: zero gradients on the leaves, unit losses (bench.compute)."""
    for leaf in leaves:
        if leaf.grad is None:
            leaf.grad = torch.zeros_like(leaf)
    return Evaluation(torch.zeros(()), float(seeds), float(seeds), None if seeds == 1 else [1.0] * seeds)
