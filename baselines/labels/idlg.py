"""iDLG's label rule (Zhao et al., 2020, "iDLG: Improved Deep Leakage from Gradients"; Section 3).

For one image with non-negative features entering the last layer, dL/dz_c = p_c - y_c is negative only for
the true class, so the true class's row of dW is the only one with a negative sum: y = argmin_c sum_j dW[c, j].

The rule is defined for B = 1. For B > 1 we keep the same evidence and rank the classes by their row sum,
returning the B lowest: distinct classes, so the rule can never produce a repeated label while B <= N.
When B > N the ranking is cycled (every class once, then again from the lowest), which repeats classes
by position in the ranking, not from evidence. When the threat model hides the batch size, one label.
"""

from __future__ import annotations

import torch

from bench.case import Case
from bench.labels import LABELS, cycled_ranking, row_sums


@LABELS.register("idlg", description="iDLG: argmin of dW row sums (B=1); for B>1 the B lowest, never repeated", needs=("dW",))
def recover(case: Case) -> torch.Tensor:
    count = case.batch_size if case.threat.batch_size_known else 1
    ranking = torch.argsort(row_sums(case), stable=True)
    return cycled_ranking(ranking, count)
