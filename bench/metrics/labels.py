"""Label metrics on multisets: the order of recovered labels carries no information.

- accuracy (count-aware): |multiset(true) ∩ multiset(predicted)| / B, B the true batch size;
- distinct-class precision and recall: over the sets of classes present;
- count MAE: mean over the union of classes present in either of |count_true(c) - count_predicted(c)|.
No predicted labels: every metric is None.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class LabelScores:
    label_acc: float | None = None
    label_precision: float | None = None
    label_recall: float | None = None
    label_count_mae: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)


def label_scores(true: torch.Tensor, predicted: torch.Tensor | None) -> LabelScores:
    """Count-aware accuracy, distinct-class precision/recall and count MAE.

    Example:
        >>> label_scores(torch.tensor([1, 1, 2]), torch.tensor([1, 2, 2])).label_acc  # {1, 2} shared
        0.6666666666666666
    """
    if predicted is None:
        return LabelScores()
    t, p = Counter(true.flatten().tolist()), Counter(predicted.flatten().tolist())
    n_true = sum(t.values())
    shared = sum((t & p).values())  # multiset intersection: min of the counts
    classes_t, classes_p = set(t), set(p)
    common = len(classes_t & classes_p)
    union = classes_t | classes_p
    return LabelScores(
        label_acc=shared / n_true if n_true else None,
        label_precision=common / len(classes_p) if classes_p else None,
        label_recall=common / len(classes_t) if classes_t else None,
        label_count_mae=sum(abs(t[c] - p[c]) for c in union) / len(union) if union else None,
    )
