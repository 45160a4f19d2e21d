"""The quality gate passes on the committed code and catches a deliberately weakened attack."""

import json

from bench.check import REFERENCE, TOLERANCES, compare, run_check, suite_cells
from bench.record import Record


def test_gate_passes_on_main_and_fails_when_an_attack_is_weakened():
    verdicts = run_check(only=["inverting-gradients"])
    assert verdicts and not [v for v in verdicts if v.regressed]
    weakened = run_check(only=["inverting-gradients"], budget_scale=0.1)
    regressed = {v.metric for v in weakened if v.regressed}
    assert "psnr_gain" in regressed


def test_every_suite_entry_has_a_reference():
    entries = json.loads(REFERENCE.read_text())["entries"]
    from bench.check import entry_key

    keys = {entry_key(cell.config()) for cell in suite_cells()}
    assert keys == set(entries)


def test_comparison_is_direction_aware_and_fails_at_the_floor():
    reference = {"tolerances": TOLERANCES, "entries": {}}
    cell = suite_cells(only=["noise"])[0]
    from bench.check import entry_key

    key = entry_key(cell.config())
    reference["entries"][key] = {"status": "ok", "metrics": {"psnr_gain": 1.0, "label_acc": 0.5}}

    def verdicts(gain, acc, status="ok"):
        record = Record(cell.run_id, cell.config(), status, metrics={"psnr_gain": gain, "label_acc": acc})
        return {v.metric: v.regressed for v in compare([record], reference)}

    assert verdicts(2.0, 0.9) == {"psnr_gain": False, "label_acc": False}  # better is fine
    assert verdicts(0.01, 0.5)["psnr_gain"] is False  # within tolerance and still above the floor
    assert verdicts(0.0, 0.5)["psnr_gain"] is True  # back at the floor, although within the tolerance
    assert verdicts(-2.0, 0.5)["psnr_gain"] is True
    assert verdicts(1.0, 0.4)["label_acc"] is True
    assert verdicts(None, None, status="failed") == {"status": True}
    reference["entries"][key]["metrics"]["psnr_gain"] = 8.0
    assert verdicts(8.0 - TOLERANCES["psnr_gain"] - 0.01, 0.5)["psnr_gain"] is True  # beyond the tolerance
    reference["entries"][key]["metrics"]["psnr_gain"] = -3.0  # an entry at the floor (noise) may stay there
    assert verdicts(-4.0, 0.5)["psnr_gain"] is False


def test_references_are_gains_over_the_floor_not_raw_quality():
    entries = json.loads(REFERENCE.read_text())["entries"]
    image_metrics = {m for e in entries.values() for m in e["metrics"]} - {"label_acc"}
    assert image_metrics == {"psnr_gain"}
    reconstructing = [k for k, e in entries.items() if (e["metrics"].get("psnr_gain") or 0) >= 3]
    assert len({k.split(" | ")[0] for k in reconstructing}) >= 4  # the suite's cases show real reconstruction


def test_budget_scale_shrinks_per_attack_budgets_of_a_suite_without_a_common_budget():
    full = {c.attack: c.budget for c in suite_cells(only=["e2egi-no-mlco", "gradinversion"])}
    scaled = {c.attack: c.budget for c in suite_cells(budget_scale=0.1, only=["e2egi-no-mlco", "gradinversion"])}
    assert full == {"e2egi-no-mlco": 1000, "gradinversion": 40}
    assert scaled == {"e2egi-no-mlco": 100, "gradinversion": 4}
