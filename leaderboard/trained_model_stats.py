"""How far from uniform a trained label sweep's model is: its training accuracy and, on the sweep's client
batches, the mean max-softmax, mean probability of the true class and accuracy (BN as the client runs it).

The model comes from the training cache the sweep filled (it is trained here first if absent).

Example:
    python leaderboard/trained_model_stats.py leaderboard/sweeps/labels-resnet18-trained-n10.yaml
"""

from __future__ import annotations

import sys

import torch

from bench.client import load_batch
from bench.data import open_dataset
from bench.errors import BenchError
from bench.models import Architecture
from bench.models.prepare import TrainSpec, prepare_model
from bench.models.training import draw_batch
from bench.sampler import sample_batch
from bench.sweep import expand, load_sweep_file


def main(path: str) -> None:
    sweep = load_sweep_file(path)
    scenarios = {c.scenario.key(): c.scenario for c in expand(sweep, ["idlg"])}.values()
    first = next(iter(scenarios))
    dataset = open_dataset(first.dataset, first.data_path)
    num_classes = first.num_classes or dataset.num_classes
    arch = Architecture(first.model, num_classes, dataset.channels, first.image_size, dict(first.model_options))
    model_seed = first.seed if first.model_seed is None else first.model_seed
    model = prepare_model(arch, model_seed, train=TrainSpec(steps=first.train_steps), dataset=dataset)
    with torch.no_grad():
        model.eval()  # training accuracy: 512 fresh crops of the training distribution, labels folded as trained
        generator = torch.Generator().manual_seed(12345)
        hits = total = 0
        for _ in range(16):
            images, labels = draw_batch(dataset, 32, first.image_size, generator)
            hits += int((model(images).argmax(1) == labels % num_classes).sum())
            total += len(labels)
        print(f"{path}: training accuracy {hits / total:.3f} ({total} crops, eval-mode BN)")
        model.train(first.bn_mode == "train")
        max_softmax, true_prob, correct, samples = [], [], 0, 0
        for scenario in scenarios:
            try:
                batch = sample_batch(dataset, scenario.batch_size, scenario.repetition, scenario.seed, num_classes,
                                     scenario.label_source)  # fmt: skip
            except BenchError:
                continue  # infeasible cell
            labels = torch.as_tensor(batch.labels)
            probs = torch.softmax(model(dataset.normalization.normalize(load_batch(dataset, batch, scenario.image_size))), 1)
            max_softmax.append(probs.max(1).values)
            true_prob.append(probs[torch.arange(len(labels)), labels])
            correct += int((probs.argmax(1) == labels).sum())
            samples += len(labels)
        print(
            f"client batches ({samples} samples, {first.bn_mode}-mode BN): mean max-softmax "
            f"{torch.cat(max_softmax).mean():.3f}, mean p(true class) {torch.cat(true_prob).mean():.3f}, "
            f"accuracy {correct / samples:.3f} (uniform: {1 / num_classes:.3f})"
        )


if __name__ == "__main__":
    main(sys.argv[1])
