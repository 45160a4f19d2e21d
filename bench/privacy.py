"""The privacy budget of a client's DP-SGD update, from Google's dp-accounting RDP accountant (never a
hand-written formula).

One round of a client (ALGORITHMS.md, "Defenses and federated updates"): its batch of B images is the only
subsampling of its data set of N images, taken once per round (modelled, as DP-SGD accountants do, as
Poisson sampling at q = B / N); inside the batch each image meets m noisy local steps (m = 1 for FedSGD;
for FedAvg's n steps of b images over the fixed batch, m = ceil(n b / B)). So a round is the event
PoissonSampled(q, SelfComposed(Gaussian(sigma), m)), and the client's rounds compose it `rounds` times.
Composing n independent steps sampled at b / N instead would understate epsilon 2.4-6x.

The RDP orders are Opacus's defaults (`ORDERS`), so one-step budgets equal Opacus's RDPAccountant.

Example:
    >>> epsilon(sigma=1.0, batch_rate=64 / 50_000, steps_per_image=1, rounds=1000, delta=1e-5)  # 0.701
"""

from __future__ import annotations

import math

# Opacus's RDPAccountant.DEFAULT_ALPHAS (a test keeps them equal)
ORDERS: tuple[float, ...] = tuple([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)))


def steps_per_image(batch_size: int, local_batch_size: int, local_steps: int) -> int:
    """m: the most local steps any image of the batch takes part in (step i trains on chunk i mod B/b)."""
    return math.ceil(local_steps * local_batch_size / batch_size)


def epsilon(sigma: float, batch_rate: float, steps_per_image: int, rounds: int, delta: float) -> float:
    """Epsilon at `delta` after `rounds` rounds, each a batch Poisson-sampled at `batch_rate` whose images
    each meet `steps_per_image` Gaussian steps of noise multiplier `sigma`.

    sigma = 0 releases the clipped gradient itself: no finite epsilon.
    """
    if sigma == 0:
        return math.inf
    import dp_accounting  # about 0.7 s: only when a budget is asked
    from dp_accounting import rdp

    step = dp_accounting.GaussianDpEvent(float(sigma))
    round_event = dp_accounting.PoissonSampledDpEvent(
        float(batch_rate), dp_accounting.SelfComposedDpEvent(step, int(steps_per_image))
    )
    accountant = rdp.RdpAccountant(orders=list(ORDERS))
    accountant.compose(dp_accounting.SelfComposedDpEvent(round_event, int(rounds)))
    return float(accountant.get_epsilon(delta))
