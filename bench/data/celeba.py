"""CelebA aligned faces from a local copy: `img_align_celeba/` and `identity_CelebA.txt`.

Labels are the celebrity identities, remapped to 0..K-1 in increasing order of identity number (class
name = the original identity). The identity file is read once; images are decoded lazily, centre-cropped
to a square (the short side, 178 px for aligned images) and resized: deterministic, `crop_seed` is
ignored. ImageNet normalisation (faces models are usually ImageNet-initialised).

Example:
    >>> data = celeba("/data/celeba")
    >>> data.load(0, size=64, crop_seed=0).shape
    torch.Size([3, 64, 64])
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from bench.data import DATASETS
from bench.data.transforms import IMAGENET, center_box, crop_resize, local_copy, open_rgb
from bench.errors import BenchError

IMAGE_DIRS = ("img_align_celeba/img_align_celeba", "img_align_celeba", "Img/img_align_celeba")
IDENTITY_FILES = ("identity_CelebA.txt", "Anno/identity_CelebA.txt")
LAYOUT = "the CelebA folder holding img_align_celeba/ and identity_CelebA.txt (or Img/ and Anno/)"


class CelebADataset:
    """Every image listed in the identity file, labelled by identity."""

    name = "celeba"
    channels = 3
    normalization = IMAGENET

    def __init__(self, images: Path, identity_file: Path) -> None:
        self.images = images
        files, identities = _read_identities(identity_file)
        order = np.unique(identities)
        self.files = files
        self.class_names = [str(identity) for identity in order]
        self.num_classes = len(order)
        labels = np.searchsorted(order, identities).astype(np.int64)
        labels.setflags(write=False)
        self.labels = labels

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int, size: int, crop_seed: int = 0) -> torch.Tensor:
        """Item `index` as 3 x size x size in [0, 1]; deterministic, `crop_seed` is ignored."""
        image = open_rgb(self.images / self.files[index])
        return crop_resize(image, center_box(image.width, image.height), size)


def _read_identities(file: Path) -> tuple[list[str], np.ndarray]:
    files: list[str] = []
    identities: list[int] = []
    for number, line in enumerate(file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            raise BenchError(f"{file} line {number} is not '<image> <identity>'; check --data-path")
        files.append(parts[0])
        identities.append(int(parts[1]))
    if not files:
        raise BenchError(f"{file} lists no images; check --data-path")
    return files, np.asarray(identities, dtype=np.int64)


def _first(root: Path, candidates: tuple[str, ...], is_kind: Callable[[Path], bool]) -> Path | None:
    return next((root / c for c in candidates if is_kind(root / c)), None)


@DATASETS.register("celeba", description="CelebA aligned faces labelled by identity (--data-path)")
def celeba(path: str | None) -> CelebADataset:
    """Open a CelebA folder; images are read only when loaded."""
    root = local_copy("celeba", path, LAYOUT)
    images = _first(root, IMAGE_DIRS, Path.is_dir)
    identity_file = _first(root, IDENTITY_FILES, Path.is_file)
    if images is None or identity_file is None:
        missing = "img_align_celeba/" if images is None else "identity_CelebA.txt"
        raise BenchError(f"no {missing} in --data-path {root}; celeba expects {LAYOUT}")
    return CelebADataset(images, identity_file)
