"""Shared fixtures: small, fast cases built through the real client simulation."""

from __future__ import annotations

import pytest

from bench.plugins import load_plugins

load_plugins()


@pytest.fixture(scope="session")
def small_case():
    """A narrow BN ConvNet at 16 px, B = 4, labels unknown, exact BN statistics."""
    from bench.client import simulate
    from bench.scenario import Scenario

    return simulate(Scenario(model="convnet", model_options={"width": 4}, image_size=16, batch_size=4, seed=3))


@pytest.fixture(autouse=True, scope="session")
def single_thread():
    """Small models run fastest, and identically, on one thread (and a busy machine does not thrash)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
