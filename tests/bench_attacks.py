"""What one iteration of each attack costs, against the floor of any gradient-matching attack.

The floor is what every iteration must do at least: one forward pass of the dummy batch, one gradient of the
client's loss with create_graph, and one backward pass of the attack's gradient distance, on the same model
and batch. Each benchmark times `reconstruct(case, budget=1)` (set-up and the final loss evaluation
included) and reports in extra_info:
- floor_s: the floor's median time;
- ratio_budget1: reconstruct(budget=1) / floor;
- ratio_per_iteration: the marginal cost of one more iteration, (t(budget=5) - t(budget=1)) / 4, over the
  floor (L-BFGS makes up to 20 evaluations per step; GradInversion advances 8 seeds per step).

Run: pytest tests/bench_attacks.py -m benchmark --benchmark-enable
"""

from __future__ import annotations

import statistics
import time

import pytest
import torch

import attacks  # noqa: F401
import baselines  # noqa: F401
import baselines.dlg  # noqa: F401
import baselines.gradinversion  # noqa: F401
import baselines.idlg  # noqa: F401
import baselines.inverting_gradients  # noqa: F401
from bench.attack import ATTACKS, create_attack
from bench.client import simulate
from bench.engine.distances import GradientDistance
from bench.engine.setup import setup_attack
from bench.plugins import load_plugins
from bench.scenario import Scenario
from bench.threat import ThreatModel

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
    setup = setup_attack(case)
    images = setup.random_images(setup.generator(0)).requires_grad_(True)
    labels = torch.arange(case.batch_size) % case.num_classes

    def step() -> None:
        loss = case.loss(setup.model(images), labels)
        grads = torch.autograd.grad(loss, setup.params, create_graph=True)
        distance(grads, setup.target).backward(inputs=[images])

    return _median_time(step)


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
