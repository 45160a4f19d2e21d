"""Everything an optimisation attack needs from a Case, on its device and shard."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from bench.case import Case
from bench.engine.collective import Collective, Shard, shard_for
from bench.engine.distances import GradientDistance
from bench.engine.dummy_gradient import trainable_parameters
from bench.engine.objective import Objective, Weights
from bench.engine.update import in_gradient_units, visible_mask


@dataclass
class AttackSetup:
    case: Case
    model: nn.Module
    params: list[torch.Tensor]
    target: list[torch.Tensor]
    shard: Shard
    box: tuple[torch.Tensor, torch.Tensor]
    device: torch.device

    def objective(self, distance: GradientDistance, weights: Weights = Weights(), bn: bool = False) -> Objective:
        return Objective(
            model=self.model,
            params=self.params,
            target=self.target,
            loss=self.case.loss,
            shard=self.shard,
            distance=distance,
            weights=weights,
            bn_prior=self._bn_prior() if bn else None,
            update=self.case.threat.update,
            visible=visible_mask(self.target) if self.case.threat.update.defense.zeros_visible else None,
        )

    def _bn_prior(self):
        prior = self.case.bn_prior()
        if prior is None:
            return None
        return {k: type(v)(v.mean.to(self.device), v.var.to(self.device)) for k, v in prior.items()}

    def generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(seed)

    def random_images(self, generator: torch.Generator, space: Literal["input", "pixel"] = "input") -> torch.Tensor:
        """N(0, 1) images for this shard, drawn for the whole batch (identical for every world size).

        space "input": N(0, 1) in the model's normalised input space (Inverting Gradients, E2EGI).
        space "pixel": N(0, 1) in pixel space, then normalised (DLG's initialisation on unnormalised input).
        """
        whole = torch.randn((self.shard.total, *self.case.image_shape), generator=generator, device=self.device)
        if space == "pixel":
            whole = self.case.normalization.normalize(whole)
        return self.shard.take(whole).clone()

    def labels(self) -> torch.Tensor | None:
        """This shard's known labels (None when the threat model hides them)."""
        if self.case.labels is None:
            return None
        return self.shard.take(self.case.labels.to(self.device))

    def whole_batch(self, images: torch.Tensor) -> torch.Tensor:
        """The whole batch on every rank from this shard's rows (the rows themselves in a single process)."""
        if not self.shard.distributed:
            return images
        whole = images.new_zeros((self.shard.total, *images.shape[1:]))
        whole[self.shard.start : self.shard.stop] = images.detach()
        return self.shard.collective.all_sum_values(whole)

    def to_pixels(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.case.normalization.denormalize(inputs.detach()).clamp(0, 1)


def setup_attack(case: Case, device: torch.device | str = "cpu", collective: Collective | None = None) -> AttackSetup:
    """Build the attacker's copy of the model (client BN mode) and this process's shard of the dummy batch:
    all K*B images behind the update, client after client; the target is the shared update in gradient
    units (bench.engine.update)."""
    device = torch.device(device)
    shard = shard_for(case.num_images, collective)
    model = case.build_model(device)
    if shard.distributed:
        from bench.distributed.sync_bn import synchronise_batchnorm

        model = synchronise_batchnorm(model, shard)
    params = trainable_parameters(model)
    target = in_gradient_units(case.gradient_list(device), case.threat.update)
    empty = torch.empty((1, *case.image_shape), device=device)
    box = case.normalization.box(empty)
    return AttackSetup(case, model, params, target, shard, box, device)
