"""ImageNet (or any ImageFolder tree) from a local copy: root/<class folder>/<image>.JPEG|jpg|png.

Classes are the folder names in sorted order, so a full ImageNet-1k train or val tree gives the usual
indices of pretrained models (a subset of folders is relabelled 0..K-1). Images are read lazily; each is
resized on its short side and centre-cropped to size x size (the centred square, resized), so `crop_seed`
is ignored. ImageNet normalisation.

Example:
    >>> data = imagenet("/data/imagenet/train")
    >>> data.load(0, size=224, crop_seed=0).shape
    torch.Size([3, 224, 224])
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from bench.data import DATASETS
from bench.data.transforms import IMAGENET, center_box, crop_resize, local_copy, open_rgb
from bench.errors import BenchError
from bench.normalization import Normalization

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
LAYOUT = "the folder holding one sub-folder of images per class (<path>/<class>/<image>.JPEG or .png)"


class ImageFolderDataset:
    """Sorted class folders of image files; only the file list and labels are read when opened."""

    def __init__(self, name: str, root: Path, normalization: Normalization, channels: int = 3) -> None:
        self.name = name
        self.root = root
        self.normalization = normalization
        self.channels = channels  # 1: images are decoded to grey
        self.class_names: list[str] = []
        files: list[str] = []
        labels: list[int] = []
        for class_dir in sorted((entry for entry in os.scandir(root) if entry.is_dir()), key=lambda e: e.name):
            images = sorted(e.name for e in os.scandir(class_dir.path) if e.name.lower().endswith(IMAGE_SUFFIXES))
            if not images:
                continue
            label = len(self.class_names)
            self.class_names.append(class_dir.name)
            files.extend(os.path.join(class_dir.path, image) for image in images)
            labels.extend([label] * len(images))
        if not files:
            raise BenchError(f"no class folders with images in --data-path {root}; {name!r} expects {LAYOUT}")
        self.num_classes = len(self.class_names)
        self.files = files
        self.labels = np.asarray(labels, dtype=np.int64)
        self.labels.setflags(write=False)

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int, size: int, crop_seed: int = 0) -> torch.Tensor:
        """Item `index` as C x size x size in [0, 1]; deterministic, `crop_seed` is ignored."""
        image = open_rgb(Path(self.files[index]), "L" if self.channels == 1 else "RGB")
        return crop_resize(image, center_box(image.width, image.height), size)


@DATASETS.register("imagenet", description="ImageNet from a local ImageFolder tree (--data-path)")
def imagenet(path: str | None) -> ImageFolderDataset:
    """Open an ImageNet train or val folder laid out as <path>/<wnid>/<image>.JPEG."""
    return ImageFolderDataset("imagenet", local_copy("imagenet", path, LAYOUT), IMAGENET)
