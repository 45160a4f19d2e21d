"""METRICS: every summary value a Scores carries, with its better direction, so tables can put an arrow.

Example:
    >>> METRICS.get("psnr").obj.arrow()
    '↑'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bench.registry import Registry


@dataclass(frozen=True)
class Metric:
    better: Literal["higher", "lower"]
    unit: str = ""

    def arrow(self) -> str:
        return "↑" if self.better == "higher" else "↓"


METRICS: Registry[Metric] = Registry("metric")

# (name, better, unit, description); "one-to-one" pairs are the headline, "best match" is reported beside
_METRICS = [
    ("psnr", "higher", "dB", "PSNR (data range 1, per image, capped at 100 dB), mean over one-to-one pairs"),
    ("ssim", "higher", "", "Gaussian-window SSIM (Wang et al. 2004), mean over one-to-one pairs"),
    ("lpips", "lower", "", "LPIPS distance (lpips package, AlexNet by default), mean over one-to-one pairs"),
    ("mse", "lower", "", "mean squared error in [0, 1] pixel space, mean over one-to-one pairs"),
    ("psnr_best_match", "higher", "dB", "PSNR, mean over each true image's best match (may reuse images)"),
    ("ssim_best_match", "higher", "", "SSIM, mean over each true image's best match (may reuse images)"),
    ("lpips_best_match", "lower", "", "LPIPS, mean over each true image's best match (may reuse images)"),
    ("mse_best_match", "lower", "", "MSE, mean over each true image's best match (may reuse images)"),
    ("psnr_worst", "higher", "dB", "lowest one-to-one PSNR in the batch"),
    ("psnr_best", "higher", "dB", "highest one-to-one PSNR in the batch"),
    ("psnr_gain", "higher", "dB", "one-to-one PSNR minus the stronger prior floor's on the same case (bench.floors)"),
    ("psnr_floor", "higher", "dB", "one-to-one PSNR of the stronger prior floor (flat grey or dataset mean) on the case"),
    ("psnr_prior_grey", "higher", "dB", "one-to-one PSNR of the flat grey image (0.5) on the case"),
    ("psnr_prior_mean", "higher", "dB", "one-to-one PSNR of the dataset's mean image on the case"),
    ("recognisable_fraction", "higher", "", "fraction of true images whose one-to-one PSNR exceeds the threshold"),
    ("label_acc", "higher", "", "count-aware label accuracy |true ∩ predicted| / B over multisets"),
    ("label_precision", "higher", "", "distinct-class precision of the recovered labels"),
    ("label_recall", "higher", "", "distinct-class recall of the recovered labels"),
    ("label_count_mae", "lower", "", "mean absolute error of per-class counts over classes in either multiset"),
]

for _name, _better, _unit, _description in _METRICS:
    METRICS.add(_name, Metric(_better, _unit), _description, better=_better)
