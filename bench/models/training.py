"""Model states "trained here": a few seeded SGD steps from a given start, cached on disk.

A client model that has seen some training leaks differently from a freshly initialised one. The state
after `steps` plain SGD steps (mean cross-entropy, BN in train mode, no momentum or weight decay) is a
pure function of its inputs, so it is cached as safetensors under a content hash of them and repeated
sweeps do not retrain. Cache files are written atomically (temp file + rename).

Example:
    >>> state = trained_state(arch, model.state_dict(), dataset, steps=100, lr=0.01, batch_size=32, seed=0,
    ...                       image_size=32)
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bench.data import ImageSource
from bench.errors import BenchError
from bench.files import default_cache_dir, read_tensors, write_tensors
from bench.models import Architecture, build_model

# Bump when the training procedure changes, so old cache entries are not reused.
PROCEDURE_VERSION = 1


def trained_state(
    arch: Architecture,
    init_state: Mapping[str, torch.Tensor],
    dataset: ImageSource,
    steps: int,
    lr: float,
    batch_size: int,
    seed: int,
    image_size: int | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> dict[str, torch.Tensor]:
    """State of `arch` after `steps` seeded SGD steps from `init_state` on `dataset`, from cache when present.

    Returned tensors are on the device of `init_state`, which is also where training runs. The cache key
    leaves the device out: a state trained on one device is reused on another.
    """
    size = arch.image_size if image_size is None else image_size
    _validate(arch, dataset, steps, lr, batch_size)
    key = cache_key(arch, init_state, dataset, steps, lr, batch_size, seed, size)
    path = Path(cache_dir if cache_dir is not None else default_cache_dir()) / "trained" / f"{key}.safetensors"
    device = next(iter(init_state.values())).device
    cached = read_tensors(path)
    if cached is not None and cached.keys() == init_state.keys():
        return {k: v.to(device) for k, v in cached.items()}
    model = build_model(arch, seed=0).to(device)
    model.load_state_dict(init_state)
    train_steps(model, dataset, steps, lr, batch_size, seed, size)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    write_tensors(path, state)
    return state


def train_steps(
    model: nn.Module, dataset: ImageSource, steps: int, lr: float, batch_size: int, seed: int, image_size: int
) -> list[float]:
    """Train `model` in place for `steps` SGD steps on seeded batches; returns each step's loss."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        images, labels = draw_batch(dataset, batch_size, image_size, generator)
        optimizer.zero_grad(set_to_none=True)
        logits = model(images.to(device))
        # datasets with more classes than the model fold their labels onto its classes
        loss = F.cross_entropy(logits, labels.to(device) % logits.shape[1])
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def draw_batch(
    dataset: ImageSource, batch_size: int, image_size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch_size` distinct items in the model's input space (normalised) and their labels."""
    indices = torch.randperm(len(dataset.labels), generator=generator)[:batch_size].tolist()
    crop_seeds = torch.randint(0, 2**31 - 1, (batch_size,), generator=generator).tolist()
    pixels = torch.stack([dataset.load(i, image_size, s) for i, s in zip(indices, crop_seeds)])
    labels = torch.as_tensor(dataset.labels[indices], dtype=torch.long)
    return dataset.normalization.normalize(pixels), labels


def cache_key(
    arch: Architecture,
    init_state: Mapping[str, torch.Tensor],
    dataset: ImageSource,
    steps: int,
    lr: float,
    batch_size: int,
    seed: int,
    image_size: int,
) -> str:
    """SHA-256 of everything the trained state depends on."""
    content = {
        "procedure": PROCEDURE_VERSION,
        "arch": arch.key(),
        "init_state": state_hash(init_state),
        "dataset": [dataset.name, len(dataset.labels)],
        "image_size": image_size,
        "steps": steps,
        "lr": repr(float(lr)),
        "batch_size": batch_size,
        "seed": seed,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def state_hash(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of every tensor, in sorted name order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _validate(arch: Architecture, dataset: ImageSource, steps: int, lr: float, batch_size: int) -> None:
    if steps < 0 or lr <= 0 or batch_size < 1:
        raise BenchError(f"training needs steps >= 0, lr > 0 and batch size >= 1 (got {steps}, {lr}, {batch_size})")
    if batch_size > len(dataset.labels):
        raise BenchError(f"training batch size {batch_size} exceeds the {len(dataset.labels)} items of {dataset.name}")
    if dataset.channels != arch.channels:
        raise BenchError(f"{dataset.name} has {dataset.channels} channels but {arch.name} expects {arch.channels}")
