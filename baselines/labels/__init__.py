"""Label-recovery baselines; importing this package registers them in `bench.labels.LABELS`."""

from baselines.labels import bias_corrected, idlg, ilrg, llg, llg_star, yin  # noqa: F401
