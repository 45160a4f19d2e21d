"""The mean image of a dataset at a given size: the prior of an attacker who knows the data distribution.

It is the per-pixel mean of what the benchmark's sampler serves: a class drawn uniformly, an item drawn
uniformly within it, a crop drawn by a crop seed (for datasets that crop). It is estimated from a fixed,
seeded draw of `DRAWS` samples, the same for every dataset and size (the per-pixel standard error of the
estimate is below 0.01 for pixels of standard deviation 0.4). The draw never involves a case's seed.

The prior floor (bench.floors) asks for the mean without the clients' own items (`exclude`): an attacker
who ignores the gradient knows the data distribution, not the client's images, and on a small set the
client's image is a large share of the mean (on embedded-detail 16 of 17 classes hold one image, 5.5-7%
of the whole mean). The draw is then the same procedure over the items left: a class whose items are all
excluded is no longer drawn. Whole-dataset means are cached in memory and on disk
(`$BENCH_CACHE/means/`), keyed by what they depend on; means with exclusions (one per case) in memory.

Example:
    >>> mean_image("embedded", None, 32).shape
    torch.Size([3, 32, 32])
    >>> mean_image("embedded", None, 32, exclude=frozenset({3}))  # without item 3
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from bench.data import ImageSource, open_dataset
from bench.files import default_cache_dir, read_tensors, write_tensors

DRAWS = 2048
DRAW_SEED = 0x6D65616E  # "mean": a stream of its own, unrelated to any case's seed
PROCEDURE_VERSION = 1  # bump when the estimate changes, so cached means are not reused


def sample_mean(
    dataset: ImageSource, size: int, draws: int = DRAWS, exclude: frozenset[int] = frozenset()
) -> torch.Tensor | None:
    """C x size x size: the mean of `draws` seeded samples (class uniform, then item and crop uniform) over
    the items not in `exclude`; None when `exclude` leaves no item."""
    rng = np.random.default_rng(DRAW_SEED)
    labels = np.asarray(dataset.labels)
    kept = np.ones(len(labels), dtype=bool)
    kept[np.fromiter(exclude, dtype=np.int64, count=len(exclude))] = False
    classes = np.unique(labels[kept])  # with nothing excluded: every class, the same draw as ever
    if len(classes) == 0:
        return None
    pools = {int(c): np.flatnonzero((labels == c) & kept) for c in classes}
    total = torch.zeros((dataset.channels, size, size), dtype=torch.float64)
    for _ in range(draws):
        pool = pools[int(rng.choice(classes))]
        item, crop_seed = int(rng.choice(pool)), int(rng.integers(0, 2**31 - 1))
        total += dataset.load(item, size, crop_seed).double()
    return (total / draws).float()


def _cache_key(name: str, data_path: str | None, dataset: ImageSource, size: int) -> str:
    labels = np.ascontiguousarray(np.asarray(dataset.labels, dtype=np.int64))
    content = {
        "procedure": PROCEDURE_VERSION,
        "dataset": name,
        "data_path": None if data_path is None else str(Path(data_path).expanduser().resolve()),
        "labels": hashlib.sha256(labels.tobytes()).hexdigest(),
        "channels": dataset.channels,
        "size": size,
        "draws": DRAWS,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


@functools.lru_cache(maxsize=16)
def mean_image(name: str, data_path: str | None, size: int, exclude: frozenset[int] = frozenset()) -> torch.Tensor | None:
    """The mean image of dataset `name` (local copy `data_path`) at `size` px, pixel space [0, 1], over its
    items not in `exclude` (None when that leaves no item).

    The whole dataset's mean is read from the disk cache when present; otherwise estimated (seconds at
    32 px, about a minute at 224 px on a CPU core for a dataset read from JPEG files) and cached. The
    returned tensor is shared: do not modify it.
    """
    dataset = open_dataset(name, data_path)
    if exclude:
        return sample_mean(dataset, size, exclude=exclude)
    path = default_cache_dir() / "means" / f"{_cache_key(name, data_path, dataset, size)}.safetensors"
    cached = read_tensors(path)
    if cached is not None and "mean" in cached:
        return cached["mean"]
    mean = sample_mean(dataset, size)
    write_tensors(path, {"mean": mean})
    return mean
