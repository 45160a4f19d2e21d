"""What one iteration of each attack costs, against the floor of any gradient-matching attack.

The floor is what every iteration must do at least: one forward pass of the dummy batch, one gradient of the
client's loss with create_graph, and one backward pass of the attack's gradient distance, on the same model
and batch. Each benchmark times `reconstruct(case, budget=1)` (set-up and the final loss evaluation
included) and reports in extra_info:
- floor_s: the floor's median time;
- ratio_budget1: reconstruct(budget=1) / floor;
- ratio_per_iteration: the marginal cost of one more iteration, (t(budget=5) - t(budget=1)) / 4, over the
  floor (L-BFGS makes up to 20 evaluations per step; GradInversion advances 8 seeds per step).

`test_unrolled_update_cost` times one iteration of Inverting Gradients' objective (forward, dummy update with
create_graph, backward into the images) on a FedAvg update of 5 local steps and on 2 clients' mean, against
the same case's FedSGD gradient and against the floor (CPU seconds, interleaved, median of 5; the
FedSGD case's floor).

`test_trace_overhead` measures the share of a run its trace's checkpoints take (the attack's `current()` and
the runner's scoring, `cost.trace_s`, against the attack's own wall seconds): at most 3% by design.

`test_seed_batching` compares 8 seeds evaluated as one computation with one seed (per seed-iteration, at
B = 1, 4 and 16 in one run, CPU seconds on one thread with the measurements interleaved, so a busy machine
slows both alike); `test_seed_batching_memory` measures how an iteration's peak memory grows with the
seeds evaluated together; `test_combination_share` the share of an MLCO run spent in the greedy
combination.

Run: pytest tests/bench_attacks.py -m benchmark --benchmark-enable
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import time

import pytest
import torch
import torch.multiprocessing as mp

import attacks  # noqa: F401
import baselines  # noqa: F401
import baselines.dlg  # noqa: F401
import baselines.gradinversion  # noqa: F401
import baselines.idlg  # noqa: F401
import baselines.inverting_gradients  # noqa: F401
from attacks import mlco
from bench.attack import ATTACKS, create_attack
from bench.client import simulate
from bench.engine.distances import GradientDistance
from bench.engine.seed_group import SeedGroup
from bench.engine.setup import setup_attack
from bench.plugins import load_plugins
from bench.scenario import Scenario
from bench.threat import ThreatModel
from bench.update import ClientUpdate

pytestmark = pytest.mark.benchmark
load_plugins()

SCENARIOS = {
    "lenet-32px-b1": Scenario(model="lenet", batch_size=1, seed=0, threat=ThreatModel(False, "none")),
    "convnet16-32px-b4": Scenario(
        model="convnet", model_options={"width": 16}, batch_size=4, seed=0, threat=ThreatModel(False, "exact")
    ),
}
REPEATS = 5


@pytest.fixture(scope="module")
def cases():
    return {name: simulate(scenario)[0] for name, scenario in SCENARIOS.items()}


def _median_time(fn, repeats: int = REPEATS) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _floor(case, distance: GradientDistance) -> float:
    """Median time of forward + gradient with create_graph + backward of `distance`, on a dummy batch."""
    return _median_time(_floor_step(case, distance))


def _floor_step(case, distance: GradientDistance):
    """The floor's work, as a function to time."""
    setup = setup_attack(case)
    images = setup.random_images(setup.generator(0)).requires_grad_(True)
    labels = torch.arange(case.batch_size) % case.num_classes

    def step() -> None:
        loss = case.loss(setup.model(images), labels)
        grads = torch.autograd.grad(loss, setup.params, create_graph=True)
        distance(grads, setup.target).backward(inputs=[images])

    return step


def _distance(attack, case) -> GradientDistance:
    objective = getattr(attack, "objective", None)
    return objective(setup_attack(case)).distance if callable(objective) else GradientDistance("cosine")


@pytest.mark.parametrize("name,case_name", [(a, c) for a in ATTACKS.names() for c in SCENARIOS])
def test_iteration_cost_against_the_floor(benchmark, cases, name, case_name):
    case = cases[case_name]
    attack = create_attack(name)
    if attack.requires.incompatibility(case.threat, case.has_bn_layers(), case.batch_size):
        pytest.skip(f"{name} does not run on {case_name}")
    floor = _floor(case, _distance(attack, case))
    once = _median_time(lambda: attack.reconstruct(case, budget=1, seed=0), repeats=3)
    five = _median_time(lambda: attack.reconstruct(case, budget=5, seed=0), repeats=3)
    benchmark.extra_info.update(
        case=case_name,
        floor_s=floor,
        reconstruct_budget1_s=once,
        ratio_budget1=once / floor,
        ratio_per_iteration=max(five - once, 0.0) / 4 / floor,
    )
    benchmark.pedantic(attack.reconstruct, args=(case,), kwargs={"budget": 1, "seed": 0}, rounds=3, iterations=1)


