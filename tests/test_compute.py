"""FLOPs counted per kind of evaluation (bench.compute) against FlopCounterMode around the whole run, the
same count however seeds are batched, and budgets in FLOPs (bench.compute_budget)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import attacks  # noqa: F401  (registers E2EGI)
import baselines  # noqa: F401  (registers the baselines)
import bench.floors  # noqa: F401  (registers the floors)
from bench.attack import ATTACKS, create_attack
from bench.client import simulate
from bench.compute import KIND_COSTS, metering
from bench.compute_budget import ComputeTooSmall, plan_budget
from bench.engine.loop import LoopConfig, Variables, run_loop
from bench.engine.schedule import Schedule
from bench.engine.seed_group import SeedGroup
from bench.engine.setup import setup_attack
from bench.engine.distances import GradientDistance
from bench.engine.objective import Weights
from bench.errors import BenchError
from bench.runner import run_cells
from bench.scenario import Scenario
from bench.sweep import Cell, Sweep, expand, load_preset, load_sweep_file, override, sweep_from_dict
from bench.threat import ThreatModel

LENET = Scenario(model="lenet", dataset="digits", image_size=16, batch_size=1, seed=3,
                 threat=ThreatModel(labels_known=False, bn_stats="none"))  # fmt: skip
CONVNET = Scenario(model="convnet", model_options={"width": 4}, dataset="digits", image_size=16, batch_size=2, seed=4,
                   bn_mode="train", threat=ThreatModel(labels_known=False, bn_stats="exact"))  # fmt: skip


@pytest.fixture(scope="module")
def cases():
    return {"lenet": simulate(LENET), "convnet": simulate(CONVNET)}


def _one_by_one(name: str, **options):
    """The attack with its seeds evaluated one after another where it batches them."""
    fields = {f.name for f in dataclasses.fields(ATTACKS.get(name).obj.Config)}
    return create_attack(name, **({"seed_chunk": 1} if "seed_chunk" in fields else {}), **options)


def _compatible(name: str, cases) -> list:
    return [case for case, _ in cases.values() if create_attack(name).incompatibility(case) is None]


@pytest.mark.parametrize("name", ATTACKS.names())
def test_each_attack_counts_what_flopcountermode_counts_around_the_whole_run(name, cases):
    """Counted once per kind and multiplied by the evaluations, within 2% of counting every operation
    (every seed, restart, L-BFGS closure, combination step and label pass included)."""
    for case in _compatible(name, cases):
        KIND_COSTS.clear()  # measured afresh in this run
        budget = 2 if name in ("dlg", "idlg") else 6  # L-BFGS: up to 20 closure evaluations a step
        with FlopCounterMode(display=False) as whole, metering() as meter:
            _one_by_one(name).reconstruct(case, budget=budget, seed=0)
        assert meter.flops == pytest.approx(whole.get_total_flops(), rel=0.02)
        assert (meter.flops > 0) == (name not in ("noise", "prior-grey", "prior-mean"))


@pytest.mark.parametrize("name, options", [
    ("gradinversion", {}), ("e2egi", {}), ("e2egi-no-mlco-best-of-8", {}), ("inverting-gradients", {"restarts": 3}),
])  # fmt: skip
def test_seeds_evaluated_together_count_the_flops_of_the_seeds_one_by_one(name, options, cases):
    """vmap's batched kernels count more operations than the seeds' own; FLOPs are the algorithm's, per seed."""
    case, _ = cases["convnet"]
    counts = []
    for chunk in (1, 2, None):
        KIND_COSTS.clear()
        attack = create_attack(name, seed_chunk=chunk, **options)
        with metering() as meter:
            rec = attack.reconstruct(case, budget=5, seed=0)
        counts.append(meter.flops)
        assert chunk is None or rec.extra["seed_chunk"] == chunk
    assert counts[0] == counts[1] == counts[2] > 0


