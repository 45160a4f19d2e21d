"""The user's model and data, checked before any work: everything an audit can learn without attacking.

`inspect_target` opens the image folder, builds the model from its file with its arguments, loads its
weights (which must fit exactly), passes two of the user's images through it (one score per class must come
out) and takes one client step at the smallest batch size in the client's BN mode. `checked_scenarios` then
builds every case's scenario and decodes every image the cases will use. Each failure is one line
(BenchError); nothing is written.

The threat model follows the model: BN statistics "running" (what the server of any deployment holds) when it
has BN layers, "none" without (`--bn-stats` overrides). The client's batches are drawn like a random minibatch
of the user's data: at batch size B they hold U distinct labels, U the expected number of distinct classes in
B draws from the folder's class frequencies (rounded), so the label repetition rate is r = 1 - U/B. The label
floor, what guessing from the class frequencies scores on such batches, is computed here too (bench.audit.guess).

Example:
    >>> target = inspect_target(options)
    >>> target.bn_stats, target.repetition[8]
    ('running', 0.25)
"""

from __future__ import annotations

import copy
import traceback
from dataclasses import dataclass, field

import numpy as np
import torch

from bench.audit.guess import expected_accuracy
from bench.audit.options import MODEL_SEED, AuditOptions
from bench.client import load_batch
from bench.data import ImageSource, open_dataset
from bench.errors import BenchError
from bench.loss import LossSpec
from bench.models import MODELS, Architecture, batchnorm_layers, build_model, classifier_names
from bench.models.weights import check_fits, load_pretrained
from bench.normalization import Normalization
from bench.preflight import check_scenario, check_scores
from bench.sampler import sample_batch
from bench.scenario import Scenario


@dataclass(frozen=True)
class Target:
    """What the audit knows of the user's model and data before it attacks."""

    model: str  # registry name (file:<path>:<Class>)
    description: str
    parameters: int
    bn_layers: int
    classifier: tuple[str, str | None]
    num_classes: int
    class_names: tuple[str, ...]
    class_counts: tuple[int, ...]
    channels: int
    normalization: Normalization
    bn_stats: str
    repetition: dict[int, float] = field(default_factory=dict)
    guess_accuracy: dict[int, float] = field(default_factory=dict)  # the label floor per batch size (bench.audit.guess)

    @property
    def images(self) -> int:
        return sum(self.class_counts)

    def to_dict(self) -> dict:
        return {
            "model": self.model, "description": self.description, "parameters": self.parameters,
            "bn_layers": self.bn_layers, "classifier": list(self.classifier), "num_classes": self.num_classes,
            "class_names": list(self.class_names), "class_counts": list(self.class_counts), "images": self.images,
            "channels": self.channels, "normalization": self.normalization.to_dict(), "bn_stats": self.bn_stats,
            "repetition": {str(b): r for b, r in self.repetition.items()},
            "guess_label_acc": {str(b): a for b, a in self.guess_accuracy.items()},
        }  # fmt: skip


def natural_repetition(frequencies: np.ndarray, batch_size: int) -> float:
    """r = 1 - U/B with U the expected number of distinct classes among B independent draws from the class
    frequencies, rounded (at least 1, at most B)."""
    expected = float(np.sum(1.0 - (1.0 - frequencies) ** batch_size))
    distinct = min(batch_size, max(1, int(round(expected))))
    return 1.0 - distinct / batch_size


def _error_line(err: BaseException) -> str:
    return traceback.format_exception_only(type(err), err)[-1].strip()


def _open_data(options: AuditOptions) -> ImageSource:
    if not options.data.exists():
        raise BenchError(f"--data {options.data} not found; give the folder holding one sub-folder of images per class")
    data = open_dataset(options.dataset_name, str(options.data.resolve()))
    if data.num_classes < 2:
        raise BenchError(
            f"--data {options.data} has one class ({data.class_names[0]}); with one class the loss and every "
            "gradient carry nothing to recover: give one sub-folder per class, at least two"
        )
    return data


def _class_counts(data: ImageSource) -> tuple[int, ...]:
    return tuple(int(c) for c in np.bincount(np.asarray(data.labels), minlength=data.num_classes))


