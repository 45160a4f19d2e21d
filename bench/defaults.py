"""The one default scenario, and the default preset: what every way of defining a run starts from.

`bench case make` without flags simulates this scenario; a sweep file's fields left out take these values
(bench.sweep.Sweep's defaults are these); `bench run` without `--preset` or `--config` runs the default
preset, which runs this scenario over more batch sizes and seeds, and its flags replace the preset's values.
This module imports nothing, so the command line can name the defaults in `--help` without loading torch.
"""

DEFAULT_SCENARIO = {
    "model": "lenet",  # DLG's LeNet: where attacks reconstruct on a CPU (leaderboard/calibration.md)
    "dataset": "embedded-detail",
    "image_size": 16,
    "batch_size": 1,
    "repetition": 0.0,
    "labels": "unknown",
    "bn_stats": "none",
    "seed": 0,
}
DEFAULT_PRESET = "quick"
