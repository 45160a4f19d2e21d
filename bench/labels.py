"""Label recovery from the leaked gradient: the method contract, its registry and the shared counting stage.

A method is a function ``recover(case) -> labels``: one int64 label for each of the update's
`case.num_images` images (K*B with K clients), a multiset (order carries no meaning). It reads the update as
shared, defended. It registers with the parts of the leak it uses, so a Case that lacks one is refused with a
clear reason:

- "dW": the last fully connected layer's weight gradient (N x d)
- "db": that layer's bias gradient (N)
- "B": the batch size (the threat model must reveal it)
- "model": the white-box model, for dummy forward and backward passes
- "fc": the last layer's own weights and bias
- "gradient": the update is a FedSGD gradient, the closed form the method inverts (a FedAvg weight
  difference of several local steps is not)

Example:
    >>> labels = recover_labels("llg", case)
    >>> labels.shape == (case.num_images,)
    True
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch

from bench.case import Case
from bench.compute import evaluation
from bench.errors import BenchError
from bench.registry import Registry

LabelMethod = Callable[[Case], torch.Tensor]
LABELS: Registry[LabelMethod] = Registry("label-recovery method")

NEEDS: dict[str, str] = {
    "dW": "the last layer's weight gradient",
    "db": "the last layer's bias gradient",
    "B": "the batch size",
    "model": "the white-box model",
    "fc": "the last layer's weights",
    "gradient": "a FedSGD gradient",
}

# Modules whose import registers the methods (they import this module, so they are loaded on first use).
METHOD_MODULES: tuple[str, ...] = ("baselines.labels", "attacks.e2egi_labels")


def load_methods() -> None:
    """Import every module that registers a label-recovery method."""
    for module in METHOD_MODULES:
        importlib.import_module(module)


def missing_need(case: Case, needs: tuple[str, ...]) -> str | None:
    """Why `case` cannot serve a method with these needs, or None when it can."""
    weight, bias = case.classifier
    for need in needs:
        if need not in NEEDS:
            raise ValueError(f"unknown label-recovery need {need!r}; known: {', '.join(NEEDS)}")
        if need == "dW" and weight not in case.gradients:
            return f"the leak has no gradient for the last layer's weight {weight!r}"
        if need == "db" and (bias is None or bias not in case.gradients):
            return "the last layer has no bias, so there is no bias gradient"
        if need == "B" and not case.threat.batch_size_known:
            return "the threat model hides the batch size"
        if need == "gradient" and case.threat.update.kind != "fedsgd":
            return f"the method inverts a FedSGD gradient; the update is {case.threat.update.short()}"
        if need == "fc" and (weight not in case.model_state or (bias is not None and bias not in case.model_state)):
            return "the case does not hold the last layer's weights"
    return None


def check_needs(method: str, case: Case) -> None:
    """Raise BenchError when `case` lacks something the registered `method` uses."""
    load_methods()
    entry = LABELS.get(method)
    reason = missing_need(case, tuple(entry.info.get("needs", ())))
    if reason is not None:
        raise BenchError(f"label method {method!r} cannot run: {reason}")


def recover_labels(method: str, case: Case) -> torch.Tensor:
    """Labels recovered by the registered `method` from `case`, sorted (a multiset), int64 on the CPU.

    Example:
        >>> recover_labels("e2egi", case)
        tensor([1, 1, 1, 4, 7, 7, 9, 9])
    """
    check_needs(method, case)
    labels = LABELS.get(method).obj(case)
    if labels.dim() != 1 or labels.dtype != torch.int64:
        raise ValueError(f"label method {method!r} returned {labels.dtype} of shape {tuple(labels.shape)}")
    return torch.sort(labels.detach().cpu()).values


def known_or_recovered(case: Case, method: str) -> tuple[torch.Tensor, str]:
    """The batch's labels for an attack and their source: the known ones ("known") when the threat model
    gives them, else those recovered by the label `method` (its name)."""
    if case.labels is not None:
        return case.labels.long(), "known"
    key = ("labels", method, case.architecture.key(), case.bn_mode, case.num_images, repr(case.threat.update))
    return evaluation(key, f"labels ({method})", lambda: recover_labels(method, case)), method


def greedy_by_impact(
    scores: torch.Tensor, impact: float, batch_size: int, present: torch.Tensor | None = None
) -> torch.Tensor:
    """The counting stage shared by LLG-style rules.

    Stage 1: every `present` class (default: negative score) gets one label and its score loses `impact`;
    if more classes are present than `batch_size`, the lowest scores are kept. Stage 2: until there are
    `batch_size` labels, the class with the lowest score (first on ties) gets one more label and loses
    `impact`. A negative `impact` (LLG's mean negative gradient) raises a chosen class's score; E2EGI's
    positive impact is passed negated.
    """
    scores = scores.detach().double().cpu().clone()
    present = scores < 0 if present is None else present.detach().cpu().bool()
    candidates = torch.nonzero(present).flatten()
    order = torch.argsort(scores[candidates], stable=True)
    labels: list[int] = []
    for index in candidates[order][:batch_size].tolist():
        labels.append(index)
        scores[index] -= impact
    while len(labels) < batch_size:
        # update the class just chosen, never a stale index
        index = int(torch.argmin(scores))
        labels.append(index)
        scores[index] -= impact
    return torch.tensor(labels, dtype=torch.int64)


def ranked_labels(ranking: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The first `batch_size` classes of a ranking (distinct). When B exceeds the ranking's length, every
    class once and the remaining slots repeat the top-ranked class: a rule that cannot count invents no
    counts beyond its single most confident label."""
    ranking = ranking.detach().cpu().long()
    extra = max(batch_size - ranking.numel(), 0)
    return torch.cat([ranking[:batch_size], ranking[:1].repeat(extra)])


def row_sums(case: Case) -> torch.Tensor:
    """Sum over features of each class's row of the last layer's weight gradient (length N), in float64."""
    weight_grad, _ = case.classifier_gradients()
    return weight_grad.detach().double().cpu().flatten(1).sum(1)
