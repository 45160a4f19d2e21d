"""What `bench run` tells its user: the effective settings and the records folder before any work, one line
per finished run when stdout is not a terminal, failures with their traceback, skips grouped by reason, the
count of new and reused runs, Ctrl-C and a closed pipe; and the one set of defaults behind flags, sweep files
and `case make`."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import build_parser
from bench.commands import records_folder, run_sweep
from bench.defaults import DEFAULT_SCENARIO
from bench.errors import BenchError
from bench.sweep import Sweep, load_preset, scenarios, sweep_from_dict

ROOT = Path(__file__).resolve().parents[1]
PROBES = '''
import time
from dataclasses import dataclass

import torch

from bench.attack import Attack, Reconstruction, register_attack


@dataclass(frozen=True)
class ProbeConfig:
    seconds: float = 0.0


@register_attack("probe-crash", description="test probe: fails with a KeyError")
class Crash(Attack):
    Config = ProbeConfig

    def invert(self, case, budget, seed, progress):
        return {}[0]


@register_attack("probe-slow", description="test probe: grey images after a pause")
class Slow(Attack):
    Config = ProbeConfig

    def invert(self, case, budget, seed, progress):
        time.sleep(self.config.seconds)
        return Reconstruction(torch.full((case.num_images, *case.image_shape), 0.5), None)
'''
SMALL = ["--models", "lenet", "--batch-sizes", "1", "--budget", "2", "--no-images"]  # one setting; flags given later win


@pytest.fixture(scope="module")
def probes(tmp_path_factory) -> dict[str, str]:
    """The environment of a run with the probe attacks loaded as a plugin."""
    folder = tmp_path_factory.mktemp("probes")
    (folder / "run_probes.py").write_text(PROBES)
    paths = [str(ROOT), str(folder), os.environ.get("PYTHONPATH")]
    return {**os.environ, "GIBENCH_PLUGINS": "run_probes", "PYTHONPATH": os.pathsep.join(filter(None, paths))}


def bench(*args: str, env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def _records(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


@pytest.fixture(scope="module")
def mixed(probes, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """Six runs, stdout a pipe: probe-crash fails twice, iDLG is skipped at B = 2, the rest are ok."""
    out = tmp_path_factory.mktemp("mixed") / "runs"
    done = bench("run", *SMALL, "--attacks", "probe-crash,idlg,noise", "--batch-sizes", "1,2", "--seeds", "0", "--out", str(out), env=probes)
    return done, out


def test_a_failed_record_keeps_the_whole_traceback(mixed):
    done, out = mixed
    assert done.returncode == 1, done.stderr  # a failed run fails the command
    failed = [r for r in _records(out) if r["status"] == "failed"]
    assert len(failed) == 2
    for record in failed:
        assert record["error"] == "KeyError: 0"
        trace = record["traceback"]
        assert trace.startswith("Traceback (most recent call last):") and "in invert" in trace and "return {}[0]" in trace
        assert trace.rstrip().endswith("KeyError: 0")
    assert all(r["traceback"] is None for r in _records(out) if r["status"] != "failed")


def test_the_summary_lists_failures_and_groups_skips_by_reason(mixed):
    done, out = mixed
    lines = done.stdout.splitlines()
    failures = [line for line in lines if line.startswith("failed: ")]
    assert len(failures) == 2 and all(": KeyError: 0 (traceback in " in line for line in failures), failures
    assert failures[0].startswith("failed: probe-crash (2 it) · lenet 16 px B=1 r=0 · labels unknown, BN none · seed 0")
    skips = [line for line in lines if line.startswith("skipped [")]
    assert skips == ["skipped [1] idlg (2 it): attack is defined for batches of at most 1; this batch has 2"]
    assert f"6 runs in " in done.stdout and f"(6 new, 0 reused): 3/6 ok, 2 failed, 1 skipped; records in {out}" in done.stdout
    per_run = (out / "runs.txt").read_text()
    assert per_run.splitlines()[0].rstrip().endswith("reason")
    assert per_run.count("KeyError: 0") == 2 and per_run.count("attack is defined for batches of at most 1") == 1


def test_without_a_terminal_each_finished_run_is_one_line(mixed):
    done, _ = mixed
    lines = [line for line in done.stdout.splitlines() if line.startswith("[")]
    assert [line.split("]")[0] for line in lines] == [f"[{i}/6" for i in range(1, 7)]
    number, seconds = r"-?\d+\.\d\d", r"\d+\.\d\d s"
    assert re.fullmatch(rf"\[1/6\] probe-crash \(2 it\) · lenet 16 px B=1 r=0 · labels unknown, BN none · seed 0 · failed: KeyError: 0", lines[0])
    assert re.fullmatch(rf"\[2/6\] idlg \(2 it\) · lenet 16 px B=1 r=0 · .* · ok · psnr {number} dB \(gain {number}\) · {seconds}", lines[1])
    assert lines[4].startswith("[5/6] idlg (2 it) · lenet 16 px B=2") and "skipped: attack is defined" in lines[4]
    table = done.stdout.index("### ")
    assert done.stdout.index(lines[-1]) < table  # the lines come as the runs end, before the tables


def test_the_site_shows_why_a_run_was_skipped_or_failed(mixed, probes, tmp_path):
    _, out = mixed
    site = tmp_path / "site"
    done = bench("leaderboard", "--runs", str(out), "--site", str(site), env=probes)
    assert done.returncode == 0, done.stderr
    page = next(site.glob("*/index.html")).read_text()
    assert "seed 0 (skipped: attack is defined for batches of at most 1; this batch has 2)" in page
    assert "seed 0 (failed: KeyError: 0)" in page


def test_fail_fast_stops_at_the_first_failure_and_prints_it(probes, tmp_path):
    out = tmp_path / "runs"
    done = bench("run", "--attacks", "probe-crash,noise", "--seeds", "0,1", *SMALL, "--fail-fast", "--out", str(out), env=probes)
    assert done.returncode == 1
    assert len(_records(out)) == 1 and _records(out)[0]["status"] == "failed"
    assert "stopped at the first failure (--fail-fast), 1 of 4 runs done:" in done.stderr
    assert "Traceback (most recent call last):" in done.stderr and done.stderr.rstrip().endswith("KeyError: 0")


def _default_sigint() -> None:
    """Ctrl-C's default in the child: a shell starts a background job (`pytest &`) with SIGINT ignored, and
    the child would inherit that (as `bench run ... &` rightly keeps it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_says_how_many_runs_are_done_and_resume_continues(probes, tmp_path):
    out = tmp_path / "runs"
    args = ["run", "--attacks", "probe-slow", "--attack-option", "probe-slow.seconds=1.5", "--seeds", "0,1,2", *SMALL, "--out", str(out)]
    process = subprocess.Popen(
        [sys.executable, "-m", "bench", *args], cwd=ROOT, env=probes, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_default_sigint,
    )  # fmt: skip
    for line in process.stdout:  # a pipe: one line per finished run, as it ends
        if line.startswith("[1/3]"):
            process.send_signal(signal.SIGINT)
            break
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    match = re.search(r"interrupted: (\d) of 3 runs done; rerun with --resume", stderr)
    assert match, stderr
    assert "Traceback" not in stderr
    records = _records(out)  # every record written is whole
    assert len(records) == int(match.group(1)) >= 1 and all(r["status"] == "ok" for r in records)
    again = bench(*args, "--resume", env=probes)
    assert again.returncode == 0, again.stderr
    assert f"({3 - len(records)} new, {len(records)} reused)" in again.stdout


def test_a_closed_pipe_ends_the_run_quietly(probes, tmp_path):
    out = tmp_path / "runs"
    command = [sys.executable, "-m", "bench", "run", "--attacks", "probe-slow", "--attack-option", "probe-slow.seconds=1",
               "--seeds", "0,1,2", *SMALL, "--out", str(out)]  # fmt: skip
    writer = subprocess.Popen(command, cwd=ROOT, env=probes, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = writer.stdout.readline()  # what `| head -1` reads, before it closes the pipe
    writer.stdout.close()
    stderr = writer.stderr.read()
    assert writer.wait(timeout=120) == 128 + signal.SIGPIPE
    assert first.startswith(b"3 runs (") and stderr == b""  # no traceback, no "Exception ignored"
    assert len(_records(out)) < 3  # it stopped where the output went nowhere


def test_version():
    done = subprocess.run([sys.executable, "-m", "bench", "--version"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0 and done.stdout == "gibench 0.1.0\n"


# ---- one set of defaults ---------------------------------------------------------------------------------


def test_flags_sweep_files_and_case_make_share_the_default_scenario():
    default, quick = Sweep(), load_preset("quick")
    (scenario,) = scenarios(default)
    assert (scenario.model, scenario.dataset, scenario.image_size, scenario.batch_size) == (
        DEFAULT_SCENARIO["model"], DEFAULT_SCENARIO["dataset"], DEFAULT_SCENARIO["image_size"], DEFAULT_SCENARIO["batch_size"]
    )  # fmt: skip
    assert (scenario.threat.bn_stats, scenario.threat.labels_known, scenario.seed) == ("none", False, 0)
    # the default preset is the default scenario over more batch sizes and seeds, nothing else
    for axis in ("models", "datasets", "image_size", "repetitions", "labels_known", "bn_stats", "defenses", "local_steps", "clients"):
        assert getattr(quick, axis) == getattr(default, axis), axis
    assert default.batch_sizes[0] in quick.batch_sizes and default.seeds[0] in quick.seeds
    assert sweep_from_dict({}, "empty file") == default  # what a sweep file leaves out
    make = build_parser().parse_args(["case", "make", "--out", "c"])
    from bench.commands import _sweep_from_args

    assert list(scenarios(_sweep_from_args(make, Sweep()))) == [scenario]  # case make without flags


def _help(*words: str) -> str:
    out = io.StringIO()
    with pytest.raises(SystemExit), contextlib.redirect_stdout(out):
        build_parser().parse_args([*words, "--help"])
    return " ".join(out.getvalue().split())


def test_help_names_the_defaults():
    run, make = _help("run"), _help("case", "make")
    assert f"(default: {DEFAULT_SCENARIO['dataset']})" in run and "(default: embedded)" not in run
    assert "(default: quick;" in run and "runs/<preset>+<changes>" in run
    assert f"(default: {DEFAULT_SCENARIO['model']})" in make and f"(default: {DEFAULT_SCENARIO['image_size']})" in make


def test_sweep_files_take_the_flags_names_and_values():
    sweep = sweep_from_dict({"labels": ["known", "unknown"], "bn-stats": ["exact"], "batch-sizes": [2]}, "test")
    assert sweep.labels_known == (True, False) and sweep.bn_stats == ("exact",) and sweep.batch_sizes == (2,)
    assert sweep_from_dict({"labels_known": [True]}, "test").labels_known == (True,)  # the older name still reads
    with pytest.raises(BenchError, match="labels and labels_known set the same field; give one of them"):
        sweep_from_dict({"labels": ["known"], "labels_known": [True]}, "test")
    with pytest.raises(BenchError, match="labels: expected known or unknown, got 'sometimes'"):
        sweep_from_dict({"labels": ["sometimes"]}, "test")


def test_a_sweep_file_reads_exponents_as_numbers(tmp_path):
    from bench.sweep import load_sweep_file

    path = tmp_path / "lr.yaml"
    path.write_text("attacks: [inverting-gradients]\nlocal_lr: 1e-3\nattack_options: {inverting-gradients: {tv: 1e-2}}\n")
    sweep = load_sweep_file(path)
    assert sweep.local_lr == 1e-3 and sweep.attack_options["inverting-gradients"]["tv"] == 1e-2
    assert sweep.name == "lr"  # a file without a name is named after itself


@pytest.mark.parametrize(
    "flags, folder",
    [
        ([], "runs/quick"),
        (["--attacks", "all"], "runs/quick"),  # the preset's own value changes nothing
        (["--seeds", "0", "--budget", "2"], "runs/quick+seeds=0+budget=2"),
        (["--budget", "300"], "runs/quick+budget=300"),  # the preset's budget, without its per-attack budgets
        (["--attack-option", "dlg.lr=0.5", "--labels", "known"], "runs/quick+labels=known+attack_options=dlg.lr=0.5"),
        (["--preset", "smoke", "--defenses", "none,dp(clip=1, sigma=0.5)"], "runs/smoke+defenses=none,dp_clip=1,_sigma=0.5_"),
        (["--seeds", "0", "--out", "mine"], "mine"),
        (["--models", "lenet"], "runs/quick+models=lenet+datasets=embedded-detail"),  # one of the preset's settings
    ],
)
def test_flags_that_change_the_preset_write_to_a_folder_of_their_own(flags, folder):
    args = build_parser().parse_args(["run", *flags])
    assert str(records_folder(args, run_sweep(args))) == folder


def test_run_prints_the_effective_settings_before_any_work(probes, tmp_path):
    done = bench("run", "--attacks", "noise", "--seeds", "0", "--labels", "known", *SMALL, env=probes, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    folder = "quick+attacks=noise+models=lenet+datasets=embedded-detail+labels=known+seeds=0+budget=2"
    assert lines[0] == f"1 run ({folder}, attacks): noise -> runs/{folder}"
    assert lines[1] == "settings (as a sweep file):"
    settings = lines[2 : lines.index(next(line for line in lines if line.startswith("[1/1]")))]
    assert "  labels: [known]" in settings and "  datasets: [embedded-detail]" in settings and "  budget: 2" in settings
    assert (tmp_path / "runs" / folder).is_dir()
    assert not (tmp_path / "runs" / "quick").exists()  # never into the preset's folder
