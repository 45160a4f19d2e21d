"""How strong a defense is: the order of the columns of a table over defenses, and the x axis of its plots.

Per kind of defense, the parameter that sets its strength and the way it strengthens (more noise, a larger
pruned fraction, fewer bits). A DP-SGD plot puts the certified budget epsilon on its axis (log scale, lower
is stronger) rather than sigma. No defense sits where the parameter stops acting (pruned fraction 0,
32-bit floats), or, where that point cannot lie on a log axis (epsilon = infinity, noise std 0), one decade
beyond the nearest plotted strength, with its own tick label. A kind without an entry here (half precision,
sign) has no strength to order by: its columns are placed side by side after no defense.

Example:
    >>> sorted([parse_defense("prune(0.9)"), Defense(), parse_defense("prune(0.5)")], key=defense_order)
    [Defense(), Prune(ratio=0.5), Prune(ratio=0.9)]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from bench.defenses import Defense


@dataclass(frozen=True)
class Strength:
    """parameter: the defense's field that sets its strength; axis: what a plot puts on x (that parameter,
    or the privacy budget epsilon); none_at: x of no defense (inf / 0 on a log axis: one decade beyond)."""

    parameter: str
    label: str
    none_at: float
    none_text: str
    axis: Literal["parameter", "epsilon"] = "parameter"
    log: bool = False
    stronger_when_lower: bool = False


STRENGTHS: dict[str, Strength] = {
    "dp": Strength("sigma", "privacy budget ε at δ (log scale; lower is stronger)", math.inf, "none (ε=∞)", "epsilon", log=True),
    "noise": Strength("std", "noise standard deviation (log scale)", 0.0, "none (std 0)", log=True),
    "prune": Strength("ratio", "pruned fraction p of every tensor", 0.0, "none (p=0)"),
    "quantize": Strength("bits", "bits per entry (fewer is stronger)", 32.0, "none (32-bit)", stronger_when_lower=True),
}


def is_none(defense: Defense) -> bool:
    return defense == Defense()


def defense_order(defense: Defense) -> tuple:
    """No defense first, then by kind (its name) and increasing strength; ties by the sweep syntax."""
    if is_none(defense):
        return (0, "", 0.0, "")
    strength = STRENGTHS.get(defense.name)
    level = 0.0 if strength is None else float(getattr(defense, strength.parameter))
    return (1, defense.name, -level if strength is not None and strength.stronger_when_lower else level, defense.spec())
