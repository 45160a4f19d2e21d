"""Client simulation: every client's update on its private batch -> (Case, Secret).

Each of the K clients of a round (bench.update; one by default) draws its own batch, computes its update from
the same pre-round model (FedSGD: the gradient of its loss over the batch, BN in train mode by default;
FedAvg: theta_0 - theta_n after its local steps), applies the defense with its own random draws, and the
Case holds the mean of the K shared updates. Under the exact-BN threat model every client uploads each BN
layer's batch mean and biased variance over its own batch (at theta_0), and the Case holds their mean over
the clients, aggregated like the update (never the statistics of the pooled K*B images).

Example:
    >>> case, secret = simulate(Scenario(model="resnet18", batch_size=8, repetition=0.5))
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch import nn

from bench.case import BatchNormStats, Case, Secret
from bench.client_memory import checkpointed, leak_in_chunks
from bench.data import ImageSource, open_dataset
from bench.defenses import DPSGD, Defense
from bench.distributed.client import distributed_leak
from bench.engine.collective import shard_for
from bench.errors import BenchError
from bench.loss import LossSpec
from bench.models import Architecture, batchnorm_layers, classifier_names, watch_bn_inputs
from bench.per_sample import clipped_sum
from bench.sampler import SampledBatch, repeated_fraction, repetition_rate, sample_batch
from bench.scenario import Scenario
from bench.update import StepGradient, Tensors, functional_state, gradient_step, mean_update, trained_delta


@contextmanager
def record_bn_inputs(model: nn.Module) -> Iterator[dict[str, BatchNormStats]]:
    """Capture, for every BN layer, the mean and biased variance of its input over all but the channel axis."""
    stats: dict[str, BatchNormStats] = {}

    def capture(name: str, x: torch.Tensor) -> None:
        x = x.detach()
        dims = [d for d in range(x.dim()) if d != 1]
        stats[name] = BatchNormStats(x.mean(dims), x.var(dims, unbiased=False))

    with watch_bn_inputs(model, capture):
        yield stats


def leak(
    model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, loss: LossSpec
) -> tuple[dict[str, torch.Tensor], dict[str, BatchNormStats]]:
    """The update the client shares: gradients by parameter name, and BN statistics of the batch.

    The model is used in its current train/eval mode; train-mode BN updates its running statistics, so pass
    a copy when the pre-round state must be kept.
    """
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    with record_bn_inputs(model) as bn_stats:
        value = loss(model(inputs), labels)
    grads = torch.autograd.grad(value, list(params.values()))
    return {n: g.detach() for n, g in zip(params, grads)}, dict(bn_stats)


def load_batch(dataset: ImageSource, batch: SampledBatch, image_size: int) -> torch.Tensor:
    """The sampled items as pixel-space images, B x C x H x W in [0, 1]."""
    images = [dataset.load(int(i), image_size, int(s)) for i, s in zip(batch.items, batch.crop_seeds)]
    return torch.stack(images).float()


def fedsgd_gradient(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss: LossSpec, scenario: Scenario, collective=None
) -> tuple[Tensors, dict[str, BatchNormStats]]:
    """One client's plain gradient and BN statistics, by the memory strategy the scenario asks for.

    With a collective of several ranks the gradient is computed the data-parallel way: each rank runs its
    shard of the batch, BN statistics and gradients are the whole batch's (bench.distributed.client).
    """
    if collective is not None and collective.world_size > 1:
        shard = shard_for(scenario.batch_size, collective)
        return distributed_leak(model, shard.take(inputs), shard.take(targets), loss, shard)
    if scenario.client_memory == "full":
        return leak(model, inputs, targets, loss)
    if scenario.bn_mode == "train" and batchnorm_layers(model):
        with checkpointed(model):
            return leak(model, inputs, targets, loss)
    return leak_in_chunks(model, inputs, targets, loss)


def dp_step(model: nn.Module, constants: Tensors, loss: LossSpec, dp: DPSGD, generator: torch.Generator) -> StepGradient:
    """DP-SGD's step gradient: clipped per-sample gradients, summed, noised, scaled like the client's loss."""

    def step(weights: Tensors, inputs: torch.Tensor, targets: torch.Tensor) -> Tensors:
        total = clipped_sum(model, {n: w.detach() for n, w in weights.items()}, constants, inputs, targets, dp.clip)
        return dp.privatised(total, loss.per_sample_scale(len(inputs)), generator)

    return step


@dataclass
class Share:
    """One client's contribution: the update it sends, the same update undefended, its BN statistics."""

    sent: Tensors
    undefended: Tensors
    bn_stats: dict[str, BatchNormStats]


def client_share(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss: LossSpec, scenario: Scenario,
    generator: torch.Generator, collective=None,
) -> Share:  # fmt: skip
    """What one client shares; `model` holds the pre-round state and is left in an unspecified state."""
    update = scenario.threat.update
    functional = update.kind == "fedavg" or update.defense.per_sample
    weights, constants = functional_state(model) if functional else ({}, {})
    if update.kind == "fedsgd":
        undefended, bn_stats = fedsgd_gradient(model, inputs, targets, loss, scenario, collective)
    else:
        with record_bn_inputs(model) as bn_stats, torch.no_grad():
            model(inputs)  # the statistics at theta_0 over the whole batch
        plain = gradient_step(model, {n: t.clone() for n, t in constants.items()}, loss)
        undefended = {n: d.detach() for n, d in trained_delta(weights, inputs, targets, update, plain).items()}
    trained = undefended
    if update.defense.per_sample:
        private = dp_step(model, constants, loss, update.defense, generator)
        trained = {n: d.detach() for n, d in trained_delta(weights, inputs, targets, update, private).items()}
    return Share(update.defense.applied(trained, generator), undefended, dict(bn_stats))


