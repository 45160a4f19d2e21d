"""The attacker's dummy update: what a client following the Case's public recipe would share for dummy data.

Building blocks for matching FedAvg, aggregated and pruned updates (the recipe: bench.update):
- `dummy_update`: K clients' updates over K*B dummy images in client order (B each), every client with its
  own BN statistics and the client's own local training (FedSGD gradient, or FedAvg unrolled with the same
  steps, minibatch order, batch size and learning rate), averaged; differentiable w.r.t. the dummy images,
  through every local step (Geiping et al. 2020, Sec. 5).
- `visible_mask`: the entries a pruning defense zeroed, read off the shared update (zeros are visible);
  `bench.engine.distances.masked` compares only the entries that survived. With one client that mask is
  the client's own; with K clients it is only the union of theirs, so each dummy client's update is pruned
  by the public rule itself (`Defense.replayed`, the dummy's own smallest entries) before the mean.
- `gradient_units`: the known factor that puts an update on a gradient's scale (FedAvg's delta over n steps at
  learning rate tau is n tau times the mean step gradient), so the attacks' distances, weights, stopping
  thresholds and L-BFGS tolerances, set for a gradient, mean the same for a weight difference.
- `split_state`, `in_gradient_units`: what the attack objective (bench.engine.objective) feeds `dummy_update`
  with, and the units it compares in.
The defenses' random draws (DP-SGD's and additive noise) are unknown to the attacker, so the dummy update is
the undefended one; at the true images and labels it reproduces an undefended update.

Example:
    >>> weights, constants = functional_state(case.build_model())
    >>> dummy = dummy_update(model, weights, constants, images, labels, case.loss, case.threat.update)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from bench.loss import LossSpec
from bench.update import ClientUpdate, Tensors, gradient_step, mean_update, trained_delta


def dummy_update(
    model: nn.Module,
    weights: Tensors,
    constants: Tensors,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    loss: LossSpec,
    update: ClientUpdate,
    create_graph: bool = True,
) -> list[torch.Tensor]:
    """The mean of the K clients' updates for `inputs` (K*B normalised images) and `targets` (labels or class
    probabilities), in `weights` order; `weights` require grad, `constants` are the model's other tensors."""
    if len(inputs) % update.clients:
        raise ValueError(f"{len(inputs)} dummy images cannot be split among {update.clients} clients")
    size = len(inputs) // update.clients
    shares = []
    for k in range(update.clients):
        images = slice(k * size, (k + 1) * size)
        # a copy per client: train-mode BN writes its running statistics, which no step reads
        step = gradient_step(model, {n: t.clone() for n, t in constants.items()}, loss, create_graph)
        delta = trained_delta(weights, inputs[images], targets[images], update, step)
        # each client prunes its own update before the server averages: the attacker does the same to each
        # dummy client (one client's pruning is matched exactly by the visible mask alone, see visible_mask)
        shares.append(delta if update.clients == 1 else update.defense.replayed(delta))
    return list(mean_update(shares).values())


def gradient_units(update: ClientUpdate) -> float:
    """1 for a FedSGD gradient; 1 / (n tau) for FedAvg's theta_0 - theta_n after n steps at learning rate tau."""
    return 1.0 if update.kind == "fedsgd" else 1.0 / (update.local_lr * update.local_steps)


def split_state(model: nn.Module, params: Sequence[torch.Tensor]) -> tuple[Tensors, Tensors]:
    """`model`'s tensors as `dummy_update` takes them: the shared parameters `params` themselves (by name, so
    the attacker's copy keeps its graph) and every other tensor, detached."""
    ids = {id(p) for p in params}
    weights = {n: p for n, p in model.named_parameters() if id(p) in ids}
    state = model.state_dict(keep_vars=True)
    return weights, {n: t.detach() for n, t in state.items() if n not in weights}


def in_gradient_units(shared: list[torch.Tensor], update: ClientUpdate) -> list[torch.Tensor]:
    """An update scaled by `gradient_units` (a FedSGD gradient unchanged)."""
    scale = gradient_units(update)
    return shared if scale == 1.0 else [g * scale for g in shared]


def visible_mask(shared: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """1.0 where the shared update is non-zero, 0.0 where it is zero: the entries a pruning defense kept.

    An entry that was zero before pruning (a dead ReLU's weights) is masked out as well; the attacker cannot
    tell the two apart, and loses only the constraint that the dummy's entry there be zero.
    """
    return [(g != 0).to(g.dtype) for g in shared]
