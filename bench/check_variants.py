"""Weakened variants of the quality gate's methods, to show that the gate catches real regressions.

Each variant is a registered method with one thing broken, run in place of the method it weakens
(`run_check(stand_ins={"e2egi": "e2egi-weak-no-combination"})`) and compared with that method's reference;
`run_check(budget_scale=0.3)` weakens every attack's budget the same way. They are registered only when
`register_weakened()` is called (by the gate's tests and `scripts/check_study.py`), never by the plugins a
normal run loads, so `bench ls` does not list them.

Example:
    >>> register_weakened()
    >>> run_check(only=["llg"], stand_ins={"llg": "llg-weak-random"}).regressed
"""

from __future__ import annotations

import torch

from bench.attack import ATTACKS, register_attack
from bench.case import Case
from bench.labels import LABELS

# weakened variant -> (method it stands in for, what is broken)
WEAKENED: dict[str, tuple[str, str]] = {
    "e2egi-weak-tv": ("e2egi", "TV weight x100 (1.14 for 0.0114): a broken regulariser weight"),
    "inverting-gradients-weak-tv": ("inverting-gradients", "TV weight x1000 (0.1 for 1e-4): a broken regulariser weight"),
    "gradinversion-weak-bn": ("gradinversion", "BN prior weight x0.01 (1e-3 for 0.1): a broken regulariser weight"),
    "e2egi-weak-no-combination": ("e2egi", "MLCO without its minimum-loss combination (combine=False)"),
}
RANDOM_LABELS = "random-labels-weak"


def random_labels(case: Case) -> torch.Tensor:
    """Uniformly random classes, one per image: a label method that reads nothing from the update."""
    generator = torch.Generator().manual_seed(0)
    return torch.randint(case.num_classes, (case.num_images,), generator=generator)


def register_weakened() -> list[str]:
    """Register every weakened variant (once; later calls do nothing) and return their names."""
    from bench.plugins import load_plugins

    load_plugins()
    overrides = {
        "e2egi-weak-tv": {"tv": 1.14},
        "inverting-gradients-weak-tv": {"tv": 0.1},
        "gradinversion-weak-bn": {"alpha_bn": 1e-3},
        "e2egi-weak-no-combination": {"combine": False},
    }
    for name, (base, what) in WEAKENED.items():
        if name not in ATTACKS:
            entry = ATTACKS.get(base)
            register_attack(name, f"weakened {base}: {what}", **{**entry.info.get("config", {}), **overrides[name]})(entry.obj)
    if RANDOM_LABELS not in LABELS:
        LABELS.register(RANDOM_LABELS, description="weakened label method: uniformly random classes", needs=())(random_labels)
    return [*WEAKENED, RANDOM_LABELS]
