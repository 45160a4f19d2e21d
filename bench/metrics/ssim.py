"""SSIM of Wang et al. 2004 ("Image quality assessment: from error visibility to structural similarity").

The standard Gaussian-window form: 11 x 11 window, sigma 1.5, K1 0.01, K2 0.03, data range 1, population
(not sample) covariances, the SSIM map averaged over the positions where the window fits entirely in
the image ("valid"), then over channels. This equals scikit-image's
`structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)`.

Images smaller than the window: the window shrinks to the largest odd size that fits the smaller side,
keeping sigma 1.5 and renormalising the truncated Gaussian (scikit-image with `truncate=radius / 1.5`).
"""

from __future__ import annotations

import torch

SIGMA = 1.5
WINDOW = 11
K1, K2 = 0.01, 0.03
DATA_RANGE = 1.0


def window_size(height: int, width: int) -> int:
    """The Gaussian window's side for an image of this size: 11, or the largest odd size that fits."""
    side = min(WINDOW, height, width)
    return side if side % 2 == 1 else side - 1


def gaussian_kernel(size: int, sigma: float = SIGMA) -> torch.Tensor:
    """Normalised 1-D Gaussian of odd length `size` (float64)."""
    radius = (size - 1) // 2
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def _band(n: int, kernel: torch.Tensor) -> torch.Tensor:
    """(n - k + 1) x n matrix whose rows are the kernel at every valid offset."""
    k = kernel.numel()
    band = torch.zeros(n - k + 1, n, dtype=kernel.dtype)
    for i in range(n - k + 1):
        band[i, i : i + k] = kernel
    return band


def _blur(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter of every channel at valid positions, as two matrix products.

    Banded matrix products run at BLAS speed in float64, where a depthwise conv2d is several times slower.
    """
    return rows @ x @ cols.T


def ssim(a: torch.Tensor, b: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    """SSIM of each image pair: N x C x H x W, N x C x H x W in [0, 1] -> N (float64).

    Example:
        >>> ssim(images, images)  # tensor of ones
    """
    if a.shape != b.shape or a.dim() != 4:
        raise ValueError(f"ssim needs two N x C x H x W tensors of one shape, got {tuple(a.shape)}, {tuple(b.shape)}")
    kernel = gaussian_kernel(window_size(a.shape[2], a.shape[3]))
    rows, cols = _band(a.shape[2], kernel).to(a.device), _band(a.shape[3], kernel).to(a.device)
    c1, c2 = (K1 * DATA_RANGE) ** 2, (K2 * DATA_RANGE) ** 2
    out = []
    # float64 in chunks: E[x^2] - E[x]^2 loses digits in float32, and chunks bound memory for 224 px batches
    for start in range(0, a.shape[0], chunk):
        x, y = a[start : start + chunk].double(), b[start : start + chunk].double()
        mu_x, mu_y = _blur(x, rows, cols), _blur(y, rows, cols)
        var_x = _blur(x * x, rows, cols) - mu_x**2
        var_y = _blur(y * y, rows, cols) - mu_y**2
        cov = _blur(x * y, rows, cols) - mu_x * mu_y
        num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
        den = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
        out.append((num / den).flatten(1).mean(1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)
