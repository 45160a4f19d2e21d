"""Other CPUs' kernels, imitated on this one, and what tells two machines' kernels apart.

A result of a chaotic attack depends on the last bit of every reduction, so on the CPU's vector unit: PyTorch
picks its ATen kernels by the CPU's capability, MKL its code path, oneDNN its instruction set. Three variables
select older paths on a newer CPU (read when the libraries start, so only a fresh process can change them):
ATEN_CPU_CAPABILITY (default, avx2, avx512), MKL_CBWR (COMPATIBLE, AVX2, ...) and ONEDNN_MAX_CPU_ISA (SSE41,
AVX2, ...). An AVX-512 machine can so stand in for an AVX2 machine and for one without AVX; the quality gate
measures its tolerances this way and is tried this way (bench.check).

Example:
    >>> imitable()                      # on an AVX-512 x86 CPU
    ['avx2', 'default']
    >>> KERNELS["avx2"]["ATEN_CPU_CAPABILITY"]
    'avx2'
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from pathlib import Path

import torch

from bench.environment import versions

# Each imitated machine: the variables that make this CPU compute with its kernels.
KERNELS: dict[str, dict[str, str]] = {
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "default": {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "SSE41"},
}
VARIABLES = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA")
# ATen's capabilities on x86, lowest first: a CPU can imitate those below its own.
LADDER = ("default", "avx2", "avx512")


def imitating(setting: str, cache: Path) -> dict[str, str]:
    """The environment of a process computing with `setting`'s kernels (see `KERNELS`), on one thread.

    `cache` is its own cache folder ($BENCH_CACHE): models trained and mean images computed with this CPU's
    kernels would otherwise stand in for the ones the imitated CPU computes itself.
    """
    return {**os.environ, **KERNELS[setting], "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "BENCH_CACHE": str(cache)}


def capability() -> str:
    """ATen's kernel capability in this process, lower case (e.g. "avx512"; "default" for plain code)."""
    return torch.backends.cpu.get_cpu_capability().lower()


def imitable() -> list[str]:
    """The kernel settings of `KERNELS` this CPU can run, below its own capability, highest first."""
    if platform.machine().lower() not in ("x86_64", "amd64") or capability() not in LADDER:
        return []
    below = LADDER[: LADDER.index(capability())]
    return [name for name in reversed(below) if name in KERNELS]


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else what the platform says."""
    info = Path("/proc/cpuinfo")
    if info.is_file():
        for line in info.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> dict:
    """What decides a run's last bits here: CPU, kernel capability and variables, threads, versions."""
    return {
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "cpu_capability": capability(),
        "kernel_variables": {name: os.environ.get(name) for name in VARIABLES},
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "versions": {k: v for k, v in versions().items() if k != "gibench"},
    }


def differences(reference: dict, here: dict) -> list[str]:
    """What differs between the reference's machine and this one, one short phrase each (empty: nothing)."""
    found = []
    for key in ("cpu_capability", "cpu", "arch", "threads", "python"):
        if reference.get(key) != here.get(key):
            found.append(f"{key} {here.get(key)} (reference {reference.get(key)})")
    for group in ("kernel_variables", "versions"):
        ref, now = reference.get(group) or {}, here.get(group) or {}
        for name in sorted(set(ref) | set(now)):
            if ref.get(name) != now.get(name):
                found.append(f"{name} {now.get(name)} (reference {ref.get(name)})")
    return found