def client_generator(seed: int, client: int) -> torch.Generator:
    """The CPU generator of client `client`'s random draws (its defense), independent of the device."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, client]).generate_state(1)[0]))


def mean_bn_stats(per_client: list[dict[str, BatchNormStats]]) -> dict[str, BatchNormStats]:
    """The clients' statistics aggregated like their updates: the mean of their means and of their variances."""
    if len(per_client) == 1:
        return per_client[0]
    return {
        name: BatchNormStats(
            torch.stack([c[name].mean for c in per_client]).mean(0), torch.stack([c[name].var for c in per_client]).mean(0)
        )
        for name in per_client[0]
    }


def cosine(a: Tensors, b: Tensors) -> float:
    """Cosine of two updates, every tensor flattened into one vector (float64)."""
    x = torch.cat([a[n].detach().double().flatten().cpu() for n in a])
    y = torch.cat([b[n].detach().double().flatten().cpu() for n in a])
    return float(x @ y / (x.norm() * y.norm()).clamp_min(1e-300))


def simulate(scenario: Scenario, device: torch.device | str = "cpu", collective=None) -> tuple[Case, Secret]:
    """Build the model and every client's batch, compute the shared update, and split it into Case and Secret."""
    from bench.models.prepare import TrainSpec, prepare_model  # models register on import

    update = scenario.threat.update
    if collective is not None and collective.world_size > 1 and update.to_dict():
        raise BenchError(f"a sharded client computes one plain FedSGD gradient; this scenario asks for {update.short()}")
    dataset = open_dataset(scenario.dataset, scenario.data_path)
    num_classes = scenario.num_classes or dataset.num_classes
    batches = [
        sample_batch(
            dataset, scenario.batch_size, scenario.repetition, scenario.seed, num_classes, scenario.label_source, k
        )
        for k in range(update.clients)
    ]
    arch = Architecture(scenario.model, num_classes, dataset.channels, scenario.image_size, dict(scenario.model_options))
    train = TrainSpec(steps=scenario.train_steps) if scenario.train_steps else None
    model_seed = scenario.seed if scenario.model_seed is None else scenario.model_seed
    model = prepare_model(arch, model_seed, weights=scenario.weights, train=train, dataset=dataset).to(device)
    state = {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}

    loss = LossSpec(reduction=scenario.loss_reduction)
    pixels = [load_batch(dataset, batch, scenario.image_size) for batch in batches]
    labels = [torch.as_tensor(batch.labels, dtype=torch.long) for batch in batches]
    shares = []
    for k in range(update.clients):
        if k:
            model.load_state_dict(state)  # every client starts the round from the same model
        model.train(scenario.bn_mode == "train")
        inputs, targets = dataset.normalization.normalize(pixels[k]).to(device), labels[k].to(device)
        generator = client_generator(scenario.seed, k)
        shares.append(client_share(model, inputs, targets, loss, scenario, generator, collective))
    gradients = mean_update([share.sent for share in shares])
    bn_stats = mean_bn_stats([share.bn_stats for share in shares])
    all_labels = torch.cat(labels)

    threat = scenario.threat
    case = Case(
        architecture=arch,
        model_state=state,
        gradients={k: v.cpu() for k, v in gradients.items()},
        threat=threat,
        loss=loss,
        bn_mode=scenario.bn_mode,
        batch_size=scenario.batch_size,
        image_shape=tuple(pixels[0].shape[1:]),
        normalization=dataset.normalization,
        classifier=classifier_names(model),
        bn_layers=tuple(batchnorm_layers(model)),
        labels=all_labels.clone() if threat.labels_known else None,
        bn_stats={k: BatchNormStats(v.mean.cpu(), v.var.cpu()) for k, v in bn_stats.items()}
        if threat.bn_stats == "exact"
        else None,
        # the public part of the data: which dataset (and local copy) the batch was drawn from, for priors
        info={"dataset": scenario.dataset, **({"data_path": scenario.data_path} if scenario.data_path else {})},
    )
    sources = tuple(
        f"{scenario.dataset}#{i}@{s}" for b in batches for i, s in zip(b.items.tolist(), b.crop_seeds.tolist())
    )
    facts = {}
    if update.defense != Defense():
        undefended = mean_update([share.undefended for share in shares])
        facts = {"cosine_to_undefended": cosine(gradients, undefended), **update.privacy(scenario.batch_size)}
    return case, Secret(torch.cat(pixels), all_labels, sources, facts)


def batch_facts(secret: Secret) -> dict:
    """Achieved repetition facts of a batch, for the record (never for the attacker)."""
    labels = secret.labels.numpy()
    return {"repetition_achieved": repetition_rate(labels), "repeated_fraction": repeated_fraction(labels)}
