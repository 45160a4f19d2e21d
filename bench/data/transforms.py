"""Helpers shared by the dataset loaders: find a local copy, decode, crop, resize. All deterministic.

Every loader ends in `crop_resize`: an 8-bit PIL image, a square box, an output size -> float32 tensor
C x size x size in [0, 1]. Resizing is Pillow's bilinear filter on float planes, which widens its support
when shrinking (antialiasing) and runs single-threaded in C: a batch loads in the same time however busy
the other cores are (torch's antialiased interpolate slowed ~10x on a loaded 2-core machine).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from bench.errors import BenchError
from bench.normalization import Normalization

IMAGENET = Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
Box = tuple[int, int, int, int]  # left, top, right, bottom (PIL order), right/bottom exclusive


def local_copy(dataset: str, path: str | Path | None, expected: str) -> Path:
    """The folder the user pointed at; a missing path is a one-line error naming the flag and the layout."""
    if path is None or str(path) == "":
        raise BenchError(f"dataset {dataset!r} reads a local copy and nothing downloads: set --data-path to {expected}")
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise BenchError(f"--data-path {folder} is not a folder; dataset {dataset!r} expects {expected}")
    return folder


def open_rgb(path: Path, mode: str = "RGB") -> Image.Image:
    """An image file decoded to 8-bit RGB (grey and palette images are converted), or to `mode` ("L": grey)."""
    try:
        with Image.open(path) as image:
            return image.convert(mode)
    except FileNotFoundError:
        raise BenchError(f"image file {path} is missing; check --data-path") from None
    except (UnidentifiedImageError, OSError) as error:
        raise BenchError(f"cannot decode image {path} ({error}); check --data-path") from None


def center_box(width: int, height: int) -> Box:
    """The largest centred square: what 'resize the short side, then centre-crop' keeps."""
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def random_box(width: int, height: int, seed: np.random.SeedSequence, min_scale: float) -> Box:
    """A square whose side is U(min_scale, 1) x the short side, placed uniformly at random."""
    rng = np.random.default_rng(seed)
    short = min(width, height)
    side = int(np.clip(round(rng.uniform(min_scale, 1.0) * short), 1, short))
    top = int(rng.integers(0, height - side + 1))
    left = int(rng.integers(0, width - side + 1))
    return left, top, left + side, top + side


def crop_resize(image: Image.Image, box: Box, size: int) -> torch.Tensor:
    """Crop `box` of an 8-bit image ('L' or 'RGB') and resize it to C x size x size floats in [0, 1].

    A crop that already has the output size is returned exactly (no resampling).
    """
    if size < 1:
        raise BenchError(f"image size must be at least 1, got {size}")
    planes = [plane.convert("F") for plane in image.crop(box).split()]
    if planes[0].size != (size, size):
        planes = [plane.resize((size, size), Image.Resampling.BILINEAR) for plane in planes]
    pixels = np.stack([np.asarray(plane, dtype=np.float32) for plane in planes]) / np.float32(255.0)
    # The filter's weights are non-negative and sum to one; only float rounding can leave [0, 1]. Clipped
    # in numpy: a torch op here would start a thread pool for a tiny tensor.
    return torch.from_numpy(np.clip(pixels, 0.0, 1.0, out=pixels))


def full_box(image: Image.Image) -> Box:
    return 0, 0, image.width, image.height
