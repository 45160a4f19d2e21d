"""Client simulation: the victim's FedSGD update on its private batch -> (Case, Secret).

The client computes the gradient of its loss (mean cross-entropy by default) over the whole batch, with BN
in train mode by default, and, under the exact-BN threat model, uploads every BN layer's batch mean and
biased variance over the whole batch.

Example:
    >>> case, secret = simulate(Scenario(model="resnet18", batch_size=8, repetition=0.5))
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from bench.case import BatchNormStats, Case, Secret
from bench.client_memory import checkpointed, leak_in_chunks
from bench.data import ImageSource, open_dataset
from bench.loss import LossSpec
from bench.models import Architecture, batchnorm_layers, classifier_names, watch_bn_inputs
from bench.sampler import SampledBatch, repeated_fraction, repetition_rate, sample_batch
from bench.scenario import Scenario


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


def simulate(scenario: Scenario, device: torch.device | str = "cpu", collective=None) -> tuple[Case, Secret]:
    """Build the client's model and batch, compute its leaked update, and split it into Case and Secret.

    With a collective of several ranks the update is computed the data-parallel way: each rank runs its
    shard of the batch, BN statistics and gradients are the whole batch's (bench.distributed.client).
    """
    from bench.models.prepare import TrainSpec, prepare_model  # models register on import

    dataset = open_dataset(scenario.dataset, scenario.data_path)
    num_classes = scenario.num_classes or dataset.num_classes
    batch = sample_batch(
        dataset, scenario.batch_size, scenario.repetition, scenario.seed, num_classes, scenario.label_source
    )
    arch = Architecture(scenario.model, num_classes, dataset.channels, scenario.image_size, dict(scenario.model_options))
    train = TrainSpec(steps=scenario.train_steps) if scenario.train_steps else None
    model_seed = scenario.seed if scenario.model_seed is None else scenario.model_seed
    model = prepare_model(arch, model_seed, weights=scenario.weights, train=train, dataset=dataset).to(device)
    state = {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}

    pixels = load_batch(dataset, batch, scenario.image_size)
    labels = torch.as_tensor(batch.labels, dtype=torch.long)
    loss = LossSpec(reduction=scenario.loss_reduction)
    model.train(scenario.bn_mode == "train")
    inputs, targets = dataset.normalization.normalize(pixels).to(device), labels.to(device)
    if collective is not None and collective.world_size > 1:
        from bench.distributed.client import distributed_leak
        from bench.engine.collective import shard_for

        shard = shard_for(scenario.batch_size, collective)
        gradients, bn_stats = distributed_leak(model, shard.take(inputs), shard.take(targets), loss, shard)
    elif scenario.client_memory == "full":
        gradients, bn_stats = leak(model, inputs, targets, loss)
    elif scenario.bn_mode == "train" and batchnorm_layers(model):
        with checkpointed(model):
            gradients, bn_stats = leak(model, inputs, targets, loss)
    else:
        gradients, bn_stats = leak_in_chunks(model, inputs, targets, loss)

    threat = scenario.threat
    case = Case(
        architecture=arch,
        model_state=state,
        gradients={k: v.cpu() for k, v in gradients.items()},
        threat=threat,
        loss=loss,
        bn_mode=scenario.bn_mode,
        batch_size=scenario.batch_size,
        image_shape=tuple(pixels.shape[1:]),
        normalization=dataset.normalization,
        classifier=classifier_names(model),
        bn_layers=tuple(batchnorm_layers(model)),
        labels=labels.clone() if threat.labels_known else None,
        bn_stats={k: BatchNormStats(v.mean.cpu(), v.var.cpu()) for k, v in bn_stats.items()}
        if threat.bn_stats == "exact"
        else None,
        # the public part of the data: which dataset (and local copy) the batch was drawn from, for priors
        info={"dataset": scenario.dataset, **({"data_path": scenario.data_path} if scenario.data_path else {})},
    )
    sources = tuple(f"{scenario.dataset}#{i}@{s}" for i, s in zip(batch.items.tolist(), batch.crop_seeds.tolist()))
    return case, Secret(pixels, labels, sources)


def batch_facts(secret: Secret) -> dict:
    """Achieved repetition facts of a batch, for the record (never for the attacker)."""
    labels = secret.labels.numpy()
    return {"repetition_achieved": repetition_rate(labels), "repeated_fraction": repeated_fraction(labels)}
