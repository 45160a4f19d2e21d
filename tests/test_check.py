"""The quality gate passes on the committed code and catches a deliberately weakened attack."""

import json

from bench.check import REFERENCE, TOLERANCES, compare, run_check, suite_cells
from bench.record import Record


def test_gate_passes_on_main_and_fails_when_an_attack_is_weakened():
    verdicts = run_check(only=["inverting-gradients"])
    assert verdicts and not [v for v in verdicts if v.regressed]
    weakened = run_check(only=["inverting-gradients"], budget_scale=0.1)
    regressed = {v.metric for v in weakened if v.regressed}
    assert "psnr" in regressed


def test_every_suite_entry_has_a_reference():
    entries = json.loads(REFERENCE.read_text())["entries"]
    from bench.check import entry_key

    keys = {entry_key(cell.config()) for cell in suite_cells()}
    assert keys == set(entries)


def test_comparison_is_direction_aware():
    reference = {"tolerances": TOLERANCES, "entries": {}}
    cell = suite_cells(only=["noise"])[0]
    from bench.check import entry_key

    key = entry_key(cell.config())
    reference["entries"][key] = {"status": "ok", "metrics": {"psnr": 20.0, "label_acc": 0.5}}

    def verdicts(psnr, acc, status="ok"):
        record = Record(cell.run_id, cell.config(), status, metrics={"psnr": psnr, "label_acc": acc})
        return {v.metric: v.regressed for v in compare([record], reference)}

    assert verdicts(21.0, 0.9) == {"psnr": False, "label_acc": False}  # better is fine
    assert verdicts(20.0 - TOLERANCES["psnr"] + 0.01, 0.5) == {"psnr": False, "label_acc": False}
    assert verdicts(17.0, 0.5)["psnr"] is True
    assert verdicts(20.0, 0.4)["label_acc"] is True
    assert verdicts(None, None, status="failed") == {"status": True}
