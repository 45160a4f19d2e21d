"""Attacks through the clients' update pipeline: every gradient-matching attack's objective matches the update
the clients actually sent (FedAvg unrolled, K clients' mean, pruning's surviving entries), the runner scores
all K*B images, and one client's plain FedSGD gradient keeps today's numbers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.attack import create_attack
from bench.client import simulate
from bench.defenses import parse_defense
from bench.engine import objective as objective_module
from bench.engine import setup as engine_setup
from bench.engine.distances import GradientDistance
from bench.engine.dummy_gradient import dummy_gradient
from bench.engine.objective import Evaluation, Objective, Weights
from bench.engine.regularizers import batch_mean, bn_statistics, capture_bn_inputs, l2_norm, total_variation
from bench.engine.seed_group import SeedGroup
from bench.engine.setup import setup_attack
from bench.labels import LABELS, load_methods, missing_need, recover_labels
from bench.scenario import Scenario
from bench.threat import ThreatModel
from bench.update import ClientUpdate

ROOT = Path(__file__).resolve().parents[1]
CONVNET = dict(model="convnet", model_options={"width": 4}, image_size=16, batch_size=2, seed=5)
RECIPES = {
    "fedavg-5-steps": ClientUpdate(local_steps=5),
    "fedavg-5-steps-of-1": ClientUpdate(local_steps=5, local_batch_size=1, local_lr=0.05),
    "2-clients": ClientUpdate(clients=2),
    "prune-0.9": ClientUpdate(defense=parse_defense("prune(0.9)")),
}
# what an attacker who ignored the recipe would match instead: the gradient of the whole dummy batch
IGNORED = {
    "fedavg-5-steps-of-1": ClientUpdate(),
    "2-clients": ClientUpdate(),
    "prune-0.9": ClientUpdate(),
}
OBJECTIVES = {  # the attacks' own objectives: their distances and priors
    "dlg": lambda setup: create_attack("dlg").objective(setup),
    "inverting-gradients": lambda setup: create_attack("inverting-gradients").objective(setup),
    "gradinversion": lambda setup: create_attack("gradinversion").objective(setup),
    "e2egi": lambda setup: setup.objective(GradientDistance("cosine"), Weights(tv=0.0114, bn=0.0357), bn=True),
}


def case_for(update: ClientUpdate, labels_known: bool = True, **values):
    threat = ThreatModel(labels_known=labels_known, bn_stats="exact", update=update)
    return simulate(Scenario(**{**CONVNET, **values}, threat=threat))


def truth(case, secret) -> tuple[torch.Tensor, torch.Tensor]:
    return case.normalization.normalize(secret.images), secret.labels


@pytest.mark.parametrize("recipe", list(RECIPES))
@pytest.mark.parametrize("attack", list(OBJECTIVES))
def test_objective_vanishes_at_the_true_images_and_labels_and_not_at_perturbed_ones(recipe, attack):
    case, secret = case_for(RECIPES[recipe])
    setup = setup_attack(case)
    objective = OBJECTIVES[attack](setup)
    images, labels = truth(case, secret)
    assert len(images) == case.num_images == setup.shard.total  # all K*B images are reconstructed
    at_truth = objective.gradient_loss(images, labels)
    moved = objective.gradient_loss(images + 0.1 * torch.randn(images.shape, generator=torch.Generator().manual_seed(0)), labels)
    scale = float(objective.match([torch.zeros_like(t) for t in objective.target]))  # a zero update's distance
    assert at_truth <= 1e-6 * scale and moved > 1e-3 * scale, (at_truth, moved, scale)
    # the whole objective (its BN prior: each client's own statistics) is at its gradient-free floor there
    evaluation = objective.evaluate(images.clone().requires_grad_(), labels)
    priors = evaluation.total - objective.weights.gradient * evaluation.gradient_loss
    images_only = objective.weights.tv * float(total_variation(images).mean()) + objective.weights.l2 * float(
        l2_norm(images).mean()
    )
    assert priors == pytest.approx(images_only, rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("steps", [1, 5])
@pytest.mark.parametrize("defense", ["none", "prune(0.5)"])
@pytest.mark.parametrize("clients", [1, 2])
@pytest.mark.parametrize("model", ["lenet", "convnet"])
def test_the_distance_is_zero_at_the_truth_for_every_recipe(model, clients, defense, steps):
    """Each of K clients prunes its own update before the server averages: the attacker prunes each dummy
    client's update by the same rule (matching the mean of unpruned dummies masked to the surviving entries
    left 0.18 at the truth with LeNet and 2 clients at 50%, 7.96 on the ConvNet with train-mode BN)."""
    update = ClientUpdate(local_steps=steps, clients=clients, defense=parse_defense(defense))
    values = dict(model="lenet", model_options={}) if model == "lenet" else dict(bn_mode="train")
    case, secret = case_for(update, **values)
    objective = OBJECTIVES["dlg"](setup_attack(case))
    images, labels = truth(case, secret)
    scale = float(objective.match([torch.zeros_like(t) for t in objective.target]))
    at_truth = objective.gradient_loss(images, labels)
    assert at_truth <= 1e-9 * scale, (at_truth, scale)
    nudged = objective.gradient_loss(images + 1e-3 * torch.randn(images.shape, generator=torch.Generator().manual_seed(1)), labels)
    assert nudged > at_truth  # the truth is the minimum, not a point on a plateau above it


@pytest.mark.parametrize("recipe", list(IGNORED))
def test_matching_without_the_recipe_misses_the_truth(recipe):
    """The tests above would pass with a recipe the engine ignores only if it made no difference: it does."""
    case, secret = case_for(RECIPES[recipe])
    setup = setup_attack(case)
    naive = Objective(setup.model, setup.params, setup.target, case.loss, setup.shard, GradientDistance("cosine"))
    assert naive.update == IGNORED[recipe] and naive.visible is None
    assert naive.gradient_loss(*truth(case, secret)) > 1e-3


def test_fedavg_matches_in_gradient_units():
    """theta_0 - theta_n of n steps at lr tau, divided by n tau: on a gradient's scale, so the L2 attacks'
    weights, thresholds and L-BFGS tolerances mean what they mean for a gradient."""
    case, secret = case_for(ClientUpdate(local_steps=5, local_lr=1e-4))
    target = setup_attack(case).target
    raw = case.gradient_list()
    for scaled, sent in zip(target, raw):
        torch.testing.assert_close(scaled, sent / (5 * 1e-4))
    fedsgd, _ = case_for(ClientUpdate())
    ratio = sum(float(t.norm()) for t in target) / sum(float(g.norm()) for g in fedsgd.gradient_list())
    assert 0.5 < ratio < 2  # five small steps: close to the first step's gradient


def test_seed_groups_run_unrolled_updates_one_seed_after_another():
    case, secret = case_for(ClientUpdate(local_steps=3, clients=2))
    setup = setup_attack(case)
    base = OBJECTIVES["e2egi"](setup)
    group = SeedGroup(base, seeds=2)
    assert group.size == 1 and not base.plain
    images, labels = truth(case, secret)
    stack = torch.cat([images, images + 0.1])
    assert group.seed_losses(stack, group.stack(labels)) == [
        base.gradient_loss(images, labels),
        base.gradient_loss(images + 0.1, labels),
    ]
    plain, _ = case_for(ClientUpdate())
    assert SeedGroup(OBJECTIVES["e2egi"](setup_attack(plain)), seeds=2).size == 2  # vmap where it is exact


class MainObjective(Objective):
    """The objective as it was when attacks matched only one client's FedSGD gradient (the reference)."""

    def match(self, grads):
        return self.distance(grads, self.target)

    def gradient_loss(self, inputs, targets):
        grads = dummy_gradient(self.model, self.params, inputs, targets, self.loss, self.shard, create_graph=False)
        return float(self.distance(grads, self.target))

    def evaluate(self, inputs, targets, consensus=None):
        with capture_bn_inputs(self.model) as bn_inputs:
            grads = dummy_gradient(self.model, self.params, inputs, targets, self.loss, self.shard)
        grad_loss, shared, local = self.terms(grads, bn_inputs, inputs, consensus)
        return Evaluation(shared + local, float(grad_loss.detach()), float(shared.detach() + local.detach()))

    def terms(self, grads, bn_inputs, inputs, consensus):
        w = self.weights
        grad_loss = self.distance(grads, self.target)
        shared = w.gradient * grad_loss
        if w.bn > 0 and self.bn_prior is not None:
            shared = shared + w.bn * bn_statistics(bn_inputs, self.bn_prior, self.shard)
        local = torch.zeros((), device=inputs.device)
        if w.tv:
            local = local + w.tv * batch_mean(total_variation(inputs), self.shard)
        if w.l2:
            local = local + w.l2 * batch_mean(l2_norm(inputs), self.shard)
        return grad_loss, shared, local


