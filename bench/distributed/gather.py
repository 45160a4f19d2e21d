"""Reassemble a batch whose rows are spread over ranks (e.g. the reconstructed images of every shard).

Works with any `Collective`: each rank writes its rows into a zero tensor of the whole batch and the
tensors are summed; adding zeros is exact, so every rank gets the rows bit for bit.

Example:
    >>> images = gather_batch(result.images, setup.shard)  # whole batch on every rank
"""

from __future__ import annotations

import torch

from bench.engine.collective import Shard


def gather_batch(rows: torch.Tensor, shard: Shard) -> torch.Tensor:
    """The whole batch (shard.total rows) from every rank's `rows` (shard.size rows each), no gradient."""
    if rows.shape[0] != shard.size:
        raise ValueError(f"shard holds {shard.size} rows, got {rows.shape[0]}")
    if not shard.distributed:
        return rows.detach()
    whole = rows.new_zeros((shard.total, *rows.shape[1:]))
    whole[shard.start : shard.stop] = rows.detach()
    return shard.collective.all_sum_values(whole)
