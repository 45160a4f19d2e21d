"""Several seeds optimised side by side, evaluated as one computation.

G independent dummy batches are stacked into one tensor of G x B images. Each seed keeps its own objective:
its own forward pass (train-mode BN normalises with that seed's batch statistics, the BN prior sees that
seed's batch alone), its own parameter gradients and its own gradient distance. `torch.func.vmap` maps one
seed's objective over the seed dimension (`torch.func.functional_call` for the forward, `torch.func.grad`
for the parameter gradients), so one forward and one double backward serve a chunk of seeds (all of them
by default); back-propagating the sum over seeds gives each seed exactly its own image gradient. Adam,
signed steps, the box and the noise act element by element, so one loop over the stack takes the steps
G separate loops would take, while a group-consistency target (the seeds' mean) can be refreshed between
iterations (see `run_loop`).

Memory grows with the seeds evaluated together (activations and the second-order graph of each); `chunk`
bounds it: seeds are evaluated `chunk` at a time, each chunk back-propagated before the next is built.
`chunk=None` chooses: every seed at once on a GPU (halved while a chunk runs out of memory); on a CPU as
many seeds as keep a chunk's input under `CPU_CHUNK_VALUES` values, because CPU kernels slow down per
element once their working set leaves the cache (measured, `tests/bench_attacks.py`: 8 seeds of a width-16
ConvNet at 32 px cost 1.34-1.46x a single seed per seed-iteration at B = 16 all at once, 0.97x in chunks
of 2; in one interleaved run, chosen chunks against seeds in turn: B = 1 0.77x / 1.11x, B = 4 0.85x / 0.96x,
B = 16 (chunks of 2) 1.03x / 0.97x). Candidate comparisons (`seed_losses`: gradient distances
without a second-order graph, MLCO's combination) run one seed after another on a CPU unless
`compare_batched` says otherwise: there batching them never gained more than 10% and cost up to 2x
(CPU seconds for 7 candidates of a width-8 ConvNet, in turn / chunks of 2 / all 7: B = 4 at 16 px 0.042 /
0.083 / 0.038, B = 16 0.10 / 0.16 / 0.13, B = 64 0.39 / 0.59 / 0.64, B = 64 at 32 px 1.28 / 2.53 / 3.68).

Train-mode BN layers are computed from primitive operations for the batched pass (`SynchronisedBatchNorm`
over one process: batch mean, biased two-pass variance, per-channel scale and shift), each seed with its
own batch statistics, exactly the normalisation the client applied. Two reasons: vmap's batching rule for
the fused BN backward gives a wrong second-order image gradient in train mode (pytorch/functorch#534;
`tests/test_engine.py` checks the batched gradient against the sequential one), and the fused layer
updates its running statistics in place, which vmap refuses (and which no train-mode forward reads: the
replacements do not track them). A train-mode BN layer of another type makes the group evaluate its
seeds one after another. Eval-mode BN layers normalise with their running statistics, unchanged.
An objective whose dummy update is unrolled (FedAvg, K aggregated clients; `Objective.plain` false) also
evaluates its seeds one after another, each with the plain `Objective`: the same steps, without vmap.

Example:
    >>> group = SeedGroup(objective, seeds=8)
    >>> result = run_loop(group, Variables(stacked, labels=group.stack(labels)), config, box, None, gen,
    ...                   refresh_consensus=lambda done, images: group.mean(images))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.func import functional_call, grad, vmap

from bench.compute import evaluation
from bench.distributed.sync_bn import SynchronisedBatchNorm, synchronisable
from bench.engine.collective import Shard, Solo
from bench.engine.objective import Evaluation, Objective, stand_in, step_key
from bench.engine.regularizers import capture_bn_inputs
from bench.errors import BenchError

T = TypeVar("T")
CPU_CHUNK_VALUES = 2**17  # input values (seeds x B x C x H x W) per computation on a CPU: 42 images of 32 px


@dataclass
class SeedGroup:
    base: Objective
    seeds: int
    chunk: int | None = None  # seeds per computation (None: chosen at the first evaluation, see above)
    compare_batched: bool | None = None  # seed_losses as one computation (None: on a GPU, not on a CPU)
    shard: Shard = field(init=False)  # the stack, so the loop draws noise for all G x B images

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise BenchError(f"a seed group needs at least one seed, got {self.seeds}")
        check_seed_chunk(self.chunk)
        if self.base.shard.distributed:
            raise BenchError("a group of seeds runs in a single process; use one rank")
        self.shard = Shard.whole(self.seeds * self.base.shard.total)
        # an unrolled dummy update (FedAvg, several clients) evaluates its seeds one after another
        self._swaps = primitive_batchnorm(self.base.model) if self.base.plain else None
        names = {id(p): n for n, p in self.base.model.named_parameters()}
        self._names = [names[id(p)] for p in self.base.params]

    def stack(self, per_seed: torch.Tensor) -> torch.Tensor:
        """One seed's tensor (B x ...) repeated for every seed: G*B x ... (e.g. the labels)."""
        return per_seed.repeat(self.seeds, *([1] * (per_seed.dim() - 1)))

    def split(self, stacked: torch.Tensor) -> list[torch.Tensor]:
        """The stack's seeds, each B x ..."""
        return list(stacked.chunk(self.seeds))

    def mean(self, stacked: torch.Tensor) -> torch.Tensor:
        """The seeds' pixel-wise mean batch (GradInversion's "lazy" consensus), B x ..."""
        return stacked.detach().unflatten(0, (self.seeds, -1)).mean(0)

    def differentiate(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        consensus: torch.Tensor | None,
        leaves: list[torch.Tensor],
    ) -> Evaluation:
        """Every seed's objective, back-propagated into `leaves` chunk by chunk; losses summed over seeds."""

        def restart() -> None:
            for leaf in leaves:
                leaf.grad = None

        def one_seed() -> None:  # what one seed costs alone, for counting FLOPs per seed (bench.compute)
            batch = self.base.shard.total
            x = inputs[:batch].detach().clone().requires_grad_(True)
            self.base.evaluate(x, targets[:batch].detach(), consensus).backward.backward(inputs=[x])

        self._choose_chunk(inputs)
        return evaluation(
            ("seeds", self.seeds, step_key(self.base.flops_key(), inputs, targets, consensus, leaves)),
            _seeds_label(f"gradient step (B={self.base.shard.total})", self.seeds),
            lambda: self._halving_on_oom(lambda: self._differentiate(inputs, targets, consensus, leaves), restart),
            seeds=self.seeds, one_seed=None if self.size == 1 else one_seed, replay=lambda: stand_in(leaves, self.seeds),
        )  # fmt: skip

    def gradient_loss(self, inputs: torch.Tensor, targets: torch.Tensor) -> float:
        """The sum over seeds of their gradient distances."""
        return sum(self.seed_losses(inputs, targets))

    def seed_losses(self, inputs: torch.Tensor, targets: torch.Tensor) -> list[float]:
        """Each seed's gradient distance, in stack order (no second-order graph)."""
        self._choose_chunk(inputs)
        if not self._compares_batched(inputs):  # each seed's comparison is counted on its own
            return [self.base.gradient_loss(x, y) for x, y in zip(self.split(inputs), self.split(targets))]
        batch = self.base.shard.total
        return evaluation(
            ("seeds", self.seeds, "compare", self.base.flops_key(), inputs.shape, targets.shape, targets.dtype),
            _seeds_label(f"comparison (B={batch})", self.seeds),
            lambda: self._halving_on_oom(lambda: self._seed_losses(inputs, targets)),
            seeds=self.seeds, one_seed=lambda: self.base.gradient_loss(inputs[:batch], targets[:batch]),
            replay=lambda: [1.0] * self.seeds,
        )  # fmt: skip

    def _compares_batched(self, inputs: torch.Tensor) -> bool:
        batched = inputs.device.type != "cpu" if self.compare_batched is None else self.compare_batched
        return batched and self.size > 1

    def _choose_chunk(self, inputs: torch.Tensor) -> None:
        if self.chunk is None and inputs.device.type == "cpu":
            self.chunk = max(1, CPU_CHUNK_VALUES * self.seeds // max(1, inputs.numel()))

    def _halving_on_oom(self, compute: Callable[[], T], restart: Callable[[], None] | None = None) -> T:
        """`compute()`, retried in chunks half as large while a chunk runs out of device memory (`chunk`
        records the size that fitted); out of memory with one seed at a time is an error."""
        while True:
            try:
                return compute()
            except torch.OutOfMemoryError:
                if self.size == 1:
                    raise
                if restart is not None:
                    restart()
                self.chunk = max(1, self.size // 2)

    def _seed_losses(self, inputs: torch.Tensor, targets: torch.Tensor) -> list[float]:
        if not self._compares_batched(inputs):
            return [self.base.gradient_loss(x, y) for x, y in zip(self.split(inputs), self.split(targets))]
        losses: list[float] = []
        with torch.no_grad():  # torch.func.grad still differentiates inside; nothing outside keeps a graph
            for rows in self._spans():
                losses += self._batched(inputs[rows], targets[rows], None, create_graph=False)[1].tolist()
        return losses

    @property
    def size(self) -> int:
        """Seeds per computation; 1 evaluates them one after another with the plain objective (also where
        a train-mode BN layer has no primitive form, and for an update other than one client's FedSGD
        gradient: correctness before speed there, the unrolled steps are not mapped over seeds)."""
        return 1 if self._swaps is None else min(self.chunk or self.seeds, self.seeds)

    def _spans(self) -> list[slice]:
        size, batch = self.size, self.base.shard.total
        return [slice(s * batch, min(s + size, self.seeds) * batch) for s in range(0, self.seeds, size)]

    def _differentiate(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        consensus: torch.Tensor | None,
        leaves: list[torch.Tensor],
    ) -> Evaluation:
        losses: list[float] = []
        totals: list[float] = []
        spans = self._spans()
        for index, rows in enumerate(spans):
            if self.size == 1:
                evaluation = self.base.evaluate(inputs[rows], targets[rows], consensus)
                value, chunk_losses, chunk_totals = evaluation.backward, [evaluation.gradient_loss], [evaluation.total]
            else:
                values, grad_losses = self._batched(inputs[rows], targets[rows], consensus, create_graph=True)
                value, chunk_losses, chunk_totals = values.sum(), grad_losses.tolist(), values.detach().tolist()
            # soft labels share one graph (the softmax of the stacked logits) across chunks
            value.backward(inputs=leaves, retain_graph=index < len(spans) - 1)
            losses += chunk_losses
            totals += chunk_totals
        total = sum(totals)
        return Evaluation(backward=torch.tensor(total), gradient_loss=sum(losses), total=total, per_seed=losses)

    def _batched(
        self, inputs: torch.Tensor, targets: torch.Tensor, consensus: torch.Tensor | None, create_graph: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per seed of the rows given: (objective value, gradient distance), each of shape (seeds,)."""
        base, names = self.base, self._names
        params = {n: p.detach() for n, p in zip(names, base.params)}
        keep_bn = create_graph and base.weights.bn > 0 and base.bn_prior is not None

        def client_loss(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor):
            with capture_bn_inputs(base.model) if keep_bn else _nothing() as bn_inputs:
                logits = functional_call(base.model, p, (x,))
            return base.loss(logits, y), dict(bn_inputs)

        def one_seed(x: torch.Tensor, y: torch.Tensor, c: torch.Tensor | None):
            grads, bn_inputs = grad(client_loss, has_aux=True)(params, x, y)
            grads = [grads[n] for n in names]
            if not create_graph:
                distance = base.match(grads)
                return distance, distance
            grad_loss, shared, local = base.terms(grads, bn_inputs, x, c)
            return shared + local, grad_loss

        batch = base.shard.total
        with _swapped(self._swaps):
            return vmap(one_seed, in_dims=(0, 0, None), randomness="different")(
                inputs.unflatten(0, (-1, batch)), targets.unflatten(0, (-1, batch)), consensus
            )


Swap = tuple[nn.Module, str, nn.Module, nn.Module]  # (parent, child name, layer, its replacement)


def primitive_batchnorm(model: nn.Module) -> list[Swap] | None:
    """Replacements for the model's train-mode BN layers computed from primitive operations, sharing their
    parameters and not tracking running statistics; None when a train-mode layer has no such replacement."""
    swaps: list[Swap] = []
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, _BatchNorm) and child.training:
                if not synchronisable(child):
                    return None
                replacement = SynchronisedBatchNorm(child, Solo())
                replacement.track_running_stats = False
                swaps.append((parent, name, child, replacement))
    return swaps


@contextmanager
def _swapped(swaps: list[Swap]) -> Iterator[None]:
    for parent, name, _, replacement in swaps:
        setattr(parent, name, replacement)
    try:
        yield
    finally:
        for parent, name, layer, _ in swaps:
            setattr(parent, name, layer)


def group_or_none(base: Objective, seeds: int, chunk: int | None) -> SeedGroup | None:
    """Seeds evaluated together, or None where they run one after another as separate loops.

    They run apart for one seed, for `chunk=1`, and on a sharded batch (collectives do not run under vmap).
    """
    if seeds == 1 or chunk == 1 or base.shard.distributed:
        return None
    return SeedGroup(base, seeds, chunk)


def check_seed_chunk(chunk: int | None) -> None:
    """A chunk size is None (every seed at once) or at least one seed (an attack config's `seed_chunk`)."""
    if chunk is not None and chunk < 1:
        raise BenchError(f"seed_chunk must be at least 1 (or None for every seed at once), got {chunk}")


@contextmanager
def _nothing() -> Iterator[dict]:
    yield {}


def _seeds_label(kind: str, seeds: int) -> str:
    return kind if seeds == 1 else f"{kind} x {seeds} seeds"
