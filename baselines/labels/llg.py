"""LLG (Wainakh et al., PoPETs 2022, "User-Level Label Leakage from Gradients in Federated Learning"; tklab-tud/LLG).

g = row sums of dW (length N). With non-negative features each occurrence of a class in the batch pulls its
g_n down by roughly the same amount, the impact m = (sum_{g_n < 0} g_n / B)(1 + 1/N). Stage 1: every class
with g_n < 0 gets one label and g_n -= m (m < 0, so g_n rises). Stage 2: until B labels, the class with the
lowest g gets one more and g -= m on that class. If more than B classes are negative, the B most negative
are kept. Without a negative entry (a degenerate gradient) m = 0 and stage 2 repeats the lowest class.
The impact sums only the negative entries, and stage 2 updates the class it just chose.
"""

from __future__ import annotations

import torch

from bench.case import Case
from bench.labels import LABELS, greedy_by_impact, row_sums


def impact(scores: torch.Tensor, batch_size: int, num_classes: int) -> float:
    """LLG's impact of one sample: the mean negative row sum per sample, scaled by (1 + 1/N)."""
    return float(scores[scores < 0].sum()) / batch_size * (1 + 1 / num_classes)


@LABELS.register(
    "llg",
    description="LLG: negative dW row sums once, then argmin with the mean impact subtracted",
    needs=("dW", "B"),
)
def recover(case: Case) -> torch.Tensor:
    scores = row_sums(case)
    return greedy_by_impact(scores, impact(scores, case.num_images, case.num_classes), case.num_images)
