"""Pairing reconstructed images with ground-truth images (the attacker cannot recover batch order).

One-to-one (the headline): the assignment minimising the summed per-pair cost
(`scipy.optimize.linear_sum_assignment`), so one good reconstruction is credited once.
Best-match (reported beside it, labelled as such): every ground-truth image takes its cheapest
reconstruction, so one good reconstruction may be credited several times.

Pairing by label (optional, when labels were recovered): a pair whose labels differ costs an extra
penalty larger than any possible sum of image costs. The one-to-one assignment therefore first maximises
the number of equal-label pairs and, among those, minimises the image cost; a ground-truth image whose
label no reconstruction carries is still paired, with the cheapest reconstruction left over. Best-match
takes the cheapest reconstruction of the same label, or the cheapest of all when none has that label.

Rows index ground-truth images, columns reconstructions; the result lists, in ground-truth order, the
index of the paired reconstruction (None when there are fewer reconstructions than true images).
"""

from __future__ import annotations

import numpy as np
import torch


def pairwise_mse(true: torch.Tensor, rec: torch.Tensor) -> torch.Tensor:
    """MSE of every (true, reconstructed) pair: B x ... , B' x ... -> B x B' (float64), vectorised.

    Uses |x|^2 + |y|^2 - 2 x.y in float64 so 256 images of 224 px stay a few matrix products.
    """
    x, y = true.flatten(1).double(), rec.flatten(1).double()
    d = x.shape[1]
    sq = (x * x).sum(1, keepdim=True) + (y * y).sum(1)[None, :] - 2.0 * x @ y.T
    return (sq / d).clamp(min=0.0)


def label_penalised(cost: torch.Tensor, true_labels: torch.Tensor, rec_labels: torch.Tensor) -> torch.Tensor:
    """`cost` plus a penalty on pairs with different labels that dominates any sum of image costs."""
    cost = cost.double()
    n_pairs = min(cost.shape)
    spread = float(cost.max() - cost.min()) if cost.numel() else 0.0
    penalty = n_pairs * spread + 1.0
    differ = true_labels.view(-1, 1).cpu() != rec_labels.view(1, -1).cpu()
    return cost + penalty * differ.double()


def one_to_one(cost: torch.Tensor) -> list[int | None]:
    """Optimal one-to-one assignment: for each row (true image) its column (reconstruction) or None.

    Example:
        >>> one_to_one(torch.tensor([[0.9, 0.1], [0.2, 0.8]]))
        [1, 0]
    """
    from scipy.optimize import linear_sum_assignment  # on first use: scipy.optimize takes about a second to import

    rows, cols = linear_sum_assignment(np.asarray(cost.detach().cpu().double()))
    pairs: list[int | None] = [None] * cost.shape[0]
    for r, c in zip(rows.tolist(), cols.tolist()):
        pairs[r] = c
    return pairs


def best_match(cost: torch.Tensor) -> list[int]:
    """For each row (true image) the column of lowest cost; ties go to the lowest index."""
    return cost.argmin(dim=1).tolist()
