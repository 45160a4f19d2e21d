"""Seeds evaluated as one computation take exactly the steps of seeds run one after another.

Reference: the plain engine, one loop per seed (what a sharded run still does). Compared in float64, so a
signed step never flips on rounding noise: any difference beyond 1e-5 is a difference of the mathematics
(for example vmap's batching rule for the fused train-mode BN backward, which a primitive BN replaces).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from attacks import mlco
from bench.attack import create_attack
from bench.client import simulate
from bench.engine.distances import GradientDistance
from bench.engine.loop import LoopConfig, Variables, noise_like, run_loop, seed_streams
from bench.engine.collective import Shard
from bench.engine.objective import Weights
from bench.engine.schedule import Schedule
from bench.engine import seed_group
from bench.engine.seed_group import SeedGroup, group_or_none
from bench.engine.setup import setup_attack
from bench.errors import BenchError
from bench.scenario import Scenario
from bench.threat import ThreatModel

TOL = 1e-5
SEEDS = 3


@pytest.fixture
def float64():
    """Everything built in float64: models, dummy images, noise."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


def tiny(bn_mode: str = "train", labels_known: bool = True, batch_size: int = 3, seed: int = 1):
    """The client's float32 case (its images are float32 whatever the default)."""
    scenario = Scenario(
        model="convnet", model_options={"width": 4}, image_size=16, batch_size=batch_size, seed=seed,
        bn_mode=bn_mode, threat=ThreatModel(labels_known=labels_known, bn_stats="exact"),
    )  # fmt: skip
    return client_case(scenario)


def client_case(scenario: Scenario):
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        return simulate(scenario)[0]
    finally:
        torch.set_default_dtype(before)


@dataclass
class Start:
    """G seeds' starting points: images, hard labels or soft-label logits."""

    images: list[torch.Tensor]
    labels: torch.Tensor | None
    logits: list[torch.Tensor] | None

    def alone(self, seed: int) -> Variables:
        logits = None if self.logits is None else self.logits[seed].clone()
        return Variables(self.images[seed].clone(), self.labels, logits)

    def together(self, group: SeedGroup) -> Variables:
        labels = None if self.labels is None else group.stack(self.labels)
        logits = None if self.logits is None else torch.cat(self.logits)
        return Variables(torch.cat(self.images), labels, logits)


def start(setup, soft: bool) -> Start:
    g = setup.generator(0)
    images = [setup.random_images(g) for _ in range(SEEDS)]
    if not soft:
        return Start(images, torch.arange(setup.shard.total) % setup.case.num_classes, None)
    shape = (setup.shard.total, setup.case.num_classes)
    return Start(images, None, [torch.randn(shape, generator=g) for _ in range(SEEDS)])


def assert_same_runs(together, apart, seeds: int = SEEDS) -> None:
    assert len(together.seed_losses) == seeds
    for joint, alone in zip(together.per_seed(), apart):
        assert torch.allclose(joint.images, alone.images, atol=TOL, rtol=0)
        assert joint.gradient_loss == pytest.approx(alone.gradient_loss, abs=TOL)
        assert joint.trace == pytest.approx(alone.trace, abs=TOL)
        if alone.label_logits is not None:
            assert torch.allclose(joint.label_logits, alone.label_logits, atol=TOL, rtol=0)


@pytest.mark.parametrize("chunk", [None, 2])
@pytest.mark.parametrize("bn_mode", ["train", "eval"])
@pytest.mark.parametrize("bn_prior", [True, False])
@pytest.mark.parametrize("soft", [False, True])
def test_group_takes_the_steps_of_separate_runs(float64, chunk, bn_mode, bn_prior, soft):
    """Signed Adam with the box, TV and group terms, best iterates: the stack equals one loop per seed."""
    setup = setup_attack(tiny(bn_mode))
    weights = Weights(gradient=1.0, tv=1e-2, l2=1e-3, bn=0.1 if bn_prior else 0.0, group=0.05, group_kind="l2")
    objective = setup.objective(GradientDistance("l2_squared" if soft else "l2"), weights, bn=bn_prior)
    begin = start(setup, soft)
    consensus = torch.zeros_like(begin.images[0])
    config = LoopConfig(4, schedule=Schedule("cosine", lr=0.1, warmup=1), signed=True, keep_best=True)
    group = SeedGroup(objective, SEEDS, chunk)
    together = run_loop(group, begin.together(group), config, setup.box, consensus)
    apart = [run_loop(objective, begin.alone(s), config, setup.box, consensus) for s in range(SEEDS)]
    assert group.size == (chunk or SEEDS)  # evaluated together, not one after another
    assert_same_runs(together, apart)


