"""The attacker's dummy update (bench.engine.update): at the true images and labels it reproduces the update
the clients sent, through FedAvg's local steps and K clients' own BN statistics, and it is differentiable in
the images; the pruning mask lets a distance ignore the entries the defense zeroed."""

from __future__ import annotations

import pytest
import torch

from bench.client import simulate
from bench.defenses import parse_defense
from bench.engine.distances import GradientDistance, masked
from bench.engine.update import dummy_update, visible_mask
from bench.scenario import Scenario
from bench.threat import ThreatModel
from bench.update import ClientUpdate, functional_state

CONVNET = dict(model="convnet", model_options={"width": 4}, image_size=16, batch_size=4, seed=4)
RECIPES = {
    "fedsgd": ClientUpdate(),
    "fedavg": ClientUpdate(local_steps=3, local_batch_size=2, local_lr=0.1),
    "fedavg, 2 clients": ClientUpdate(local_steps=2, local_lr=0.1, clients=2),
}


def at_truth(case, secret, create_graph=True):
    model = case.build_model()
    weights, constants = functional_state(model)
    inputs = case.normalization.normalize(secret.images).requires_grad_(create_graph)
    update = dummy_update(model, weights, constants, inputs, secret.labels, case.loss, case.threat.update, create_graph)
    return update, inputs


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_dummy_update_at_the_true_data_reproduces_the_sent_update(recipe):
    case, secret = simulate(Scenario(**CONVNET, threat=ThreatModel(update=RECIPES[recipe])))
    dummy, inputs = at_truth(case, secret)
    target = case.gradient_list()
    for got, want in zip(dummy, target):
        torch.testing.assert_close(got.detach(), want, rtol=1e-4, atol=1e-7)
    assert float(GradientDistance("cosine")(dummy, target).detach()) < 1e-6
    (image_grad,) = torch.autograd.grad(GradientDistance("l2_squared")(dummy, [t * 1.01 for t in target]), inputs)
    assert torch.isfinite(image_grad).all() and image_grad.abs().sum() > 0  # differentiable through the steps


def test_the_attacker_reads_the_pruning_mask_and_matches_the_surviving_entries():
    update = ClientUpdate(defense=parse_defense("prune(0.6)"))
    case, secret = simulate(Scenario(**CONVNET, threat=ThreatModel(update=update)))
    target = case.gradient_list()
    mask = visible_mask(target)
    for name, m in zip(case.gradients, mask):
        assert (m == 0).sum() >= int(0.6 * m.numel()), name  # at least the pruned entries are hidden
    dummy, _ = at_truth(case, secret, create_graph=False)  # the undefended update: the attacker knows no more
    for kind in ("l2_squared", "cosine"):
        unmasked = float(GradientDistance(kind)(dummy, target))  # the pruned entries count
        assert unmasked > 1e-3 and float(masked(GradientDistance(kind), mask)(dummy, target)) < 1e-4 * unmasked
    # changing only hidden entries changes nothing
    moved = [d + 5.0 * (1 - m) for d, m in zip(dummy, mask)]
    scale = float(GradientDistance("l2_squared")(dummy, target))
    assert float(masked(GradientDistance("l2_squared"), mask)(moved, target)) < 1e-4 * scale
