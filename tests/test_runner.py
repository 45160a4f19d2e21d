"""Runner details that records depend on."""

from pathlib import Path

import pytest
import torch

from bench.runner import peak_memory, reset_peak_memory


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="per-run peak memory needs Linux /proc")
def test_peak_memory_is_measured_per_run_not_per_process():
    cpu = torch.device("cpu")
    block = torch.ones(64 * 2**20)  # 256 MiB, touched
    del block
    before = peak_memory(cpu)
    reset_peak_memory(cpu)
    after = peak_memory(cpu)
    assert before - after > 200 * 2**20  # the earlier allocation no longer counts
    block = torch.ones(32 * 2**20)  # 128 MiB in the new run
    assert peak_memory(cpu) - after > 100 * 2**20
    del block
