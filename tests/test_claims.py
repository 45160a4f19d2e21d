"""The claims table: each statistic against a plain computation, the verdict rules, pending rows, the CLI, and
per claim a reduced-scale run that fails when the direction of the claim flips (slow)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pytest

from bench.claims import CLAIMS, Band, Claim, Measure, claim, methods
from bench.cli import main
from bench.errors import BenchError
from bench.leaderboard.claims import claim_verdict, evaluate, evaluate_claim, ours_text, render_claims
from bench.metrics import MetricConfig
from bench.record import Record, save_record
from bench.runner import RunOptions, run_cells
from bench.sweep import expand, load_sweep_file, override

BOARD = Path(__file__).resolve().parents[1] / "leaderboard"
T_975_4DOF = 2.7764451051977987  # Student t quantile for 5 values


def record(method: str, seed: int, value: float, status: str = "ok", key: str = "label_method", **scenario) -> Record:
    config = {key: method, "scenario": {"seed": seed, "batch_size": 8, **scenario}}
    metrics = {"label_acc": value} if status == "ok" else {}
    return Record(run_id=f"{method}-{seed}-{sorted(scenario.items())}", config=config, status=status, metrics=metrics)


def test_mean_and_its_student_t_interval():
    values = [0.7, 0.8, 0.9, 0.85, 0.75]
    records = [record("e2egi", s, v) for s, v in enumerate(values)] + [record("llg", 0, 0.1)]
    measure = Measure("acc", "label_acc", {"label_method": "e2egi"}, reproduced=Band(0.75, 0.87))
    outcome = evaluate(measure, records)
    half = T_975_4DOF * statistics.stdev(values) / math.sqrt(5)
    assert outcome.estimate == pytest.approx(0.8)
    assert outcome.ci == pytest.approx((0.8 - half, 0.8 + half))
    assert outcome.verdict == "reproduced" and (outcome.n_ok, outcome.n_total) == (5, 5)
    assert evaluate(Measure("acc", "label_acc", {"label_method": "e2egi"}, reproduced=Band(0.9, 1)), records).verdict == "not"


def test_margin_pairs_seeds_with_the_best_compared_selection():
    records = [record("e2egi", s, v) for s, v in enumerate([0.8, 0.9, 0.7, 0.85])]
    records += [record("llg", s, v) for s, v in enumerate([0.5, 0.6, 0.4])]  # best by mean, seed 3 missing
    records += [record("yin", s, 0.3) for s in range(4)]
    measure = Measure(
        "margin", "label_acc", {"label_method": "e2egi"}, against=methods("label_method", "yin", "llg"),
        reproduced=Band(above=0.0, whole_ci=True), partly=Band(above=0.0),
    )
    outcome = evaluate(measure, records)
    assert outcome.versus == "llg"
    assert outcome.values == pytest.approx((0.3, 0.3, 0.3))  # seeds 0-2 only
    assert outcome.estimate == pytest.approx(0.3) and outcome.verdict == "reproduced"
    flipped = [record("llg", s, 0.95) for s in range(3)] + records[:4]
    assert evaluate(measure, flipped).verdict == "not"


def test_a_compared_selection_without_runs_is_named_and_caps_the_verdict():
    records = [record("e2egi", s, v) for s, v in enumerate([0.8, 0.9, 0.7, 0.85])]
    records += [record("llg", s, 0.5) for s in range(4)]
    measure = Measure(
        "margin", "label_acc", {"label_method": "e2egi"}, against=methods("label_method", "llg", "llg-star"),
        reproduced=Band(above=0.0, whole_ci=True), partly=Band(above=0.0),
    )
    outcome = evaluate(measure, records)
    assert outcome.versus == "llg" and outcome.unmeasured == ("llg-star",)
    assert outcome.verdict == "partly"  # llg-star, not run yet, might beat e2egi
    assert ours_text(outcome).endswith("vs llg (no runs yet: llg-star)")
    complete = records + [record("llg-star", s, 0.6) for s in range(4)]
    assert evaluate(measure, complete).verdict == "reproduced"


def test_margin_can_compare_other_settings_of_the_same_method():
    records = [record("ig", s, 20.0 + s, key="attack", repetition=0.0) for s in range(3)]
    records += [record("ig", s, 14.0, key="attack", repetition=0.75) for s in range(3)]
    measure = Measure("drop", "label_acc", {"attack": "ig", "scenario.repetition": 0.0},
                      against=({"scenario.repetition": 0.75},), partly=Band(above=0.0))  # fmt: skip
    outcome = evaluate(measure, records)
    assert outcome.values == pytest.approx((6.0, 7.0, 8.0)) and outcome.versus == "repetition=0.75"


def test_a_margin_between_different_cases_compares_gains_over_their_floors():
    """Another repetition rate draws other batches with other floors (seed 0 of ig-repeated-labels: 11.66 and
    9.84 dB): raw PSNR would count the floors' difference as the attack's."""
    with pytest.raises(ValueError, match="use psnr_gain, not psnr"):
        Measure("drop", "psnr", {"attack": "ig", "scenario.repetition": 0.0}, against=({"scenario.repetition": 0.5},))
    Measure("drop", "psnr_gain", {"attack": "ig", "scenario.repetition": 0.0}, against=({"scenario.repetition": 0.5},))
    Measure("margin", "psnr", {"attack": "e2egi"}, against=methods("attack", "e2egi-no-mlco"))  # one case each seed
    assert all(m.metric not in ("psnr", "ssim") for c in CLAIMS for m in c.measures if m.compares_cases)


def test_fraction_uses_the_exact_clopper_pearson_interval():
    measure = Measure("hits", "label_acc", {"label_method": "dlg"}, at_least=0.5, reproduced=Band(0.8, 1.0),
                      partly=Band(above=0.0))  # fmt: skip
    none = evaluate(measure, [record("dlg", s, 0.1) for s in range(5)])
    assert none.estimate == 0 and none.ci == pytest.approx((0.0, 1 - 0.025 ** (1 / 5)))
    assert none.verdict == "not"
    every = evaluate(measure, [record("dlg", s, 0.9) for s in range(5)])
    assert every.ci == pytest.approx((0.025 ** (1 / 5), 1.0)) and every.verdict == "reproduced"
    some = evaluate(measure, [record("dlg", s, 0.9 if s < 2 else 0.1) for s in range(5)])
    assert some.estimate == pytest.approx(0.4) and some.verdict == "partly"


def test_failed_runs_count_in_the_total_and_give_no_value():
    records = [record("e2egi", 0, 0.8), record("e2egi", 1, 0.0, status="failed")]
    outcome = evaluate(Measure("acc", "label_acc", {"label_method": "e2egi"}), records)
    assert (outcome.n_ok, outcome.n_total, outcome.values) == (1, 2, (0.8,))


def test_two_runs_of_one_seed_make_a_selection_ambiguous():
    records = [record("e2egi", 0, 0.8), record("e2egi", 0, 0.7, repetition=0.5)]
    with pytest.raises(BenchError, match="seed 0"):
        evaluate(Measure("acc", "label_acc", {"label_method": "e2egi"}), records)


def test_claims_are_pending_without_their_records_and_take_the_weakest_verdict(tmp_path: Path):
    entry = Claim(
        "demo", "src", "statement", "setting", "demo", "demo.yaml",
        (Measure("acc", "label_acc", {"label_method": "e2egi"}, reproduced=Band(0.5, 1.0)),
         Measure("margin", "label_acc", {"label_method": "e2egi"}, against=methods("label_method", "llg"),
                 reproduced=Band(above=0.0, whole_ci=True), partly=Band(above=0.0))),
    )  # fmt: skip
    assert [o.verdict for o in evaluate_claim(entry, tmp_path)] == ["pending", "pending"]
    folder = tmp_path / "records" / "demo"
    for seed, (mine, theirs) in enumerate([(0.8, 0.7), (0.9, 0.95), (0.7, 0.6)]):
        save_record(record("e2egi", seed, mine), folder)
        save_record(record("llg", seed, theirs), folder)
    outcomes = evaluate_claim(entry, tmp_path)
    assert [o.verdict for o in outcomes] == ["reproduced", "partly"]  # margin +0.05, CI includes 0
    assert claim_verdict(outcomes) == "partly"
    text = render_claims(tmp_path, [entry])
    assert "| demo | src |" in text and "| partly |" in text


def test_every_claim_renders_one_row_and_names_known_folders():
    text = render_claims(BOARD)
    for entry in CLAIMS:
        assert text.count(f"| {entry.key} |") == 1
        assert (BOARD / "sweeps" / entry.sweep).is_file() or not (BOARD / "records" / entry.records).is_dir()
    assert claim("e2egi-labels").measures[0].paper == 0.81
    with pytest.raises(KeyError, match="known"):
        claim("nope")


def test_claims_command_writes_the_table_and_refuses_a_missing_board(tmp_path: Path, capsys):
    out = tmp_path / "claims.md"
    assert main(["claims", "--board", str(BOARD), "--out", str(out)]) == 0
    assert out.read_text() == render_claims(BOARD)
    assert main(["claims", "--board", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


# ---- each claim at reduced scale: the direction of every measure must be the published one ---------------

REDUCED = {
    # untrained ResNet-18 at 32 px with E2EGI's head, N = 10, B = 256, r = 0.96: e2egi 0.78 against llg 0.47
    "e2egi-labels": dict(
        models=("resnet18",), model_options={"resnet18": {"head_init": "normal"}}, image_size=32,
        batch_sizes=(256,), repetitions=(0.96,), seeds=(0, 1, 2), client_memory="full",
    ),
    "idlg-labels-b1": dict(seeds=(0, 1, 2, 3, 4)),
    "dlg-lenet-b1": dict(seeds=(0, 1, 2)),
    "mlco-vs-one-seed": dict(seeds=(0, 1, 2)),
    "mlco-vs-best-of-8": dict(seeds=(0, 1, 2)),
    "ig-repeated-labels": dict(seeds=(0, 1, 2, 3, 4)),
    "gradinversion-ablation": dict(seeds=(0, 1, 2)),  # about 30 min on one CPU thread
}


def filled_claims() -> list[str]:
    return [c.key for c in CLAIMS if (BOARD / "records" / c.records).is_dir()]


def test_every_claim_with_records_has_a_reduced_scale_check():
    assert set(filled_claims()) <= set(REDUCED)


def claim_methods(entry: Claim) -> list[str]:
    names = []
    for measure in entry.measures:
        for selection in (measure.where, *measure.against):
            names += [v for k, v in selection.items() if k in ("attack", "label_method") and v not in names]
    return names


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(REDUCED))
def test_claim_direction_holds_at_reduced_scale(key: str, tmp_path: Path):
    entry = claim(key)
    sweep = override(load_sweep_file(BOARD / "sweeps" / entry.sweep), **REDUCED[key])
    options = RunOptions(metric=MetricConfig(lpips=False), save_images=False)
    run_cells(expand(sweep, claim_methods(entry)), tmp_path / "records" / entry.records, options)
    reduced = evaluate_claim(entry, tmp_path)
    published = evaluate_claim(entry, BOARD)
    # a measure holds ("partly" or "reproduced") or fails ("not") at reduced scale as it does in the table
    for small, full in zip(reduced, published, strict=True):
        assert (small.verdict == "not") == (full.verdict == "not"), (small.measure.name, small.estimate, full.estimate)
