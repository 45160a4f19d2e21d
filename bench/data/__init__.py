"""Image datasets under one registry. Nothing downloads: local copies come from explicit paths.

A dataset is an `ImageSource`: items with integer labels, served at any square resolution. Opening one
is ``DATASETS.get(name).obj(path)``, or `open_dataset(name, path)`.
"""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np
import torch

from bench.normalization import Normalization
from bench.registry import Registry


class ImageSource(Protocol):
    name: str
    num_classes: int
    channels: int
    normalization: Normalization
    class_names: list[str]
    labels: np.ndarray  # int64, one label per item

    def load(self, index: int, size: int, crop_seed: int) -> torch.Tensor:
        """Item `index` as a float tensor C x size x size in [0, 1]; `crop_seed` picks its crop (if any)."""
        ...


DatasetOpener = Callable[[str | None], ImageSource]
DATASETS: Registry[DatasetOpener] = Registry("dataset")


def open_dataset(name: str, path: str | None = None) -> ImageSource:
    return DATASETS.get(name).obj(path)


# Registration happens at import; these come last because they import DATASETS from this module.
from bench.data import celeba, cifar, digits, embedded, folder, imagefolder, mnist  # noqa: E402,F401
