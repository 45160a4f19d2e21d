"""E2EGI and its MLCO: the stage plan against the paper's numbers, the greedy combination's guarantees, the
final stage's starting point, the attack end to end, and (slow) what MLCO buys over the base inversion."""

from __future__ import annotations

import threading
from dataclasses import replace
from itertools import pairwise

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attacks import e2egi, mlco
from attacks.e2egi import E2EGI, E2EGIConfig
from attacks.mlco import Stage, combine, inner_length, run_mlco, stage_plan
from bench.attack import ATTACKS, create_attack
from bench.client import simulate
from bench.engine.collective import Shard, split_evenly
from bench.engine.distances import GradientDistance
from bench.engine.loop import LoopResult
from bench.engine.setup import setup_attack
from bench.errors import BenchError
from bench.labels import LABELS, load_methods
from bench.metrics import score
from bench.scenario import Scenario
from bench.threat import ThreatModel

LR, LR_END = 0.1046, 1e-3
TINY = {"model": "convnet", "model_options": {"width": 4}, "image_size": 16, "batch_size": 4}


def batch_loss(setup):
    """The whole batch's cosine gradient loss for the case's known labels (no second-order graph)."""
    objective = setup.objective(GradientDistance("cosine"))
    labels = setup.labels()
    return lambda images: objective.gradient_loss(images, labels)


def each(loss):
    """A batch loss applied to every candidate batch in turn (what `combine` evaluates per slot)."""
    return lambda batches: [loss(batch) for batch in batches]


def tiny_case(seed: int = 0, labels_known: bool = True, **changes):
    scenario = Scenario(
        **{**TINY, **changes}, seed=seed, threat=ThreatModel(labels_known=labels_known, bn_stats="exact")
    )
    return simulate(scenario)


# ---- the stage plan -------------------------------------------------------------------------------------


def test_stage_plan_matches_the_paper_at_24000():
    plan = stage_plan(24_000, LR, LR_END)
    # T_init = ceil(0.3 E) = 7200; R = ceil(0.3 E / 1000) = ceil(7.2) = 8 rounds of 1000; T_end = ceil(0.4 E) = 9600
    assert [s.name for s in plan] == ["init"] + [f"round-{r}" for r in range(1, 9)] + ["final"]
    assert [s.iterations for s in plan] == [7200] + [1000] * 8 + [9600]
    assert sum(s.iterations for s in plan) == 24_800  # rounded up, as in the authors' formulas
    # lr range 0.1046 -> 0.001 (width 0.1036) split in proportion to the lengths over 24,800 iterations
    width, total = 0.1036, 24_800
    boundaries = [0.1046, 0.1046 - width * 7200 / total]
    boundaries += [0.1046 - width * (7200 + 1000 * r) / total for r in range(1, 9)]
    boundaries += [0.001]
    assert boundaries[1] == pytest.approx(0.0745225806, abs=1e-9)
    assert boundaries[9] == pytest.approx(0.0411032258, abs=1e-9)  # start of the final stage
    assert [s.lr_start for s in plan] == pytest.approx(boundaries[:-1], abs=1e-12)
    assert [s.lr_stop for s in plan] == pytest.approx(boundaries[1:], abs=1e-12)
    assert plan[-1].lr_stop == 0.001
    for a, b in pairwise(plan):
        assert a.lr_stop == b.lr_start  # continuous across stages
    # every round moves the lr by the same 1000/24800 of the range
    assert plan[1].lr_start - plan[1].lr_stop == pytest.approx(width * 1000 / total, abs=1e-12)
    # noise on and Group off in init; both on in the rounds; both off in the final stage
    assert (plan[0].noise, plan[0].group) == (0.2, 0.0)
    assert all((s.noise, s.group) == (0.2, 0.01) for s in plan[1:-1])
    assert (plan[-1].noise, plan[-1].group) == (0.0, 0.0)
    assert [s.per_seed for s in plan] == [True] * 9 + [False]


