"""CIFAR-10 and CIFAR-100 from the official BINARY archives (never the pickled python version).

A record is label byte(s) then 3072 pixel bytes: the 1024 red values, then green, then blue, each plane
row-major 32 x 32. CIFAR-10 (`cifar-10-batches-bin/data_batch_{1..5}.bin`) has one label byte; CIFAR-100
(`cifar-100-binary/train.bin`) has a coarse then a fine label byte and the fine label (100 classes) is used.
Files are memory-mapped and labels read once. Images are served at 32 px as stored, other sizes by an
antialiased resize of the whole image (deterministic: `crop_seed` is ignored). Normalisation: each
training set's own per-channel mean and standard deviation.

Example:
    >>> data = cifar10("/data")  # the folder holding cifar-10-batches-bin, or that folder itself
    >>> data.load(0, size=32, crop_seed=0).shape
    torch.Size([3, 32, 32])
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.data import DATASETS
from bench.data.transforms import crop_resize, full_box, local_copy
from bench.errors import BenchError
from bench.normalization import Normalization

PIXEL_BYTES = 3 * 32 * 32


@dataclass(frozen=True)
class CifarFormat:
    """What differs between the two binary archives."""

    name: str
    folder: str
    files: tuple[str, ...]
    label_bytes: int
    label_byte: int  # which of the label bytes is the class
    num_classes: int
    names_file: str
    normalization: Normalization

    @property
    def record_bytes(self) -> int:
        return self.label_bytes + PIXEL_BYTES

    def layout(self) -> str:
        files = self.files[0] if len(self.files) == 1 else f"{self.files[0]} ... {self.files[-1]}"
        return f"the extracted binary archive ({self.folder}/ with {files}) or the folder holding it"


# Per-channel statistics of the training images (the values used by Geiping et al.'s inverting gradients).
CIFAR10 = CifarFormat(
    name="cifar10",
    folder="cifar-10-batches-bin",
    files=tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    label_bytes=1,
    label_byte=0,
    num_classes=10,
    names_file="batches.meta.txt",
    normalization=Normalization(
        (0.4914672374725342, 0.4822617471218109, 0.4467701315879822),
        (0.24703224003314972, 0.24348513782024384, 0.26158785820007324),
    ),
)
CIFAR100 = CifarFormat(
    name="cifar100",
    folder="cifar-100-binary",
    files=("train.bin",),
    label_bytes=2,
    label_byte=1,
    num_classes=100,
    names_file="fine_label_names.txt",
    normalization=Normalization(
        (0.5071598291397095, 0.4866936206817627, 0.44120192527770996),
        (0.2673342823982239, 0.2564384639263153, 0.2761504650115967),
    ),
)


class CifarDataset:
    """The training records of a CIFAR binary archive, memory-mapped."""

    channels = 3

    def __init__(self, spec: CifarFormat, folder: Path) -> None:
        self.name = spec.name
        self.spec = spec
        self.folder = folder
        self.num_classes = spec.num_classes
        self.normalization = spec.normalization
        self._records = [self._map(folder / file) for file in spec.files]
        self._starts = np.cumsum([0] + [len(r) for r in self._records])
        labels = np.concatenate([r[:, spec.label_byte] for r in self._records]).astype(np.int64)
        if labels.size and labels.max() >= spec.num_classes:
            raise BenchError(
                f"{folder} has labels up to {labels.max()} but {spec.name} has {spec.num_classes} classes; "
                f"check --data-path"
            )
        labels.setflags(write=False)
        self.labels = labels
        self.class_names = _class_names(folder / spec.names_file, spec.num_classes)

    def _map(self, file: Path) -> np.ndarray:
        size = file.stat().st_size
        if size == 0 or size % self.spec.record_bytes:
            raise BenchError(
                f"{file} is not a {self.spec.name} binary batch (size {size} is not a multiple of "
                f"{self.spec.record_bytes} bytes); set --data-path to {self.spec.layout()}"
            )
        return np.memmap(file, dtype=np.uint8, mode="r", shape=(size // self.spec.record_bytes, self.spec.record_bytes))

    def __len__(self) -> int:
        return int(self._starts[-1])

    def pixels(self, index: int) -> np.ndarray:
        """Item `index` as stored: uint8 3 x 32 x 32."""
        if not 0 <= index < len(self):
            raise IndexError(f"item {index} out of range for {len(self)} {self.name} images")
        part = int(np.searchsorted(self._starts, index, side="right")) - 1
        record = self._records[part][index - self._starts[part]]
        return np.array(record[self.spec.label_bytes :]).reshape(3, 32, 32)

    def load(self, index: int, size: int, crop_seed: int = 0) -> torch.Tensor:
        """Item `index` as 3 x size x size in [0, 1]; deterministic, `crop_seed` is ignored."""
        image = Image.fromarray(np.ascontiguousarray(self.pixels(index).transpose(1, 2, 0)))
        return crop_resize(image, full_box(image), size)


def _class_names(file: Path, count: int) -> list[str]:
    names = [line.strip() for line in file.read_text().splitlines() if line.strip()] if file.is_file() else []
    return names if len(names) == count else [str(label) for label in range(count)]


def _find(spec: CifarFormat, path: str | None) -> Path:
    root = local_copy(spec.name, path, spec.layout())
    for folder in (root, root / spec.folder):
        if all((folder / file).is_file() for file in spec.files):
            return folder
    raise BenchError(f"no {spec.name} binary files in --data-path {root}; expected {spec.layout()}")


@DATASETS.register("cifar10", description="CIFAR-10 training set from the official binary archive (--data-path)")
def cifar10(path: str | None) -> CifarDataset:
    """Open `cifar-10-batches-bin` (the folder itself or its parent)."""
    return CifarDataset(CIFAR10, _find(CIFAR10, path))


@DATASETS.register("cifar100", description="CIFAR-100 training set (fine labels) from the binary archive (--data-path)")
def cifar100(path: str | None) -> CifarDataset:
    """Open `cifar-100-binary` (the folder itself or its parent)."""
    return CifarDataset(CIFAR100, _find(CIFAR100, path))
