"""The CUDA path at scale, within minutes on one large GPU: ResNet-50 at 224 px for B = 8, 64 and 256 with
every attack at a small budget (records), the seed-batching ratio and TF32 / bf16 timings.

    scripts/gpu_check.sh [OUT]                        # CUDA, full scale; OUT defaults to $OUT
    scripts/gpu_check.sh --device cpu --tiny OUT      # the dry run the test suite runs

Writes OUT/records/ (the runner's records: CUDA peak memory, seconds per iteration), OUT/summary.json
and OUT/summary.md. Steps run in order; a step that fails is reported and the next one still runs; once
`--time-limit` is spent the remaining steps are listed as not run (a sweep in progress is stopped, its
finished records stay).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import yaml

from bench.attack import create_attack
from bench.client import simulate
from bench.cost import measure
from bench.engine.distances import GradientDistance
from bench.engine.objective import Weights
from bench.engine.seed_group import SeedGroup
from bench.engine.setup import setup_attack
from bench.environment import environment
from bench.plugins import load_plugins
from bench.record import load_records
from bench.scenario import Scenario
from bench.threat import ThreatModel

ROOT = Path(__file__).resolve().parents[1]
SEEDS = 8  # GradInversion's and E2EGI's paper default


@dataclass(frozen=True)
class Scale:
    model: str
    image_size: int
    batch_sizes: tuple[int, ...]  # of the records
    ratio_batches: tuple[int, ...]  # of the seed-batching ratio
    timing_batches: tuple[int, ...]  # of the precision timings
    model_options: dict[str, Any] = field(default_factory=dict)
    num_classes: int | None = None
    label_source: str = "dataset"
    budget: int = 1
    repeats: int = 5


FULL = Scale("resnet50", 224, (8, 64, 256), (8, 64), (8, 64), num_classes=1000, label_source="model")
TINY = Scale("convnet", 16, (2,), (2,), (2,), model_options={"width": 4}, repeats=2)


class Clock:
    def __init__(self, limit_s: float) -> None:
        self.start, self.limit_s = time.monotonic(), limit_s

    def left(self) -> float:
        return self.limit_s - (time.monotonic() - self.start)


def scenario(scale: Scale, batch_size: int, labels_known: bool = True) -> Scenario:
    return Scenario(
        model=scale.model, model_options=scale.model_options, image_size=scale.image_size, batch_size=batch_size,
        num_classes=scale.num_classes, label_source=scale.label_source, bn_mode="train",
        threat=ThreatModel(labels_known=labels_known, bn_stats="exact"),
    )  # fmt: skip


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(step: Callable[[], Any], device: torch.device, repeats: int) -> float:
    step()  # warm-up: kernels chosen, allocations made
    times = []
    for _ in range(repeats):
        synchronise(device)
        start = time.perf_counter()
        step()
        synchronise(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def iteration(objective, images: torch.Tensor, labels: torch.Tensor) -> Callable[[], float]:
    """One loop iteration's work: the objective, differentiated into the images."""

    def step() -> float:
        images.grad = None
        return objective.differentiate(images, labels, None, [images]).total

    return step


def seed_batching(scale: Scale, device: torch.device) -> dict[str, list[dict]]:
    """GradInversion's objective: one iteration of 8 seeds evaluated together against one seed alone."""
    rows = []
    for batch_size in scale.ratio_batches:
        case, _ = simulate(scenario(scale, batch_size), device)
        setup = setup_attack(case, device)
        base = create_attack("gradinversion").objective(setup)
        generator = setup.generator(0)
        one = setup.random_images(generator).requires_grad_(True)
        many = torch.cat([setup.random_images(generator) for _ in range(SEEDS)]).requires_grad_(True)
        group = SeedGroup(base, SEEDS)
        with measure(device) as single_cost:
            single = median_seconds(iteration(base, one, setup.labels()), device, scale.repeats)
        with measure(device) as group_cost:
            together = median_seconds(iteration(group, many, group.stack(setup.labels())), device, scale.repeats)
        rows.append({
            "batch_size": batch_size,
            "seeds": SEEDS,
            "seed_chunk": group.size,
            "single_s_per_iteration": single,
            "group_s_per_iteration": together,
            "ratio_per_seed_iteration": together / SEEDS / single,
            "single_peak_memory_bytes": single_cost["peak_memory_bytes"],
            "group_peak_memory_bytes": group_cost["peak_memory_bytes"],
        })  # fmt: skip
    return {"seed batching": rows}


