"""Baseline attacks and label-recovery methods; importing this package registers them."""

from baselines import dlg, gradinversion, idlg, inverting_gradients, labels, noise  # noqa: F401