def test_stage_plan_keeps_the_paper_shape_for_small_budgets():
    plan = stage_plan(240, LR, LR_END)
    assert [s.iterations for s in plan] == [72] + [10] * 8 + [96]  # T_in = ceil(1000 * 240 / 24000) = 10
    assert inner_length(24_000) == 1000 and inner_length(48_000) == 1000 and inner_length(100) == 5
    assert [s.iterations for s in stage_plan(48_000, LR, LR_END)][1:-1] == [1000] * 15
    for budget in [1, 2, 3, 7, 10, 33, 100, 999, 2400]:
        plan = stage_plan(budget, LR, LR_END)
        assert plan[0].name == "init" and plan[-1].name == "final"
        assert len(plan) >= 3, "at least one inner round"
        assert all(s.iterations >= 1 for s in plan)
        assert plan[0].lr_start == LR and plan[-1].lr_stop == LR_END
        assert all(a.lr_stop == b.lr_start and a.lr_start > a.lr_stop for a, b in pairwise(plan))


def test_stage_plan_rejects_an_empty_budget():
    with pytest.raises(BenchError):
        stage_plan(0, LR, LR_END)


# ---- the greedy combination -----------------------------------------------------------------------------


def coupled_loss(target: torch.Tensor):
    """A batch loss whose slots interact (through the batch mean), like a train-mode BN gradient loss."""

    def loss(batch: torch.Tensor) -> float:
        mismatch = (batch - target).pow(2).flatten(1).sum(1)
        return float(mismatch.sum() + 3 * (batch.mean(0) - target.mean(0)).pow(2).sum() + 0.5 * mismatch.max())

    return loss


@settings(max_examples=60, deadline=None)
@given(
    batch=st.integers(1, 6),
    n_seed=st.integers(1, 6),
    seed=st.integers(0, 2**31 - 1),
    shuffled_losses=st.booleans(),
)
def test_combination_never_worse_than_the_best_seed(batch, n_seed, seed, shuffled_losses):
    g = torch.Generator().manual_seed(seed)
    target = torch.randn(batch, 2, 3, 3, generator=g)
    candidates = [torch.randn(batch, 2, 3, 3, generator=g) for _ in range(n_seed)]
    loss = coupled_loss(target)
    losses = [loss(c) for c in candidates]
    if shuffled_losses:  # the start seed chosen from stale losses: still no worse than that seed
        losses = losses[::-1]
    result = combine(candidates, losses, each(loss), Shard.whole(batch))
    start = min(range(n_seed), key=lambda s: losses[s])
    assert result.start_seed == start
    assert result.gradient_loss <= loss(candidates[start])
    if not shuffled_losses:
        assert result.gradient_loss <= min(losses)
    assert result.gradient_loss == loss(result.images)
    for slot, chosen in enumerate(result.choices):
        assert torch.equal(result.images[slot], candidates[chosen][slot])


def test_combination_matches_a_plain_rederivation():
    g = torch.Generator().manual_seed(3)
    target = torch.randn(4, 1, 2, 2, generator=g)
    candidates = [torch.randn(4, 1, 2, 2, generator=g) for _ in range(5)]
    loss = coupled_loss(target)
    losses = [loss(c) for c in candidates]
    current = candidates[losses.index(min(losses))].clone()
    for slot in range(4):  # slot by slot, keep the seed whose sample gives the lowest batch loss
        options = []
        for c in candidates:
            trial = current.clone()
            trial[slot] = c[slot]
            options.append((loss(trial), trial))
        best = min(options, key=lambda o: o[0])
        if best[0] < loss(current):
            current = best[1]
    assert torch.equal(combine(candidates, losses, each(loss), Shard.whole(4)).images, current)


@pytest.mark.parametrize("bn_mode", ["train", "eval"])
def test_combination_on_real_gradient_losses(bn_mode):
    for seed in range(3):
        case, _ = tiny_case(seed, bn_mode=bn_mode, batch_size=3)
        setup = setup_attack(case)
        loss = batch_loss(setup)
        g = setup.generator(seed)
        candidates = [setup.random_images(g) for _ in range(4)]
        losses = [loss(c) for c in candidates]
        result = combine(candidates, losses, each(loss), setup.shard)
        assert result.gradient_loss <= min(losses)
        assert result.gradient_loss == pytest.approx(loss(result.images), abs=1e-6)


