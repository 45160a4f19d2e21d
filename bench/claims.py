"""The papers' claims the benchmark checks, as data: the single source of paper numbers.

A claim names its source, the paper's statement, number and setting, the records folder (under
`leaderboard/records/`) that measures it here, and one or more measures. A measure selects runs by their
configuration (`where`: dotted config fields, e.g. {"label_method": "e2egi", "scenario.batch_size": 256})
and computes one statistic of a metric over seeds:

- the mean (95% Student-t CI);
- with `against`: the paired per-seed difference between the selected runs and the best (highest mean) of
  the `against` selections, each `where` with some fields replaced (another method, another repetition
  rate), over the seeds both have (95% Student-t CI of the differences). A selection that replaces a
  scenario field compares other cases (other batches), whose floors differ: its image metric is the gain
  over each case's own prior floor (`psnr_gain`), never the raw PSNR (`Measure` refuses it);
- with `at_least`: the fraction of runs whose metric reaches the threshold (Clopper-Pearson 95% CI).

Each measure's verdict: "reproduced" when its `reproduced` band holds, else "partly" when it has a `partly`
band and that holds, else "not"; a claim's verdict is the weakest of its measures', and "pending" while its records are
absent. `bench.leaderboard.claims` renders `leaderboard/claims.md` from these definitions and the records;
the plots mark a paper's number (`paper_points`) where a measure states one at a batch size and repetition rate.

Example:
    >>> [claim.key for claim in CLAIMS][:2]
    ['e2egi-labels', 'idlg-labels-b1']
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

VERDICTS = ("not", "partly", "reproduced")  # weakest first
RAW_IMAGE_METRICS = ("psnr", "ssim", "lpips", "mse")  # raw quality: comparable on one case only
LABEL_BASELINES = ("idlg", "yin", "llg", "llg-star")  # the label rules before E2EGI


def methods(key: str, *names: str) -> tuple[dict[str, object], ...]:
    """`against` selections that replace the method: methods("attack", "dlg") -> ({"attack": "dlg"},)."""
    return tuple({key: name} for name in names)


@dataclass(frozen=True)
class Band:
    """Values in [low, high], or above `above` (strictly); `whole_ci` asks the whole 95% CI to lie in it."""

    low: float = -math.inf
    high: float = math.inf
    above: float | None = None
    whole_ci: bool = False

    def holds(self, estimate: float, ci_low: float | None, ci_high: float | None) -> bool:
        if self.whole_ci:
            if ci_low is None or ci_high is None:
                return False
            return self._contains(ci_low) and self._contains(ci_high)
        return self._contains(estimate)

    def _contains(self, value: float) -> bool:
        if self.above is not None and not value > self.above:
            return False
        return self.low <= value <= self.high

    def text(self) -> str:
        parts = []
        if self.above is not None:
            parts.append(f"> {self.above:g}")
        if self.low > -math.inf and self.high < math.inf:
            parts.append(f"in [{self.low:g}, {self.high:g}]")
        elif self.low > -math.inf:
            parts.append(f"≥ {self.low:g}")
        elif self.high < math.inf:
            parts.append(f"≤ {self.high:g}")
        if not parts:
            return "always"
        condition = " and ".join(parts)
        return f"its whole 95% CI is {condition}" if self.whole_ci else f"the estimate is {condition}"


@dataclass(frozen=True)
class Measure:
    """One of our numbers for a claim, with the paper's counterpart (None where the paper gives none)."""

    name: str
    metric: str
    where: Mapping[str, object]
    paper: float | None = None
    against: tuple[Mapping[str, object], ...] = ()
    at_least: float | None = None
    reproduced: Band = field(default_factory=Band)
    partly: Band | None = None  # None: a measure is reproduced or not
    digits: int = 3
    per_seed: bool = False  # list every run's value beside the statistic

    def __post_init__(self) -> None:
        if self.compares_cases and self.metric in RAW_IMAGE_METRICS:
            raise ValueError(f"measure {self.name!r} compares other cases: use psnr_gain, not {self.metric}")

    @property
    def compares_cases(self) -> bool:
        """Whether an `against` selection changes the scenario, so seeds pair different batches."""
        return any(key.startswith("scenario.") for selection in self.against for key in selection)


@dataclass(frozen=True)
class Claim:
    key: str
    source: str
    statement: str
    paper_setting: str
    records: str  # folder under leaderboard/records/
    sweep: str  # the sweep file under leaderboard/sweeps/ that writes those records
    measures: tuple[Measure, ...]
    note: str = ""


E2EGI_CELL = {"scenario.batch_size": 256, "scenario.repetition": 0.96}

