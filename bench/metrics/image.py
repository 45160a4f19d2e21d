"""Per-image pixel metrics in [0, 1] pixel space: MSE and PSNR (data range 1).

PSNR of identical images is infinite; we floor the MSE at `MSE_FLOOR` = 1e-10, which caps PSNR at
`PSNR_CAP_DB` = 100 dB. The cap is the same everywhere (per image, means, JSON), so results stay finite.
"""

from __future__ import annotations

import math

import torch

MSE_FLOOR = 1e-10
PSNR_CAP_DB = 10.0 * math.log10(1.0 / MSE_FLOOR)  # 100 dB


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared error of each image pair: N x C x H x W, N x C x H x W -> N (float64)."""
    diff = a.double() - b.double()
    return diff.pow(2).flatten(1).mean(1)


def psnr_from_mse(mse_values: torch.Tensor) -> torch.Tensor:
    """PSNR in dB for data range 1, capped at PSNR_CAP_DB (MSE below MSE_FLOOR counts as MSE_FLOOR)."""
    return -10.0 * torch.log10(mse_values.double().clamp(min=MSE_FLOOR))


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR of each image pair (data range 1), in dB: N x C x H x W, N x C x H x W -> N.

    Example:
        >>> psnr(torch.zeros(1, 3, 8, 8), torch.full((1, 3, 8, 8), 0.1))  # MSE 0.01 -> 20 dB
    """
    return psnr_from_mse(mse(a, b))
