"""What a fresh process costs before any attack iterates: `bench ls`, a smoke run's overhead, and the imports
behind it.

Each measure starts a fresh interpreter (wall seconds, median of `ROUNDS`, the commands interleaved so a busy
machine slows them alike):
- ls_attacks_s: `python -m bench ls attacks` (reads bench/listing.json; imports no torch);
- import_torch_s: `import torch`;
- import_dynamo_s: `import torch._dynamo` after torch, which every torch.optim optimizer pulls in on its
  first step (the step is wrapped for dynamo's graph breaks), so no run that optimises escapes it; the
  runner imports it before it times the first attack (`bench.runner.pay_lazy_imports`);
- smoke_overhead_s: one smoke cell (DLG, budget 4) end to end, less the attack's own seconds as its record
  gives them: the client, scoring, floors, the record and every import;
- overhead_beyond_imports_s: smoke_overhead_s less the two imports.

Run: pytest tests/bench_startup.py -m benchmark --benchmark-enable -s
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.benchmark

ROUNDS = 3
ROOT = Path(__file__).resolve().parents[1]


def wall(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - started


def smoke_overhead(out: Path) -> float:
    total = wall(["-m", "bench", "run", "--preset", "smoke", "--attacks", "dlg", "--out", str(out), "--no-images"])
    records = [json.loads(p.read_text()) for p in out.glob("*.json")]
    assert records and all(r["status"] == "ok" for r in records)
    return total - sum(r["cost"]["wall_s"] for r in records)


def test_startup(benchmark, tmp_path):
    measures: dict[str, list[float]] = {k: [] for k in ("ls_attacks_s", "import_torch_s", "import_dynamo_s", "smoke_overhead_s")}
    for round_ in range(ROUNDS):
        measures["ls_attacks_s"].append(wall(["-m", "bench", "ls", "attacks"]))
        torch_only = wall(["-c", "import torch"])
        measures["import_torch_s"].append(torch_only)
        measures["import_dynamo_s"].append(wall(["-c", "import torch, torch._dynamo"]) - torch_only)
        measures["smoke_overhead_s"].append(smoke_overhead(tmp_path / f"smoke-{round_}"))
    medians = {k: round(statistics.median(v), 3) for k, v in measures.items()}
    medians["overhead_beyond_imports_s"] = round(
        medians["smoke_overhead_s"] - medians["import_torch_s"] - medians["import_dynamo_s"], 3
    )
    benchmark.extra_info.update(rounds=ROUNDS, **medians)
    print(json.dumps(benchmark.extra_info, indent=1))
    benchmark.pedantic(lambda: None, rounds=1)
