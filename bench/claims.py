"""What the papers report, kept as data in one place: plots mark these numbers and claim tables compare
against them.

Each claim names the method as registered here, the metric as the metric catalogue names it, and the
setting (batch size, label repetition rate r = 1 - U/B) where the paper reports it.

Example:
    >>> [c.text() for c in CLAIMS if c.method == "e2egi"]
    ['e2egi: label_acc 0.81 at B=256, r=0.96 (Li et al., IEEE JBHI 2022, abstract)']
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Claim:
    track: str  # the record's method key: "attack" or "label_method"
    method: str
    metric: str
    value: float
    batch_size: int
    repetition: float
    source: str
    setting: str  # the paper's own setting, in words

    def at(self, axis: str) -> float:
        """The claim's value of a table axis: "batch_size" or "repetition"."""
        return float({"batch_size": self.batch_size, "repetition": self.repetition}[axis])

    def text(self) -> str:
        where = f"B={self.batch_size}, r={self.repetition:g}"
        return f"{self.method}: {self.metric} {self.value:g} at {where} ({self.source})"


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "label_method", "e2egi", "label_acc", 0.81, batch_size=256, repetition=0.96,
        source="Li et al., IEEE JBHI 2022, abstract",
        setting="a batch of 256 with 96% label repetition; 27 points above the best earlier method",
    ),
)  # fmt: skip
