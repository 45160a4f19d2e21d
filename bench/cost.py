"""What a step of a run costs: wall and CPU seconds and peak memory, measured one way for every step
(the client's simulation, an attack, a label method, scoring).

Example:
    >>> with measure(torch.device("cpu")) as cost:
    ...     case, secret = simulate(scenario)
    >>> cost["wall_s"], cost["peak_memory_bytes"]
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch


def reset_peak_memory(device: torch.device) -> None:
    """Start a peak-memory measurement: the CUDA allocator's peak, or on Linux the process's peak resident
    set (writing 5 to /proc/self/clear_refs resets it), so each step reports its own peak."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # not Linux: peak_memory falls back to the process's lifetime peak


def peak_memory(device: torch.device) -> int | None:
    """Peak bytes since `reset_peak_memory`: the device allocator's on CUDA, resident set size on CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    try:
        status = Path("/proc/self/status").read_text()
        return int(status.split("VmHWM:")[1].split()[0]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    try:
        import resource  # POSIX without /proc: the process's peak since it started
    except ImportError:
        return None
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


@contextmanager
def measure(device: torch.device | str) -> Iterator[dict]:
    """The yielded dict gets `wall_s`, `cpu_s` and `peak_memory_bytes` when the block ends normally."""
    device = torch.device(device)
    cost: dict = {}
    reset_peak_memory(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    yield cost
    cost.update(
        wall_s=time.perf_counter() - start, cpu_s=time.process_time() - cpu_start, peak_memory_bytes=peak_memory(device)
    )
