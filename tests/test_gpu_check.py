"""`scripts/gpu_check.sh` passes its CPU dry run: every step at tiny scale, records for every attack."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from bench.attack import ATTACKS

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def run_script(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHON": sys.executable, **(env or {})}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=environment, capture_output=True, text=True,
                          timeout=1200)  # fmt: skip


def test_dry_run_on_cpu_writes_a_summary_and_records(tmp_path):
    done = run_script("--device", "cpu", "--tiny", str(tmp_path / "out"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    steps = {step["step"]: step for step in summary["steps"]}
    assert list(steps) == ["seed batching", "precision", "records"]
    assert all(step["status"] == "ok" for step in steps.values())
    ratio = steps["seed batching"]["result"]["seed batching"][0]
    assert ratio["seeds"] == ratio["seed_chunk"] == 8 and ratio["ratio_per_seed_iteration"] > 0
    assert {row["precision"] for row in steps["precision"]["result"]["precision"]} == {"fp32", "bf16"}
    records = steps["records"]["result"]["records"]
    assert {row["attack"] for row in records} == set(ATTACKS.names())
    assert all(row["status"] in ("ok", "skipped") for row in records), records
    assert {row["status"] for row in records if row["attack"] == "gradinversion"} == {"ok"}
    assert len(list((tmp_path / "out" / "records").glob("*.json"))) == len(records)
    assert (tmp_path / "out" / "summary.md").read_text().startswith("# GPU check on cpu")


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_missing_folder_or_device_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    script = load_script()
    monkeypatch.delenv("OUT", raising=False)
    assert script.main(["--device", "cpu"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "output folder" in error
    if not torch.cuda.is_available():
        assert script.main([str(tmp_path / "cuda")]) == 2
        assert "no CUDA device" in capsys.readouterr().err
        assert not (tmp_path / "cuda").exists()
