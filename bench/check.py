"""`bench check`: a small deterministic regression suite against reference values committed in the repo.

Each entry of the suite is a method on a scenario; its metrics are compared with the committed reference,
direction-aware (a higher-is-better metric may not fall more than its tolerance below the reference, a
lower-is-better one may not rise more than its tolerance above it). A run that fails, or is skipped where
the reference ran, is a regression too. `--update` rewrites the reference from the current code.

Reconstruction quality is referenced only as the gain over the prior floor (`psnr_gain`, bench.floors),
never as a raw PSNR, which a blank image can reach on smooth data: an entry whose reference stands above
the floor regresses when its gain falls back to the floor (<= 0), whatever the tolerance. The suite's
cases are ones where the attacks reconstruct, so a weakened attack shows (`--budget-scale 0.1` fails).
The suite runs on one CPU thread: its values then do not depend on the machine's core count, and a busy
machine does not slow it down by oversubscribing threads (about a minute of one core).
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.attack import ATTACKS
from bench.errors import BenchError
from bench.labels import LABELS
from bench.leaderboard.aggregate import GAIN_METRIC
from bench.metrics import METRICS, MetricConfig
from bench.files import write_atomic
from bench.record import Record
from bench.runner import RunOptions, run_cells
from bench.sweep import Cell, expand, load_sweep_file

SUITE_DIR = Path(__file__).resolve().parent / "presets" / "check"
REFERENCE = SUITE_DIR / "reference.json"
TOLERANCES = {"psnr_gain": 1.5, "label_acc": 0.02}


@dataclass(frozen=True)
class Verdict:
    key: str
    metric: str
    reference: float | None
    value: float | None
    regressed: bool
    note: str = ""


def suite_cells(budget_scale: float = 1.0, only: list[str] | None = None) -> list[Cell]:
    """Every cell of the suite's sweeps; `budget_scale` shrinks budgets (to prove the gate catches it)."""
    cells: list[Cell] = []
    offered: set[str] = set()
    for path in sorted(SUITE_DIR.glob("*.yaml")):
        sweep = load_sweep_file(path)
        registry, patterns = (LABELS, sweep.label_methods) if sweep.track == "labels" else (ATTACKS, sweep.attacks)
        names = registry.select(patterns)
        offered.update(names)
        if only:
            names = [n for n in names if n in only]
        if budget_scale != 1.0:
            scaled = {k: [max(1, int(v * budget_scale)) for v in sweep.budgets_for(k)] for k in sweep.budgets}
            budget = None if sweep.budget is None else max(1, int(sweep.budget * budget_scale))
            sweep = dataclasses.replace(sweep, budget=budget, budgets=scaled)
        cells.extend(expand(sweep, names))
    unknown = sorted(set(only or ()) - offered)
    if unknown:
        raise BenchError(f"--only {', '.join(unknown)}: not in the check suite, which has {', '.join(sorted(offered))}")
    return cells


def load_reference(path: Path | None = None) -> dict:
    """The committed reference values, refused with one line when missing, truncated or of another shape."""
    path = REFERENCE if path is None else path
    restore = "restore it (git checkout) or rewrite it with `bench check --update`"
    if not path.is_file():
        raise BenchError(f"no reference values at {path}; create them with `bench check --update`")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BenchError(f"{path} is not valid JSON ({err}); {restore}") from None
    entries = data.get("entries") if isinstance(data, dict) else None
    well_formed = isinstance(entries, dict) and all(
        isinstance(e, dict) and "status" in e and isinstance(e.get("metrics"), dict) for e in entries.values()
    )
    if not well_formed or not isinstance(data.get("tolerances", {}), dict):
        raise BenchError(f"{path} is not a reference file (entries of status and metrics); {restore}")
    return data


def entry_key(cell_config: dict) -> str:
    """Stable name of a suite entry: the method and its scenario, not its budget."""
    from bench.scenario import Scenario

    method = cell_config.get("attack") or cell_config.get("label_method")
    scenario = Scenario.from_dict(cell_config["scenario"])
    return (
        f"{method} | {scenario.model} {scenario.image_size}px B={scenario.batch_size} r={scenario.repetition:g} "
        f"seed={scenario.seed} | {scenario.key()}"
    )


def compare(records: list[Record], reference: dict) -> list[Verdict]:
    verdicts: list[Verdict] = []
    entries = reference["entries"]
    tolerances = reference.get("tolerances", TOLERANCES)
    for record in records:
        key = entry_key(record.config)
        expected = entries.get(key)
        if expected is None:
            verdicts.append(Verdict(key, "-", None, None, True, "no reference value; run `bench check --update`"))
            continue
        if record.status != expected["status"]:
            note = f"status {record.status} (reference {expected['status']})" + (f": {record.error}" if record.error else "")
            verdicts.append(Verdict(key, "status", None, None, True, note))
            continue
        for metric, ref in expected["metrics"].items():
            value = record.metrics.get(metric)
            if ref is None or value is None:
                changed = (ref is None) != (value is None)
                verdicts.append(Verdict(key, metric, ref, value, changed, "availability changed" if changed else ""))
                continue
            tol = tolerances.get(metric, 0.0)
            higher = METRICS.get(metric).info.get("better", "higher") == "higher"
            worse = value < ref - tol if higher else value > ref + tol
            at_floor = metric == GAIN_METRIC and ref > 0 >= value
            verdicts.append(Verdict(key, metric, ref, value, worse or at_floor, "back at the floor" if at_floor else ""))
    return verdicts


def reference_from(records: list[Record]) -> dict:
    entries = {}
    for record in records:
        metrics = {m: record.metrics.get(m) for m in TOLERANCES if m in record.metrics}
        entries[entry_key(record.config)] = {"status": record.status, "metrics": metrics}
    return {"tolerances": TOLERANCES, "entries": dict(sorted(entries.items()))}


def run_check(
    update: bool = False, budget_scale: float = 1.0, only: list[str] | None = None, out_dir: Path | None = None
) -> list[Verdict]:
    """Run the suite; return the verdicts (or write the reference when `update`).

    The reference is read before the suite runs, so a damaged file costs no run.
    """
    cells = suite_cells(budget_scale, only)
    if not cells:
        raise BenchError("the check suite selected no runs")
    reference = None if update else load_reference()
    options = RunOptions(metric=MetricConfig(lpips=False), save_images=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            records = run_cells(cells, Path(out_dir or tmp), options)
    finally:
        torch.set_num_threads(threads)
    if reference is None:
        write_atomic(REFERENCE, json.dumps(reference_from(records), indent=2) + "\n")
        return []
    return compare(records, reference)
