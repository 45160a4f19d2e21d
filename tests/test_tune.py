"""`bench tune`: search spaces checked against the Configs, studies that resume after a kill without repeating
a trial, seeded studies that repeat, and tuned options scored only on cases apart from the tuning ones."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from bench.attack import ATTACKS, attack_config
from bench.cli import main
from bench.errors import BenchError
from bench.search_space import Integer, Real, field_kind, space_for
from bench.leaderboard.tuning import comparison_rows
from bench.record import load_records
from bench.tune import RUNS_DIR, STUDY_DB, TUNED_FILE, load_tuned

REPO = Path(__file__).resolve().parents[1]
# a few hundred milliseconds per trial: LeNet at 16 px, 1e8 FLOPs per run
TINY = ["--model", "lenet", "--dataset", "embedded-detail", "--image-size", "16", "--flops", "1e8", "--seeds", "0"]
DLG_TUNE = ["tune", *TINY, "--batch-sizes", "1,2", "--attacks", "dlg", "--tune-seeds", "100", "--trials", "4"]
OPTIMISING = {"dlg", "idlg", "inverting-gradients", "gradinversion", "gradinversion-no-group", "e2egi", "e2egi-no-mlco"}


def test_every_search_space_names_number_fields_of_its_config_around_its_own_values():
    spaced = set()
    for name in ATTACKS.names():
        cls = ATTACKS.get(name).obj
        for field, param in cls.search_space.items():
            assert field_kind(name, cls.Config, field) == ("int" if isinstance(param, Integer) else "float"), (name, field)
        fixed = ATTACKS.get(name).info.get("config", {})
        space, config = space_for(name), attack_config(name)
        assert not set(space) & set(fixed), name  # a variant's defining settings stay as registered
        for field, param in space.items():
            assert param.contains(getattr(config, field)), f"{name}.{field}={getattr(config, field)} outside {param.text()}"
        spaced |= {name} if space else set()
    assert OPTIMISING <= spaced
    assert {"noise", "prior-grey", "prior-mean"}.isdisjoint(spaced)  # nothing to tune


def test_a_variant_searches_no_field_its_settings_make_inert():
    assert {"group", "n_seed"} <= set(space_for("e2egi"))
    for variant in ("e2egi-no-mlco", "e2egi-no-mlco-best-of-8"):  # no MLCO rounds: the group weight is never used
        assert "group" not in space_for(variant) and "n_seed" not in space_for(variant)
    with pytest.raises(BenchError, match=r"^search space of 'e2egi-no-mlco': group has no effect with mlco=False$"):
        space_for("e2egi-no-mlco", {"group": Real(1e-3, 1.0)})
    with pytest.raises(BenchError, match=r"fixed by the variant \(n_seed=1\)"):
        space_for("e2egi-no-mlco", {"n_seed": Real(1, 4)})


def test_a_declared_field_unknown_to_the_config_fails_in_preflight(tmp_path, capsys, monkeypatch):
    dlg = ATTACKS.get("dlg").obj
    monkeypatch.setattr(dlg, "search_space", {**dlg.search_space, "learning_rate": Real(0.1, 1.0)})
    monkeypatch.setattr("bench.tune.simulate", lambda *a, **k: pytest.fail("work began before the space was checked"))
    assert main([*DLG_TUNE, "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: search space of 'dlg': its Config has no field 'learning_rate'; its fields: iterations, lr, init_space"
    )
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def dlg_tuned(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tune") / "dlg"
    assert main([*DLG_TUNE, "--out", str(out)]) == 0
    return out


def _study(out: Path) -> optuna.Study:
    storage = f"sqlite:///{out / STUDY_DB}"
    (name,) = optuna.get_all_study_names(storage)
    return optuna.load_study(study_name=name, storage=storage)


def _entry(out: Path, attack: str) -> dict:
    (entry,) = yaml.safe_load((out / TUNED_FILE).read_text())["attacks"][attack].values()
    return entry


def test_the_same_sampler_seed_gives_the_same_trials_and_best_trial(dlg_tuned, tmp_path):
    again = tmp_path / "again"
    assert main([*DLG_TUNE, "--out", str(again)]) == 0
    first, second = _entry(dlg_tuned, "dlg"), _entry(again, "dlg")
    first.pop("study_s"), second.pop("study_s")
    assert first == second
    assert [t.params for t in _study(dlg_tuned).trials] == [t.params for t in _study(again).trials]
    other = tmp_path / "other"
    assert main([*DLG_TUNE, "--out", str(other), "--sampler-seed", "1"]) == 0
    assert [t.params for t in _study(dlg_tuned).trials][1:] != [t.params for t in _study(other).trials][1:]


def test_the_first_trial_is_the_attacks_own_setting_and_counts(dlg_tuned):
    entry = _entry(dlg_tuned, "dlg")
    trials = _study(dlg_tuned).trials
    assert trials[0].params == {"lr": 1.0} and trials[0].user_attrs["defaults"]
    assert entry["trials"] == 4 and entry["default_value"] == round(trials[0].value, 4)
    assert entry["best_value"] == round(max(t.value for t in trials), 4) >= entry["default_value"]
    assert entry["seeds"] == [100] and entry["options"] == trials[entry["best_trial"]].params
    for trial in trials:  # the objective is the mean gain of the trial's runs, read back from their records
        gains = [json.loads((dlg_tuned / RUNS_DIR / f"{i}.json").read_text())["metrics"]["psnr_gain"] for i in trial.user_attrs["run_ids"]]
        assert len(gains) == 2 and trial.value == pytest.approx(sum(gains) / 2)


def test_a_process_asks_for_no_trial_that_another_processs_running_trial_makes_up(dlg_tuned, tmp_path, capsys):
    out = tmp_path / "shared"
    shutil.copytree(dlg_tuned, out)
    other = _study(out).ask()  # a trial another live process (this test's parent) is running
    other.set_user_attr("worker", f"{socket.gethostname()}:{os.getppid()}")
    assert main([*DLG_TUNE[:-1], "5", "--out", str(out)]) == 0
    assert len(_study(out).trials) == 5  # 4 counted + the other's: nothing asked
    assert f"trial(s) {other.number} still running in another process complete the 5" in capsys.readouterr().out
    assert main([*DLG_TUNE[:-1], "6", "--out", str(out)]) == 0
    states = [t.state for t in _study(out).trials]
    assert states.count(TrialState.COMPLETE) == 5 and states.count(TrialState.RUNNING) == 1


def test_tuned_options_are_scored_only_on_cases_apart_from_the_tuning_ones(dlg_tuned, tmp_path, capsys):
    tuned = str(dlg_tuned / TUNED_FILE)
    run = ["run", *TINY, "--batch-sizes", "1,2", "--attacks", "dlg", "--no-images", "--tuned", tuned]
    assert main([*run, "--seeds", "3,100", "--out", str(tmp_path / "overlap")]) == 2
    assert "seed 100 was a tuning seed of 'dlg @ lenet/embedded-detail/16px/1e+08 FLOPs#" in capsys.readouterr().err
    assert not (tmp_path / "overlap").exists()
    assert main([*run, "--seeds", "3", "--out", str(tmp_path / "scored")]) == 0
    entry = _entry(dlg_tuned, "dlg")
    records = [json.loads(p.read_text()) for p in (tmp_path / "scored").glob("*.json")]
    assert len(records) == 2
    for record in records:
        assert record["config"]["scenario"]["seed"] not in record["tuning"]["seeds"]
        assert record["tuning"]["options"] == entry["options"] and record["tuning"]["trials"] == 4
        assert record["config"]["attack_options"]["lr"] == entry["options"]["lr"]
    default = ["run", *TINY, "--batch-sizes", "1,2", "--attacks", "dlg", "--no-images", "--seeds", "3"]
    assert main([*default, "--out", str(tmp_path / "default")]) == 0
    (row,) = comparison_rows(
        [r for p in ("default", "scored") for r in load_records(tmp_path / p)], load_tuned(tuned)
    )
    assert row[:2] == ["dlg", "4"] and row[6] == "2/2"
    assert main([*run, "--seeds", "3", "--model", "convnet", "--out", str(tmp_path / "other")]) == 2
    assert "no run of this sweep matches a study of the file" in capsys.readouterr().err


def test_where_the_attacks_own_settings_won_its_default_runs_are_its_tuned_runs():
    tuned = load_tuned(REPO / "leaderboard" / "tuning" / "cpu-images-lenet" / TUNED_FILE)
    assert tuned["idlg"] and all(e["options"] == e["default_options"] for e in tuned["idlg"].values())
    defaults_only = load_records(REPO / "leaderboard" / "records" / "cpu-images" / "lenet")
    rows = {row[0]: row for row in comparison_rows(defaults_only, tuned)}
    assert set(rows) == {"idlg", "inverting-gradients"}  # dlg's tuned options (lr 0.31) need runs of their own
    assert rows["idlg"][5] == "0.00 ± 0.00" and rows["idlg"][3] == rows["idlg"][4]
    assert rows["idlg"][-1] == "lr=1 (its own)"


def _running_with_options(out: Path) -> bool:
    """A trial has completed and another is running with its options drawn (a kill now interrupts it). Read
    with sqlite itself, read-only: Optuna would create the schema while the study's process does."""
    if not (out / STUDY_DB).is_file():
        return False
    try:
        with sqlite3.connect(f"file:{out / STUDY_DB}?mode=ro", uri=True, timeout=1) as db:
            complete = db.execute("SELECT count(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
            running = db.execute(
                "SELECT count(*) FROM trials t WHERE t.state = 'RUNNING'"
                " AND EXISTS (SELECT 1 FROM trial_params p WHERE p.trial_id = t.trial_id)"
                " AND EXISTS (SELECT 1 FROM trial_user_attributes a WHERE a.trial_id = t.trial_id AND a.key = 'worker')"
            ).fetchone()[0]
    except sqlite3.OperationalError:  # the schema is being created, or the file is locked
        return False
    return complete > 0 and running > 0


def test_a_study_killed_mid_trial_resumes_without_repeating_trials(tmp_path):
    out = tmp_path / "out"
    argv = ["tune", *TINY, "--batch-sizes", "1,2", "--tune-seeds", "100,101", "--attacks", "dlg", "--trials", "4",
            "--out", str(out)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-m", "bench", *argv], cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 180
    while not _running_with_options(out):
        assert child.poll() is None, "the study ended before a trial could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    before = {t.number: (t.params, t.value) for t in _study(out).trials if t.state == TrialState.COMPLETE}
    (killed,) = [t for t in _study(out).trials if t.state == TrialState.RUNNING]
    written = {p: p.stat().st_mtime_ns for p in (out / RUNS_DIR).glob("*.json")}

    assert main(argv) == 0
    trials = _study(out).trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 4 == _entry(out, "dlg")["trials"]
    assert {n: v for n, v in ((t.number, (t.params, t.value)) for t in complete) if n in before} == before
    assert trials[killed.number].state == TrialState.FAIL and "stopped" in trials[killed.number].user_attrs
    (retry,) = [t for t in complete if t.user_attrs.get("retry_of") == killed.number]
    assert retry.params == killed.params
    assert all(p.stat().st_mtime_ns == m for p, m in written.items())  # no finished run ran again
    # the resumed process draws anew: no options tried twice (a sampler seeded once per process would repeat
    # the killed trial's draw after its retry)
    assert len({json.dumps(t.params, sort_keys=True) for t in complete}) == len(complete)

    assert main([*argv[:-3], "6", *argv[-2:]]) == 0  # a larger --trials continues the study
    more = [t for t in _study(out).trials if t.state == TrialState.COMPLETE]
    assert len(more) == 6 and [t.params for t in more[:4]] == [t.params for t in complete]
    assert main([*argv, "--space", "dlg.lr=0.1:1:log"]) == 2  # another space: refused before any trial
    assert len(_study(out).trials) == len(trials) + 2
