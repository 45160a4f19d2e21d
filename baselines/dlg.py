"""DLG: Deep Leakage from Gradients (Zhu, Liu & Han, NeurIPS 2019; mit-han-lab/dlg).

Dummy images and dummy label logits are optimised together so that the gradient of the client's loss on
them (soft cross-entropy against softmax of the logits) matches the leaked gradient in squared L2 distance
summed over all parameters. L-BFGS, no regulariser, no box, no restart. The labels returned are the argmax
of the optimised logits. The attacker of the paper does not know the labels, so known labels are not used.

Regime (measured; leaderboard/calibration.md): the paper's LeNet (sigmoid, U(-0.5, 0.5) weights, no BN)
at B = 1. There L-BFGS either converges to the exact image (53-86 dB) or stalls early at a large gradient
loss and ends below the floor: at 32 px one seed of three converged on digits and on embedded-detail.
Such failures are DLG's own (the iDLG paper reports them too); iDLG, which fixes the label first,
converges far more often on the same cases.

Example:
    >>> rec = create_attack("dlg").reconstruct(case, budget=100, seed=0)
    >>> rec.labels, rec.extra["gradient_loss"]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from bench.attack import Attack, Progress, Reconstruction, register_attack
from bench.search_space import Real
from bench.case import Case
from bench.engine.distances import GradientDistance
from bench.engine.loop import LoopConfig, LoopResult, Variables, iteration_budget, reporting, run_loop
from bench.engine.objective import Objective
from bench.engine.schedule import Schedule
from bench.engine.setup import AttackSetup, setup_attack
from bench.threat import Requirements
from bench.update import UPDATE_KINDS


@dataclass(frozen=True)
class DLGConfig:
    """DLG's settings, from the authors' script (mit-han-lab/dlg, `main.py`).

    iterations: 300 outer L-BFGS steps (`for iters in range(300)`), each up to PyTorch's default 20
        inner iterations; `budget` replaces this count.
    lr: 1 (`torch.optim.LBFGS([dummy_data, dummy_label], lr=1)`), PyTorch defaults otherwise.
    init_space: dummy images ~ N(0, 1) at the model's input ("input"), as the script draws them where the
        model reads them (its `ToTensor()` data is unnormalised, so its input space is pixel space). With
        a normalised dataset, "pixel" would draw N(0, 1) before normalisation (mean -2, std 4.4 under
        ImageNet statistics), which saturates the LeNet's sigmoids: 0/6 runs reach 30 dB against 4/6.
    Label logits start at N(0, 1) (`torch.randn(gt_onehot_label.size())`), drawn after the images.
    """

    iterations: int = 300
    lr: float = 1.0
    init_space: Literal["pixel", "input"] = "input"


@register_attack(
    "dlg", description="DLG: joint images and soft labels, squared L2 gradient match, L-BFGS (Zhu et al. 2019)"
)
class DLG(Attack):
    Config = DLGConfig
    search_space = {"lr": Real(1e-2, 10.0, log=True)}  # L-BFGS step size
    flops_metered = True
    requires = Requirements(updates=UPDATE_KINDS, aggregated=True)

    def invert(self, case: Case, budget: int | None, seed: int, progress: Progress | None) -> Reconstruction:
        cfg = self.config
        iterations = iteration_budget(budget, cfg.iterations)
        setup = setup_attack(case, self.device, self.collective)
        generator = setup.generator(seed)
        images = setup.random_images(generator, space=cfg.init_space)
        logits = torch.randn((setup.shard.size, case.num_classes), generator=generator, device=setup.device)
        objective = self.objective(setup)
        loop = LoopConfig(iterations, optimizer="lbfgs", schedule=Schedule("constant", lr=cfg.lr), boxed=False)

        def output(result: LoopResult) -> Reconstruction:
            return Reconstruction(setup.to_pixels(result.images), result.label_logits.argmax(dim=1))

        result = run_loop(objective, Variables(images, label_logits=logits), loop, report=reporting(progress, output))
        final = output(result)
        final.loss_trace, final.iterations = result.trace, result.iterations
        final.extra = {
            "gradient_loss": result.gradient_loss,
            "labels": "optimised",
            # how sure the optimised soft label is of its argmax, per sample
            "label_confidence": setup.whole_batch(result.label_logits).softmax(dim=1).amax(dim=1).tolist(),
            "stopped": result.stopped,
        }
        return final

    def objective(self, setup: AttackSetup) -> Objective:
        """Squared L2 distance summed over all parameters; no regulariser."""
        return setup.objective(GradientDistance("l2_squared"))