def _sample_images(data: ImageSource, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first image of the first two classes, as the model's input, and their labels."""
    labels = np.asarray(data.labels)
    items = [int(np.flatnonzero(labels == c)[0]) for c in (0, 1)]
    pixels = torch.stack([data.load(i, size, 0) for i in items])
    return data.normalization.normalize(pixels), torch.as_tensor(labels[items], dtype=torch.long)


def _check_forward(model: torch.nn.Module, what: str, inputs: torch.Tensor, num_classes: int) -> None:
    shape = " x ".join(str(s) for s in inputs.shape[1:])
    try:
        with torch.no_grad():
            output = model.eval()(inputs)
    except Exception as err:  # the user's forward: any error means these images do not fit it
        raise BenchError(f"{what} cannot take the images of --data ({shape}, --image-size): {_error_line(err)}") from None
    check_scores(what, output, num_classes)


def _check_client_step(model: torch.nn.Module, what: str, inputs: torch.Tensor, labels: torch.Tensor, options: AuditOptions) -> None:
    """One client step at the smallest batch size in the client's BN mode: the loss must have a gradient."""
    batch = min(options.batch_sizes)
    repeat = (batch + len(inputs) - 1) // len(inputs)
    x, y = inputs.repeat(repeat, 1, 1, 1)[:batch], labels.repeat(repeat)[:batch]
    client = copy.deepcopy(model).train(options.bn_mode == "train")  # train-mode BN changes running statistics
    try:
        LossSpec()(client(x), y).backward()
    except Exception as err:
        raise BenchError(
            f"{what}: the client's step fails at B = {batch} with BN in {options.bn_mode} mode: {_error_line(err)}"
            + ("; try --bn-mode eval or larger batch sizes" if options.bn_mode == "train" and batchnorm_layers(model) else "")
        ) from None
    weight, _ = classifier_names(client)
    if client.get_parameter(weight).grad is None:
        raise BenchError(f"{what}: the loss does not depend on its last nn.Linear layer ({weight}); it is not the classifier")


def _bn_stats(options: AuditOptions, has_bn: bool, what: str) -> str:
    if options.bn_stats == "auto":
        return "running" if has_bn else "none"
    if options.bn_stats != "none" and not has_bn:
        raise BenchError(f"--bn-stats {options.bn_stats}: {what} has no BatchNorm layers, so there are no BN statistics")
    return options.bn_stats


def inspect_target(options: AuditOptions) -> Target:
    """Open the data, build and check the model (see the module docstring); one line on any problem."""
    entry = MODELS.get(options.model_name)  # the file imports and holds the class
    data = _open_data(options)
    what = f"{options.class_name} ({options.model_file})"
    arch = Architecture(options.model_name, data.num_classes, data.channels, options.image_size, options.model_options)
    model = build_model(arch, MODEL_SEED)
    if options.weights is not None:
        check_fits(model, str(options.weights))
        load_pretrained(model, str(options.weights), MODEL_SEED)
    try:
        classifier = classifier_names(model)
    except ValueError:
        raise BenchError(f"{what} has no nn.Linear layer; the client's labels leak through the last one, which the "
                         "benchmark's label methods and attacks read") from None  # fmt: skip
    inputs, labels = _sample_images(data, options.image_size)
    _check_forward(model, what, inputs, data.num_classes)
    _check_client_step(model, what, inputs, labels, options)
    bn = len(batchnorm_layers(model))
    counts = _class_counts(data)
    frequencies = np.asarray(counts, dtype=np.float64) / sum(counts)
    repetition = {b: natural_repetition(frequencies, b) for b in options.batch_sizes}
    return Target(
        model=options.model_name,
        description=entry.description,
        parameters=sum(p.numel() for p in model.parameters()),
        bn_layers=bn,
        classifier=classifier,
        num_classes=data.num_classes,
        class_names=tuple(data.class_names),
        class_counts=counts,
        channels=data.channels,
        normalization=data.normalization,
        bn_stats=_bn_stats(options, bn > 0, what),
        repetition=repetition,
        guess_accuracy={b: expected_accuracy(data, b, r, frequencies) for b, r in repetition.items()},
    )


def checked_scenarios(options: AuditOptions, target: Target) -> dict[tuple[int, str, int], Scenario]:
    """Every case's scenario by (batch size, defense, seed), each checked as `bench run` checks a sweep's,
    and every image the cases will use decoded once."""
    scenarios: dict[tuple[int, str, int], Scenario] = {}
    built: set = set()
    data = open_dataset(options.dataset_name, str(options.data.resolve()))
    for b in options.batch_sizes:
        for defense in options.defenses:
            for seed in options.seeds:
                scenario = options.scenario(b, defense, seed, target.repetition[b], target.bn_stats)
                if seed == options.seeds[0]:
                    check_scenario(scenario, built)
                scenarios[(b, defense, seed)] = scenario
        for seed in options.seeds:  # the batch of a seed is the same under every defense
            batch = sample_batch(data, b, target.repetition[b], seed, target.num_classes)
            load_batch(data, batch, options.image_size)
    return scenarios
