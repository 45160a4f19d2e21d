"""MNIST training set from the original IDX files (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
each optionally gzipped). One channel; normalisation (0.1307,), (0.3081,).

IDX: two zero bytes, a type byte (0x08 = unsigned byte), the number of dimensions, then each dimension as
a big-endian uint32, then the data. Plain files are memory-mapped, gzipped ones decompressed once. Images
are resized from 28 px with antialiasing (deterministic: `crop_seed` is ignored).

Example:
    >>> data = mnist("/data/MNIST/raw")
    >>> data.load(0, size=32, crop_seed=0).shape
    torch.Size([1, 32, 32])
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.data import DATASETS
from bench.data.transforms import crop_resize, full_box, local_copy
from bench.errors import BenchError
from bench.normalization import Normalization

IMAGES, LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
LAYOUT = f"the folder holding {IMAGES} and {LABELS} (optionally .gz), or its parent with MNIST/raw/ or raw/"
UBYTE = 0x08


def read_idx(file: Path, ndim: int) -> np.ndarray:
    """An unsigned-byte IDX array with `ndim` dimensions (memory-mapped unless gzipped)."""
    gzipped = file.suffix == ".gz"
    if gzipped:
        try:
            data = gzip.decompress(file.read_bytes())
        except (OSError, EOFError) as error:
            raise BenchError(f"{file} is not a valid gzip file ({error}); check --data-path") from None
        header = data[: 4 + 4 * ndim]
    else:
        with file.open("rb") as handle:
            header = handle.read(4 + 4 * ndim)
    if len(header) < 4 + 4 * ndim or header[:2] != b"\0\0" or header[2] != UBYTE or header[3] != ndim:
        raise BenchError(f"{file} is not an unsigned-byte IDX file with {ndim} dimensions; check --data-path")
    shape = tuple(int(d) for d in np.frombuffer(header[4:], dtype=">u4"))
    count, offset = int(np.prod(shape)), len(header)
    size = len(data) if gzipped else file.stat().st_size
    if size - offset != count:
        raise BenchError(f"{file} holds {size - offset} data bytes but its header says {shape}; check --data-path")
    if gzipped:
        return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)
    return np.memmap(file, dtype=np.uint8, mode="r", offset=offset, shape=shape)


class MnistDataset:
    """The 60,000 MNIST training digits (or however many the IDX files hold)."""

    name = "mnist"
    channels = 1
    num_classes = 10
    normalization = Normalization((0.1307,), (0.3081,))

    def __init__(self, images: Path, labels: Path) -> None:
        self.class_names = [str(digit) for digit in range(self.num_classes)]
        self.images = read_idx(images, ndim=3)
        label_array = np.array(read_idx(labels, ndim=1), dtype=np.int64)
        if len(label_array) != len(self.images):
            raise BenchError(f"{labels} has {len(label_array)} labels for {len(self.images)} images; check --data-path")
        if label_array.size and label_array.max() >= self.num_classes:
            raise BenchError(f"{labels} has a label {label_array.max()} outside 0..9; check --data-path")
        label_array.setflags(write=False)
        self.labels = label_array

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, index: int, size: int, crop_seed: int = 0) -> torch.Tensor:
        """Item `index` as 1 x size x size in [0, 1]; deterministic, `crop_seed` is ignored."""
        image = Image.fromarray(np.array(self.images[index]))
        return crop_resize(image, full_box(image), size)


def _find(root: Path, stem: str) -> Path:
    for folder in (root, root / "raw", root / "MNIST" / "raw"):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    raise BenchError(f"no {stem} (or .gz) in --data-path {root}; mnist expects {LAYOUT}")


@DATASETS.register("mnist", description="MNIST training set from the IDX files (--data-path)")
def mnist(path: str | None) -> MnistDataset:
    """Open the IDX files in `path` (or `path/raw`, `path/MNIST/raw`)."""
    root = local_copy("mnist", path, LAYOUT)
    return MnistDataset(_find(root, IMAGES), _find(root, LABELS))
