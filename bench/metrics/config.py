"""MetricConfig: how reconstructions are paired and scored. Recorded with every result."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from bench.errors import BenchError

PAIRING_COSTS = ("mse", "lpips")
LPIPS_NETS = ("alex", "vgg")


@dataclass(frozen=True)
class MetricConfig:
    """Scoring options.

    pairing: per-pair cost of the one-to-one assignment and the best match ("mse" or "lpips").
    pair_by_label: pair only equal labels when the attack recovered labels (see bench.metrics.pairing).
    recognisable_psnr: an image counts as recognisably reconstructed when its PSNR is strictly above
        this (dB). Our convention, not a published standard; it is written into every result.
    lpips: compute LPIPS at all (off: LPIPS is None, without a notice).
    lpips_net: LPIPS backbone, "alex" (the standard) or "vgg".
    lpips_weights: the torchvision ImageNet backbone file, or a folder holding it under torchvision's
        file name (CLI `--lpips-weights`; else env BENCH_LPIPS_WEIGHTS; else torch's hub cache).
    chunk: images per forward pass / SSIM batch, to bound memory on 224 px batches.
    device: where metrics are computed (None: the secret's device).
    """

    pairing: Literal["mse", "lpips"] = "mse"
    pair_by_label: bool = False
    recognisable_psnr: float = 20.0
    lpips: bool = True
    lpips_net: Literal["alex", "vgg"] = "alex"
    lpips_weights: str | None = None
    chunk: int = 32
    device: str | None = None

    def __post_init__(self) -> None:
        if self.pairing not in PAIRING_COSTS:
            raise BenchError(f"pairing must be one of {', '.join(PAIRING_COSTS)}, got {self.pairing!r}")
        if self.lpips_net not in LPIPS_NETS:
            raise BenchError(f"lpips_net must be one of {', '.join(LPIPS_NETS)}, got {self.lpips_net!r}")
        if self.chunk < 1:
            raise BenchError(f"chunk must be at least 1, got {self.chunk}")
        if self.pairing == "lpips" and not self.lpips:
            raise BenchError("pairing by LPIPS needs lpips=True")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "MetricConfig":
        return cls(**data)