CLAIMS: tuple[Claim, ...] = (
    Claim(
        key="e2egi-labels",
        source="Li et al., IEEE JBHI 2022 (E2EGI), abstract",
        statement="label reconstruction: 81% accuracy at a 96% label repetition rate, 27 points above the best before",
        paper_setting="ImageNet, MoCo-v2 ResNet-50 with a fresh N(0, 0.01) head, 224 px, B = 256, r = 0.96",
        records="labels-resnet50-n10-e2egi-head",
        sweep="labels-resnet50-n10-e2egi-head.yaml",
        measures=(
            Measure(
                "e2egi accuracy", "label_acc", {"label_method": "e2egi", **E2EGI_CELL}, paper=0.81,
                reproduced=Band(0.75, 0.87), partly=Band(),
            ),
            Measure(
                "margin over the best of " + ", ".join(LABEL_BASELINES), "label_acc",
                {"label_method": "e2egi", **E2EGI_CELL}, paper=0.27, against=methods("label_method", *LABEL_BASELINES),
                reproduced=Band(above=0.0, whole_ci=True), partly=Band(above=0.0),
            ),
        ),
    ),
    Claim(
        key="idlg-labels-b1",
        source="Zhao et al., 2020 (iDLG), Table 1",
        statement="the label of a single image is extracted with 100% accuracy (DLG: 89.9%, 83.3%, 79.1%)",
        paper_setting="MNIST, CIFAR-100, LFW; DLG's sigmoid LeNet, B = 1",
        records="claims-idlg-b1",
        sweep="claims-idlg-b1.yaml",
        measures=(
            Measure(
                "idlg accuracy", "label_acc", {"label_method": "idlg"}, paper=1.0,
                reproduced=Band(1.0, 1.0), partly=Band(0.9, 1.0),
            ),
        ),
    ),
    Claim(
        key="dlg-lenet-b1",
        source="Zhu et al., NeurIPS 2019 (DLG), Fig. 3",
        statement="a single image and its label are recovered pixel-wise (near-exactly) within 300 L-BFGS iterations",
        paper_setting="MNIST, CIFAR-100, SVHN, LFW; sigmoid LeNet with U(-0.5, 0.5) weights, B = 1",
        records="claims-dlg-lenet-b1",
        sweep="claims-dlg-lenet-b1.yaml",
        measures=(
            Measure(
                "fraction of seeds at PSNR ≥ 40 dB", "psnr", {"attack": "dlg"}, at_least=40.0,
                reproduced=Band(0.8, 1.0), partly=Band(above=0.0), digits=2, per_seed=True,
            ),
        ),
        note="the paper shows recovered images and loss curves, no PSNR; 40 dB stands for near-exact here",
    ),
    Claim(
        key="mlco-vs-one-seed",
        source="Li et al., IEEE JBHI 2022 (E2EGI), MLCO",
        statement="Minimum Loss Combinatorial Optimisation reconstructs better than one seed at the same sequential budget",
        paper_setting="ImageNet, MoCo-v2 ResNet-50, 224 px, B = 8, exact BN statistics, 24,000 iterations",
        records="claims-mlco",
        sweep="claims-mlco.yaml",
        measures=(
            Measure(
                "PSNR gain over e2egi-no-mlco (dB)", "psnr", {"attack": "e2egi"}, against=methods("attack", "e2egi-no-mlco"),
                reproduced=Band(above=0.0, whole_ci=True), partly=Band(above=0.0), digits=2,
            ),
        ),
        note="ours at CPU scale: B = 1, budget 300 (MLCO's stages: 90 + 7 x 13 per seed, then 120), in the calibrated "
        "ConvNet setting where the base inversion leaves the prior floor at 1,000 iterations",
    ),
    Claim(
        key="mlco-vs-best-of-8",
        source="Li et al., IEEE JBHI 2022 (E2EGI), MLCO",
        statement="MLCO's gain is more than the best of its 8 seeds: it beats 8 independent seeds at equal total compute",
        paper_setting="ImageNet, MoCo-v2 ResNet-50, 224 px, B = 8, exact BN statistics, 24,000 iterations",
        records="claims-mlco",
        sweep="claims-mlco.yaml",
        measures=(
            Measure(
                "PSNR gain over the best of 8 seeds (dB)", "psnr", {"attack": "e2egi"},
                against=methods("attack", "e2egi-no-mlco-best-of-8"), reproduced=Band(above=0.0, whole_ci=True),
                partly=Band(above=0.0), digits=2,
            ),
        ),
        note="best of 8: each seed runs 1/8 of the steps MLCO takes over all its seeds (196 at budget 300), the seed "
        "with the lowest gradient loss is kept; same setting as mlco-vs-one-seed. In FLOPs (counted from the records' "
        "configurations by scripts/count_flops.py) MLCO spends 2.9% more, its combination's candidate comparisons",
    ),
    Claim(
        key="gradinversion-ablation",
        source="Yin et al., CVPR 2021 (GradInversion), Table 2",
        statement="PSNR rises with each term: gradient only 10.75 < + fidelity 12.06 < + lazy group consistency 12.52",
        paper_setting="ImageNet, ResNet-50, 224 px, B = 8",
        records="claims-gradinversion-ablation",
        sweep="claims-gradinversion-ablation.yaml",
        measures=(
            Measure(
                "fidelity terms over gradient only (dB)", "psnr", {"attack": "gradinversion-no-group"},
                paper=12.06 - 10.75, against=methods("attack", "gradinversion-gradient-only"),
                reproduced=Band(above=0.0, whole_ci=True), partly=Band(above=0.0), digits=2,
            ),
            Measure(
                "group consistency over fidelity terms (dB)", "psnr", {"attack": "gradinversion"},
                paper=12.52 - 12.06, against=methods("attack", "gradinversion-no-group"),
                reproduced=Band(above=0.0, whole_ci=True), partly=Band(above=0.0), digits=2,
            ),
        ),
        note="ours at CPU scale: B = 1, 2,000 iterations, the trained ConvNet setting of mlco-vs-one-seed; the group "
        "is the lazy, unregistered consensus (the paper's best row registers the seeds first)",
    ),
    Claim(
        key="ig-repeated-labels",
        source="Guo et al., on Inverting Gradients with repeated labels",
        statement="Inverting Gradients' PSNR falls from 22.0 to 14.0 dB at B = 4 when all four images share a label",
        paper_setting="B = 4, distinct labels (r = 0) against one shared label (r = 0.75)",
        records="claims-ig-repeated-labels",
        sweep="claims-ig-repeated-labels.yaml",
        measures=(
            Measure(
                "drop of the gain over the prior floor from distinct labels to one shared label (dB)", "psnr_gain",
                {"attack": "inverting-gradients", "scenario.repetition": 0.0}, paper=22.0 - 14.0,
                against=({"scenario.repetition": 0.5},),
                reproduced=Band(above=0.0, whole_ci=True), partly=Band(above=0.0), digits=2,
            ),
        ),
        note="ours at B = 2 (one shared label: r = 0.5), labels known: at B = 4 Inverting Gradients stays at the "
        "prior floor on this CPU's LeNet setting. The two rates draw different batches (seed 0's floors 11.66 and "
        "9.84 dB), so each seed's drop is of the gain over its own case's floor; the paper's number is a PSNR drop",
    ),
)


