"""The embedded default dataset: real images shipped inside scikit-image and scikit-learn, fully offline.

One class per source photograph (22) plus a class "face" of 100 LFW faces; see `datasets/CARD.md`.
Every sample is a seeded random square crop of its source (side U(0.5, 1) x the short side, uniform
position) resized with antialiased bilinear filtering, so one photograph gives many distinct samples at
any resolution. The crop depends on (index, crop_seed) only: the same seed shows the same content at 32
and 224 px, and the same (index, size, crop_seed) gives bit-identical tensors.

`embedded-detail` is the same set without its six near-uniform classes (`NEAR_UNIFORM`: textures, the
moon, the deep field and a retina detail, whose 32 px samples an attacker matches to within 24.5-29.4 dB
PSNR with their average colour alone; the card gives the measurement). It is the set for image
reconstruction tables; `embedded` keeps all 23 classes, so records made with it stay reproducible. The
view keeps each remaining sample bit for bit (crops are seeded by the item's place in the full set).

Example:
    >>> data = embedded(None)
    >>> data.load(0, size=32, crop_seed=7).shape
    torch.Size([3, 32, 32])
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.data import DATASETS
from bench.data.transforms import IMAGENET, Box, crop_resize, open_rgb, random_box
from bench.errors import BenchError
from bench.normalization import Normalization

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "datasets" / "embedded"
MIN_CROP_SCALE = 0.5
# Classes whose 32 px samples are nearly uniform: their own average colour scores >= 24 dB PSNR on them
# (mean over seeded crops; `datasets/uniformity.py` measures it, a test re-measures this list).
NEAR_UNIFORM: tuple[str, ...] = ("brick", "grass", "gravel", "hubble_deep_field", "microaneurysms", "moon")


class EmbeddedDataset:
    """The images listed in `root/index.json`, decoded once per dataset object and cropped on demand.

    `drop` leaves out whole classes: the others are renumbered 0..K-1 in their order, and every remaining
    sample is the same as in the full set.
    """

    channels = 3
    normalization: Normalization = IMAGENET

    def __init__(self, root: Path, drop: tuple[str, ...] = (), name: str = "embedded") -> None:
        self.root = root
        self.name = name
        index = _read_index(root)
        all_classes = list(index["classes"])
        unknown = sorted(set(drop) - set(all_classes))
        if unknown:
            raise BenchError(f"{root / 'index.json'} has no class(es) {', '.join(unknown)}; rebuild it")
        self.class_names: list[str] = [c for c in all_classes if c not in drop]
        self.num_classes = len(self.class_names)
        items = [(i, item) for i, item in enumerate(index["items"]) if item.get("class") not in drop]
        self.files = [root / item["file"] for _, item in items]
        self._seed_index = [i for i, _ in items]  # the item's place in the full set seeds its crops
        full_labels = np.array([item["label"] for _, item in items], dtype=np.int64)
        if full_labels.min() < 0 or full_labels.max() >= len(all_classes):
            raise BenchError(f"{root / 'index.json'} has labels outside its {len(all_classes)} classes; rebuild it")
        renumber = {all_classes.index(c): k for k, c in enumerate(self.class_names)}
        labels = np.array([renumber[int(label)] for label in full_labels], dtype=np.int64)
        labels.setflags(write=False)
        self.labels = labels
        self._decoded: dict[int, Image.Image] = {}

    def __len__(self) -> int:
        return len(self.files)

    def source(self, index: int) -> Image.Image:
        """Item `index` at its stored resolution, 8-bit RGB (decoded once, then cached)."""
        index = int(index)
        if index not in self._decoded:
            self._decoded[index] = open_rgb(self.files[index])
        return self._decoded[index]

    def crop_box(self, index: int, crop_seed: int) -> Box:
        """(left, top, right, bottom) of the square that `crop_seed` picks from item `index`."""
        source = self.source(index)
        # The item index is part of the seed so that one seed gives unrelated crops of different items.
        seed = np.random.SeedSequence([int(crop_seed) % 2**63, self._seed_index[int(index)]])
        return random_box(source.width, source.height, seed, MIN_CROP_SCALE)

    def load(self, index: int, size: int, crop_seed: int) -> torch.Tensor:
        """Item `index` as 3 x size x size in [0, 1]: the crop picked by `crop_seed`, resized."""
        if not 0 <= index < len(self.files):
            raise IndexError(f"item {index} out of range for {len(self.files)} embedded images")
        return crop_resize(self.source(index), self.crop_box(index, crop_seed), size)


def _read_index(root: Path) -> dict:
    where = "the bundled datasets/embedded" if root == DEFAULT_ROOT else f"--data-path {root}"
    index_file = root / "index.json"
    if not index_file.is_file():
        raise BenchError(
            f"no index.json in {where}; set --data-path to a folder built by datasets/build_embedded.py "
            "(or run that script to rebuild the bundled one)"
        )
    try:
        index = json.loads(index_file.read_text())
        items, classes = index["items"], index["classes"]
        missing = [item["file"] for item in items if not (root / item["file"]).is_file()]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        problem = f"{index_file} is not an embedded-dataset index ({error})"
        raise BenchError(f"{problem}; set --data-path to a folder built by datasets/build_embedded.py") from None
    if not items or not classes:
        raise BenchError(f"{index_file} lists no images; rebuild it with datasets/build_embedded.py")
    if missing:
        raise BenchError(
            f"{len(missing)} images listed in {index_file} are missing (first: {missing[0]}); "
            "rebuild with datasets/build_embedded.py or fix --data-path"
        )
    return index


def _root(path: str | None) -> Path:
    return DEFAULT_ROOT if path is None or str(path) == "" else Path(path).expanduser()


@DATASETS.register("embedded", description="real images bundled from scikit-image/scikit-learn (offline default)")
def embedded(path: str | None = None) -> EmbeddedDataset:
    """Open the embedded set: `path` None means the bundled `datasets/embedded`."""
    return EmbeddedDataset(_root(path))


@DATASETS.register(
    "embedded-detail", description="the embedded set without its 6 near-uniform classes (for image reconstruction)"
)
def embedded_detail(path: str | None = None) -> EmbeddedDataset:
    """The embedded set less `NEAR_UNIFORM`: 17 classes whose samples show structure at 32 px."""
    return EmbeddedDataset(_root(path), drop=NEAR_UNIFORM, name="embedded-detail")
