"""GradInversion's label rule (Yin et al., CVPR 2021, "See through Gradients"; Section 3.2).

With non-negative features, a class present in the batch has a row of dW with negative entries, while
an absent class's row is non-negative. The labels are the B classes with the most negative row minimum:
argsort_n(min_m dW[n, m])[:B]. The paper assumes no repeated labels, so the rule returns distinct classes
and cannot produce a repeat while B <= N. When B > N the ranking is cycled (every class once, then again
from the most negative), which repeats classes by position in the ranking, not from evidence.
"""

from __future__ import annotations

import torch

from bench.case import Case
from bench.labels import LABELS, cycled_ranking


@LABELS.register("yin", description="GradInversion: the B classes with most negative dW row minimum, never repeated", needs=("dW", "B"))
def recover(case: Case) -> torch.Tensor:
    weight_grad, _ = case.classifier_gradients()
    row_minima = weight_grad.detach().double().cpu().flatten(1).min(1).values
    return cycled_ranking(torch.argsort(row_minima, stable=True), case.batch_size)
