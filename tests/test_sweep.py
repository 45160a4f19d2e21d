"""Sweeps as a user runs them: interrupted and resumed, and refused when the input is bad."""

import dataclasses
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.preflight import validate
from bench.record import run_id
from bench.runner import run_cells
from bench.sweep import Sweep, expand, load_preset, load_sweep_file

ROOT = Path(__file__).resolve().parents[1]
SWEEP = """
name: interrupt
attacks: [noise, inverting-gradients]
models: [convnet]
model_options: {convnet: {width: 4}}
image_size: 16
batch_sizes: [2]
seeds: [0, 1, 2]
budget: 25
"""


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, cwd=ROOT, timeout=600)


def records_of(folder: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}


def test_killed_sweep_resumes_to_the_same_records(tmp_path):
    config = tmp_path / "sweep.yaml"
    config.write_text(SWEEP)
    killed, fresh = tmp_path / "killed", tmp_path / "fresh"
    args = [sys.executable, "-m", "bench", "run", "--config", str(config), "--no-images", "--out"]
    process = subprocess.Popen([*args, str(killed)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while len(list(killed.glob("*.json"))) < 2 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = records_of(killed)
    assert 0 < len(partial) < 6, "the sweep should have been killed part-way"

    resumed = bench("run", "--config", str(config), "--no-images", "--resume", "--out", str(killed))
    assert resumed.returncode == 0, resumed.stderr
    assert bench("run", "--config", str(config), "--no-images", "--out", str(fresh)).returncode == 0

    after, uninterrupted = records_of(killed), records_of(fresh)
    assert sorted(after) == sorted(uninterrupted) and len(after) == 6  # exactly one record per cell
    assert all(r["status"] == "ok" for r in after.values())
    assert not [p for p in killed.iterdir() if p.name.startswith(".")]  # no partial writes left
    for run_id, record in after.items():
        assert record["metrics"] == uninterrupted[run_id]["metrics"]
        if run_id in partial:  # ok records were kept, not re-run
            assert record["cost"] == partial[run_id]["cost"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--preset", "quik"], "unknown preset 'quik'"),
        (["--preset", "smoke", "--attacks", "e2egii"], "did you mean e2egi"),
        (["--preset", "smoke", "--batch-sizes", "64", "--attacks", "noise"], "needs 64 distinct classes"),
        (["--preset", "smoke", "--repetitions", "1.0", "--attacks", "noise"], "repetitions[0]: Input should be less than 1"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, message):
    out = bench("run", *args, "--out", str(tmp_path / "out"))
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and message in out.stderr
    assert not (tmp_path / "out").exists()


def test_malformed_yaml_and_unknown_fields(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("attacks: [noise\nmodels: lenet\n")
    out = bench("run", "--config", str(bad), "--out", str(tmp_path / "out"))
    assert out.returncode == 2 and "malformed YAML" in out.stderr and out.stderr.count("\n") == 1
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("atacks: [noise]\n")
    with pytest.raises(BenchError, match="unknown sweep field"):
        load_sweep_file(unknown)
    assert not (tmp_path / "out").exists()


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = bench("run", "--preset", "smoke", "--attacks", "noise", "--out", str(blocker / "runs"))
    assert out.returncode == 2 and "is not a folder" in out.stderr
    assert blocker.read_text() == ""


def test_presets_expand_to_valid_grids():
    for name in ("smoke", "quick", "paper"):
        sweep = load_preset(name)
        cells = expand(sweep, ["noise"])
        assert cells and len({c.run_id for c in cells}) == len(cells)
    paper = load_preset("paper")
    assert paper.image_size == 224 and max(paper.batch_sizes) == 256 and 0.96 in paper.repetitions


def test_ranks_share_unsharded_cells_and_resume_with_another_world_size(tmp_path):
    out = tmp_path / "placed"
    args = ["run", "--preset", "smoke", "--attacks", "noise", "--seeds", "0,1,2", "--no-images", "--out", str(out)]
    placed = bench(*args, "--nproc", "2", "--shard-above", "8")
    assert placed.returncode == 0, placed.stderr
    records = records_of(out)
    assert len(records) == 3 and all(r["status"] == "ok" for r in records.values())
    assert all(r["environment"]["world_size"] == 1 for r in records.values())  # one rank per cell
    again = bench(*args, "--resume")  # one process picks up the folder two ranks wrote
    assert again.returncode == 0 and "3/3 ok" in again.stdout
    assert records_of(out) == records


def test_model_options_belong_to_their_model():
    sweep = load_preset("smoke")
    assert sweep.model_options == {"convnet": {"width": 8}}
    cells = expand(dataclasses.replace(sweep, models=("lenet", "convnet")), ["noise"])
    options = {c.scenario.model: c.scenario.model_options for c in cells}
    assert options == {"lenet": {}, "convnet": {"width": 8}}
    with pytest.raises(BenchError, match=r"model_options\['width'\]: Input should be a valid dictionary"):
        Sweep(model_options={"width": 8})


def test_infeasible_cells_are_refused_or_recorded_as_skipped(tmp_path):
    sweep = Sweep(
        track="labels", models=("lenet",), image_size=16, batch_sizes=(8, 32), repetitions=(0.0, 0.9),
        num_classes=10, label_source="model", seeds=(0,),
    )  # fmt: skip
    cells = expand(sweep, ["yin"])
    with pytest.raises(BenchError, match="needs 32 distinct classes"):
        validate(cells)
    marked = validate(cells, skip_infeasible=True)
    assert [c.skip is not None for c in marked] == [False, False, True, False]
    assert [c.run_id for c in marked] == [c.run_id for c in cells]  # skipping is not part of the run's identity
    records = run_cells(marked, tmp_path)
    assert [r.status for r in records] == ["ok", "ok", "skipped", "ok"]
    assert "needs 32 distinct classes" in records[2].error and (tmp_path / f"{cells[2].run_id}.json").is_file()
    with pytest.raises(BenchError, match="infeasible: Input should be 'refuse' or 'skip'"):
        Sweep(infeasible="ignore")


def test_budgets_may_list_several_values_for_one_attack():
    sweep = Sweep(attacks=("dlg", "noise"), budget=5, budgets={"dlg": [10, 100]})
    cells = expand(sweep, ["dlg", "noise"])
    assert [(c.attack, c.budget) for c in cells] == [("dlg", 10), ("dlg", 100), ("noise", 5)]
    single = expand(dataclasses.replace(sweep, budgets={"dlg": 10}), ["dlg"])
    assert single[0].run_id == cells[0].run_id  # a list adds cells; it does not change any cell's id


def test_model_seed_fixes_the_weights_across_seeds_and_keeps_other_run_ids():
    sweep = dataclasses.replace(load_preset("quick"), seeds=(0, 1))
    plain = expand(sweep, ["noise"])
    assert [c.scenario.model_seed for c in plain] == [None] * len(plain)
    fixed = expand(dataclasses.replace(sweep, model_seed=7), ["noise"])
    assert {c.scenario.model_seed for c in fixed} == {7} and len({c.scenario.seed for c in fixed}) == 2
    assert {c.run_id for c in fixed}.isdisjoint(c.run_id for c in plain)
    # a published sweep still expands to the cells of its committed records (written before records held the
    # attacks' resolved options, which now enter the run id)
    committed = records_of(ROOT / "leaderboard" / "records" / "cpu-images" / "lenet")
    attacks = sorted({r["config"]["attack"] for r in committed.values()})
    published = load_sweep_file(ROOT / "leaderboard" / "sweeps" / "cpu-images-lenet.yaml")
    without_options = [{k: v for k, v in c.config().items() if k != "attack_options"} for c in expand(published, attacks)]
    assert {run_id(config) for config in without_options} == set(committed)
