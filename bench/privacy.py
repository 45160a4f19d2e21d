"""The privacy budget of DP-SGD, from Opacus's RDP accountant (never a hand-written formula).

The accountant treats every step as the subsampled Gaussian mechanism: a batch drawn by Poisson sampling
at rate q = (local batch size) / (the client's data size), noise multiplier sigma, composed over all steps.

Example:
    >>> epsilon(sigma=1.0, sample_rate=64 / 50_000, steps=1000, delta=1e-5)  # 0.701 (the same as Google's dp-accounting)
"""

from __future__ import annotations

import math


def epsilon(sigma: float, sample_rate: float, steps: int, delta: float) -> float:
    """Epsilon at `delta` after `steps` DP-SGD steps at noise multiplier `sigma` and sampling rate `sample_rate`.

    sigma = 0 releases the clipped gradient itself: no finite epsilon.
    """
    if sigma == 0:
        return math.inf
    from opacus.accountants import RDPAccountant  # importing opacus takes seconds: only when a budget is asked

    accountant = RDPAccountant()
    accountant.history = [(float(sigma), float(sample_rate), int(steps))]  # (noise multiplier, rate, steps)
    return float(accountant.get_epsilon(delta=delta))
