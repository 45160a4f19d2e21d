"""GradInversion's label rule (Yin et al., CVPR 2021, "See through Gradients"; Section 3.2).

With non-negative features, a class present in the batch has a row of dW with negative entries, while an
absent class's row is non-negative. The labels are the B classes with the most negative row minimum:
argsort_n(min_m dW[n, m])[:B]. The paper assumes no repeated labels, so the rule returns distinct classes
and never repeats a label while B <= N. When B > N it runs out of classes: every class once, then the
remaining B - N slots repeat the top-ranked class, so no repeat comes from counting.
"""

from __future__ import annotations

import torch

from bench.case import Case
from bench.labels import LABELS, ranked_labels


@LABELS.register(
    "yin",
    description="GradInversion: the B classes with the most negative dW row minimum, never counted",
    needs=("dW", "B"),
)
def recover(case: Case) -> torch.Tensor:
    weight_grad, _ = case.classifier_gradients()
    row_minima = weight_grad.detach().double().cpu().flatten(1).min(1).values
    return ranked_labels(torch.argsort(row_minima, stable=True), case.num_images)
