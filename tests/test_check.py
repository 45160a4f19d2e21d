"""The quality gate: it passes on the committed code, here and with another CPU's kernels imitated, catches
weakened methods, says why on every regressed line, and gates a user's own suite end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from bench import kernels
from bench.check import REFERENCE, Entry, _compare_entry, load_reference, run_check, suite_entries
from bench.check_rule import ALPHA, GAIN_METRIC
from bench.check_variants import RANDOM_LABELS, WEAKENED, weakened
from bench.cli import main
from bench.labels import LABELS
from bench.record import Record

ROOT = Path(__file__).resolve().parents[1]
ATTACKS_GATED = {"e2egi", "inverting-gradients", "dlg", "idlg"}  # GradInversion: see docs/quality-gate.md
CHEAP = ["idlg", "llg", "yin"]  # entries that run in seconds, for the gate's own tests


@pytest.mark.slow  # CI's last step, `bench check`, runs the whole gate on the committed code
def test_gate_passes_here_on_the_committed_code():
    result = run_check(only=CHEAP)
    assert result.verdicts and not result.regressed
    assert {v.metric for v in result.verdicts} == {GAIN_METRIC, "label_acc"}


@pytest.mark.skipif(not kernels.imitable(), reason="this CPU cannot imitate another's kernels")
def test_gate_passes_with_another_cpus_kernels_imitated(tmp_path: Path):
    setting = kernels.imitable()[-1]  # the plainest: no vector unit at all
    env = kernels.imitating(setting, tmp_path / "cache")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-m", "bench", "check", "--only", ",".join(CHEAP)],
        env=env, capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "checks passed" in done.stdout and f"({setting} kernels)" in done.stdout


def test_weakened_methods_fail_the_gate():
    budget = run_check(only=["idlg"], budget_scale=0.3)
    assert {v.metric for v in budget.regressed} == {GAIN_METRIC}
    with weakened():
        labels = run_check(only=["llg"], stand_ins={"llg": RANDOM_LABELS})
    assert [v.metric for v in labels.regressed] == ["label_acc"]
    assert RANDOM_LABELS not in LABELS  # taken back after the block


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(WEAKENED))
def test_every_weakened_variant_fails_the_gate(variant: str):
    base = WEAKENED[variant][0]
    with weakened():
        result = run_check(only=[base], stand_ins={base: variant})
    assert GAIN_METRIC in {v.metric for v in result.regressed}


@pytest.mark.slow
def test_the_whole_gate_fails_at_three_tenths_of_the_budget():
    result = run_check(budget_scale=0.3, only=sorted(ATTACKS_GATED))
    assert {v.label.split(" ")[0] for v in result.regressed} == ATTACKS_GATED


def test_every_entry_has_a_measured_reference_and_every_attack_stands_above_the_floor():
    entries, _ = suite_entries()
    reference = load_reference()
    assert {e.key for e in entries} == set(reference["entries"])
    assert set(reference["imitated"]) == {"avx2", "default"}
    attacks = {e.method for e in entries if e.cells[0].attack is not None}
    assert ATTACKS_GATED <= attacks
    for entry in entries:
        metrics = reference["entries"][entry.key]["metrics"]
        assert len(entry.seeds) >= 4, entry.key
        for summary in metrics.values():
            assert set(summary["imitated"]) == {"avx2", "default"}, entry.key  # min effects are measured
        if entry.cells[0].attack is not None:
            assert metrics[GAIN_METRIC]["above_floor_p"] < ALPHA, entry.key
    label_accuracy = {e.method: reference["entries"][e.key]["metrics"]["label_acc"]["mean"] for e in entries
                      if e.cells[0].label_method is not None}  # fmt: skip
    assert len(set(label_accuracy.values())) >= 3  # the label methods differ in the suite's setting


def _entry_and_records(values: list[float]) -> tuple[Entry, list[Record]]:
    entries, _ = suite_entries(only=["idlg"])
    entry = next(e for e in entries if e.method == "idlg")
    records = [
        Record(c.run_id, c.config(), "ok", metrics={GAIN_METRIC: v, "label_acc": 1.0}) for c, v in zip(entry.cells, values)
    ]
    return entry, records


def test_a_regressed_line_names_its_minimum_effect_p_value_and_what_differs():
    entry, _ = _entry_and_records([0.0] * 6)
    n = len(entry.seeds)
    expected = {
        "seeds": entry.seeds,
        "status": ["ok"] * n,
        "metrics": {GAIN_METRIC: {"values": [50.0 + i for i in range(n)], "min_effect": 2.0}},
    }
    _, records = _entry_and_records([20.0 + i for i in range(n)])
    [verdict] = _compare_entry(entry, records, expected, "differs from the reference's machine: cpu_capability avx2 (reference avx512)")
    assert verdict.regressed
    assert "min effect 2" in verdict.note and "p = " in verdict.note and "cpu_capability avx2" in verdict.note
    failed = [Record(r.run_id, r.config, "failed", error="boom") for r in records]
    [status] = _compare_entry(entry, failed, expected, "")
    assert status.regressed and status.metric == "status" and "boom" in status.note
    assert _compare_entry(entry, records, None, "")[0].regressed  # no reference value


USER_SUITE = """\
name: my-suite
track: attacks
attacks: [idlg]
models: [lenet]
datasets: [embedded-detail]
image_size: 16
batch_sizes: [1]
labels_known: [false]
bn_stats: [none]
seeds: [0, 1, 2, 3]
budget: 50
"""


def test_a_users_suite_is_gated_against_its_own_reference(tmp_path: Path, capsys):
    suite, reference, junit = tmp_path / "my_suite.yaml", tmp_path / "my_ref.json", tmp_path / "gate.xml"
    suite.write_text(USER_SUITE)
    common = ["check", "--suite", str(suite), "--reference", str(reference)]
    assert main(common + ["--update", "--imitate", "none"]) == 0
    written = json.loads(reference.read_text())
    [entry] = written["entries"].values()
    assert entry["seeds"] == [0, 1, 2, 3] and len(entry["metrics"][GAIN_METRIC]["values"]) == 4
    assert main(common + ["--junit", str(junit)]) == 0
    assert "checks passed" in capsys.readouterr().out
    cases = ET.parse(junit).getroot().find("testsuite")
    assert cases.get("failures") == "0" and len(cases.findall("testcase")) == 2
    assert main(common + ["--junit", str(junit), "--budget-scale", "0.1"]) == 1
    assert "REGRESSED" in capsys.readouterr().out
    failures = ET.parse(junit).getroot().findall(".//failure")
    assert failures and "min effect" in failures[0].get("message")


def test_each_option_set_and_compute_of_an_attack_is_an_entry_of_its_own(tmp_path: Path):
    suite = tmp_path / "s.yaml"
    suite.write_text(USER_SUITE.replace("attacks: [idlg]", "attacks: [dlg]") + "attack_options: {dlg: [{lr: 1.0}, {lr: 0.1}]}\n")
    entries, cells = suite_entries(suite)
    assert sorted(e.label.split(" | ")[0] for e in entries) == ["dlg (50 it; lr=0.1)", "dlg (50 it; lr=1.0)"]
    assert all(len(e.cells) == 4 for e in entries) and len(cells) == 8
    suite.write_text(USER_SUITE.replace("budget: 50", "compute: 1e8"))
    [entry], _ = suite_entries(suite)
    assert entry.label.startswith("idlg (1e+08 FLOPs) | ")


def test_an_update_of_some_entries_keeps_the_others(tmp_path: Path):
    suite, reference = tmp_path / "s.yaml", tmp_path / "r.json"
    suite.write_text(USER_SUITE.replace("attacks: [idlg]", "attacks: [idlg, noise]").replace("[0, 1, 2, 3]", "[0, 1]"))
    assert main(["check", "--suite", str(suite), "--reference", str(reference), "--update", "--imitate", "none"]) == 0
    before = json.loads(reference.read_text())["entries"]
    assert main(["check", "--suite", str(suite), "--reference", str(reference), "--update", "--imitate", "none", "--only", "noise"]) == 0
    after = json.loads(reference.read_text())["entries"]
    assert set(after) == set(before) and len(after) == 2


def test_the_shipped_reference_was_made_on_the_documented_machine_kind():
    machine = json.loads(REFERENCE.read_text())["machine"]
    assert machine["threads"] == 1 and machine["cpu_capability"] in kernels.LADDER