def claim(key: str) -> Claim:
    """The claim called `key`."""
    for entry in CLAIMS:
        if entry.key == key:
            return entry
    raise KeyError(f"unknown claim {key!r}; known: {', '.join(c.key for c in CLAIMS)}")


@dataclass(frozen=True)
class PaperPoint:
    """A paper's number at one setting, to mark on a plot: a measure that is a plain mean of one method's
    metric, with the paper's value, at a stated batch size and repetition rate."""

    track: str  # the record's method key: "attack" or "label_method"
    method: str
    metric: str
    value: float
    batch_size: int
    repetition: float
    source: str
    setting: str  # the paper's own setting, in words

    def at(self, axis: str) -> float:
        """The point's value of a table axis: "batch_size" or "repetition"."""
        return float({"batch_size": self.batch_size, "repetition": self.repetition}[axis])

    def text(self) -> str:
        where = f"B={self.batch_size}, r={self.repetition:g}"
        return f"{self.method}: {self.metric} {self.value:g} at {where} ({self.source})"


def paper_points() -> tuple[PaperPoint, ...]:
    """Every measure of CLAIMS that can be drawn as one point against our numbers."""
    points = []
    for entry in CLAIMS:
        for measure in entry.measures:
            where = dict(measure.where)
            track = next((key for key in ("label_method", "attack") if key in where), None)
            if (
                measure.paper is None or measure.against or measure.at_least is not None or track is None
                or "scenario.batch_size" not in where or "scenario.repetition" not in where
            ):  # fmt: skip
                continue
            points.append(PaperPoint(
                track, str(where[track]), measure.metric, measure.paper, int(where["scenario.batch_size"]),
                float(where["scenario.repetition"]), entry.source, entry.paper_setting,
            ))  # fmt: skip
    return tuple(points)
