"""The quality gate's report: a table for the terminal and JUnit XML for CI systems (bench.check).

Every REGRESSED line says why: the mean drop over the seeds, the entry's minimum effect, the test's p-value,
and what differs between this machine and the one the reference was made on.

Example:
    >>> print(report_text(result))
    >>> write_junit(result, Path("gate.xml"))
"""

from __future__ import annotations

import platform
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

from tabulate import tabulate

from bench.check import CheckResult, Verdict, fmt_values
from bench.check_rule import ALPHA
from bench.files import write_atomic


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def report_rows(result: CheckResult) -> list[list[str]]:
    rows = []
    for v in result.verdicts:
        j = v.judgement
        rows.append([
            v.label, v.metric, len(v.reference) or "-", fmt_values(v.reference), fmt_values(v.now),
            _number(j and j.drop), _number(j and j.min_effect), _number(j and j.p_value, 2),
            "REGRESSED" if v.regressed else "ok", v.note,
        ])  # fmt: skip
    return rows


def report_text(result: CheckResult) -> str:
    """The table, then one line per regressed entry (or that all passed) and the gate's time."""
    table = tabulate(
        report_rows(result),
        headers=["entry", "metric", "seeds", "reference", "now", "drop", "min effect", "p", "verdict", "note"],
    )
    m = result.machine
    time_line = (
        f"{result.runs} runs in {result.wall_s:.0f} s ({result.cpu_s:.0f} s CPU, {m['threads']} thread) on "
        f"{m['cpu']} ({m['cpu_capability']} kernels)"
    )
    regressed = sorted({v.label for v in result.regressed})
    if regressed:
        verdict = f"regressed: {'; '.join(regressed)}"
    else:
        verdict = f"all {len(result.verdicts)} checks passed (regression: mean drop > min effect at p < {ALPHA:g})"
    return "\n".join([table, verdict, time_line])


def junit_xml(result: CheckResult, name: str = "bench check") -> str:
    """JUnit XML: one test case per entry and metric, a failure for each regression, the machines as properties."""
    failures = len(result.regressed)
    suites = ET.Element("testsuites", name=name, tests=str(len(result.verdicts)), failures=str(failures),
                        time=f"{result.wall_s:.1f}")  # fmt: skip
    suite = ET.SubElement(
        suites, "testsuite", name=name, tests=str(len(result.verdicts)), failures=str(failures), errors="0",
        skipped="0", time=f"{result.wall_s:.1f}", timestamp=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        hostname=platform.node(),
    )  # fmt: skip
    properties = ET.SubElement(suite, "properties")
    for prefix, machine in (("machine", result.machine), ("reference_machine", result.reference_machine)):
        for key in ("cpu", "cpu_capability", "threads", "python"):
            ET.SubElement(properties, "property", name=f"{prefix}.{key}", value=str(machine.get(key)))
        for package, version in (machine.get("versions") or {}).items():
            ET.SubElement(properties, "property", name=f"{prefix}.{package}", value=str(version))
    ET.SubElement(properties, "property", name="reference", value=str(result.reference_path))
    for v in result.verdicts:
        case = ET.SubElement(suite, "testcase", classname=f"bench.check.{v.label.split(' ', 1)[0]}",
                             name=f"{v.label} [{v.metric}]", time=f"{v.seconds:.2f}")  # fmt: skip
        detail = _detail(v)
        if v.regressed:
            failure = ET.SubElement(case, "failure", message=v.note or "regressed", type="regression")
            failure.text = detail
        else:
            ET.SubElement(case, "system-out").text = detail
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def _detail(v: Verdict) -> str:
    j = v.judgement
    lines = [f"reference per seed: {_list(v.reference)}", f"now per seed: {_list(v.now)}"]
    if j is not None:
        lines.append(f"mean drop {j.drop:.4g}, min effect {j.min_effect:.4g}, p = {j.p_value:.3g} (alpha {ALPHA:g})")
    if v.note:
        lines.append(v.note)
    return "\n".join(lines)


def _list(values: tuple[float, ...]) -> str:
    return ", ".join(f"{x:.4g}" for x in values) or "-"


def write_junit(result: CheckResult, path: Path) -> None:
    write_atomic(path, junit_xml(result))
