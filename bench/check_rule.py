"""The quality gate's decision rule: an entry's per-seed values now against its reference, on distributions.

The attacks are chaotic in the last bit (one ulp at the start, or another CPU's kernels, moves a result by
decibels), so one seed's value is a draw and the gate never compares two draws. Each entry runs n seeds; the
reference keeps every seed's value. For a metric where higher is better the drop of seed s is
d_s = reference_s - now_s (the sign turns for lower-is-better metrics), and the entry regresses when

    the one-sided paired t-test rejects "the mean drop is at most the entry's minimum effect" at level ALPHA,

i.e. the mean drop is larger than the minimum effect, and clearly so for n seeds (`scipy.stats.ttest_1samp`
of d - min_effect, alternative "greater"; a constant drop gives p = 0 above the minimum effect and p = 1 at
or below it). One seed that flips to another basin moves the mean but also the spread, so it does not fail
the gate; a weakened attack that loses on every seed does.

The minimum effect is measured, not chosen (`min_effect`): the suite is also run with other CPUs' kernels
imitated (`bench.kernels`), and the minimum effect is MARGIN times the largest |median drop| of those runs,
never below the metric's resolution (`RESOLUTION`). Another CPU's kernels do two things to an entry: they
shift every seed a little (the precision a converged attack reaches), which the test cannot tell from a
regression, so the minimum effect must cover it, twice over; and they flip a few chaotic seeds to another
basin (a failed DLG seed reconstructs, 59 dB up), which the median leaves out and the test's spread absorbs.
The reference also keeps the largest mean drop and the QUANTILE quantile of the per-seed |drops|, to show
the spread.

An entry whose reference stands significantly above the prior floor (one-sided one-sample t-test of the
per-seed psnr_gain against 0 at ALPHA) also regresses when its mean gain now is back at the floor (<= 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

ALPHA = 0.01
QUANTILE = 0.9
MARGIN = 2.0
# The smallest minimum effect of each metric: what a change must exceed to matter at all (a tenth of a dB;
# for label accuracy one label in twenty). Metrics not named use 0.
RESOLUTION = {"psnr_gain": 0.5, "label_acc": 0.05}
GAIN_METRIC = "psnr_gain"


@dataclass(frozen=True)
class Judgement:
    """The rule's verdict on one metric of one entry."""

    drop: float  # mean over seeds of (reference - now), direction-aware: positive means worse
    p_value: float  # of "the mean drop is at most min_effect"
    min_effect: float
    regressed: bool
    at_floor: bool = False  # the reference stands above the prior floor and the entry fell back to it

    def to_dict(self) -> dict:
        return asdict(self)


def drops(reference: Sequence[float], now: Sequence[float], higher_is_better: bool = True) -> np.ndarray:
    """Per-seed drops, positive where `now` is worse than the reference."""
    ref, cur = np.asarray(reference, dtype=float), np.asarray(now, dtype=float)
    return ref - cur if higher_is_better else cur - ref


def drop_p_value(d: np.ndarray, min_effect: float) -> float:
    """p of the one-sided paired t-test of H0 "mean drop <= min_effect" (scipy.stats.ttest_1samp).

    Drops without spread (deterministic methods) have no t statistic: their mean decides, p 0 or 1.
    """
    excess = d - min_effect
    if len(d) < 2 or np.ptp(d) <= 1e-12 * max(1.0, float(np.abs(d).max())):
        return 0.0 if float(excess.mean()) > 0 else 1.0
    p = stats.ttest_1samp(excess, 0.0, alternative="greater").pvalue
    return 1.0 if math.isnan(p) else float(p)


def above_floor_p(gains: Sequence[float]) -> float:
    """p of the one-sided one-sample t-test of H0 "mean gain over the prior floor <= 0"."""
    g = np.asarray(gains, dtype=float)
    if len(g) < 2 or np.ptp(g) == 0:
        return 0.0 if len(g) and float(g.mean()) > 0 else 1.0
    p = stats.ttest_1samp(g, 0.0, alternative="greater").pvalue
    return 1.0 if math.isnan(p) else float(p)


def judge(
    metric: str,
    reference: Sequence[float],
    now: Sequence[float],
    min_effect: float,
    higher_is_better: bool = True,
    alpha: float = ALPHA,
) -> Judgement:
    """The verdict on one metric of one entry, seeds paired by position."""
    if len(reference) != len(now) or not len(reference):
        raise ValueError(f"{len(reference)} reference values for {len(now)} values now")
    d = drops(reference, now, higher_is_better)
    p = drop_p_value(d, min_effect)
    at_floor = (
        metric == GAIN_METRIC and above_floor_p(reference) < alpha and float(np.mean(now)) <= 0
    )
    return Judgement(float(d.mean()), p, min_effect, p < alpha or at_floor, at_floor)


def min_effect(metric: str, reference: Sequence[float], others: Sequence[Sequence[float]], higher_is_better: bool = True) -> dict:
    """The minimum effect of one metric of one entry, from its values under other kernels (`others`, each
    paired with `reference` seed by seed), with what it was derived from."""
    resolution = RESOLUTION.get(metric, 0.0)
    if not others:
        return {"min_effect": resolution, "largest_median_drop": None, "largest_mean_drop": None, "drop_quantile": None, "runs": 0}
    per_run = [drops(reference, other, higher_is_better) for other in others]
    largest_median = max(abs(float(np.median(d))) for d in per_run)
    return {
        "min_effect": max(resolution, MARGIN * largest_median),
        "largest_median_drop": largest_median,
        "largest_mean_drop": max(abs(float(d.mean())) for d in per_run),
        "drop_quantile": float(np.quantile(np.abs(np.concatenate(per_run)), QUANTILE)),
        "runs": len(others),
    }
