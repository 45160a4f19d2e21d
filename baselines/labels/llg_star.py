"""LLG* (Wainakh et al., PoPETs 2022, "User-Level Label Leakage from Gradients in Federated Learning";
tklab-tud/LLG): LLG with the impact and per-class offsets estimated from the white-box model on dummy inputs,
for an attacker without the auxiliary data that LLG+ uses.

Estimation, over `repeats` rounds: a dummy batch of B images in pixel space (all zeros, all ones, or
U(0, 1) drawn from a CPU generator seeded with `seed`, one B x C x H x W draw per round), normalised like the
client's data, goes through a fresh copy of the model in the client's BN mode. For every class i the batch
is labelled all i and s^(i) = row sums of the gradient of the client's loss w.r.t. the last layer's weight:
    impact  m   = (mean over rounds and classes i of s^(i)_i / B) * (1 + 1/N)
    offset  o_j = mean over rounds and classes i != j of s^(i)_j
With K aggregated clients the dummy batch is one client's B images, a sample's impact on the mean of the K
updates is m / K, and the offsets are unchanged (each client's batch adds o; their mean is o).
Prediction: g = row sums of dW; every class with g_n < 0 (judged before the offset) gets one label; g -= o;
each chosen class g_n -= m; then until B labels, argmin g gets one more and g -= m on it (as LLG).

Labels do not change the forward pass, so a round runs the model once; cross-entropy's gradient at the
logits is closed-form, which gives every label's row sums at once: the same numbers as N backward passes. The authors pick the dummy kind per
dataset; "random" is the default here because train-mode BN normalises a constant batch away. Zeros and
ones are deterministic, so one round gives their estimate whatever `repeats` says.

The dummy passes depend on the model (weights and buffers), B, the BN mode, the image shape, the
normalisation, the loss and the config, never on the client's images or labels, so a process keeps the
last few estimates under those keys: a label sweep reuses one model at every repetition rate, and LLG*'s
ten dummy rounds (the largest cost of a ResNet-50 label cell at 224 px) then run once per model and B.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from bench.case import Case
from bench.errors import BenchError
from bench.labels import LABELS, greedy_by_impact, row_sums
from bench.models.training import state_hash

DummyKind = Literal["zeros", "ones", "random"]
DUMMY_KINDS: tuple[str, ...] = ("zeros", "ones", "random")
KEPT_ESTIMATES = 16  # per process; each is N + 1 numbers
_estimates: dict[tuple, tuple[float, torch.Tensor]] = {}


@dataclass(frozen=True)
class LLGStarConfig:
    """Dummy inputs and rounds; 10 rounds as in the authors' code."""

    dummy: DummyKind = "random"
    repeats: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dummy not in DUMMY_KINDS:
            raise BenchError(f"LLG* dummy inputs must be one of {', '.join(DUMMY_KINDS)}, got {self.dummy!r}")
        if self.repeats < 1:
            raise BenchError(f"LLG* needs at least one round, got {self.repeats}")


def dummy_pixels(kind: DummyKind, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    if kind == "zeros":
        return torch.zeros(shape)
    if kind == "ones":
        return torch.ones(shape)
    return torch.rand(shape, generator=generator)


def estimate_impact_and_offset(case: Case, config: LLGStarConfig = LLGStarConfig()) -> tuple[float, torch.Tensor]:
    """LLG*'s impact m (a negative float) and offsets o (length N, float64) from dummy passes of the model."""
    key = (
        state_hash(case.model_state), case.architecture.key(), case.bn_mode, case.batch_size,
        case.image_shape, repr(case.normalization.to_dict()), case.loss.per_sample_scale(case.batch_size),
        config, case.gradients[case.classifier[0]].device.type,
    )
    if key not in _estimates:
        while len(_estimates) >= KEPT_ESTIMATES:
            del _estimates[next(iter(_estimates))]  # the oldest first
        _estimates[key] = _dummy_estimate(case, config)
    impact, offset = _estimates[key]
    # a sample's share of the mean of K clients' updates is 1/K of its share of its own client's gradient
    return impact / case.threat.update.clients, offset.clone()


def _dummy_estimate(case: Case, config: LLGStarConfig) -> tuple[float, torch.Tensor]:
    """The impact for one client (K = 1) and the offsets, from `config`'s dummy passes."""
    weight_name, _ = case.classifier
    device = case.gradients[weight_name].device
    model = case.build_model(device)
    model.requires_grad_(False)  # forward passes only: the gradients at the logits are closed-form
    captured: dict[str, torch.Tensor] = {}

    def capture(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        captured["feature_sums"] = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).double().sum(1)

    handle = model.get_submodule(weight_name.rpartition(".")[0]).register_forward_hook(capture)
    batch_size, num_classes = case.batch_size, case.num_classes
    generator = torch.Generator().manual_seed(config.seed)
    rounds = config.repeats if config.dummy == "random" else 1
    scale = case.loss.per_sample_scale(batch_size)
    impact_total = 0.0
    offset_total = torch.zeros(num_classes, dtype=torch.float64)
    try:
        for _ in range(rounds):
            pixels = dummy_pixels(config.dummy, (batch_size, *case.image_shape), generator)
            with torch.no_grad():
                logits = model(case.normalization.normalize(pixels).to(device))
            # Cross-entropy's gradient at the logits is closed-form, (softmax - onehot(i)) x scale, so the
            # row sums for "every sample labelled i" are, for all i at once:
            #   s^(i)_j = scale * (sum_b p_bj f_b - [j = i] sum_b f_b),   f_b = sum of sample b's features.
            probs = logits.reshape(-1, num_classes).double().softmax(dim=1).cpu()
            features = captured["feature_sums"].cpu()
            shared = scale * (probs.T @ features)  # the part every label i has in common
            own = scale * features.sum()
            impact_total += float((shared - own).sum())  # sum over i of s^(i)_i
            offset_total += (num_classes - 1) * shared  # sum over i != j of s^(i)_j
    finally:
        handle.remove()
    impact = impact_total / (rounds * num_classes * batch_size) * (1 + 1 / num_classes)
    return impact, offset_total / (rounds * max(num_classes - 1, 1))


@LABELS.register(
    "llg-star",
    description="LLG*: LLG with impact and class offsets from dummy passes of the white-box model",
    needs=("dW", "B", "model", "gradient"),
)
def recover(case: Case, config: LLGStarConfig = LLGStarConfig()) -> torch.Tensor:
    scores = row_sums(case)
    impact, offset = estimate_impact_and_offset(case, config)
    return greedy_by_impact(scores - offset, impact, case.num_images, present=scores < 0)
