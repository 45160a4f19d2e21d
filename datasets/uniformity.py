"""How uniform a dataset's samples are, per class: the numbers behind `embedded-detail` (datasets/CARD.md).

For every class, `samples` seeded samples (item uniform within the class, crop seed drawn) at `size` px:
- grey: PSNR of the flat grey image (0.5), the `prior-grey` floor;
- own colour: PSNR of the sample's own average colour as a flat image, an oracle floor that knows it;
- std: the pixel standard deviation of the sample, and the share of samples with std >= `DETAIL_STD` (what
  a re-cropping rule would have to find: below it, crops look flat at that size).
A class whose mean own-colour PSNR reaches `THRESHOLD_DB` is near-uniform at that size: an attacker who
recovers nothing but the average colour already scores that high on it.

Usage:
    python datasets/uniformity.py                       # embedded, 32 px, 200 samples per class
    python datasets/uniformity.py --dataset digits --size 16
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere: the repo's `bench`

from bench.data import ImageSource, open_dataset  # noqa: E402
from bench.metrics import psnr  # noqa: E402

THRESHOLD_DB = 24.0
DETAIL_STD = 0.08
SEED = 2024


@dataclass(frozen=True)
class ClassUniformity:
    name: str
    grey_db: float
    own_colour_db: float
    std: float
    detailed_share: float

    @property
    def near_uniform(self) -> bool:
        return self.own_colour_db >= THRESHOLD_DB


def class_uniformity(dataset: ImageSource, size: int = 32, samples: int = 200) -> list[ClassUniformity]:
    """One entry per class, in label order (means over `samples` seeded samples of the class)."""
    rng = np.random.default_rng(SEED)
    labels = np.asarray(dataset.labels)
    result = []
    for label, name in enumerate(dataset.class_names):
        pool = np.flatnonzero(labels == label)
        images = torch.stack(
            [dataset.load(int(rng.choice(pool)), size, int(rng.integers(0, 2**31 - 1))) for _ in range(samples)]
        )
        grey = psnr(images, torch.full_like(images, 0.5))
        own = psnr(images, images.mean(dim=(2, 3), keepdim=True).expand_as(images))
        std = images.flatten(1).std(dim=1)
        detailed = (std >= DETAIL_STD).double().mean().item()
        result.append(ClassUniformity(name, grey.mean().item(), own.mean().item(), std.mean().item(), detailed))
    return result


def markdown(rows: list[ClassUniformity]) -> str:
    lines = [
        f"| class | flat grey (dB) | own average colour (dB) | pixel std | std >= {DETAIL_STD} | near-uniform |",
        "|---|---|---|---|---|---|",
    ]
    for row in sorted(rows, key=lambda r: -r.own_colour_db):
        mark = "yes" if row.near_uniform else ""
        lines.append(
            f"| `{row.name}` | {row.grey_db:.1f} | {row.own_colour_db:.1f} | {row.std:.3f} | "
            f"{row.detailed_share:.0%} | {mark} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="embedded")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    print(markdown(class_uniformity(open_dataset(args.dataset), args.size, args.samples)))


if __name__ == "__main__":
    main()
