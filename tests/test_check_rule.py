"""The gate's decision rule on distributions: what it calls a regression and what it leaves alone."""

import numpy as np
import pytest
from scipy import stats

from bench.check_rule import ALPHA, MARGIN, QUANTILE, RESOLUTION, above_floor_p, drop_p_value, judge, min_effect

REFERENCE = [50.0, 47.0, 55.0, 52.0, 49.0, 51.0]


def test_a_consistent_drop_beyond_the_minimum_effect_regresses():
    now = [x - 12 + 0.5 * (i % 2) for i, x in enumerate(REFERENCE)]
    j = judge("psnr_gain", REFERENCE, now, min_effect=5.0)
    assert j.regressed and not j.at_floor
    assert j.drop == pytest.approx(12 - 0.25)
    excess = np.subtract(REFERENCE, now) - 5.0  # the rule is scipy's one-sided t-test of drop - min effect
    assert j.p_value == pytest.approx(stats.ttest_1samp(excess, 0, alternative="greater").pvalue)


def test_one_seed_that_flips_to_another_basin_is_not_a_regression():
    now = list(REFERENCE)
    now[2] = 1.0  # one chaotic seed falls to the floor: mean drop 9 dB, but one seed of six
    j = judge("psnr_gain", REFERENCE, now, min_effect=5.0)
    assert j.drop > 5.0 and j.p_value > ALPHA and not j.regressed


def test_a_drop_within_the_minimum_effect_is_not_a_regression_however_consistent():
    now = [x - 4.0 for x in REFERENCE]  # every seed 4 dB lower: significant, but below the minimum effect
    assert not judge("psnr_gain", REFERENCE, now, min_effect=5.0).regressed
    assert judge("psnr_gain", REFERENCE, now, min_effect=3.0).regressed


def test_improvements_and_unchanged_values_pass():
    assert not judge("psnr_gain", REFERENCE, [x + 10 for x in REFERENCE], min_effect=0.5).regressed
    unchanged = judge("psnr_gain", REFERENCE, REFERENCE, min_effect=0.5)
    assert unchanged.drop == 0 and unchanged.p_value == 1.0 and not unchanged.regressed


def test_deterministic_drops_decide_by_their_mean():
    ref = [1.0, 1.0, 0.5, 0.75]
    assert drop_p_value(np.zeros(4), 0.05) == 1.0
    assert judge("label_acc", ref, [r - 0.25 for r in ref], min_effect=0.05).regressed  # every seed one label in 4 lower
    assert not judge("label_acc", ref, [r - 0.25 for r in ref], min_effect=0.25).regressed


def test_direction_follows_the_metric():
    ref = [0.2, 0.25, 0.3]
    assert judge("mse", ref, [0.9, 0.95, 0.99], min_effect=0.1, higher_is_better=False).regressed
    assert not judge("mse", ref, [0.01, 0.02, 0.03], min_effect=0.1, higher_is_better=False).regressed


def test_falling_back_to_the_floor_regresses_only_where_the_reference_was_above_it():
    small = [2.0, 2.5, 1.5, 2.2, 1.8, 2.1]  # significantly above the floor, smaller than the minimum effect
    assert above_floor_p(small) < ALPHA
    back = judge("psnr_gain", small, [-0.5, 0.2, -0.3, 0.1, -0.2, 0.0], min_effect=5.0)
    assert back.regressed and back.at_floor
    floor_entry = [-3.0, -2.0, -4.0, -3.5, -2.5, -3.0]  # a prior at the floor may stay there
    assert not judge("psnr_gain", floor_entry, [x - 1 for x in floor_entry], min_effect=5.0).regressed
    assert not judge("label_acc", [0.2] * 6, [0.0] * 6, min_effect=0.5).at_floor  # only the gain has a floor


def test_minimum_effect_is_measured_from_the_imitated_runs():
    ref = [10.0, 20.0, 30.0, 40.0]
    others = [[11.0, 19.0, 30.5, 40.0], [10.0, 23.0, 29.0, 41.0]]
    derived = min_effect("psnr_gain", ref, others)
    per_seed = np.abs(np.concatenate([np.subtract(ref, o) for o in others]))
    largest_median = max(abs(np.median(np.subtract(ref, o))) for o in others)  # 0.5 and 0.5
    assert derived["largest_median_drop"] == pytest.approx(largest_median)
    assert derived["min_effect"] == pytest.approx(max(RESOLUTION["psnr_gain"], MARGIN * largest_median))
    assert derived["drop_quantile"] == pytest.approx(np.quantile(per_seed, QUANTILE))
    assert derived["largest_mean_drop"] == pytest.approx(max(abs(np.mean(np.subtract(ref, o))) for o in others))
    flipped = min_effect("psnr_gain", ref, [[10.0, 20.0, 90.0, 40.0]])  # one chaotic seed 60 dB up
    assert flipped["min_effect"] == RESOLUTION["psnr_gain"] and flipped["largest_mean_drop"] == 15.0
    assert min_effect("label_acc", [1.0, 1.0], [[1.0, 1.0]])["min_effect"] == RESOLUTION["label_acc"]
    assert min_effect("psnr_gain", ref, [])["min_effect"] == RESOLUTION["psnr_gain"]


def test_the_imitated_runs_themselves_never_regress_against_their_own_minimum_effect():
    rng = np.random.default_rng(0)
    ref = list(rng.normal(30, 10, 6))
    others = [list(np.array(ref) + rng.normal(0, 3, 6)) for _ in range(2)]
    effect = min_effect("psnr_gain", ref, others)["min_effect"]
    assert not any(judge("psnr_gain", ref, other, effect).regressed for other in others)


def test_unpaired_values_are_refused():
    with pytest.raises(ValueError):
        judge("psnr_gain", [1.0, 2.0], [1.0], min_effect=0.5)
