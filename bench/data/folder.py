"""A user's own images: any ImageFolder tree (<path>/<class>/<image>.png|jpg|jpeg), as `folder` with --data-path.

Classes are the sub-folder names in sorted order (bench.data.imagefolder). The images are grey (one channel)
when every image of the statistics sample below is a grey image file, else RGB. The normalisation is the
data's own unless given:

- `folder`: per-channel mean and standard deviation of the pixels in [0, 1] of a seeded sample of at most
  `STAT_IMAGES` images, each served at `STAT_SIZE` px (the centred square, resized as every image is);
- `folder:<mean>/<std>`, e.g. `folder:0.485,0.456,0.406/0.229,0.224,0.225`: that normalisation (one value
  per channel), as the model was trained with.

Example:
    >>> data = open_dataset("folder", "my_images")
    >>> data.num_classes, data.channels, data.normalization
    (3, 3, Normalization(mean=(0.47, 0.45, 0.40), std=(0.27, 0.26, 0.28)))
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from bench.data import DATASETS
from bench.data.imagefolder import LAYOUT, ImageFolderDataset
from bench.data.transforms import local_copy
from bench.errors import BenchError
from bench.registry import Entry
from bench.normalization import Normalization

NAME = "folder"
STAT_IMAGES = 512
STAT_SIZE = 64
STAT_SEED = 0x666F6C64  # "fold": a stream of its own
MIN_STD = 1e-3  # a channel that never varies is not divided by zero
GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})


def _sample(files: tuple[str, ...]) -> list[str]:
    if len(files) <= STAT_IMAGES:
        return list(files)
    chosen = np.random.default_rng(STAT_SEED).choice(len(files), size=STAT_IMAGES, replace=False)
    return [files[i] for i in sorted(chosen)]


def _is_grey(path: str) -> bool:
    try:
        with Image.open(path) as image:  # reads the header only
            return image.mode in GREY_MODES
    except (UnidentifiedImageError, OSError) as error:
        raise BenchError(f"cannot decode image {path} ({error}); check --data-path") from None


@functools.lru_cache(maxsize=8)
def folder_statistics(root: str, files: tuple[str, ...], labels: tuple[int, ...]) -> tuple[int, Normalization]:
    """(channels, normalisation) of a folder's images, from a seeded sample of them (module docstring)."""
    sample = _sample(files)
    channels = 1 if all(_is_grey(f) for f in sample) else 3
    probe = ImageFolderDataset(NAME, Path(root), Normalization((0.0,) * channels, (1.0,) * channels), channels)
    index = {f: i for i, f in enumerate(probe.files)}
    total = np.zeros(channels)
    squares = np.zeros(channels)
    for f in sample:
        pixels = probe.load(index[f], STAT_SIZE).double().numpy().reshape(channels, -1)
        total += pixels.mean(1)
        squares += (pixels**2).mean(1)
    mean = total / len(sample)
    std = np.sqrt(np.maximum(squares / len(sample) - mean**2, 0.0))
    return channels, Normalization(tuple(round(float(m), 4) for m in mean), tuple(round(max(float(s), MIN_STD), 4) for s in std))


def _scan(path: str | None) -> ImageFolderDataset:
    root = local_copy(NAME, path, LAYOUT)
    return ImageFolderDataset(NAME, root, Normalization((0.0,), (1.0,)))


def open_folder(path: str | None, given: Normalization | None = None, name: str = NAME) -> ImageFolderDataset:
    """The folder's images with its channels and its own (or the `given`) normalisation."""
    scan = _scan(path)
    channels, measured = folder_statistics(str(scan.root), tuple(scan.files), tuple(scan.labels.tolist()))
    normalization = measured if given is None else given
    if len(normalization.mean) != channels:
        raise BenchError(
            f"the normalisation {normalization_text(normalization)} has {len(normalization.mean)} value(s) per "
            f"statistic; the images of {scan.root} have {channels} channel(s)"
        )
    data = ImageFolderDataset(name, scan.root, normalization, channels)
    return data


def normalization_text(normalization: Normalization) -> str:
    """'0.485,0.456,0.406/0.229,0.224,0.225': the form `folder:<mean>/<std>` takes."""
    return ",".join(f"{v:g}" for v in normalization.mean) + "/" + ",".join(f"{v:g}" for v in normalization.std)


def parse_normalization(text: str) -> Normalization:
    """`<mean>/<std>`, comma-separated values per channel; standard deviations must be positive."""
    mean_text, sep, std_text = text.partition("/")
    try:
        mean = tuple(float(v) for v in mean_text.split(","))
        std = tuple(float(v) for v in std_text.split(","))
    except ValueError:
        mean = std = ()
    if not sep or not mean or len(mean) != len(std) or not all(s > 0 for s in std):
        raise BenchError(f"a normalisation is written <mean>/<std>, one value per channel each, std > 0 (e.g. 0.5,0.5,0.5/0.25,0.25,0.25); got {text!r}")
    return Normalization(mean, std)


@DATASETS.register(NAME, description="your own images: one sub-folder per class (--data-path), normalised by their own statistics")
def folder(path: str | None) -> ImageFolderDataset:
    return open_folder(path)


def resolve(rest: str) -> Entry:
    """`folder:<mean>/<std>`: the folder with a given normalisation."""
    given = parse_normalization(rest)
    return Entry(f"{NAME}:{rest}", lambda path: open_folder(path, given, f"{NAME}:{rest}"), "your own images, given normalisation")


DATASETS.add_prefix(NAME, resolve)