def test_noise_streams_give_each_seed_its_sequential_draws(float64):
    """MLCO's seeds run a noisy stage together, each with the noise it draws when they run in turn."""
    setup = setup_attack(tiny("train"))
    objective = setup.objective(GradientDistance("cosine"), Weights(tv=1e-2, bn=0.05), bn=True)
    begin = start(setup, soft=False)
    config = LoopConfig(3, schedule=Schedule("cosine", lr=0.1, lr_end=1e-3), signed=True, noise=0.2, keep_best=True)
    in_turn, together_gen = setup.generator(5), setup.generator(5)
    apart = [run_loop(objective, begin.alone(s), config, setup.box, None, in_turn) for s in range(SEEDS)]
    group = SeedGroup(objective, SEEDS)
    streams = seed_streams(together_gen, SEEDS, config.iterations, begin.images[0].shape)
    together = run_loop(group, begin.together(group), config, setup.box, None, streams)
    assert_same_runs(together, apart)
    assert torch.equal(together_gen.get_state(), in_turn.get_state())  # later stages draw the same numbers


def test_seed_streams_replay_the_sequential_draws():
    shared, streams_source = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    sequential = [[torch.randn(2, 3, generator=shared) for _ in range(4)] for _ in range(3)]
    streams = seed_streams(streams_source, 3, 4, (2, 3))
    for seed, stream in enumerate(streams):
        assert all(torch.equal(torch.randn(2, 3, generator=stream), x) for x in sequential[seed])
    assert torch.equal(streams_source.get_state(), shared.get_state())
    stacked = torch.zeros(6, 3)  # noise_like draws each seed's rows from its own stream
    fresh = seed_streams(torch.Generator().manual_seed(3), 3, 4, (2, 3))
    assert torch.equal(noise_like(stacked, Shard.whole(6), fresh), torch.cat([s[0] for s in sequential]))


def test_seed_losses_match_the_plain_objective(float64):
    setup = setup_attack(tiny("train"))
    objective = setup.objective(GradientDistance("cosine"))
    begin = start(setup, soft=False)
    group = SeedGroup(objective, SEEDS, compare_batched=True)
    batched = group.seed_losses(torch.cat(begin.images), group.stack(begin.labels))
    assert batched == pytest.approx([objective.gradient_loss(x, begin.labels) for x in begin.images], abs=1e-12)


def test_on_a_cpu_candidate_comparisons_run_one_seed_after_another(monkeypatch):
    setup = setup_attack(tiny("train"))
    objective = setup.objective(GradientDistance("cosine"))
    begin = start(setup, soft=False)

    def batched(self, *args, **kwargs):
        raise AssertionError("evaluated as one computation")

    monkeypatch.setattr(SeedGroup, "_batched", batched)
    group = SeedGroup(objective, SEEDS)
    stack, labels = torch.cat(begin.images), group.stack(begin.labels)
    assert group.seed_losses(stack, labels) == [objective.gradient_loss(x, begin.labels) for x in begin.images]
    with pytest.raises(AssertionError, match="one computation"):  # asked for, they run together
        SeedGroup(objective, SEEDS, compare_batched=True).seed_losses(stack, labels)


def test_a_chunk_out_of_memory_is_retried_in_halves(float64, monkeypatch):
    setup = setup_attack(tiny("train"))
    objective = setup.objective(GradientDistance("l2"), Weights(tv=1e-2))
    begin = start(setup, soft=False)
    config = LoopConfig(2, schedule=Schedule("constant", lr=0.1), signed=True)
    group = SeedGroup(objective, 4)
    begin.images.append(begin.images[0] + 0.5)
    real = SeedGroup._batched

    def limited(self, inputs, *args, **kwargs):
        if inputs.shape[0] > 2 * setup.shard.total:  # more than two seeds "do not fit"
            raise torch.OutOfMemoryError("simulated")
        return real(self, inputs, *args, **kwargs)

    monkeypatch.setattr(SeedGroup, "_batched", limited)
    together = run_loop(group, begin.together(group), config, setup.box)
    apart = [run_loop(objective, begin.alone(s), config, setup.box) for s in range(4)]
    assert group.chunk == 2
    assert_same_runs(together, apart, seeds=4)


def test_on_a_cpu_chunks_keep_their_input_under_the_limit(float64, monkeypatch):
    setup = setup_attack(tiny("eval"))
    objective = setup.objective(GradientDistance("l2"), Weights(tv=1e-2))
    begin = start(setup, soft=False)
    per_seed = begin.images[0].numel()
    monkeypatch.setattr(seed_group, "CPU_CHUNK_VALUES", 2 * per_seed)  # two seeds' input per chunk
    config = LoopConfig(2, schedule=Schedule("constant", lr=0.1), signed=True)
    group = SeedGroup(objective, SEEDS)
    together = run_loop(group, begin.together(group), config, setup.box)
    apart = [run_loop(objective, begin.alone(s), config, setup.box) for s in range(SEEDS)]
    assert (group.chunk, group.size) == (2, 2)
    assert_same_runs(together, apart)
    assert SeedGroup(objective, SEEDS, chunk=3).size == 3  # a chunk given is kept