def test_batched_candidate_comparisons_count_per_seed(cases):
    case, _ = cases["convnet"]
    setup = setup_attack(case)
    base = setup.objective(GradientDistance("cosine"), Weights(tv=1e-4, bn=0.01), bn=True)
    labels = setup.labels() if setup.labels() is not None else torch.tensor([0, 1])
    images = torch.cat([setup.random_images(setup.generator(s)) for s in range(4)])
    counted = []
    for batched in (False, True):
        group = SeedGroup(base, 4, chunk=4, compare_batched=batched)
        KIND_COSTS.clear()
        with metering() as meter:
            group.seed_losses(images, group.stack(labels))
        counted.append(meter.flops)
    with FlopCounterMode(display=False) as alone:
        base.gradient_loss(images[:2], labels)
    assert counted[0] == counted[1] == 4 * alone.get_total_flops()


@pytest.mark.parametrize("name", ["e2egi", "e2egi-no-mlco-best-of-8", "gradinversion", "inverting-gradients"])
def test_a_dry_count_equals_the_real_run(name, cases):
    """What budgets in FLOPs are planned from: the attack's control flow without its computation."""
    case, _ = cases["convnet"]
    with metering() as real:
        create_attack(name).reconstruct(case, budget=9, seed=0)
    with metering(dry=True) as dry:
        create_attack(name).reconstruct(case, budget=9, seed=0)
    assert dry.flops == real.flops and dry.by_kind() == real.by_kind()


@pytest.mark.parametrize("name", ["e2egi", "e2egi-no-mlco", "gradinversion", "inverting-gradients"])
def test_a_flops_budget_buys_the_most_iterations_it_pays_for(name, cases):
    case, _ = cases["convnet"]
    plan = plan_budget(name, case, 3 * 10**9)
    with metering() as spent:
        create_attack(name).reconstruct(case, budget=plan.budget, seed=1)
    with metering(dry=True) as more:
        create_attack(name).reconstruct(case, budget=plan.budget + 1, seed=1)
    assert spent.flops == plan.planned_flops <= 3 * 10**9 < more.flops


def test_lbfgs_stops_where_the_flops_are_spent(cases):
    case, _ = cases["lenet"]
    flops = 4 * 10**8
    plan = plan_budget("dlg", case, flops)
    with metering(limit=flops) as meter:
        rec = create_attack("dlg").reconstruct(case, budget=plan.budget, seed=0)
    step, compare = meter.by_kind()["gradient step (B=1)"], meter.by_kind()["comparison (B=1)"]
    assert meter.flops <= flops + compare["flops"]  # the final comparison of the iterate may exceed it
    assert meter.flops > flops - step["flops"] or rec.extra["stopped"]  # all of it unless L-BFGS converged
    assert rec.iterations < plan.budget  # steps of several closure evaluations each


def test_lbfgs_ends_once_a_step_no_longer_moves():
    """A flat objective (all-zero gradient): the first step returns at once, so does every later one."""
    case, _ = simulate(LENET)
    setup = setup_attack(case)
    objective = setup.objective(GradientDistance("l2_squared"))
    objective.target = [torch.zeros_like(t) for t in objective.target]
    images = torch.zeros((1, *case.image_shape))
    model = objective.model
    for p in model.parameters():
        p.data.zero_()  # every gradient of every input is 0: nothing to move along
    loop = LoopConfig(50, optimizer="lbfgs", schedule=Schedule("constant", lr=1.0), boxed=False)
    result = run_loop(objective, Variables(images, labels=torch.tensor([1])), loop)
    assert result.iterations == 1 and result.stopped and "converged" in result.stopped


def test_too_small_a_budget_is_a_skipped_run_with_its_reason(tmp_path: Path, cases):
    case, _ = cases["convnet"]
    with pytest.raises(ComputeTooSmall, match="do not pay for one iteration of e2egi-no-mlco"):
        plan_budget("e2egi-no-mlco", case, 1000)
    records = run_cells([Cell(CONVNET, attack="e2egi-no-mlco", flops=1000)], tmp_path)
    assert records[0].status == "skipped" and "do not pay for one iteration" in records[0].error


