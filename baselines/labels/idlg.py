"""iDLG's label rule (Zhao et al., 2020, "iDLG: Improved Deep Leakage from Gradients"; Section 3).

For one image with non-negative features entering the last layer, dL/dz_c = p_c - y_c is negative only for
the true class, so its row of dW is the only one with a negative sum: y = argmin_c sum_j dW[c, j].

The rule is defined for B = 1. For B > 1 the same evidence ranks the classes by row sum and the B lowest are
returned: distinct classes, so the rule never repeats a label while B <= N. When B > N it runs out of
classes: every class once, then the remaining B - N slots repeat the lowest row sum (its single label),
so no repeat comes from counting. When the threat model hides the batch size: one label.
"""

from __future__ import annotations

import torch

from bench.case import Case
from bench.labels import LABELS, ranked_labels, row_sums


@LABELS.register(
    "idlg",
    description="iDLG: argmin of the dW row sums (B = 1); for a batch the B lowest, never counted",
    needs=("dW",),
)
def recover(case: Case) -> torch.Tensor:
    count = case.num_images if case.threat.batch_size_known else 1
    return ranked_labels(torch.argsort(row_sums(case), stable=True), count)