# ---- unrolled updates ------------------------------------------------------------------------------------


def test_unrolled_update_cost(benchmark, cases):
    """One objective evaluation and backward (one Adam iteration of Inverting Gradients) per update recipe, in
    CPU seconds: 5 unrolled local steps and 2 clients against FedSGD and against the floor."""
    recipes = {"fedsgd": ClientUpdate(), "fedavg-5": ClientUpdate(local_steps=5), "clients-2": ClientUpdate(clients=2)}
    rows = {}
    for case_name, scenario in SCENARIOS.items():
        steps = {}
        for recipe, update in recipes.items():
            threat = dataclasses.replace(scenario.threat, update=update)
            case = simulate(dataclasses.replace(scenario, threat=threat))[0]
            setup = setup_attack(case)
            objective = create_attack("inverting-gradients").objective(setup)
            images = setup.random_images(setup.generator(0)).requires_grad_(True)
            labels = torch.arange(case.num_images) % case.num_classes
            steps[recipe] = lambda o=objective, x=images, y=labels: o.differentiate(x, y, None, [x])
        steps["floor"] = _floor_step(cases[case_name], GradientDistance("cosine"))
        for step in steps.values():
            step()  # warm-up
        times = {recipe: [] for recipe in steps}
        for _ in range(REPEATS):
            for recipe, step in steps.items():
                times[recipe].append(_cpu_seconds(step))
        median = {recipe: statistics.median(t) for recipe, t in times.items()}
        rows[case_name] = {
            "cpu_s": median,
            "fedavg5_over_fedsgd": median["fedavg-5"] / median["fedsgd"],
            "fedavg5_over_floor": median["fedavg-5"] / median["floor"],
            "clients2_over_fedsgd": median["clients-2"] / median["fedsgd"],
        }
    benchmark.extra_info.update(threads=torch.get_num_threads(), by_case=rows)
    print(json.dumps(benchmark.extra_info, indent=1))
    benchmark.pedantic(lambda: None, rounds=1)


# ---- seeds as one computation ---------------------------------------------------------------------------

SEEDS = 8


def _convnet16(batch_size: int, image_size: int = 32, width: int = 16):
    """A case with known labels; above the embedded set's 23 classes the labels come from the model's 100."""
    threat = ThreatModel(labels_known=True, bn_stats="exact")
    classes = {} if batch_size <= 23 else {"label_source": "model", "num_classes": 100}
    scenario = Scenario(model="convnet", model_options={"width": width}, image_size=image_size,
                        batch_size=batch_size, seed=0, threat=threat, **classes)  # fmt: skip
    return simulate(scenario)[0]


def _cpu_seconds(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def test_seed_batching(benchmark):
    """GradInversion's iteration, 8 seeds against 1 seed, per seed-iteration: (t_8 / 8) / t_1, for the 8 seeds
    evaluated together (the device's default chunk) and one after another (`seed_chunk=1`), from the
    marginal cost of 3 more iterations, the three interleaved over 5 repeats (median)."""
    rows = {}
    for batch_size in (1, 4, 16):
        case = _convnet16(batch_size)
        attacks = {
            "single": create_attack("gradinversion", seeds=1),
            "together": create_attack("gradinversion", seeds=SEEDS),
            "in_turn": create_attack("gradinversion", seeds=SEEDS, seed_chunk=1),
        }

        def per_iteration(name: str) -> float:
            run = attacks[name].reconstruct
            return (_cpu_seconds(lambda: run(case, budget=4, seed=0)) - _cpu_seconds(lambda: run(case, budget=1, seed=0))) / 3

        for name in attacks:  # warm-up
            per_iteration(name)
        repeats = [{name: per_iteration(name) for name in attacks} for _ in range(5)]
        rows[batch_size] = {
            f"ratio_per_seed_iteration_{name}": statistics.median(r[name] / SEEDS / r["single"] for r in repeats)
            for name in ("together", "in_turn")
        } | {"single_cpu_s_per_iteration": statistics.median(r["single"] for r in repeats)}
    benchmark.extra_info.update(seeds=SEEDS, model="convnet width 16 at 32 px", threads=torch.get_num_threads(),
                                load_average_1min=os.getloadavg()[0], by_batch_size=rows)  # fmt: skip
    print(json.dumps(benchmark.extra_info, indent=1))
    case = _convnet16(4)
    benchmark.pedantic(create_attack("gradinversion").reconstruct, args=(case,), kwargs={"budget": 1}, rounds=1)


def _memory_rank(seeds: int, chunk: int | None, batch_size: int, out: str) -> None:
    torch.set_num_threads(1)
    case = _convnet16(batch_size)
    setup = setup_attack(case)
    base = create_attack("gradinversion").objective(setup)
    group = SeedGroup(base, seeds, chunk)
    images = torch.cat([setup.random_images(setup.generator(s)) for s in range(seeds)]).requires_grad_(True)
    labels = group.stack(setup.labels())

    def step() -> None:
        images.grad = None
        group.differentiate(images, labels, None, [images])

    step()  # warm-up
    with open("/proc/self/clear_refs", "w") as handle:  # "5" resets VmHWM, the peak RSS
        handle.write("5")
    before = _status_kib("VmRSS")
    step()
    with open(out, "w") as handle:
        json.dump({"peak_rise_mb": (_status_kib("VmHWM") - before) / 1024}, handle)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith(field + ":"))


