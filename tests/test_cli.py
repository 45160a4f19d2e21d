"""The command line, run as a user runs it (a subprocess, exit codes, one-line errors)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def bench(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def test_ls_attacks_shows_requirements():
    out = bench("ls", "attacks")
    assert out.returncode == 0, out.stderr
    assert "noise" in out.stdout and "requires" in out.stdout


def test_ls_lists_every_kind():
    for kind in ("labels", "models", "datasets", "metrics", "presets"):
        out = bench("ls", kind)
        assert out.returncode == 0, out.stderr
        assert len(out.stdout.strip().splitlines()) >= 3


def test_unknown_attack_is_one_line_with_suggestion(tmp_path):
    out = bench("run", "--attacks", "nois", "--preset", "smoke", "--out", str(tmp_path / "r"))
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert "did you mean noise" in out.stderr
    assert not (tmp_path / "r").exists()


def test_case_make_and_show(tmp_path):
    out = bench("case", "make", "--model", "lenet", "--image-size", "16", "--batch-size", "2", "--out", str(tmp_path / "c"))
    assert out.returncode == 0, out.stderr
    shown = bench("case", "show", str(tmp_path / "c"))
    assert shown.returncode == 0 and "lenet" in shown.stdout and "labels unknown" in shown.stdout
    broken = bench("case", "show", str(tmp_path / "nowhere"))
    assert broken.returncode == 2 and broken.stderr.startswith("error: missing file")


def test_run_noise_writes_records_and_table(tmp_path):
    out = bench("run", "--attacks", "noise", "--preset", "smoke", "--seeds", "0,1", "--out", str(tmp_path / "r"))
    assert out.returncode == 0, out.stderr
    # the end of a run is the comparison over seeds: one row per attack, the seeds in one cell
    lines = out.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| attack (psnr ↑)"))
    assert "B=2" in lines[header] and lines[header + 2].startswith("| noise ") and " ± " in lines[header + 2]
    assert not lines[header + 3].startswith("|")  # one row: the two seeds are averaged, not listed
    assert "2 runs: 2 ok, 0 failed, 0 skipped" in out.stdout
    per_run = tmp_path / "r" / "runs.txt"
    assert f"per-run table: {per_run}" in out.stdout and f"--runs {tmp_path / 'r'} --site" in out.stdout
    assert "PSNR" in per_run.read_text() and per_run.read_text().count("noise") == 2
    again = bench("run", "--attacks", "noise", "--preset", "smoke", "--seeds", "0,1", "--out", str(tmp_path / "r"),
                  "--resume", "--per-run")  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "PSNR" in again.stdout and again.stdout.count("noise") >= 2 and "attack (psnr" not in again.stdout
    records = sorted((tmp_path / "r").glob("*.json"))
    assert len(records) == 2
    data = json.loads(records[0].read_text())
    assert data["status"] == "ok" and data["schema"] == 1
    assert 0 < data["metrics"]["psnr"] < 15
    assert data["environment"]["world_size"] == 1