@pytest.mark.parametrize(
    "attack, options",
    [("dlg", {}), ("inverting-gradients", {"restarts": 2}), ("gradinversion", {"seeds": 2, "alpha_group": 0.0})],
)
def test_one_client_fedsgd_keeps_the_fast_path_bit_for_bit(attack, options, monkeypatch):
    case, _ = case_for(ClientUpdate(), labels_known=False)

    def run():
        rec = create_attack(attack, **options).reconstruct(case, budget=3, seed=1)
        return rec.loss_trace, rec.images

    def never(*args, **kwargs):
        raise AssertionError("one client's FedSGD gradient must not be unrolled")

    monkeypatch.setattr(objective_module, "dummy_update", never)
    trace, images = run()
    monkeypatch.setattr(engine_setup, "Objective", MainObjective)
    reference_trace, reference_images = run()
    assert trace == reference_trace and torch.equal(images, reference_images)


def test_label_methods_read_the_defended_update_or_say_why_not():
    load_methods()
    for recipe in (ClientUpdate(local_steps=5, clients=2), ClientUpdate(clients=2, defense=parse_defense("prune(0.9)"))):
        case, _ = case_for(recipe, model="lenet", model_options={})
        for name in LABELS.names():
            reason = missing_need(case, LABELS.get(name).info.get("needs", ()))
            if recipe.kind == "fedavg" and name in ("ilrg", "llg-star"):  # closed forms of one gradient
                assert reason is not None and "FedSGD" in reason, name
            else:
                assert reason is None and recover_labels(name, case).shape == (case.num_images,), name


