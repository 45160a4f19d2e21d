"""Baseline attacks and label-recovery methods; importing this package registers them."""

from baselines import labels, noise  # noqa: F401