def test_combination_picks_a_planted_true_image():
    """The best seed is the true batch with slot i disturbed; the other seeds are heavily disturbed copies,
    one of which holds the true image in slot i. The combination swaps in exactly that image (zero loss)."""
    for seed in range(5):
        case, secret = tiny_case(seed)
        setup = setup_attack(case)
        loss = batch_loss(setup)
        truth = case.normalization.normalize(secret.images)
        g = torch.Generator().manual_seed(seed)
        for slot in range(case.batch_size):
            planted = 1 + (seed + slot) % 4
            start = truth.clone()
            start[slot] += 0.3 * torch.randn(truth[slot].shape, generator=g)
            candidates = [start]
            for s in range(1, 5):
                candidates.append(truth + torch.randn(truth.shape, generator=g))
                if s == planted:
                    candidates[s][slot] = truth[slot]
            losses = [loss(c) for c in candidates]
            assert min(losses) == losses[0] and losses[0] > 0.1
            result = combine(candidates, losses, each(loss), setup.shard)
            assert result.choices == [planted if i == slot else 0 for i in range(case.batch_size)]
            assert torch.equal(result.images, truth)
            assert result.gradient_loss < 1e-5


class ThreadCollective:
    """Ranks as threads: sums meet at a barrier (enough to check that the ranks' collective calls line up)."""

    def __init__(self, world_size: int) -> None:
        self.world_size = world_size
        self.barrier = threading.Barrier(world_size)
        self.slots: list[torch.Tensor | None] = [None] * world_size
        self.calls = [0] * world_size

    def rank_view(self, rank: int):
        parent = self

        class View:
            world_size = parent.world_size

            def all_sum_values(self, tensor: torch.Tensor) -> torch.Tensor:
                parent.calls[rank] += 1
                parent.slots[rank] = tensor
                parent.barrier.wait()
                total = sum(parent.slots)
                parent.barrier.wait()
                return total

            all_sum = all_sum_values

        view = View()
        view.rank = rank
        return view


