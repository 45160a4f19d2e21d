"""Runner details that records depend on: per-run peak memory, and what each cost in a record measures."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import runner
from bench.metrics import MetricConfig
from bench.runner import RunOptions, run_cells
from bench.sweep import expand, load_preset, override


PEAK_MEMORY_CHECK = """
import torch
from bench.cost import peak_memory, reset_peak_memory
cpu = torch.device("cpu")
block = torch.ones(64 * 2**20)  # 256 MiB, touched
del block
before = peak_memory(cpu)
reset_peak_memory(cpu)
after = peak_memory(cpu)
assert before - after > 200 * 2**20, (before, after)  # the earlier allocation no longer counts
block = torch.ones(32 * 2**20)  # 128 MiB in the new run
assert peak_memory(cpu) - after > 100 * 2**20, (peak_memory(cpu), after)
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="per-run peak memory needs Linux /proc")
def test_peak_memory_is_measured_per_run_not_per_process():
    # In a fresh process: in a long test session the allocator may serve the new block from pages that an
    # earlier test left resident, and then the resident set rightly does not grow.
    done = subprocess.run([sys.executable, "-c", PEAK_MEMORY_CHECK], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_records_keep_the_client_cost_apart_from_the_method_and_scoring(tmp_path: Path, monkeypatch):
    real_score = runner.score

    def slow_score(*args, **kwargs):
        time.sleep(0.3)
        return real_score(*args, **kwargs)

    monkeypatch.setattr(runner, "score", slow_score)
    smoke = override(load_preset("smoke"), budget=1)
    options = RunOptions(metric=MetricConfig(lpips=False), save_images=False)
    attacks = run_cells(expand(smoke, ["noise", "dlg"]), tmp_path / "attacks", options)
    labels = run_cells(expand(override(smoke, track="labels"), ["llg", "yin"]), tmp_path / "labels", options)
    for records in (attacks, labels):
        assert [r.status for r in records] == ["ok", "ok"]
        client = records[0].cost["client"]
        assert client["wall_s"] > 0 and client["peak_memory_bytes"] > 0
        assert records[1].cost["client"] == client  # one simulation per scenario, its cost in every record
    noise = attacks[0].cost
    assert noise["score_s"] >= 0.3 > noise["wall_s"]  # scoring is timed apart from the attack
    assert set(labels[0].cost) == {"wall_s", "cpu_s", "peak_memory_bytes", "iterations", "client"}


FIRST_RUN_CHECK = """
import sys
from pathlib import Path
import tempfile
from bench import runner
from bench.metrics import MetricConfig
from bench.plugins import load_plugins
from bench.sweep import expand, load_preset, override

load_plugins()
real_measure = runner.measure
seen = []

def measure(device):
    seen.append("torch._dynamo" in sys.modules)
    return real_measure(device)

runner.measure = measure
cells = expand(override(load_preset("smoke"), budget=1), ["dlg"])
options = runner.RunOptions(metric=MetricConfig(lpips=False), save_images=False)
records = runner.run_cells(cells, Path(tempfile.mkdtemp()) / "runs", options)
assert [r.status for r in records] == ["ok"], records
assert len(seen) == 3, seen  # the client, the attack, its scoring
assert seen[1], seen  # torch.optim's lazy import was paid before the attack was timed
"""


def test_the_first_attack_of_a_process_is_not_charged_for_torch_optims_lazy_import():
    # torch.optim imports torch._dynamo (about 1.5 s on a CPU) on an optimizer's first step; in a fresh
    # process, so that no earlier test has imported it already
    done = subprocess.run([sys.executable, "-c", FIRST_RUN_CHECK], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
