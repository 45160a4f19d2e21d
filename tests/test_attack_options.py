"""Attack options: set from flags or YAML, checked against the attack's Config before any work (the bad
ones: tests/test_bad_input.py), recorded in full (defaults included) and part of the run id, so a changed
setting is a new run and a row of its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.test_cli import bench

from bench.attack import attack_config, config_values
from bench.errors import BenchError
from bench.leaderboard.aggregate import aggregate
from bench.record import load_records
from bench.sweep import expand, load_preset, sweep_from_dict

SMALL = ["--preset", "smoke", "--models", "lenet", "--batch-sizes", "1", "--bn-stats", "none", "--budget", "2", "--no-images"]


def _configs(folder: Path) -> list[dict]:
    return [json.loads(p.read_text())["config"] for p in sorted(folder.glob("*.json"))]


def test_an_option_is_recorded_with_every_default_and_makes_a_new_run(tmp_path):
    out = tmp_path / "r"
    first = bench("run", "--attacks", "dlg", *SMALL, "--out", str(out))
    assert first.returncode == 0, first.stderr
    (default,) = _configs(out)
    assert default["attack_options"] == config_values(attack_config("dlg")) == {"init_space": "input", "iterations": 300, "lr": 1.0}
    changed = bench("run", "--attacks", "dlg", *SMALL, "--attack-option", "dlg.lr=0.5", "--out", str(out), "--resume")
    assert changed.returncode == 0, changed.stderr
    assert "(1 new, 0 reused)" in changed.stdout  # --resume does not take the default run for the changed one
    options = sorted((c["attack_options"]["lr"], c["attack_options"]["iterations"]) for c in _configs(out))
    assert options == [(0.5, 300), (1.0, 300)]
    rows = [row.label for row in aggregate(load_records(out))[0].rows]
    assert rows == ["dlg (lr=0.5)", "dlg (lr=1.0)"]  # the tables keep the two settings apart


def test_options_of_a_sweep_file_are_checked_and_may_list_settings():
    sweep = sweep_from_dict({"attacks": ["dlg"], "attack_options": {"dlg": [{"lr": 1}, {"lr": 0.1}]}}, "test")
    cells = expand(sweep, ["dlg"])
    assert [c.resolved_options["lr"] for c in cells] == [1.0, 0.1]
    plain = expand(sweep_from_dict({"attacks": ["dlg"]}, "test"), ["dlg"])
    assert cells[0].run_id == plain[0].run_id  # lr 1 (an int) is the default 1.0: the same run
    assert cells[1].run_id != plain[0].run_id
    with pytest.raises(BenchError, match="for the attacks track only"):
        sweep_from_dict({"track": "labels", "attack_options": {"dlg": {"lr": 1.0}}}, "test")
    with pytest.raises(BenchError, match=r"attack_options\['dlg'\]"):
        sweep_from_dict({"attack_options": {"dlg": 0.5}}, "test")


def test_a_registered_variant_records_its_own_settings():
    (base,) = expand(load_preset("smoke"), ["e2egi"])
    (variant,) = expand(load_preset("smoke"), ["e2egi-no-mlco"])
    assert base.resolved_options["mlco"] is True and variant.resolved_options["mlco"] is False
    assert variant.resolved_options["n_seed"] == 1


def test_tuple_options_read_from_lists():
    config = attack_config("inverting-gradients", {"layers": [0, 1], "layer_weights": [1, 0.5]})
    assert config.layers == (0, 1) and config.layer_weights == (1.0, 0.5)
    assert config_values(config)["layers"] == [0, 1]
