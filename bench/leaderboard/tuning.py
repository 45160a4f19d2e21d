"""Default against tuned: for each attack and setting of a tuned.yaml (bench.tune), its gain over the prior
floor with its own settings and with the tuned options, on the same held-out cases, and their paired
difference, each with a 95% CI over the cases.

Example:
    >>> print(tuning_comparison(["leaderboard/records/cpu-images/lenet", "leaderboard/records/cpu-images-tuned/lenet"],
    ...                         "leaderboard/tuning/cpu-images-lenet/tuned.yaml"))
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tabulate import tabulate

from bench.leaderboard.aggregate import GAIN_METRIC
from bench.leaderboard.runs import load_sweeps
from bench.leaderboard.stats import fixed, mean_ci95
from bench.record import Record
from bench.tune import load_tuned, setting_key

HEADERS = ["attack", "trials", "study (min)", "default gain ↑", "tuned gain ↑", "tuned − default", "cases (ok/total)", "tuned options"]


def _case(record: Record) -> tuple:
    scenario = record.config["scenario"]
    return scenario["batch_size"], scenario["repetition"], scenario["seed"]


def _ci_text(values: list[float]) -> str:
    mean, half = mean_ci95(values)
    if mean is None:
        return "-"
    return fixed(mean, 2) + ("" if half is None else f" ± {fixed(half, 2)}")


def _options_text(options: dict) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in options.items())


def comparison_rows(records: Sequence[Record], tuned: dict) -> list[list[str]]:
    """One row per attack and setting of `tuned` that the records hold both with the attack's own settings
    (no `tuning`) and with the tuned options, on the same cases."""
    rows = []
    for attack, settings in tuned.items():
        for setting, entry in settings.items():
            mine = [r for r in records if r.config.get("attack") == attack and setting_key(r.config) == setting]
            default = {_case(r): r for r in mine if r.tuning is None}
            own = entry["options"] == entry.get("default_options")
            # where the attack's own settings won, its tuned runs are its default runs (a rerun repeats them)
            tuned_runs = default if own else {
                _case(r): r for r in mine if r.tuning is not None and r.tuning.get("study") == entry["study"]
            }  # fmt: skip
            cases = sorted(set(default) & set(tuned_runs))
            if not cases:
                continue
            ok = [c for c in cases if default[c].status == "ok" and tuned_runs[c].status == "ok"]
            before = [default[c].metrics[GAIN_METRIC] for c in ok]
            after = [tuned_runs[c].metrics[GAIN_METRIC] for c in ok]
            rows.append([
                attack, str(entry["trials"]), f"{entry.get('study_s', 0) / 60:.1f}", _ci_text(before), _ci_text(after),
                _ci_text([a - b for a, b in zip(after, before)]), f"{len(ok)}/{len(cases)}",
                _options_text(entry["options"]) + (" (its own)" if own else ""),
            ])  # fmt: skip
    return rows


def tuning_comparison(runs: Sequence[str | Path], tuned_file: str | Path) -> str:
    """The default-against-tuned table (Markdown) of the records under `runs` for the studies of `tuned_file`."""
    # one folder at a time: the default and the tuned records may sit in folders of the same name
    records = [r for folder in runs for sweep in load_sweeps([Path(folder)]) for r in sweep.records]
    rows = comparison_rows(records, load_tuned(tuned_file))
    legend = (
        f"\nGain over the prior floor ({GAIN_METRIC}, dB), mean ± 95% CI over the held-out cases (batch sizes x seeds); "
        "tuned − default is paired case by case. Trials: counted trials of the attack's study (its first: the "
        "attack's own settings); study: the trials' wall time; (its own): the attack's own settings won its study, "
        "so its tuned runs are its default runs.\n"
    )
    return tabulate(rows, headers=HEADERS, tablefmt="github") + "\n" + legend
