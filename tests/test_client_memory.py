"""The low-memory client computes the same update as the plain one, in both BN modes."""

import pytest
import torch

from bench.client import simulate
from bench.scenario import Scenario


@pytest.mark.parametrize("bn_mode", ["train", "eval"])
def test_low_memory_client_is_exact(bn_mode, monkeypatch):
    monkeypatch.setattr("bench.client_memory.EVAL_CHUNK", 4)  # 6 samples -> chunks of 4 and 2
    common = dict(model="resnet18", image_size=16, batch_size=6, repetition=0.5, bn_mode=bn_mode, seed=4)
    full, secret = simulate(Scenario(**common))
    low, secret_low = simulate(Scenario(**common, client_memory="low"))
    assert torch.equal(secret.images, secret_low.images)
    for name, grad in full.gradients.items():
        torch.testing.assert_close(low.gradients[name], grad, rtol=1e-4, atol=1e-6)
    for name, stats in full.bn_stats.items():
        torch.testing.assert_close(low.bn_stats[name].mean, stats.mean, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(low.bn_stats[name].var, stats.var, rtol=1e-4, atol=1e-6)
    for name, value in full.model_state.items():
        assert torch.equal(low.model_state[name], value)  # the pre-round state, untouched by recomputation
