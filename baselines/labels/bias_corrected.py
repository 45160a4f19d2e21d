"""Bias-gradient label counting, the LLG rule applied to db (breaching's "bias-corrected" label strategy).

db_n = scale * sum_k (p_kn - y_kn) needs no feature sign assumption. Stage 1: every class with db_n < 0
gets one label; the impact is m = sum_{db_n < 0} db_n / B and each chosen class's db_n -= m (m < 0, so
it rises). Stage 2: until B labels, the class with the lowest db gets one more and db -= m on it. If more
than B classes are negative, the B most negative are kept; without a negative entry m = 0 and stage 2
repeats the lowest class.
"""

from __future__ import annotations

import torch

from bench.case import Case
from bench.labels import LABELS, greedy_by_impact


@LABELS.register(
    "bias-corrected",
    description="bias gradient: negative db once, then argmin with the mean impact subtracted",
    needs=("db", "B"),
)
def recover(case: Case) -> torch.Tensor:
    _, bias_grad = case.classifier_gradients()
    scores = bias_grad.detach().double().cpu()
    impact = float(scores[scores < 0].sum()) / case.num_images
    return greedy_by_impact(scores, impact, case.num_images)
