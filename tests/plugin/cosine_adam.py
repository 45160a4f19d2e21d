"""cosine-adam: Adam on the cosine distance between the dummy and the shared gradient, no image prior."""

from dataclasses import dataclass

from bench.attack import Attack, Reconstruction, register_attack
from bench.engine.distances import GradientDistance
from bench.engine.loop import LoopConfig, Variables, iteration_budget, run_loop
from bench.engine.schedule import Schedule
from bench.engine.setup import setup_attack
from bench.labels import known_or_recovered
from bench.threat import Requirements


@dataclass(frozen=True)
class CosineAdamConfig:
    iterations: int = 500  # when the runner gives no budget
    lr: float = 0.1
    label_method: str = "llg"  # recovers the labels when the threat model hides them (B > 1; iDLG at B = 1)


@register_attack("cosine-adam", description="example plugin: Adam on the cosine gradient distance, no prior")
class CosineAdam(Attack):
    Config = CosineAdamConfig
    requires = Requirements(updates=("fedsgd", "fedavg"), aggregated=True)

    def invert(self, case, budget, seed, progress):
        labels, source = known_or_recovered(case, "idlg" if case.num_images == 1 else self.config.label_method)
        setup = setup_attack(case, self.device, self.collective)
        start = setup.random_images(setup.generator(seed))
        loop = LoopConfig(iteration_budget(budget, self.config.iterations), schedule=Schedule(lr=self.config.lr))
        objective = setup.objective(GradientDistance("cosine"))
        result = run_loop(objective, Variables(start, labels=setup.shard.take(labels)), loop, setup.box, progress=progress)
        images = setup.to_pixels(setup.whole_batch(result.images))
        return Reconstruction(images, labels, iterations=result.iterations, extra={"labels": source})
