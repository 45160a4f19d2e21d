"""Every attack record's trace (bench.trace) and the comparisons read off traces (bench.leaderboard.traces):
checkpoints scored by the runner, never by the attack; tables at a given compute; FLOPs to a target gain;
the quality-against-compute plots and the site's section."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from tests.test_attack_contract import _holds, _walk
from tests.test_leaderboard import make_record

import attacks  # noqa: F401
import baselines  # noqa: F401
from bench.attack import ATTACKS, Attack, Reconstruction, report
from bench.cli import main
from bench.leaderboard import write_leaderboard
from bench.leaderboard.compute_plots import compute_plots
from bench.leaderboard.site import build_site
from bench.leaderboard.runs import load_sweep
from bench.leaderboard.traces import at_flops, entry_at, flops_to, gain_curves, target_tables
from bench.metrics import MetricConfig, score
from bench.record import save_record
from bench.runner import RunOptions, run_cells
from bench.scenario import Scenario
from bench.sweep import Cell
from bench.threat import ThreatModel
from bench.trace import MAX_ENTRIES, TRACE_FIELDS, checkpoint_after, thinned

CONVNET = Scenario(model="convnet", model_options={"width": 4}, dataset="digits", image_size=16, batch_size=2, seed=1,
                   bn_mode="eval", threat=ThreatModel(labels_known=False, bn_stats="exact"))  # fmt: skip
LENET = Scenario(model="lenet", dataset="digits", image_size=16, batch_size=1, seed=2,
                 threat=ThreatModel(labels_known=False, bn_stats="none"))  # fmt: skip


def test_checkpoints_are_geometric_and_thinned_from_the_end():
    grid, at = [], 0
    while at < 400:
        at = checkpoint_after(at)
        grid.append(at)
    assert grid[:10] == [1, 2, 3, 4, 6, 8, 12, 16, 23, 32]  # ceil(sqrt(2)^k): about sqrt(2) apart
    assert all(b / a <= 1.5 + 1e-9 for a, b in zip(grid[4:], grid[5:]))
    entries = [{"iteration": i} for i in range(1, 46)]
    kept = thinned(entries, 19)
    assert len(kept) <= 19 and kept[-1]["iteration"] == 45 and kept == thinned(kept, 19)


@pytest.mark.parametrize("attack, scenario, budget", [
    ("e2egi", CONVNET, 40), ("gradinversion", CONVNET, 30), ("inverting-gradients", LENET, 600), ("dlg", LENET, 30),
])  # fmt: skip
def test_a_record_traces_its_run_and_ends_with_its_own_metrics(attack, scenario, budget, tmp_path: Path):
    (record,) = run_cells([Cell(scenario, attack=attack, budget=budget)], tmp_path, RunOptions(save_images=False))
    assert record.status == "ok", record.error
    trace = record.trace
    assert 3 <= len(trace) <= MAX_ENTRIES and all(set(e) == set(TRACE_FIELDS) for e in trace)
    for field in ("flops", "wall_s", "iteration"):
        values = [e[field] for e in trace]
        assert values == sorted(values), field
    last = trace[-1]
    for metric in ("psnr", "psnr_gain", "label_acc"):
        assert last[metric] == record.metrics[metric]
    assert last["flops"] == record.cost["flops"] and last["iteration"] == record.cost["iterations"]
    assert last["wall_s"] == record.cost["wall_s"] and record.cost["trace_s"] >= 0
    assert trace[0]["flops"] > 0 and trace[0]["iteration"] >= 1
    assert all(e["psnr_gain"] == pytest.approx(e["psnr"] - record.metrics["psnr_floor"]) for e in trace)


def test_a_reference_row_is_traced_at_no_compute(tmp_path: Path):
    (record,) = run_cells([Cell(LENET, attack="prior-grey")], tmp_path, RunOptions(save_images=False))
    assert [e["flops"] for e in record.trace] == [0] and record.trace[0]["psnr"] == record.metrics["psnr"]


class _Spy(Attack):
    """Offers noise that moves toward grey, and looks at what its progress callback lets it reach."""

    Config = type("SpyConfig", (), {})
    flops_metered = True
    seen: list = []

    def invert(self, case, budget, seed, progress):
        generator = torch.Generator().manual_seed(0)
        start = torch.rand((case.num_images, *case.image_shape), generator=generator)
        offered = {}
        for i in range(1, budget + 1):
            images = start + (0.5 - start) * i / budget

            def current(images=images, i=i):
                offered[i] = images
                return Reconstruction(images, None)

            assert progress(i, 1.0 / i) is None
            report(progress, i, 1.0 / i, current)
        _Spy.seen = [list(_walk(progress)), offered]
        return Reconstruction(start + (0.5 - start), None, iterations=budget)


def test_the_runner_scores_what_the_attack_offers_and_the_attack_reaches_no_secret(tmp_path: Path):
    ATTACKS.add("spy", _Spy, "looks at what its progress callback lets it reach")
    try:
        (record,) = run_cells([Cell(LENET, attack="spy", budget=50)], tmp_path, RunOptions(save_images=False))
    finally:
        ATTACKS.remove("spy")
    reachable, offered = _Spy.seen
    from bench.client import simulate

    _, secret = simulate(LENET)
    for obj in reachable:
        assert not isinstance(obj, torch.Tensor) or not _holds(obj, secret.images)
        assert type(obj).__name__ != "Secret"
    assert sorted(offered) == [1, 2, 3, 4, 6, 8, 12, 16, 23, 32, 46]  # asked only at its checkpoints
    for entry in record.trace[:-1]:
        expected = score(Reconstruction(offered[entry["iteration"]], None), secret, MetricConfig(lpips=False))
        assert entry["psnr"] == expected.summary["psnr"] and entry["loss"] == 1.0 / entry["iteration"]
    assert record.trace[-1]["iteration"] == 50


# --- reading the traces ------------------------------------------------------------------------------


def _traced(method: str, seed: int, gains: list[tuple[float, float]], batch_size: int = 1):
    """A record whose trace reaches gain g at FLOPs f for each (f, g); its metrics are the last entry's."""
    trace = [dict(zip(TRACE_FIELDS, (f, i * 1.0, i + 1, 1.0, g + 10, g, 1.0))) for i, (f, g) in enumerate(gains)]
    metrics = {"psnr": trace[-1]["psnr"], "psnr_gain": trace[-1]["psnr_gain"], "label_acc": 1.0, "ssim": 0.5}
    record = make_record(method, batch_size, seed, metrics=metrics, budget=None)
    config = {**record.config, "flops": 10**10}
    return dataclasses.replace(record, config=config, trace=trace, cost={**record.cost, "flops": trace[-1]["flops"]})


