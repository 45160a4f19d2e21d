"""Target batches with an exact label repetition rate r = 1 - U/B (U = distinct labels in the batch).

A request (B, r) uses U = round((1 - r) * B) classes; every chosen class gets one sample and the other
B - U samples are spread over the chosen classes by a seeded draw. A rate no batch of B reaches is refused
rather than recorded as r: a request for repetition (r > 0) that would repeat no label (U = B, e.g. any
r > 0 at B = 1), and one above 1 - 1/B that would leave no label (U = 0, e.g. r = 0.96 at B = 8).

Example:
    >>> batch = sample_batch(dataset, batch_size=8, repetition=0.5, seed=0)
    >>> len(set(batch.labels.tolist()))
    4
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from bench.data import ImageSource
from bench.errors import BenchError

LabelSource = Literal["dataset", "model"]


class InfeasibleBatch(BenchError):
    """A (batch size, repetition, classes) request no batch can meet."""


@dataclass(frozen=True)
class SampledBatch:
    """Which items make up the batch, the label of each sample and the crop seed of each."""

    items: np.ndarray  # dataset item index per sample
    labels: np.ndarray  # int64 label per sample
    crop_seeds: np.ndarray  # per-sample crop seed (distinct views of the same photograph)
    label_source: LabelSource


def distinct_label_count(batch_size: int, repetition: float) -> int:
    """U for a request (B, r); impossible requests are one-line errors."""
    if batch_size < 1:
        raise BenchError(f"batch size must be at least 1, got {batch_size}")
    if not 0.0 <= repetition < 1.0:
        raise BenchError(f"label repetition rate must be in [0, 1), got {repetition}")
    distinct = int(round((1.0 - repetition) * batch_size))
    if distinct < 1:
        raise InfeasibleBatch(
            f"repetition {repetition:g} at batch size {batch_size} leaves no label (U = round({(1.0 - repetition) * batch_size:.3g}) "
            f"= 0; at most r = {1 - 1 / batch_size:.3g}); {achievable_rates(batch_size)}"
        )
    if repetition > 0 and distinct == batch_size:
        raise InfeasibleBatch(
            f"repetition {repetition:g} at batch size {batch_size} repeats no label (it would achieve r = 0); "
            f"{achievable_rates(batch_size)}"
        )
    return distinct


def achievable_rates(batch_size: int) -> str:
    """The repetition rates a batch of `batch_size` can have, 1 - U/B for U = B..1, in words."""
    if batch_size == 1:
        return "a batch of 1 can only have r = 0"
    rates = [1 - u / batch_size for u in range(batch_size, 0, -1)]
    shown = ", ".join(f"{r:.3g}" for r in rates) if batch_size <= 5 else f"0, {rates[1]:.3g}, ..., {rates[-1]:.3g}"
    return f"at B = {batch_size} r can be {shown} (steps of 1/{batch_size})"


def repetition_rate(labels: np.ndarray) -> float:
    """r = 1 - U/B of a label multiset."""
    labels = np.asarray(labels)
    return 1.0 - len(np.unique(labels)) / len(labels)


def repeated_fraction(labels: np.ndarray) -> float:
    """Fraction of samples whose label occurs more than once in the batch."""
    _, inverse, counts = np.unique(np.asarray(labels), return_inverse=True, return_counts=True)
    return float(np.mean(counts[inverse] > 1))


def label_counts(distinct: int, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """Samples per chosen class: one each, the remaining B - U spread by a seeded uniform draw."""
    extra = np.bincount(rng.integers(0, distinct, size=batch_size - distinct), minlength=distinct)
    return 1 + extra


def sample_batch(
    dataset: ImageSource,
    batch_size: int,
    repetition: float,
    seed: int,
    num_classes: int | None = None,
    label_source: LabelSource = "dataset",
    client: int = 0,
) -> SampledBatch:
    """Draw a batch of `batch_size` samples with exactly round((1-r)B) distinct labels.

    label_source "dataset": labels are the images' own classes (restricted to those below `num_classes`).
    label_source "model": labels are drawn from the model's `num_classes` classes independently of the
    image content (valid for untrained models; for requests that need more classes than the dataset has).
    `client` k > 0 draws the batch of the k-th client of a round independently (client 0's is the batch of
    a single client); clients may hold the same item, as a distinct crop.
    """
    distinct = distinct_label_count(batch_size, repetition)
    num_classes = dataset.num_classes if num_classes is None else num_classes
    rng = np.random.default_rng([seed, batch_size, int(round(repetition * 1e6))] + ([client] if client else []))
    labels_of_items = np.asarray(dataset.labels)
    if label_source == "dataset":
        candidates = np.unique(labels_of_items[labels_of_items < num_classes])
        if distinct > len(candidates):
            raise InfeasibleBatch(
                f"batch size {batch_size} at repetition {repetition} needs {distinct} distinct classes but "
                f"{dataset.name} has {len(candidates)}; use --label-source model to draw labels from the "
                f"model's classes independently of image content"
            )
    elif label_source == "model":
        if distinct > num_classes:
            raise InfeasibleBatch(
                f"batch size {batch_size} at repetition {repetition} needs {distinct} distinct classes but the "
                f"model has {num_classes}; lower the batch size or raise --repetition"
            )
        candidates = np.arange(num_classes)
    else:
        raise BenchError(f"label source must be 'dataset' or 'model', got {label_source!r}")

    classes = rng.choice(candidates, size=distinct, replace=False)
    counts = label_counts(distinct, batch_size, rng)
    labels = np.repeat(classes, counts)
    items = np.empty(batch_size, dtype=np.int64)
    start = 0
    for cls, count in zip(classes, counts):
        pool = np.flatnonzero(labels_of_items == cls) if label_source == "dataset" else np.arange(len(labels_of_items))
        # Without replacement while the pool lasts; the embedded set has one photograph per class, so
        # repeated items are distinct crops of it (see crop seeds).
        items[start : start + count] = rng.choice(pool, size=count, replace=count > len(pool))
        start += count
    order = rng.permutation(batch_size)
    crop_seeds = rng.integers(0, 2**31 - 1, size=batch_size)
    return SampledBatch(items[order], labels[order].astype(np.int64), crop_seeds, label_source)
