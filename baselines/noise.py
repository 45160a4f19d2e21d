"""The random-start reference: uniform random images and random labels.

Where optimisation attacks start from (about 10 dB PSNR on natural images). It is not a floor: an attacker
who ignores the gradient does far better with a prior image (`bench.floors`: flat grey, the dataset's
mean), and an attack reconstructs only where it beats those.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.attack import Attack, Progress, Reconstruction, register_attack
from bench.case import Case
from bench.threat import Requirements
from bench.update import UPDATE_KINDS


@dataclass(frozen=True)
class NoiseConfig:
    """No parameters: uniform images in [0, 1], labels uniform over the model's classes."""


@register_attack("noise", description="random-start reference (not a floor): uniform random images and labels")
class Noise(Attack):
    Config = NoiseConfig
    flops_metered = True  # no matrix product at all
    requires = Requirements(updates=UPDATE_KINDS, aggregated=True)

    def invert(self, case: Case, budget: int | None, seed: int, progress: Progress | None) -> Reconstruction:
        generator = torch.Generator().manual_seed(seed)
        images = torch.rand((case.num_images, *case.image_shape), generator=generator)
        labels = torch.randint(case.num_classes, (case.num_images,), generator=generator)
        return Reconstruction(images, labels, iterations=0)