def _board() -> list:
    return [
        _traced("fast", 0, [(1e8, 2.0), (1e9, 12.0), (1e10, 30.0)]),
        _traced("fast", 1, [(1e8, 1.0), (2e9, 11.0), (1e10, 20.0)]),
        _traced("fast", 2, [(1e8, 0.0), (1e9, 5.0), (1e10, 9.0)]),
        _traced("slow", 0, [(5e9, 1.0), (1e10, 4.0)]),
        _traced("slow", 1, [(5e9, 2.0), (1e10, 12.0)]),
        _traced("slow", 2, [(5e9, -1.0), (1e10, 3.0)]),
    ]


def test_a_run_is_read_at_its_best_within_the_compute():
    fast = _board()[0]
    assert entry_at(fast.trace, 1.5e9)["psnr_gain"] == 12.0 and entry_at(fast.trace, 5e7) is None
    read = {r.config["attack"] + str(r.config["scenario"]["seed"]): r for r in at_flops(_board(), 2e9)}
    assert read["fast0"].metrics == {"psnr": 22.0, "psnr_gain": 12.0, "label_acc": 1.0}
    assert read["slow0"].metrics == {}  # no checkpoint that early: no value yet
    old = make_record("old", metrics={"psnr": 20.0})  # a record from before traces
    assert at_flops([old], 1e12)[0].metrics == {}


def test_flops_to_a_target_are_a_median_over_runs_that_may_never_reach_it():
    fast, slow = _board()[:3], _board()[3:]
    assert [flops_to(r, 10.0) for r in fast] == [1e9, 2e9, math.inf]
    (table,) = target_tables(_board(), 10.0)
    rows = {row[0]: row[1:] for row in table.text_rows()}
    assert rows["fast"] == ["2.00e9 (2/3)"] and rows["slow"] == ["not reached (1/3)"]
    assert [flops_to(r, 10.0) for r in slow] == [math.inf, 1e10, math.inf]


def test_tables_at_a_compute_and_to_a_target_render_only_for_traced_records(tmp_path: Path):
    folder = tmp_path / "runs"
    for record in _board():
        save_record(record, folder)
    text = write_leaderboard(folder, None, "md")
    assert "compute (FLOPs per run)" in text and "1.00e10" in text
    assert "FLOPs to a gain of 10 dB" in text and "2.00e9 (2/3)" in text
    at = write_leaderboard(folder, None, "md", flops=2e9)
    assert "Read at 2.00e9 FLOPs" in at and "≤ 2.00e9" in at and "FLOPs to a gain" not in at
    plain = tmp_path / "plain"
    save_record(make_record("old", metrics={"psnr": 20.0, "psnr_gain": 3.0}), plain)
    untraced = write_leaderboard(plain, None, "md")
    assert "FLOPs" not in untraced  # records from before traces render as they always did


def test_leaderboard_flags_for_compute_are_checked(tmp_path: Path, capsys):
    folder = tmp_path / "runs"
    for record in _board():
        save_record(record, folder)
    assert main(["leaderboard", "--runs", str(folder), "--at-flops", "1e9", "--metrics", "ssim"]) == 2
    assert "--at-flops reads psnr, psnr_gain, label_acc" in capsys.readouterr().err
    assert main(["leaderboard", "--runs", str(folder), "--at-flops", "1e9", "--site", str(tmp_path / "site")]) == 2
    assert main(["leaderboard", "--runs", str(folder), "--target-gain", "20"]) == 0
    assert "FLOPs to a gain of 20 dB" in capsys.readouterr().out


def test_quality_against_compute_is_drawn_per_setting_with_a_band(tmp_path: Path):
    (setting,) = gain_curves(_board())
    fast = next(c for c in setting.curves if c.label == "fast")
    x, mean, ci, runs = fast.points[-1]
    assert x == pytest.approx(1e10) and mean == pytest.approx((30 + 20 + 9) / 3) and ci > 0 and runs == 3
    assert fast.points[0][0] == pytest.approx(1e8)
    (name, png, title) = compute_plots(_board())[0]
    assert name.startswith("psnr_gain-vs-flops-") and png.startswith(b"\x89PNG") and "B=1" in title
    folder = tmp_path / "board"
    for record in _board():
        save_record(record, folder)
    files = build_site([load_sweep(folder)])
    page = files["board/index.html"].decode()
    assert "Quality against compute" in page and f"board/plots/{name}" in files