@contextmanager
def precision(kind: str, device: torch.device) -> Iterator[None]:
    """fp32 (TF32 off), tf32 (TF32 matmuls and convolutions) or bf16 (autocast)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = kind == "tf32"
    try:
        if kind == "bf16":
            with torch.autocast(device.type, dtype=torch.bfloat16):
                yield
        else:
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def precision_timings(scale: Scale, device: torch.device) -> dict[str, list[dict]]:
    """One seed's iteration (E2EGI's objective) in fp32, TF32 and bf16: seconds, and the image gradient's
    relative error against fp32."""
    rows = []
    kinds = ("fp32", "tf32", "bf16") if device.type == "cuda" else ("fp32", "bf16")
    for batch_size in scale.timing_batches:
        case, _ = simulate(scenario(scale, batch_size), device)
        setup = setup_attack(case, device)
        cfg = create_attack("e2egi").config
        objective = setup.objective(GradientDistance(cfg.distance), Weights(tv=cfg.tv, bn=cfg.bn), bn=True)
        images = setup.random_images(setup.generator(0)).requires_grad_(True)
        step = iteration(objective, images, setup.labels())
        reference = None
        for kind in kinds:
            with precision(kind, device):
                seconds = median_seconds(step, device, scale.repeats)
                step()
            grad = images.grad.detach().double()
            reference = grad if reference is None else reference
            error = float((grad - reference).norm() / reference.norm().clamp_min(1e-30))
            rows.append({"batch_size": batch_size, "precision": kind, "s_per_iteration": seconds, "grad_rel_error": error})
    return {"precision": rows}


def records(scale: Scale, device: torch.device, out: Path, clock: Clock) -> dict[str, list[dict]]:
    """Every attack on every batch size at a small budget, through `python -m bench run` (one sweep per
    batch size, smallest first), stopped when the time limit is spent."""
    folder, sweeps = out / "records", out / "sweeps"
    sweeps.mkdir(parents=True, exist_ok=True)
    runs, rows = [], []
    for batch_size in scale.batch_sizes:
        if clock.left() <= 0:
            runs.append({"batch_size": batch_size, "status": "not run: time limit"})
            continue
        sweep = {
            "name": f"gpu-check-b{batch_size}", "attacks": ["all"], "models": [scale.model],
            "model_options": {scale.model: scale.model_options} if scale.model_options else {},
            "image_size": scale.image_size, "batch_sizes": [batch_size], "labels_known": [False],
            "bn_stats": ["exact"], "bn_mode": "train", "label_source": scale.label_source,
            "num_classes": scale.num_classes, "budget": scale.budget,
        }  # fmt: skip
        path = sweeps / f"b{batch_size}.yaml"
        path.write_text(yaml.safe_dump(sweep, sort_keys=False))
        command = [sys.executable, "-m", "bench", "run", "--config", str(path), "--device", str(device),
                   "--out", str(folder), "--no-images"]  # fmt: skip
        start = time.monotonic()
        try:
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=max(1.0, clock.left()))
            status = f"exit {done.returncode}"
            tail = (done.stdout + done.stderr)[-2000:]
        except subprocess.TimeoutExpired as err:
            status, tail = "stopped: time limit", str(err.stdout or "")[-2000:]
        runs.append({"batch_size": batch_size, "status": status, "seconds": time.monotonic() - start, "output": tail})
    for record in load_records(folder) if folder.is_dir() else []:
        s = record.config["scenario"]
        rows.append({
            "attack": record.config["attack"], "batch_size": s["batch_size"], "status": record.status,
            "error": record.error, "wall_s": record.cost.get("wall_s"), "s_per_iteration": record.cost.get("s_per_iteration"),
            "peak_memory_bytes": record.cost.get("peak_memory_bytes"), "psnr": record.metrics.get("psnr"),
            "seed_chunk": record.per_image.get("attack_extra", {}).get("seed_chunk"),
        })  # fmt: skip
    return {"sweeps": runs, "records": sorted(rows, key=lambda r: (r["batch_size"], r["attack"]))}


def run_step(name: str, clock: Clock, work: Callable[[], Any]) -> dict:
    if clock.left() <= 0:
        return {"step": name, "status": "not run: time limit"}
    start = time.monotonic()
    try:
        result = work()
        return {"step": name, "status": "ok", "seconds": time.monotonic() - start, "result": result}
    except Exception as err:  # reported, and the next step still runs
        line = traceback.format_exception_only(type(err), err)[-1].strip()
        return {"step": name, "status": "failed", "seconds": time.monotonic() - start, "error": line}


def markdown(summary: dict) -> str:
    lines = [f"# GPU check on {summary['environment']['device']}", ""]
    for step in summary["steps"]:
        seconds = f" ({step['seconds']:.1f} s)" if "seconds" in step else ""
        lines += [f"## {step['step']}: {step['status']}{seconds}", ""]
        if "error" in step:
            lines += [f"error: {step['error']}", ""]
        for title, rows in (step.get("result") or {}).items():
            keys = list(dict.fromkeys(k for row in rows for k in row if k != "output"))
            lines += [f"{title}:", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            lines += ["| " + " | ".join(_cell(row.get(k)) for k in keys) + " |" for row in rows]
            lines.append("")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else ("" if value is None else str(value))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", default=os.environ.get("OUT"), help="output folder (default: $OUT)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="a tiny ConvNet at 16 px instead of ResNet-50 at 224 px")
    parser.add_argument("--time-limit", type=float, default=450.0, help="seconds; steps not started by then are skipped")
    args = parser.parse_args(argv)
    if not args.out:
        print("error: give an output folder (or set $OUT)", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device; use --device cpu --tiny for the dry run", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    load_plugins()
    scale, clock = (TINY if args.tiny else FULL), Clock(args.time_limit)
    summary = {"environment": environment(device), "scale": asdict(scale), "time_limit_s": args.time_limit}
    summary["steps"] = [
        run_step("seed batching", clock, lambda: seed_batching(scale, device)),
        run_step("precision", clock, lambda: precision_timings(scale, device)),
        run_step("records", clock, lambda: records(scale, device, out, clock)),
    ]
    summary["seconds"] = time.monotonic() - clock.start
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "summary.md").write_text(markdown(summary))
    print(markdown(summary))
    return 0 if all(step["status"] == "ok" for step in summary["steps"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
