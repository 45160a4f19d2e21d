"""Reconstruction quality: pure functions of (Reconstruction, Secret). Attacks never compute metrics.

Example:
    >>> from bench.metrics import score, MetricConfig
    >>> scores = score(reconstruction, secret, MetricConfig(pairing="mse"))
    >>> scores.to_dict()["summary"]["psnr"]
"""

from bench.metrics.catalog import METRICS, Metric
from bench.metrics.config import MetricConfig
from bench.metrics.image import MSE_FLOOR, PSNR_CAP_DB, mse, psnr, psnr_from_mse
from bench.metrics.labels import LabelScores, label_scores
from bench.metrics.lpips_offline import ENV_VAR as LPIPS_WEIGHTS_ENV
from bench.metrics.lpips_offline import Lpips, LpipsUnavailableWarning, find_backbone_weights
from bench.metrics.pairing import best_match, label_penalised, one_to_one, pairwise_mse
from bench.metrics.score import Scores, score
from bench.metrics.ssim import ssim

__all__ = [
    "METRICS",
    "Metric",
    "MetricConfig",
    "Scores",
    "score",
    "mse",
    "psnr",
    "psnr_from_mse",
    "ssim",
    "PSNR_CAP_DB",
    "MSE_FLOOR",
    "label_scores",
    "LabelScores",
    "pairwise_mse",
    "one_to_one",
    "best_match",
    "label_penalised",
    "Lpips",
    "LpipsUnavailableWarning",
    "find_backbone_weights",
    "LPIPS_WEIGHTS_ENV",
]
