"""Pretrained weights from a local checkpoint, read without unpickling arbitrary objects.

Reads `.safetensors` files and PyTorch checkpoints (`.pth`, `.pt`, `.pth.tar`, `.tar`, `.bin`) with
`torch.load(weights_only=True)`; unwraps `state_dict` / `model` containers and DDP's `module.` prefix;
takes the query encoder of MoCo v2 checkpoints (`module.encoder_q.*`) and drops its projection head.
The classifier head is re-initialised for the task's classes whenever the checkpoint's head is absent
or has another shape, as the E2EGI client replaces the backbone's fc layer with a fresh nn.Linear.

Example:
    >>> model = load_pretrained(build_model(arch, seed=0), "moco_v2_800ep_pretrain.pth.tar", seed=0)
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from bench.errors import BenchError
from bench.models import classifier_names, init_classifier

TORCH_SUFFIXES = (".pth", ".pt", ".pth.tar", ".tar", ".bin", ".ckpt")
CONTAINER_KEYS = ("state_dict", "model")
MOCO_PREFIX = "encoder_q."
MOCO_HEAD = "fc."
SHOWN = 3  # how many offending keys an error names


def load_pretrained(model: nn.Module, path: str, seed: int, head_init: str = "default") -> nn.Module:
    """Load the backbone of checkpoint `path` into `model` (in place) and return it.

    The head (last nn.Linear) keeps the checkpoint's weights only when their shapes match; otherwise it is
    drawn afresh under `seed` (`head_init`: see `init_classifier`). Any other missing or unexpected key raises.
    """
    state = backbone_state(read_checkpoint(path))
    own = model.state_dict()
    head = {n for n in classifier_names(model) if n is not None}
    loadable = {k: v for k, v in state.items() if k not in head or v.shape == own[k].shape}
    _check_keys(path, own, loadable, head)
    model.load_state_dict(loadable, strict=False)
    if not head <= loadable.keys():
        init_classifier(model, head_init, seed)
    return model


def check_fits(model: nn.Module, path: str) -> None:
    """Refuse a checkpoint that does not hold exactly the model's own weights, its head included (a user's
    trained model is audited as trained: no part of it is drawn afresh)."""
    _check_keys(path, model.state_dict(), backbone_state(read_checkpoint(path)), head=set(), part="the model")


def read_checkpoint(path: str) -> Mapping[str, object]:
    """The raw contents of a local checkpoint, tensors on CPU; nothing but tensors and plain data is unpickled."""
    file = Path(path)
    if not file.is_file():
        raise BenchError(f"weights file {path!r} not found; pass a local checkpoint with --weights")
    name = file.name.lower()
    if not name.endswith((".safetensors", *TORCH_SUFFIXES)):
        formats = ", ".join((".safetensors", *TORCH_SUFFIXES))
        raise BenchError(f"weights file {path!r}: unknown format; use one of {formats}")
    try:
        if name.endswith(".safetensors"):
            return load_file(str(file), device="cpu")
        data = torch.load(str(file), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise BenchError(
            f"weights file {path!r} holds pickled objects other than tensors and is refused; save it as .safetensors"
        ) from err
    except Exception as err:  # a corrupt or foreign file surfaces as many exception types (IndexError, ...)
        raise BenchError(f"weights file {path!r} could not be read: {_first_line(err)}") from err
    if not isinstance(data, Mapping):
        raise BenchError(f"weights file {path!r} holds a {type(data).__name__}, not a state dict")
    return data


def backbone_state(checkpoint: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """Flat parameter-name -> tensor mapping from common checkpoint layouts (containers, DDP, MoCo v2)."""
    state: Mapping[str, object] = checkpoint
    while not _is_flat(state):
        inner = next((state[k] for k in CONTAINER_KEYS if isinstance(state.get(k), Mapping)), None)
        if inner is None:
            where = ", ".join(repr(k) for k in CONTAINER_KEYS)
            raise BenchError(f"checkpoint holds no state dict (looked for a tensor mapping under {where})")
        state = inner
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    moco = next((p + MOCO_PREFIX for p in ("module.", "") if any(k.startswith(p + MOCO_PREFIX) for k in tensors)), None)
    if moco is not None:
        # MoCo keeps a key encoder and a queue next to the query encoder; only the latter is the backbone,
        # and its fc is the MLP projection head, useless for classification.
        tensors = {k[len(moco):]: v for k, v in tensors.items() if k.startswith(moco)}
        return {k: v for k, v in tensors.items() if not k.startswith(MOCO_HEAD)}
    return _strip(tensors, "module.")


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _is_flat(state: Mapping[str, object]) -> bool:
    return any(isinstance(v, torch.Tensor) for v in state.values())


def _strip(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


def _check_keys(
    path: str, own: Mapping[str, torch.Tensor], loaded: Mapping[str, torch.Tensor], head: set[str],
    part: str = "the model's backbone",
) -> None:
    # BN counters are absent from older torchvision checkpoints and carry no weights.
    missing = [k for k in own if k not in loaded and k not in head and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in loaded if k not in own]
    mismatched = [
        f"{k} {list(v.shape)} vs model {list(own[k].shape)}"
        for k, v in loaded.items()
        if k in own and v.shape != own[k].shape
    ]
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
        if keys:
            more = f" (+{len(keys) - SHOWN} more)" if len(keys) > SHOWN else ""
            problems.append(f"{label}: {', '.join(keys[:SHOWN])}{more}")
    if problems:
        raise BenchError(f"weights file {path!r} does not fit {part}; {'; '.join(problems)}")
