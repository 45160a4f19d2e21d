"""Prior-only floors: what an attacker who ignores the gradient outputs, scored on every image run.

`prior-grey` returns the flat grey image (0.5 everywhere) for every sample; `prior-mean` returns the
dataset's mean image at the case's size (`bench.data.mean`), formed without the clients' own items: an
attacker who ignores the gradient knows the data distribution, never the client's images (on a small set
the client's image is otherwise a large share of the mean; with no item left the mean is the grey image).
Neither reads the gradient, so neither can recover labels: they return the labels only when the threat
model gives them. An attack reconstructs only where it beats the stronger of the two on the same case; the
runner records its gain over that floor, `psnr_gain` = attack PSNR - max(floor PSNRs), all one-to-one
PSNRs (`floor_metrics`). The `noise` attack (uniform random images) is the attacks' random starting
point, not a floor: it scores far below.

The floors are scoring references, not attacks: the runner forms them with `floor_reconstruction`, which
is told which dataset items the clients hold (never their images). Run as a plain attack on a Case alone
(`create_attack("prior-mean").reconstruct(case)`), prior-mean can only use the whole dataset's mean.

Example:
    >>> floors = floor_psnrs(case, secret)        # {"prior-grey": 21.3, "prior-mean": 22.0}
    >>> floor_metrics(24.5, floors)["psnr_gain"]  # 2.5
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

import torch

from bench.attack import Attack, Progress, Reconstruction, create_attack, register_attack
from bench.case import Case, Secret
from bench.data.mean import mean_image
from bench.metrics import MetricConfig, score
from bench.threat import Requirements
from bench.update import UPDATE_KINDS

FLOORS: tuple[str, ...] = ("prior-grey", "prior-mean")
GREY = 0.5


@dataclass(frozen=True)
class PriorConfig:
    """No parameters: the prior image is fixed by the dataset and the image size."""


class _Prior(Attack):
    """One prior image for every sample; the labels only when the threat model gives them."""

    Config = PriorConfig
    flops_metered = True  # no matrix product at all
    requires = Requirements(updates=UPDATE_KINDS, aggregated=True)  # one image per sample, all K*B

    def invert(self, case: Case, budget: int | None, seed: int, progress: Progress | None) -> Reconstruction:
        return self.prior_reconstruction(case, exclude=frozenset())

    def prior_reconstruction(self, case: Case, exclude: frozenset[int]) -> Reconstruction:
        """The prior image for every sample, its data without the dataset items `exclude`."""
        image = self.prior_image(case, exclude)
        images = image.expand(case.num_images, *case.image_shape).clone()
        labels = None if case.labels is None else case.labels.clone()
        return Reconstruction(images, labels, iterations=0, extra={"labels": "known" if labels is not None else "none"})

    @abstractmethod
    def prior_image(self, case: Case, exclude: frozenset[int]) -> torch.Tensor:
        """The one image (C x H x W, pixel space) this prior outputs for every sample of `case`."""


@register_attack("prior-grey", description="floor: the flat grey image (0.5) for every sample; ignores the gradient")
class PriorGrey(_Prior):
    def prior_image(self, case: Case, exclude: frozenset[int]) -> torch.Tensor:
        return torch.full(case.image_shape, GREY)


@register_attack(
    "prior-mean",
    description="floor: the dataset's mean image at the case's size, without the clients' own images, for every "
    "sample; ignores the gradient",
)
class PriorMean(_Prior):
    def prior_image(self, case: Case, exclude: frozenset[int]) -> torch.Tensor:
        mean = mean_image(case.info["dataset"], case.info.get("data_path"), case.image_shape[-1], exclude)
        return torch.full(case.image_shape, GREY) if mean is None else mean


def floor_reconstruction(name: str, case: Case, secret: Secret) -> Reconstruction:
    """Floor `name` on this case: its prior formed without the dataset items the clients hold."""
    floor = create_attack(name)
    floor.check_compatible(case)
    return floor.prior_reconstruction(case, exclude=secret.items)


def floor_psnrs(case: Case, secret: Secret, config: MetricConfig = MetricConfig()) -> dict[str, float]:
    """Each floor's one-to-one PSNR on this case, scored like any attack. Only PSNR is used: LPIPS is off,
    and a floor repeats one image, so its pairing is by MSE whatever the attacks' pairing."""
    config = MetricConfig(**{**config.to_dict(), "lpips": False, "pairing": "mse"})
    return {name: score(floor_reconstruction(name, case, secret), secret, config).summary["psnr"] for name in FLOORS}


def floor_metrics(psnr: float | None, floors: dict[str, float]) -> dict[str, float | None]:
    """What a record carries about the floors: the stronger floor, each floor, and the attack's gain."""
    floor = max(floors.values())
    return {
        "psnr_floor": floor,
        **{f"psnr_{name.replace('-', '_')}": value for name, value in floors.items()},
        "psnr_gain": None if psnr is None else psnr - floor,
    }