@pytest.mark.parametrize("world_size", [2, 3])
def test_sharded_combination_equals_the_single_process_one(world_size):
    batch, n_seed = 5, 4
    g = torch.Generator().manual_seed(world_size)
    target = torch.randn(batch, 1, 2, 2, generator=g)
    candidates = [torch.randn(batch, 1, 2, 2, generator=g) for _ in range(n_seed)]
    loss = coupled_loss(target)
    losses = [loss(c) for c in candidates]
    solo = combine(candidates, losses, each(loss), Shard.whole(batch))

    collective = ThreadCollective(world_size)
    results: dict[int, object] = {}

    def rank_main(rank: int) -> None:
        start, stop = split_evenly(batch, world_size, rank)
        shard = Shard(start, stop, batch, collective.rank_view(rank))

        def sharded_loss(rows: torch.Tensor) -> float:  # gather the whole batch, then the same loss
            whole = torch.zeros_like(target)
            whole[start:stop] = rows
            return loss(shard.collective.all_sum_values(whole))

        results[rank] = combine([c[start:stop] for c in candidates], losses, each(sharded_loss), shard)

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(world_size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(set(collective.calls)) == 1, "every rank makes the same collective calls"
    assert torch.equal(torch.cat([results[r].images for r in range(world_size)]), solo.images)
    assert all(results[r].choices == solo.choices for r in range(world_size))
    assert all(results[r].gradient_loss == solo.gradient_loss for r in range(world_size))


# ---- the MLCO driver ------------------------------------------------------------------------------------


def test_final_stage_starts_from_the_latest_combination(monkeypatch):
    combinations = []
    real_combine = mlco.combine

    def spy_combine(*args, **kwargs):
        result = real_combine(*args, **kwargs)
        combinations.append(result.images.clone())
        return result

    monkeypatch.setattr(mlco, "combine", spy_combine)
    target = torch.zeros(3, 1, 2, 2)
    loss = coupled_loss(target)
    calls = []

    def optimise_one(images: torch.Tensor, stage: Stage, consensus: torch.Tensor | None) -> LoopResult:
        calls.append((stage.name, images.clone(), None if consensus is None else consensus.clone()))
        # a stand-in for the inversion: move halfway toward the target, with a seed-specific twist
        moved = images * 0.5 + 0.1 * torch.randn(images.shape, generator=gen)
        return LoopResult(moved, None, loss(moved), [loss(moved)] * stage.iterations, stage.iterations)

    def optimise(seeds: list[torch.Tensor], stage: Stage, consensus: torch.Tensor | None) -> list[LoopResult]:
        return [optimise_one(images, stage, consensus) for images in seeds]

    gen = torch.Generator().manual_seed(0)
    seeds = [torch.randn(3, 1, 2, 2, generator=gen) for _ in range(4)]
    plan = stage_plan(100, LR, LR_END)
    result = run_mlco(seeds, plan, optimise, each(loss), Shard.whole(3))

    rounds = len(plan) - 2
    assert len(combinations) == rounds + 1  # after init and after every round
    final_calls = [c for c in calls if c[0] == "final"]
    assert len(final_calls) == 1
    assert torch.equal(final_calls[0][1], combinations[-1])
    last_round_consensus = next(c[2] for c in calls if c[0] == plan[-2].name)
    assert not torch.equal(final_calls[0][1], last_round_consensus)
    # each round pulls toward the combination made just before it; init and final have no consensus
    for r, stage in enumerate(plan[1:-1]):
        consensi = [c[2] for c in calls if c[0] == stage.name]
        assert len(consensi) == 4 and all(torch.equal(c, combinations[r]) for c in consensi)
    assert all(c[2] is None for c in calls if c[0] in ("init", "final"))
    assert result.iterations == 4 * sum(s.iterations for s in plan[:-1]) + plan[-1].iterations
    assert len(result.trace) == sum(s.iterations for s in plan)
    assert [r["name"] for r in result.stages] == [s.name for s in plan]


@pytest.mark.parametrize("seed_chunk", [None, 1])
def test_attack_final_run_starts_from_the_latest_combination(monkeypatch, seed_chunk):
    """The real attack, spied on: what each engine loop starts from, and the combinations made. The seeds
    of a stage run as one loop over their stack (seed_chunk None) or one loop each (seed_chunk 1)."""
    combinations, loops = [], []
    real_combine, real_loop = mlco.combine, e2egi.run_loop

    def spy_combine(*args, **kwargs):
        result = real_combine(*args, **kwargs)
        combinations.append(result.images.clone())
        return result

    def spy_loop(objective, variables, config, box=None, consensus=None, generator=None, progress=None):
        weights = getattr(objective, "base", objective).weights
        for images in variables.images.clone().chunk(objective.seeds):
            loops.append((images, config.noise, weights.group, consensus))
        return real_loop(objective, variables, config, box, consensus, generator, progress)

    monkeypatch.setattr(mlco, "combine", spy_combine)
    monkeypatch.setattr(e2egi, "run_loop", spy_loop)
    case, _ = tiny_case(3, batch_size=2)
    create_attack("e2egi", seed_chunk=seed_chunk).reconstruct(case, budget=10, seed=0)
    plan = stage_plan(10, LR, LR_END)
    assert len(loops) == 8 * (len(plan) - 1) + 1 and len(combinations) == len(plan) - 1
    start, noise, group, consensus = loops[-1]
    assert torch.equal(start, combinations[-1]) and (noise, group, consensus) == (0.0, 0.0, None)
    for r in range(1, len(plan) - 1):  # each round's seeds pull toward the combination before it
        for _, noise, group, consensus in loops[8 * r : 8 * (r + 1)]:
            assert (noise, group) == (0.2, 0.01) and torch.equal(consensus, combinations[r - 1])


# ---- the attack -----------------------------------------------------------------------------------------


def test_registered_variants_and_requirements():
    assert "e2egi" in ATTACKS and "e2egi-no-mlco" in ATTACKS
    full, single = create_attack("e2egi"), create_attack("e2egi-no-mlco")
    assert full.config == E2EGIConfig()
    assert (single.config.mlco, single.config.n_seed) == (False, 1)
    assert replace(single.config, mlco=True, n_seed=8) == full.config  # nothing else differs
    assert replace(create_attack("e2egi-no-mlco-best-of-8").config, n_seed=1) == single.config
    paper = {"iterations": 24_000, "lr": 0.1046, "tv": 0.0114, "bn": 0.0357, "signed": True, "boxed": True,
             "lr_end": 1e-3, "noise": 0.2, "group": 0.01, "n_seed": 8, "t_in": 1000, "keep_best": True,
             "distance": "cosine", "input_norm": 0.0}  # fmt: skip
    assert {k: getattr(full.config, k) for k in paper} == paper
    req = E2EGI.requires
    assert req.incompatibility(ThreatModel(bn_stats="exact"), True) is None
    assert req.incompatibility(ThreatModel(bn_stats="running"), True) is None
    assert req.incompatibility(ThreatModel(bn_stats="none"), True) is not None
    assert req.incompatibility(ThreatModel(bn_stats="exact"), False) is not None


def test_attack_end_to_end_with_known_labels():
    case, secret = tiny_case(0, batch_size=2)
    seen = []
    rec = create_attack("e2egi").reconstruct(case, budget=10, seed=0, progress=lambda i, loss: seen.append(i))
    plan = stage_plan(10, LR, LR_END)
    assert rec.images.shape == secret.images.shape and 0 <= rec.images.min() and rec.images.max() <= 1
    assert torch.equal(rec.labels, case.labels)
    assert rec.extra["labels"] == "known" and rec.extra["n_seed"] == 8
    assert rec.extra["stage_plan"] == [s.to_dict() for s in plan]
    stages = rec.extra["stages"]
    assert [s["name"] for s in stages] == [s.name for s in plan]
    for report in stages[:-1]:
        assert len(report["seed_losses"]) == 8 and report["combined_loss"] <= min(report["seed_losses"])
    # the final run starts from the last combination and keeps its best iterate
    assert stages[-1]["gradient_loss"] <= stages[-2]["combined_loss"]
    assert rec.extra["gradient_loss"] == stages[-1]["gradient_loss"]
    assert rec.iterations == 8 * sum(s.iterations for s in plan[:-1]) + plan[-1].iterations
    # the seeds of a stage advance together: 8 seed-iterations per report, then the final stage's one
    per_seed = sum(s.iterations for s in plan[:-1])
    assert seen == list(range(8, 8 * per_seed + 1, 8)) + list(range(8 * per_seed + 1, rec.iterations + 1))
    assert rec.extra["seed_chunk"] == 8
    assert len(rec.loss_trace) == sum(s.iterations for s in plan)


def test_without_the_combination_seed_zero_stands_in_for_every_combination():
    case, secret = tiny_case(0, batch_size=2)
    full = create_attack("e2egi").reconstruct(case, budget=10, seed=0)
    ablated = create_attack("e2egi", combine=False).reconstruct(case, budget=10, seed=0)
    assert full.extra["combination"] == "min-loss" and ablated.extra["combination"] == "first-seed"
    for report in ablated.extra["stages"][:-1]:  # no search: seed 0 whatever the losses, its loss recorded
        assert report["start_seed"] == 0 and report["choices"] == [0, 0]
        assert report["combined_loss"] == pytest.approx(report["seed_losses"][0], rel=1e-5)
    # the first stage is the same in both; the combination then differs wherever seed 0 was not the best
    assert ablated.extra["stages"][0]["seed_losses"] == full.extra["stages"][0]["seed_losses"]
    assert ablated.iterations == full.iterations


def test_total_iterations_counts_every_seed_of_the_per_seed_stages():
    plan = stage_plan(240, LR, LR_END)  # 72 + 8 x 10 per seed, 96 once
    assert mlco.total_iterations(plan, 8) == 8 * (72 + 8 * 10) + 96 == 1312
    assert mlco.total_iterations(plan, 2) == 2 * 152 + 96


def test_best_of_8_spends_mlcos_total_compute_and_keeps_the_lowest_loss_seed():
    case, secret = tiny_case(1, batch_size=2)
    budget = 20
    full = create_attack("e2egi").reconstruct(case, budget=budget, seed=3)
    best = create_attack("e2egi-no-mlco-best-of-8").reconstruct(case, budget=budget, seed=3)
    per_seed = round(mlco.total_iterations(stage_plan(budget, LR, LR_END), 8) / 8)
    assert best.extra["stage_plan"] == [Stage("base", per_seed, LR, LR_END, 0.2, 0.0).to_dict()]
    assert best.iterations == 8 * per_seed and abs(best.iterations - full.iterations) < 8
    losses = best.extra["seed_losses"]
    assert len(losses) == 8 and len(set(losses)) == 8  # independent seeds end apart
    assert best.extra["best_seed"] == losses.index(min(losses))
    assert best.extra["gradient_loss"] == min(losses)
    # the kept seed is that seed's own run: the same images as its run alone, from the same start and noise
    alone = create_attack("e2egi-no-mlco-best-of-8", seed_chunk=1).reconstruct(case, budget=budget, seed=3)
    assert alone.extra["best_seed"] == best.extra["best_seed"]
    assert torch.allclose(alone.images, best.images, atol=1e-5)
    assert alone.extra["seed_losses"] == pytest.approx(losses, rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("bn_stats", ["exact", "running"])
def test_no_mlco_runs_one_seed_for_the_whole_budget(bn_stats):
    case, _ = simulate(Scenario(**{**TINY, "batch_size": 2}, threat=ThreatModel(labels_known=True, bn_stats=bn_stats)))
    rec = create_attack("e2egi-no-mlco").reconstruct(case, budget=7, seed=0)
    assert rec.iterations == 7 and len(rec.loss_trace) == 7
    assert rec.extra["stage_plan"] == [Stage("base", 7, LR, LR_END, 0.2, 0.0).to_dict()]
    assert rec.extra["gradient_loss"] <= rec.loss_trace[0]


def test_attack_reconstructs_labels_when_unknown():
    load_methods()
    if "e2egi" not in LABELS:
        pytest.skip("the e2egi label method is not registered")
    case, secret = tiny_case(2, labels_known=False, batch_size=2)
    rec = create_attack("e2egi-no-mlco").reconstruct(case, budget=3, seed=0)
    assert rec.extra["labels"] == "e2egi"
    assert rec.labels.shape == (2,)
    assert score(rec, secret).summary["psnr"] > 0


def test_attack_rejects_bad_budgets_and_missing_bn_statistics():
    case, _ = tiny_case(0, batch_size=2)
    with pytest.raises(BenchError):
        create_attack("e2egi").reconstruct(case, budget=0)
    with pytest.raises(BenchError):
        create_attack("e2egi", n_seed=1).reconstruct(case, budget=3)
    with pytest.raises(BenchError):
        create_attack("e2egi-no-mlco", n_seed=0).reconstruct(case, budget=3)
    blind, _ = simulate(Scenario(**{**TINY, "batch_size": 2}, threat=ThreatModel(labels_known=True, bn_stats="none")))
    with pytest.raises(BenchError):
        create_attack("e2egi").reconstruct(blind, budget=3)


# ---- what MLCO buys -------------------------------------------------------------------------------------

COMPARISON_SEEDS = (0, 1, 2, 3, 4)


@pytest.mark.slow
def test_mlco_scores_at_least_as_well_as_the_base_inversion():
    """Narrow ConvNet, 16 px, B = 4, exact BN, labels known, equal budget E = 240 for both."""
    wins, rows = 0, []
    for seed in COMPARISON_SEEDS:
        scenario = Scenario(
            model="convnet", model_options={"width": 8}, image_size=16, batch_size=4, seed=seed,
            threat=ThreatModel(labels_known=True, bn_stats="exact"),
        )  # fmt: skip
        case, secret = simulate(scenario)
        full = score(create_attack("e2egi").reconstruct(case, budget=240, seed=seed), secret).summary["psnr"]
        base = score(create_attack("e2egi-no-mlco").reconstruct(case, budget=240, seed=seed), secret).summary["psnr"]
        rows.append((seed, round(full, 2), round(base, 2)))
        wins += full >= base
    print("seed, PSNR e2egi, PSNR e2egi-no-mlco:", rows)
    assert wins > len(COMPARISON_SEEDS) / 2, rows