def test_bench_run_scores_every_image_of_fedavg_aggregated_and_pruned_cells(tmp_path):
    out = tmp_path / "runs"
    command = [
        sys.executable, "-m", "bench", "run", "--attacks", "inverting-gradients", "--models", "lenet",
        "--image-size", "16", "--batch-sizes", "2", "--seeds", "0", "--budget", "4", "--local-steps", "1,5",
        "--clients", "1,2", "--defenses", "none,prune(0.9)", "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr
    records = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    records = [r for r in records if "status" in r]
    assert len(records) == 8 and all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
    seen = set()
    for record in records:
        update = record["config"]["scenario"]["threat"].get("update", {})
        images = 2 * update.get("clients", 1)
        assert len(record["per_image"]["assignment"]) == images
        assert sorted(record["per_image"]["assignment"]) == list(range(images))  # one-to-one over all K*B
        assert all(v is not None for v in record["per_image"]["psnr"]) and record["metrics"]["psnr_gain"] is not None
        extra = record["per_image"]["attack_extra"]
        assert extra["labels"] == "llg" and len(record["per_image"]["label"]) == images
        seen.add((update.get("local_steps", 1), update.get("clients", 1), "defense" in update))
    assert seen == {(s, k, d) for s in (1, 5) for k in (1, 2) for d in (False, True)}
