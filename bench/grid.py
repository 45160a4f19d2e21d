"""Image grids (pillow only): each true image above the reconstruction assigned to it, written atomically.

Layout of one grid: images in chunks of `columns`; each chunk is a row of true images with a row of their
one-to-one reconstructions beneath (a grey tile where an image has no partner). Tiles are H x W pixels
(times `scale`), separated by `pad` white pixels, with one extra `pad` between chunks, so

    width  = pad + columns * (W * scale + pad)
    height = pad + 2 * chunks * (H * scale + pad) + (chunks - 1) * pad

A run's grid lies next to its record, `run_grid_path(runs_dir, run_id)` = `<runs_dir>/<run_id>.png`;
`save_attack_grid` stacks several runs' grids (one attack across scenarios) into one image.

Example:
    >>> save_grid(rec.images, secret.images, scores.per_image["assignment"], Path("grid.png"))
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from bench.errors import BenchError
from bench.files import write_atomic

GRID_FOLDER = "grids"  # the leaderboard's per-attack grids, inside its plots folder
BACKGROUND = (255, 255, 255)
MISSING = (160, 160, 160)
CAPTION_HEIGHT = 14


def run_grid_path(runs_dir: Path, run_id: str) -> Path:
    """Where the grid of one run is kept: next to its record `<run_id>.json`."""
    return Path(runs_dir) / f"{run_id}.png"


def save_png(image: Image.Image, path: Path) -> Path:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    write_atomic(Path(path), buffer.getvalue())
    return Path(path)


def _pixels(images: Any, name: str) -> np.ndarray:
    """(N, C, H, W) in [0, 1] (torch or numpy, C = 1 or 3) -> (N, H, W, 3) uint8."""
    if hasattr(images, "detach"):
        images = images.detach().cpu().float().numpy()
    array = np.asarray(images, dtype=np.float64)
    if array.ndim != 4 or array.shape[1] not in (1, 3):
        raise BenchError(f"{name} must have shape (N, 1 or 3, H, W), got {tuple(array.shape)}")
    array = np.nan_to_num(array, nan=0.0)
    array = np.rint(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8).transpose(0, 2, 3, 1)
    return np.repeat(array, 3, axis=3) if array.shape[3] == 1 else array


def grid_image(
    reconstruction_pixels: Any,
    truth_pixels: Any,
    assignment: Sequence[int | None],
    columns: int | None = None,
    pad: int = 2,
    scale: int = 1,
) -> Image.Image:
    """The grid as an RGB image; `assignment[i]` is the reconstruction paired with true image i (or None)."""
    rec, true = _pixels(reconstruction_pixels, "reconstruction"), _pixels(truth_pixels, "truth")
    n, h, w = true.shape[:3]
    if rec.shape[1:3] != (h, w):
        raise BenchError(f"reconstructions are {rec.shape[1]}x{rec.shape[2]}, true images {h}x{w}")
    if len(assignment) != n:
        raise BenchError(f"the assignment pairs {len(assignment)} images, the batch has {n}")
    if any(j is not None and not 0 <= j < len(rec) for j in assignment):
        raise BenchError(f"the assignment names a reconstruction outside 0..{len(rec) - 1}")
    if n == 0:
        raise BenchError("no images to put in a grid")
    if scale < 1 or pad < 0:
        raise BenchError(f"grid scale must be >= 1 and pad >= 0, got {scale} and {pad}")
    columns = min(n, columns or 16)
    chunks = math.ceil(n / columns)
    th, tw = h * scale, w * scale
    size = (pad + columns * (tw + pad), pad + 2 * chunks * (th + pad) + (chunks - 1) * pad)
    canvas = Image.new("RGB", size, BACKGROUND)

    def tile(pixels: np.ndarray | None) -> Image.Image:
        if pixels is None:
            return Image.new("RGB", (tw, th), MISSING)
        return Image.fromarray(pixels, "RGB").resize((tw, th), Image.Resampling.NEAREST)

    for i, j in enumerate(assignment):
        chunk, col = divmod(i, columns)
        x = pad + col * (tw + pad)
        y = pad + chunk * (2 * (th + pad) + pad)
        canvas.paste(tile(true[i]), (x, y))
        canvas.paste(tile(None if j is None else rec[j]), (x, y + th + pad))
    return canvas


def save_grid(
    reconstruction_pixels: Any,
    truth_pixels: Any,
    assignment: Sequence[int | None],
    path: Path,
    columns: int | None = None,
    scale: int = 1,
) -> Path:
    """Write the grid as a PNG at `path` atomically; see the module docstring for the layout."""
    return save_png(grid_image(reconstruction_pixels, truth_pixels, assignment, columns, scale=scale), path)


def stack_images(images: Sequence[Image.Image], captions: Sequence[str] | None = None, pad: int = 2) -> Image.Image:
    """Images one above the other, left-aligned, each under its caption (a CAPTION_HEIGHT band) if given;
    as wide as the widest image or caption."""
    if not images:
        raise BenchError("no grids to tile")
    if captions is not None and len(captions) != len(images):
        raise BenchError(f"{len(captions)} captions for {len(images)} grids")
    band = CAPTION_HEIGHT if captions is not None else 0
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_width = max((math.ceil(measure.textlength(c)) + 4 for c in captions), default=0) if captions else 0
    width = max(text_width, *(im.width for im in images))  # a caption is never cut off
    canvas = Image.new("RGB", (width, sum(im.height + band for im in images) + pad * (len(images) - 1)), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    y = 0
    for k, im in enumerate(images):
        if captions is not None:
            draw.text((2, y + 1), captions[k], fill=(0, 0, 0))
        canvas.paste(im.convert("RGB"), (0, y + band))
        y += band + im.height + pad
    return canvas


def save_attack_grid(
    grids: Sequence[Path | tuple[Any, Any, Sequence[int | None]]],
    path: Path,
    captions: Sequence[str] | None = None,
) -> Path:
    """One attack's grids stacked into one PNG: each item a per-run grid file or (rec, truth, assignment)."""
    images = []
    for item in grids:
        if isinstance(item, (str, Path)):
            try:
                with Image.open(item) as opened:
                    images.append(opened.convert("RGB"))
            except OSError as err:
                raise BenchError(f"cannot read grid {item}: {err}") from None
        else:
            images.append(grid_image(*item))
    return save_png(stack_images(images, captions), path)
