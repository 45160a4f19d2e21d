"""E2EGI's label reconstruction (Li et al., IEEE JBHI 2022, "E2EGI: End-to-End Gradient Inversion in
Federated Learning"; zhaohuali/E2EGI), used by the E2EGI attack to initialise its dummy labels.

g = row sums of dW (length N); C = the largest positive entry of g; impact m = N * C / B. Every class with
g_n < 0 gets one label and g_n += m; then until B labels, the class with the lowest g gets one more and
g += m on it. If more than B classes are negative, the B most negative are kept.

Fallback where g has no positive entry (the authors' code fails there): m = N * max|g| / B, and m = 1 when
g is all zero, which then hands out labels round-robin from class 0. The rule works for any B, including
B > N.

Failure mode: m grows with N faster than the per-label impact, because C is the largest of the N - U
positive (unlabelled) row sums. On closed-form gradients (tests/test_labels.py) m overshoots the impact
1-5x at N = 10 and 20-38x at N = 1000; on an untrained ResNet-18 (32 px, N = 1000, B = 32, r = 0.96,
train-mode BN, seeds 0-4; impact = mean feature sum / B) 4-15x.
Once m is that large no class gets a second label, so at high repetition the rule scores about U / B, as the
unique-label rules do.
"""

from __future__ import annotations

import torch

from bench.case import Case
from bench.labels import LABELS, greedy_by_impact, row_sums


def e2egi_impact(scores: torch.Tensor, batch_size: int) -> float:
    """m = N * C / B with C the largest positive row sum, or the fallback described above."""
    num_classes = scores.numel()
    largest = float(scores.max())
    if largest <= 0:
        largest = float(scores.abs().max())
    if largest <= 0:
        return 1.0
    return num_classes * largest / batch_size


def e2egi_rule(scores: torch.Tensor, batch_size: int) -> torch.Tensor:
    """E2EGI's labels from the dW row sums `scores` (length N): B int64 labels."""
    scores = scores.detach().double().cpu()
    # the shared stage subtracts its impact; E2EGI adds m to a chosen class
    return greedy_by_impact(scores, -e2egi_impact(scores, batch_size), batch_size)


@LABELS.register(
    "e2egi",
    description="E2EGI: negative dW row sums once, then argmin with N * max(g) / B added",
    needs=("dW", "B"),
)
def recover(case: Case) -> torch.Tensor:
    return e2egi_rule(row_sums(case), case.num_images)
