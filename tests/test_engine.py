"""The gradient-matching engine against hand computations: distances, priors, schedules and the loop."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
import torch

from bench.engine.collective import Shard
from bench.engine.distances import GradientDistance
from bench.engine.loop import LoopConfig, Variables, iteration_budget, run_loop
from bench.engine.objective import Evaluation, Weights
from bench.engine.regularizers import batch_mean, group_distance, l2_norm, total_variation
from bench.engine.restarts import best_of_restarts
from bench.engine.schedule import Schedule
from bench.engine.seed_group import SeedGroup
from bench.engine.setup import setup_attack
from bench.errors import BenchError


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors run fastest on one intra-op thread (several threads contend on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# Two "layers" with values chosen so every distance has a short exact answer.
DUMMY = [torch.tensor([1.0, 0.0]), torch.tensor([[0.0, 3.0]])]
TARGET = [torch.tensor([1.0, 1.0]), torch.tensor([[0.0, 1.0]])]


# ---- distances ----------------------------------------------------------------------------------------


def test_cosine_concatenates_all_layers():
    # concatenated: a = (1, 0, 0, 3), b = (1, 1, 0, 1): <a, b> = 4, |a| = sqrt(10), |b| = sqrt(3)
    value = GradientDistance("cosine")(DUMMY, TARGET)
    assert value.item() == pytest.approx(1 - 4 / math.sqrt(30), abs=1e-7)
    # not the mean of per-layer cosines (0.2929 and 0), which a per-layer implementation would give
    assert value.item() != pytest.approx((1 - 1 / math.sqrt(2) + 0) / 2, abs=1e-3)


def test_cosine_layer_weights_scale_dots_and_norms():
    # weights (1, 0.5): <a, b> = 1 + 0.5 * 3, |a|^2 = 1 + 0.5 * 9, |b|^2 = 2 + 0.5 * 1
    value = GradientDistance("cosine", layer_weights=(1.0, 0.5))(DUMMY, TARGET)
    assert value.item() == pytest.approx(1 - 2.5 / math.sqrt(5.5 * 2.5), abs=1e-7)
    only_first = GradientDistance("cosine", layers=(0,))(DUMMY, TARGET)
    assert only_first.item() == pytest.approx(1 - 1 / math.sqrt(2), abs=1e-7)


def test_squared_and_unsquared_l2():
    # differences per layer: (0, -1) and (0, 2)
    assert GradientDistance("l2_squared")(DUMMY, TARGET).item() == pytest.approx(1 + 4)
    assert GradientDistance("l2")(DUMMY, TARGET).item() == pytest.approx(1 + 2)
    assert GradientDistance("l2_squared", layers=(1,), layer_weights=(2.0,))(DUMMY, TARGET).item() == pytest.approx(8)
    assert GradientDistance("l2", layers=(-1,))(DUMMY, TARGET).item() == pytest.approx(2)


def test_identical_gradients_have_zero_distance():
    for kind in ("l2_squared", "l2", "cosine"):
        assert GradientDistance(kind)(TARGET, TARGET).item() == pytest.approx(0.0, abs=1e-7)


def test_distance_errors_are_one_line():
    with pytest.raises(BenchError, match="unknown gradient distance"):
        GradientDistance("l1")
    with pytest.raises(BenchError, match="1 layer weights for 2 layers"):
        GradientDistance("l2", layer_weights=(1.0,))(DUMMY, TARGET)
    with pytest.raises(BenchError, match="out of range"):
        GradientDistance("l2", layers=(5,))(DUMMY, TARGET)


# ---- priors -------------------------------------------------------------------------------------------


def test_total_variation_by_hand():
    x = torch.tensor([[0.0, 1.0, 3.0], [2.0, 2.0, 2.0]]).view(1, 1, 2, 3)
    # |dx|: 1, 2, 0, 0 -> mean 0.75; |dy|: 2, 1, 1 -> mean 4/3
    assert total_variation(x).tolist() == pytest.approx([0.75 + 4 / 3])
    batch = torch.cat([x, torch.zeros_like(x)])
    assert total_variation(batch).tolist() == pytest.approx([0.75 + 4 / 3, 0.0])
    assert batch_mean(total_variation(batch), Shard.whole(2)).item() == pytest.approx((0.75 + 4 / 3) / 2)


def test_l2_norm_and_group_distance_by_hand():
    x = torch.tensor([3.0, 4.0, 0.0, 0.0]).view(1, 1, 2, 2)
    assert l2_norm(x).tolist() == pytest.approx([5.0])
    consensus = torch.zeros_like(x)
    assert group_distance(x, consensus, "l2").tolist() == pytest.approx([5.0])
    assert group_distance(x, consensus, "mse").tolist() == pytest.approx([25.0 / 4])


# ---- schedules ----------------------------------------------------------------------------------------


def test_multistep_drops_at_three_five_seven_eighths():
    schedule = Schedule("multistep", lr=0.1)
    lrs = [schedule(t, 8) for t in range(8)]
    assert lrs == pytest.approx([0.1, 0.1, 0.1, 0.01, 0.01, 1e-3, 1e-3, 1e-4])
    assert schedule(8999, 24_000) == pytest.approx(0.1) and schedule(9000, 24_000) == pytest.approx(0.01)
    assert schedule(15_000, 24_000) == pytest.approx(1e-3) and schedule(21_000, 24_000) == pytest.approx(1e-4)


def test_cosine_endpoints_and_warmup():
    plain = Schedule("cosine", lr=0.1, lr_end=1e-3)
    assert plain(0, 100) == pytest.approx(0.1)
    assert plain(50, 100) == pytest.approx((0.1 + 1e-3) / 2)
    assert plain(99, 100) == pytest.approx(1e-3, abs=1e-4)
    assert plain(100, 100) == pytest.approx(1e-3)
    warm = Schedule("cosine", lr=0.1, lr_end=0.0, warmup=50)
    assert [warm(t, 1050) for t in (0, 24, 49)] == pytest.approx([0.1 / 50, 0.1 * 25 / 50, 0.1])
    assert warm(50, 1050) == pytest.approx(0.1)  # the decay starts at the top
    assert warm(550, 1050) == pytest.approx(0.05)
    assert all(warm(t, 1050) >= warm(t + 1, 1050) for t in range(50, 1049))
    assert Schedule("constant", lr=1.0)(123, 300) == 1.0
    with pytest.raises(BenchError, match="unknown schedule"):
        Schedule("linear")


# ---- the loop, on objectives whose gradients are known ----------------------------------------------


@dataclass
class Quadratic:
    """sum(scale * (x - centre)^2) as an engine objective; records the consensus it was evaluated with."""

    centre: float = 3.0
    scale: torch.Tensor | None = None
    shard: Shard = field(default_factory=lambda: Shard.whole(1))
    seen_consensus: list = field(default_factory=list)
    seeds = 1

    def value(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.ones_like(x) if self.scale is None else self.scale
        return (scale * (x - self.centre) ** 2).sum()

    def evaluate(self, inputs, targets, consensus=None) -> Evaluation:
        self.seen_consensus.append(None if consensus is None else consensus.clone())
        value = self.value(inputs)
        return Evaluation(backward=value, gradient_loss=float(value.detach()), total=float(value.detach()))

    def differentiate(self, inputs, targets, consensus, leaves) -> Evaluation:
        evaluation = self.evaluate(inputs, targets, consensus)
        evaluation.backward.backward(inputs=leaves)
        return evaluation

    def gradient_loss(self, inputs, targets) -> float:
        return float(self.value(inputs).detach())

    def seed_losses(self, inputs, targets) -> list[float]:
        return [self.gradient_loss(inputs, targets)]


def _start(values) -> Variables:
    images = torch.tensor(values, dtype=torch.float32).view(1, 1, 1, -1)
    return Variables(images, labels=torch.zeros(1, dtype=torch.long))


def test_signed_steps_feed_adam_the_sign_of_the_gradient():
    scale = torch.tensor([1.0, 100.0, 0.01]).view(1, 1, 1, 3)
    objective = Quadratic(scale=scale)
    variables = _start([0.0, 10.0, -5.0])
    x = variables.images.clone().requires_grad_(True)
    reference = torch.optim.Adam([x], lr=0.1)
    for _ in range(4):
        reference.zero_grad()
        objective.value(x).backward()
        x.grad.sign_()
        reference.step()
    run_loop(objective, variables, LoopConfig(4, schedule=Schedule("constant", lr=0.1), signed=True, boxed=False))
    assert torch.equal(variables.images.detach(), x.detach())
    unsigned = _start([0.0, 10.0, -5.0])
    run_loop(objective, unsigned, LoopConfig(4, schedule=Schedule("constant", lr=0.1), boxed=False))
    assert not torch.equal(unsigned.images.detach(), x.detach())


def test_box_projection_after_every_step():
    low, high = torch.full((1, 1, 1, 1), -0.5), torch.full((1, 1, 1, 1), 0.5)
    boxed = _start([0.0, 0.4, -0.4])
    run_loop(Quadratic(centre=10.0), boxed, LoopConfig(3, schedule=Schedule("constant", lr=1.0)), box=(low, high))
    assert boxed.images.detach().flatten().tolist() == [0.5, 0.5, 0.5]  # pushed up, clamped to the top
    free = _start([0.0, 0.4, -0.4])
    unboxed = LoopConfig(3, schedule=Schedule("constant", lr=1.0), boxed=False)
    run_loop(Quadratic(centre=10.0), free, unboxed, box=(low, high))
    assert (free.images.detach() > 0.5).all()


def test_best_iterate_is_returned_when_the_loss_rises_at_the_end():
    # Adam at lr 1 walks 0 -> 1 -> 2 -> ~3 and overshoots the minimum at 3: the loss goes down, then up.
    config = LoopConfig(6, schedule=Schedule("constant", lr=1.0), boxed=False, keep_best=True)
    objective = Quadratic()
    result = run_loop(objective, _start([0.0]), config)
    trace = result.trace  # loss of the iterate each step started from
    best = min(range(len(trace)), key=trace.__getitem__)
    assert trace[-1] > trace[best] and best < len(trace) - 1
    assert result.gradient_loss == pytest.approx(trace[best])
    assert objective.gradient_loss(result.images, None) == pytest.approx(trace[best])
    last = run_loop(Quadratic(), _start([0.0]), LoopConfig(6, schedule=Schedule("constant", lr=1.0), boxed=False))
    assert last.gradient_loss > result.gradient_loss  # without keep_best the final iterate comes back


def test_noise_is_lr_times_alpha_times_a_seeded_normal_draw():
    flat = Quadratic(scale=torch.zeros(1, 1, 1, 2))  # zero gradient: only the noise moves the images
    config = LoopConfig(1, schedule=Schedule("constant", lr=0.5), boxed=False, noise=0.2)
    variables = _start([1.0, -1.0])
    run_loop(flat, variables, config, generator=torch.Generator().manual_seed(7))
    expected = torch.tensor([1.0, -1.0]).view(1, 1, 1, 2) + 0.5 * 0.2 * torch.randn(
        (1, 1, 1, 2), generator=torch.Generator().manual_seed(7)
    )
    assert torch.allclose(variables.images.detach(), expected)

    def noisy(seed: int) -> torch.Tensor:
        v = _start([0.0, 0.0])
        run_loop(Quadratic(), v, LoopConfig(5, noise=0.2, boxed=False), generator=torch.Generator().manual_seed(seed))
        return v.images.detach()

    assert torch.equal(noisy(1), noisy(1))
    assert not torch.equal(noisy(1), noisy(2))
    with pytest.raises(ValueError, match="generator"):
        run_loop(Quadratic(), _start([0.0]), LoopConfig(1, noise=0.2))


def test_stop_below_ends_the_loop_early():
    config = LoopConfig(50, optimizer="lbfgs", schedule=Schedule("constant", lr=1.0), boxed=False, stop_below=1e-6)
    result = run_loop(Quadratic(centre=0.0), _start([1e-4]), config)
    assert result.iterations < 50 and result.trace[-1] < 1e-6


def test_refreshed_consensus_is_used_from_the_next_iteration():
    objective = Quadratic()
    calls = []

    def refresh(done: int, images: torch.Tensor):
        calls.append(done)
        return torch.full_like(images, float(done)) if done % 2 == 0 else None

    run_loop(objective, _start([0.0]), LoopConfig(5, boxed=False), refresh_consensus=refresh)
    assert calls == [1, 2, 3, 4, 5]
    seen = [None if c is None else c.item() for c in objective.seen_consensus]
    assert seen == [None, None, 2.0, 2.0, 4.0]  # returned after iterations 2 and 4, used from the next one


def test_iteration_budget():
    assert iteration_budget(None, 300) == 300 and iteration_budget(7, 300) == 7
    with pytest.raises(BenchError, match="at least 1"):
        iteration_budget(0, 300)


# ---- restarts and seed groups -------------------------------------------------------------------------


def test_best_of_restarts_keeps_the_lowest_finite_loss():
    losses = [0.5, float("nan"), 0.2, 0.2, float("inf")]
    best = best_of_restarts(lambda r: r, restarts=5, loss=lambda r: losses[r])
    assert (best.index, best.result) == (2, 2)  # first of the tied minima; NaN never wins
    assert best.losses[0] == 0.5 and math.isnan(best.losses[1])
    assert best_of_restarts(lambda r: r, 2, loss=lambda r: float("nan")).index == 0
    with pytest.raises(BenchError, match="at least 1"):
        best_of_restarts(lambda r: r, 0)


def test_seed_group_takes_the_steps_of_separate_runs(small_case):
    """Adam, signed steps and the box act per element: one loop over G stacked seeds == G loops."""
    case, _ = small_case
    setup = setup_attack(case)
    objective = setup.objective(GradientDistance("l2"), Weights(tv=1e-2, bn=0.1), bn=True)
    labels = torch.arange(case.batch_size) % case.num_classes
    generator = setup.generator(0)
    seeds = [setup.random_images(generator) for _ in range(3)]
    config = LoopConfig(3, schedule=Schedule("cosine", lr=0.1, warmup=1), signed=True)
    group = SeedGroup(objective, 3)
    together = run_loop(group, Variables(torch.cat(seeds), labels=group.stack(labels)), config, setup.box)
    apart = [run_loop(objective, Variables(s.clone(), labels=labels), config, setup.box).images for s in seeds]
    for joint, alone in zip(group.split(together.images), apart):
        assert torch.allclose(joint, alone, atol=1e-5)
    assert torch.allclose(group.mean(together.images), torch.stack(apart).mean(0), atol=1e-5)
    assert together.gradient_loss == pytest.approx(sum(group.seed_losses(together.images, group.stack(labels))))