def test_groups_fall_back_to_one_seed_at_a_time():
    setup = setup_attack(tiny("train"))
    objective = setup.objective(GradientDistance("l2"))
    assert group_or_none(objective, 1, None) is None and group_or_none(objective, 4, 1) is None
    assert group_or_none(objective, 4, None).size == 4 and group_or_none(objective, 4, 3).size == 3

    class OtherNorm(nn.modules.batchnorm._BatchNorm):  # a train-mode BN the primitive form does not cover
        def _check_input_dim(self, input):
            pass

    other = OtherNorm(4).train()
    other.weight, other.bias = setup.model.model.bn0.weight, setup.model.model.bn0.bias  # the same parameters
    setup.model.model.bn0 = other
    assert SeedGroup(objective, 4).size == 1
    with pytest.raises(BenchError, match="seed_chunk must be at least 1"):
        SeedGroup(objective, 4, 0)
    with pytest.raises(BenchError, match="seed_chunk"):
        create_attack("gradinversion", seed_chunk=0)


# ---- the attacks: every seed batched (None), in chunks (2) and one after another (1) -------------------


def run_attack(name: str, case, chunk: int | None, budget: int, **config):
    return create_attack(name, seed_chunk=chunk, **config).reconstruct(case, budget=budget, seed=0)


@pytest.mark.parametrize("bn_mode", ["train", "eval"])
@pytest.mark.parametrize("labels_known", [True, False])
def test_e2egi_mlco_batched_equals_seeds_in_turn(float64, bn_mode, labels_known, monkeypatch):
    """Stages, noise, best iterates and combinations: the same images and stage reports."""
    calls = []
    real_combine = mlco.combine

    def spy(candidates, losses, gradient_losses, shard):
        counted = lambda batches: calls.append(len(batches)) or gradient_losses(batches)  # noqa: E731
        return real_combine(candidates, losses, counted, shard)

    monkeypatch.setattr(mlco, "combine", spy)
    case = tiny(bn_mode, labels_known, batch_size=2)
    runs = {chunk: run_attack("e2egi", case, chunk, budget=12, n_seed=4) for chunk in (1, None, 3)}
    reference = runs.pop(1)
    # per combination: the start batch, then one evaluation of the 3 other seeds' swaps per slot
    assert calls[: 1 + case.batch_size] == [1] + [3] * case.batch_size
    assert reference.extra["seed_chunk"] == 1
    for chunk, rec in runs.items():
        assert rec.extra["seed_chunk"] == (chunk or 4)
        assert torch.allclose(rec.images, reference.images, atol=TOL, rtol=0)
        assert torch.equal(rec.labels, reference.labels)
        assert rec.loss_trace == pytest.approx(reference.loss_trace, abs=TOL)
        for got, want in zip(rec.extra["stages"], reference.extra["stages"]):
            assert got.get("choices") == want.get("choices") and got.get("start_seed") == want.get("start_seed")
            assert got.get("seed_losses", []) == pytest.approx(want.get("seed_losses", []), abs=TOL)


@pytest.mark.parametrize("bn_stats", ["exact", "running"])
def test_gradinversion_batched_equals_seeds_in_turn(float64, bn_stats):
    scenario = Scenario(
        model="convnet", model_options={"width": 4}, image_size=16, batch_size=2, seed=2,
        threat=ThreatModel(labels_known=True, bn_stats=bn_stats),
    )  # fmt: skip
    case = client_case(scenario)
    config = {"seeds": 3, "group_start": 2_000, "group_every": 1_000}  # a consensus from iteration 2 of 10
    reference, batched = (run_attack("gradinversion", case, chunk, budget=10, **config) for chunk in (1, None))
    assert (reference.extra["seed_chunk"], batched.extra["seed_chunk"]) == (1, 3)
    assert torch.allclose(batched.images, reference.images, atol=TOL, rtol=0)
    assert batched.extra["seed_losses"] == pytest.approx(reference.extra["seed_losses"], abs=TOL)
    assert batched.loss_trace == pytest.approx(reference.loss_trace, abs=TOL)


def test_inverting_gradients_restarts_batched_equal_restarts_in_turn(float64):
    case = tiny("train", labels_known=True, batch_size=2)
    reference, batched = (run_attack("inverting-gradients", case, c, budget=6, restarts=3) for c in (1, None))
    assert (reference.extra["seed_chunk"], batched.extra["seed_chunk"]) == (1, 3)
    assert batched.extra["restart"] == reference.extra["restart"]
    assert batched.extra["restart_losses"] == pytest.approx(reference.extra["restart_losses"], abs=TOL)
    assert torch.allclose(batched.images, reference.images, atol=TOL, rtol=0)
