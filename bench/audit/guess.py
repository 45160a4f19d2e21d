"""The label floor: what an attacker who ignores the update gets right by guessing the labels from the
class frequencies alone.

The guess at batch size B is B x frequency labels of each class, rounded by largest remainder (`prior_guess`).
Its accuracy on the audit's batches is a chance number that varies from case to case, so a label method is
compared with its expectation (`expected_accuracy`): the mean count-aware accuracy of the guess over
`DRAWS` batches drawn exactly as the audit's cases are (same sampler, size and repetition rate; seeds of
their own, none of them an audit case), a Monte Carlo estimate whose standard error is below 0.016.

Example:
    >>> prior_guess(np.array([0.5, 0.3, 0.2]), 4)
    tensor([0, 0, 1, 2])
"""

from __future__ import annotations

import numpy as np
import torch

from bench.data import ImageSource
from bench.metrics import label_scores
from bench.sampler import sample_batch

DRAWS = 1000
FIRST_SEED = 1_000_000  # far above any audit's case seeds


def prior_guess(frequencies: np.ndarray, batch_size: int) -> torch.Tensor:
    """B x frequency labels of each class, rounded by largest remainder (ties to the lower class)."""
    quotas = np.asarray(frequencies, dtype=np.float64) * batch_size
    counts = np.floor(quotas).astype(np.int64)
    order = np.argsort(-(quotas - counts), kind="stable")
    counts[order[: batch_size - int(counts.sum())]] += 1
    return torch.as_tensor(np.repeat(np.arange(len(counts)), counts), dtype=torch.int64)


def expected_accuracy(data: ImageSource, batch_size: int, repetition: float, frequencies: np.ndarray) -> float:
    """The guess's mean accuracy over DRAWS batches drawn as the audit draws its cases (module docstring)."""
    guess = prior_guess(frequencies, batch_size)
    total = 0.0
    for draw in range(DRAWS):
        batch = sample_batch(data, batch_size, repetition, FIRST_SEED + draw, data.num_classes)
        total += label_scores(torch.as_tensor(batch.labels), guess).label_acc
    return total / DRAWS
