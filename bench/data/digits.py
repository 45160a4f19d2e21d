"""scikit-learn's handwritten digits (`sklearn.datasets.load_digits`): 1,797 real 8 x 8 digits, 10 classes.

The UCI "Optical Recognition of Handwritten Digits" test set (Alpaydin & Kaynak, 1998), as it ships inside
the scikit-learn wheel, so it needs no download and no `--data-path`. scikit-learn is imported only when
the dataset is opened (it is a declared dependency; the import is deferred only to keep start-up fast),
and a broken installation ends in a one-line error saying what to install. Pixels are the
counts 0..16 of the original 4 x 4 blocks, divided by 16; one grey channel. Samples are the whole digit
upsampled bilinearly to the requested size (16 or 32 px for the LeNet setting), deterministic:
`crop_seed` is ignored. See `datasets/CARD.md`.

Example:
    >>> data = digits(None)
    >>> data.load(0, size=32, crop_seed=0).shape
    torch.Size([1, 32, 32])
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from PIL import Image

from bench.data import DATASETS
from bench.errors import BenchError
from bench.normalization import Normalization

LEVELS = 16.0  # pixel values are counts 0..16
# Mean and standard deviation of all 1,797 x 64 pixels (in [0, 1]), measured once.
NORMALIZATION = Normalization((0.3053,), (0.3760,))


class DigitsDataset:
    """The 1,797 digits as float planes in [0, 1], upsampled on demand."""

    name = "digits"
    channels = 1
    num_classes = 10
    normalization = NORMALIZATION

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.class_names = [str(digit) for digit in range(self.num_classes)]
        self.images = (np.asarray(images, dtype=np.float32) / np.float32(LEVELS)).clip(0.0, 1.0)
        labels = np.asarray(labels, dtype=np.int64)
        labels.setflags(write=False)
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, index: int, size: int, crop_seed: int = 0) -> torch.Tensor:
        """Item `index` as 1 x size x size in [0, 1]: the whole digit, resized bilinearly."""
        if size < 1:
            raise BenchError(f"image size must be at least 1, got {size}")
        plane = Image.fromarray(self.images[index], mode="F")
        if plane.size != (size, size):
            plane = plane.resize((size, size), Image.Resampling.BILINEAR)
        pixels = np.clip(np.asarray(plane, dtype=np.float32), 0.0, 1.0)
        return torch.from_numpy(pixels[None].copy())


@functools.lru_cache(maxsize=1)
def _bundled() -> tuple[np.ndarray, np.ndarray]:
    """The images (N x 8 x 8, counts 0..16) and labels from scikit-learn, read once per process."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise BenchError("dataset 'digits' is read from scikit-learn's wheel: pip install scikit-learn") from None
    bunch = load_digits()
    return bunch.images, bunch.target


@DATASETS.register("digits", description="scikit-learn's 1,797 real 8x8 handwritten digits, upsampled (offline)")
def digits(path: str | None = None) -> DigitsDataset:
    """Open scikit-learn's bundled copy; `path` is not used (the data ship inside the wheel)."""
    if path not in (None, ""):
        raise BenchError("dataset 'digits' ships inside scikit-learn and takes no --data-path")
    return DigitsDataset(*_bundled())