def test_compute_in_a_sweep_replaces_budgets_and_enters_the_run_id():
    sweep = sweep_from_dict({"attacks": ["dlg", "noise"], "compute": "1e9"}, "test")
    assert sweep.compute == 10**9
    cells = expand(sweep, ["dlg", "noise"])
    assert [(c.budget, c.flops) for c in cells] == [(None, 10**9)] * 2
    assert cells[0].config()["flops"] == 10**9
    plain = expand(Sweep(attacks=("dlg",), budget=5), ["dlg"])[0]
    assert "flops" not in plain.config()  # iteration budgets keep their run ids
    with pytest.raises(BenchError, match="give it or budget"):
        Sweep(budget=5, compute=10**9)
    for bad in ("lots", 0, -5, True, float("inf")):
        with pytest.raises(BenchError, match="compute"):
            Sweep(compute=bad)


def test_flags_replace_a_presets_compute_or_budgets_in_every_setting():
    quick = load_preset("quick")
    assert {c.flops for c in expand(override(quick, budget=7), ["dlg"])} == {None}
    assert {c.budget for c in expand(override(quick, budget=7), ["dlg"])} == {7}
    assert {c.flops for c in expand(override(quick, compute=5e8), ["dlg"])} == {5 * 10**8}
    with pytest.raises(BenchError, match="not both"):
        override(quick, budget=7, compute=1e9)
    named = expand(override(quick, models=["resnet18"], batch_sizes=[8]), ["dlg"])  # the command line's setting
    assert {(c.scenario.model, c.scenario.dataset, c.scenario.train_steps) for c in named} == {("resnet18", "embedded-detail", 0)}
    labels = expand(override(quick, track="labels"), ["llg"])  # a setting's compute is the attack track's
    assert {c.scenario.model for c in labels} == {"lenet", "convnet"} and {c.flops for c in labels} == {None}
    with pytest.raises(BenchError, match=r"settings\[0\]: compute: for the attacks track only"):
        sweep_from_dict({"track": "labels", "settings": [{"compute": 10**9}]}, "test")


def test_settings_put_several_settings_in_one_sweep():
    sweep = sweep_from_dict(
        {
            "attacks": ["noise"], "image_size": 16, "seeds": [0, 1],
            "settings": [
                {"models": ["lenet"], "bn_stats": ["none"], "compute": 10**9},
                {"models": ["convnet"], "bn_mode": "eval", "batch_sizes": [1, 2], "budget": 7},
            ],
        },
        "test",
    )  # fmt: skip
    cells = expand(sweep, ["noise"])
    assert [(c.scenario.model, c.scenario.batch_size, c.flops, c.budget) for c in cells[::2]] == [
        ("lenet", 1, 10**9, None), ("convnet", 1, None, 7), ("convnet", 2, None, 7)]  # fmt: skip
    assert {c.scenario.bn_mode for c in cells if c.scenario.model == "convnet"} == {"eval"}
    with pytest.raises(BenchError, match=r"settings\[0\]: unknown or sweep-wide field\(s\) name"):
        sweep_from_dict({"settings": [{"name": "x"}]}, "test")
    with pytest.raises(BenchError, match=r"settings\[1\]"):
        sweep_from_dict({"settings": [{}, {"batch_sizes": [0]}]}, "test")


def test_the_main_job_runs_every_attack_at_equal_flops_per_setting():
    quick = load_sweep_file(Path(__file__).resolve().parents[1] / "bench" / "presets" / "quick.yaml")
    cells = expand(quick, ATTACKS.names())
    by_setting: dict[str, set[int | None]] = {}
    for cell in cells:
        by_setting.setdefault(cell.scenario.model, set()).add(cell.flops)
    assert set(by_setting) == {"lenet", "convnet"} and all(len(f) == 1 and None not in f for f in by_setting.values())
    convnet = {c.scenario.bn_mode for c in cells if c.scenario.model == "convnet"}
    assert convnet == {"eval"} and {c.scenario.train_steps for c in cells if c.scenario.model == "convnet"} == {100}
