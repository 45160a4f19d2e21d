"""Weakened variants of the quality gate's methods, to show that the gate catches real regressions.

Each variant is a registered method with one thing broken, run in place of the method it weakens
(`run_check(stand_ins={"e2egi": "e2egi-weak-no-combination"})`) and compared with that method's reference;
`run_check(budget_scale=0.3)` weakens every attack's budget the same way. They are registered only inside
`with weakened():` (the gate's tests and `scripts/check_study.py`) and removed after it, never by the
plugins a normal run loads, so `bench ls` and the contract tests never see them.

Example:
    >>> with weakened():
    ...     run_check(only=["llg"], stand_ins={"llg": RANDOM_LABELS}).regressed
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from bench.attack import ATTACKS, register_attack
from bench.case import Case
from bench.labels import LABELS
from bench.registry import Registry

# weakened variant -> (the method it stands in for, its broken config, what is broken)
WEAKENED: dict[str, tuple[str, dict, str]] = {
    "e2egi-weak-tv": ("e2egi", {"tv": 1.14}, "TV weight x100 (1.14 for 0.0114): a broken regulariser weight"),
    "inverting-gradients-weak-tv": (
        "inverting-gradients", {"tv": 0.1}, "TV weight x1000 (0.1 for 1e-4): a broken regulariser weight"
    ),
    "e2egi-weak-no-combination": (
        "e2egi", {"combine": False}, "MLCO without its minimum-loss combination (combine=False)"
    ),
}
RANDOM_LABELS = "random-labels-weak"


def random_labels(case: Case) -> torch.Tensor:
    """Uniformly random classes, one per image: a label method that reads nothing from the update."""
    generator = torch.Generator().manual_seed(0)
    return torch.randint(case.num_classes, (case.num_images,), generator=generator)


@contextmanager
def weakened() -> Iterator[list[str]]:
    """Register every weakened variant for the block (a name already registered is left alone) and remove
    those it registered when the block ends; yields their names."""
    from bench.plugins import load_plugins

    load_plugins()
    added: list[tuple[Registry, str]] = []
    try:
        for name, (base, broken, what) in WEAKENED.items():
            if name not in ATTACKS:
                entry = ATTACKS.get(base)
                config = {**entry.info.get("config", {}), **broken}
                register_attack(name, f"weakened {base}: {what}", **config)(entry.obj)
                added.append((ATTACKS, name))
        if RANDOM_LABELS not in LABELS:
            LABELS.register(RANDOM_LABELS, description="weakened label method: uniformly random classes", needs=())(
                random_labels
            )
            added.append((LABELS, RANDOM_LABELS))
        yield [*WEAKENED, RANDOM_LABELS]
    finally:
        for registry, name in added:
            registry.remove(name)