def test_seed_batching_memory(benchmark, tmp_path, monkeypatch):
    """Peak-memory rise of one iteration (B = 4) for G seeds together, and for 8 seeds in chunks of 2; each
    in a fresh process, blocks of 64 KiB and more returned to the OS when freed (see bench_distributed)."""
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    rows = {}
    for seeds, chunk in [(1, None), (2, None), (4, None), (8, None), (8, 2), (8, 1)]:
        out = tmp_path / f"{seeds}-{chunk}.json"
        mp.start_processes(_memory_rank, args=(seeds, chunk, 4, str(out)), nprocs=1, start_method="spawn")
        rows[f"G={seeds} chunk={chunk or seeds}"] = json.loads(out.read_text())["peak_rise_mb"]
    benchmark.extra_info.update(batch_size=4, model="convnet width 16 at 32 px", peak_rise_mb=rows)
    print(json.dumps(benchmark.extra_info, indent=1))
    benchmark.pedantic(lambda: None, rounds=1)


def test_combination_share(benchmark, monkeypatch):
    """Share of an E2EGI (MLCO) run's CPU seconds spent in the greedy combination, at B = 4 and B = 64
    (ConvNet width 8 at 16 px, known labels, budget 48: 9 combinations of 8 seeds), with the seeds and the
    candidate swaps evaluated one after another (`seed_chunk=1`) and together (the default chunking);
    median over 3 interleaved repeats."""
    spent = [0.0]
    combine = mlco.combine

    def timed(*args, **kwargs):
        start = time.process_time()
        try:
            return combine(*args, **kwargs)
        finally:
            spent[0] += time.process_time() - start

    monkeypatch.setattr(mlco, "combine", timed)
    chunks = {"one after another": 1, "together": None}

    def measure(case, chunk: int | None) -> tuple[float, float]:
        spent[0] = 0.0
        total = _cpu_seconds(lambda: create_attack("e2egi", seed_chunk=chunk).reconstruct(case, budget=48, seed=0))
        return total, spent[0]

    rows = {}
    for batch_size in (4, 64):
        case = _convnet16(batch_size, image_size=16, width=8)
        runs = [{name: measure(case, chunk) for name, chunk in chunks.items()} for _ in range(3)]
        rows[batch_size] = {
            name: {
                "run_cpu_s": statistics.median(run[name][0] for run in runs),
                "combination_cpu_s": statistics.median(run[name][1] for run in runs),
                "share": statistics.median(run[name][1] / run[name][0] for run in runs),
            }
            for name in chunks
        }
    benchmark.extra_info.update(model="convnet width 8 at 16 px", budget=48, by_batch_size=rows)
    print(json.dumps(benchmark.extra_info, indent=1))
    benchmark.pedantic(lambda: None, rounds=1)


def test_trace_overhead(benchmark, tmp_path):
    """Checkpoints' share of the run, in both settings of the quick preset at its compute, one run each."""
    from bench.runner import RunOptions, run_cells
    from bench.sweep import Cell

    lenet = Scenario(model="lenet", dataset="embedded-detail", image_size=16, batch_size=1, seed=0,
                     threat=ThreatModel(False, "none"))  # fmt: skip
    convnet = Scenario(model="convnet", model_options={"width": 16}, dataset="digits", image_size=16, batch_size=1,
                       seed=0, bn_mode="eval", train_steps=100, threat=ThreatModel(False, "exact"))  # fmt: skip
    cells = [Cell(lenet, attack=a, flops=10**9) for a in ("dlg", "inverting-gradients")]
    cells += [Cell(convnet, attack=a, flops=10**11) for a in ("e2egi", "e2egi-no-mlco", "gradinversion")]
    records = run_cells(cells, tmp_path, RunOptions(save_images=False))
    shares = {
        f"{r.config['scenario']['model']} {r.config['attack']}": {
            "wall_s": r.cost["wall_s"], "trace_s": r.cost["trace_s"], "share": r.cost["trace_s"] / r.cost["wall_s"],
            "checkpoints": len(r.trace),
        }
        for r in records
    }  # fmt: skip
    benchmark.extra_info.update(runs=shares)
    print(json.dumps(benchmark.extra_info, indent=1))
    assert all(run["share"] <= 0.03 for run in shares.values()), shares
    benchmark.pedantic(lambda: None, rounds=1)
