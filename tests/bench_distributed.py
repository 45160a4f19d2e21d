"""What sharding the dummy batch costs and saves: per-rank peak memory and time per iteration, W = 1 vs 2.

Each configuration runs in fresh spawned processes (one thread per rank, gloo on CPU): set-up, one
warm-up iteration, then timed Adam iterations of the cosine objective with TV and the BN prior. Peak
memory is the working memory of an iteration: the peak RSS during the timed iterations (Linux VmHWM, reset
after the warm-up) over the RSS between iterations (CPU tensors have no allocator statistics); the ranks run with MALLOC_MMAP_THRESHOLD_ set, so every tensor-sized block is
returned to the OS when freed and the peak RSS follows the peak of live tensors instead of what the
allocator happens to cache. Ratios (W = 2 over W = 1) go to extra_info:
- fixed per-rank batch (B = b on one rank vs B = 2b on two): time ~1 plus communication, memory ~1;
- fixed global batch (B on one rank vs B/2 on each of two): time and memory per rank ~1/2 at best.

Run: pytest tests/bench_distributed.py -m benchmark --benchmark-enable
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from bench.case import load_case, save_case
from bench.client import simulate
from bench.distributed import close_world, open_world
from bench.distributed.launch import free_port
from bench.engine.distances import GradientDistance
from bench.engine.objective import Weights
from bench.engine.setup import setup_attack
from bench.scenario import Scenario
from bench.threat import ThreatModel

pytestmark = pytest.mark.benchmark

PER_RANK_BATCH = 8
ITERATIONS = 5
MODEL_OPTIONS = {"width": 16}
IMAGE_SIZE = 32


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as handle:  # "5" resets VmHWM, the peak RSS
        handle.write("5")


def _rank(rank: int, world_size: int, port: int, case_dir: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    collective = open_world("cpu", rank, world_size, port=port, timeout_s=120) if world_size > 1 else None
    try:
        setup = setup_attack(load_case(case_dir), "cpu", collective)
        objective = setup.objective(GradientDistance("cosine"), Weights(tv=1e-4, bn=1e-2), bn=True)
        images = setup.random_images(setup.generator(0)).requires_grad_(True)
        labels = setup.labels()
        optimizer = torch.optim.Adam([images], lr=0.1)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            objective.evaluate(images, labels).backward.backward(inputs=[images])
            optimizer.step()

        step()  # warm-up: one-time allocations (optimizer state, kernels' scratch) happen here
        _reset_peak_rss()
        between = _status_kib("VmRSS")
        start = time.perf_counter()
        for _ in range(ITERATIONS):
            step()
        seconds = (time.perf_counter() - start) / ITERATIONS
        rise = (_status_kib("VmHWM") - between) * 1024
        result = {"s_per_iteration": seconds, "peak_rise_bytes": rise, "shard": setup.shard.size}
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        if collective is not None:
            close_world()


def measure(folder: Path, world_size: int, batch_size: int) -> dict:
    """Slowest rank's time per iteration and largest per-rank peak-memory rise."""
    case_dir, out_dir = folder / f"case{batch_size}", folder / f"w{world_size}b{batch_size}"
    if not case_dir.exists():
        scenario = Scenario(
            model="convnet", model_options=MODEL_OPTIONS, image_size=IMAGE_SIZE, batch_size=batch_size, seed=0,
            threat=ThreatModel(labels_known=True, bn_stats="exact"),
        )  # fmt: skip
        save_case(simulate(scenario)[0], case_dir)
    out_dir.mkdir()
    mp.start_processes(
        _rank, args=(world_size, free_port(), str(case_dir), str(out_dir)), nprocs=world_size, start_method="spawn"
    )
    ranks = [json.loads((out_dir / f"rank{r}.json").read_text()) for r in range(world_size)]
    return {
        "world_size": world_size,
        "batch_size": batch_size,
        "s_per_iteration": max(r["s_per_iteration"] for r in ranks),
        "peak_rise_mb": max(r["peak_rise_bytes"] for r in ranks) / 2**20,
    }


@pytest.fixture(autouse=True)
def _exact_rss(monkeypatch) -> None:
    # read by glibc when a spawned rank starts; blocks of 64 KiB and more are mapped and unmapped one by one
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")


def _report(benchmark, one: dict, two: dict) -> None:
    benchmark.extra_info.update(
        w1=one,
        w2=two,
        time_ratio=two["s_per_iteration"] / one["s_per_iteration"],
        memory_ratio=two["peak_rise_mb"] / max(one["peak_rise_mb"], 1e-9),
        iterations=ITERATIONS,
        model=f"convnet width {MODEL_OPTIONS['width']} at {IMAGE_SIZE} px",
        threads_per_rank=1,
        cpu_count=os.cpu_count(),
        load_average_1min=os.getloadavg()[0],  # timings on a shared machine are only as clean as this
    )
    print(json.dumps(benchmark.extra_info, indent=1))


def test_fixed_per_rank_batch(benchmark, tmp_path) -> None:
    one = measure(tmp_path, 1, PER_RANK_BATCH)
    two = benchmark.pedantic(measure, args=(tmp_path, 2, 2 * PER_RANK_BATCH), rounds=1, iterations=1)
    _report(benchmark, one, two)


def test_fixed_global_batch(benchmark, tmp_path) -> None:
    one = measure(tmp_path, 1, 2 * PER_RANK_BATCH)
    two = benchmark.pedantic(measure, args=(tmp_path, 2, 2 * PER_RANK_BATCH), rounds=1, iterations=1)
    _report(benchmark, one, two)
