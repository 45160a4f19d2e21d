"""Atomic file writes: a temporary file in the same folder, then a rename. Never a half-written file.

Also the on-disk cache of computed tensors (trained model states, dataset mean images): safetensors files
under `default_cache_dir()`, written atomically; a damaged entry reads as missing and is recomputed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save


def write_atomic(path: str | Path, data: str | bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def default_cache_dir() -> Path:
    """$BENCH_CACHE, else ~/.cache/gibench."""
    return Path(os.environ.get("BENCH_CACHE") or Path.home() / ".cache" / "gibench")


def read_tensors(path: str | Path) -> dict[str, torch.Tensor] | None:
    """The tensors of a cache file on CPU, or None when it is missing or damaged (to be recomputed)."""
    try:
        return st_load(Path(path).read_bytes())
    except (SafetensorError, OSError):
        return None


def write_tensors(path: str | Path, tensors: Mapping[str, torch.Tensor]) -> None:
    """Write a cache file atomically."""
    write_atomic(path, st_save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}))
