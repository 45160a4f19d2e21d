"""The quality gate's false alarms and power, measured, as a Markdown page (docs/quality-gate.md).

False alarms: the shipped gate (`bench check`) run here and with other CPUs' kernels imitated, each in a fresh
process (the kernels are chosen when the libraries start): the two settings the reference's minimum effects
were measured with, and four it never saw (one library's variable at a time). Power: weakened variants of the
gated methods (`bench.check_variants`) and the whole suite at 3/10 of its budgets, each of which must fail.
Every run's verdicts are kept as JSON in `--work` (default `docs/quality-gate/`, committed beside the page):
an interrupted study resumes, and deleting a file re-measures that run.

    python scripts/check_study.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import kernels  # noqa: E402

# name -> (kernel variables, whether the reference's minimum effects were measured with it)
SETTINGS: dict[str, tuple[dict[str, str], bool]] = {
    "native": ({}, False),
    "avx2": (kernels.KERNELS["avx2"], True),
    "default": (kernels.KERNELS["default"], True),
    "aten-avx2": ({"ATEN_CPU_CAPABILITY": "avx2"}, False),
    "aten-default": ({"ATEN_CPU_CAPABILITY": "default"}, False),
    "mkl-compatible": ({"MKL_CBWR": "COMPATIBLE"}, False),
    "onednn-sse41": ({"ONEDNN_MAX_CPU_ISA": "SSE41"}, False),
}
# name -> (run_check keyword arguments, what is weakened)
WEAKENINGS: dict[str, tuple[dict, str]] = {
    "budget-x0.3": ({"budget_scale": 0.3, "only": ["dlg", "idlg", "inverting-gradients", "e2egi"]},
                    "every attack at 3/10 of its budget"),
}  # fmt: skip


def _weakenings() -> dict[str, tuple[dict, str]]:
    from bench.check_variants import RANDOM_LABELS, WEAKENED

    found = dict(WEAKENINGS)
    for variant, (base, _, what) in WEAKENED.items():
        found[variant] = ({"only": [base], "stand_ins": {base: variant}}, f"{base}: {what}")
    for method in ("llg", "ilrg", "e2egi"):
        found[f"{method}-random-labels"] = (
            {"only": [method], "stand_ins": {method: RANDOM_LABELS}},
            f"label method {method} replaced by uniformly random labels",
        )
    return found


def verdicts_json(**options) -> dict:
    """Run the gate in this process and return its verdicts and time as plain data."""
    from bench.check import run_check
    from bench.check_variants import weakened

    if options.get("stand_ins"):  # registered only where they stand in: a suite's "all" would take them in
        with weakened():
            result = run_check(**options)
    else:
        result = run_check(**options)
    return {
        "machine": result.machine,
        "wall_s": result.wall_s,
        "cpu_s": result.cpu_s,
        "runs": result.runs,
        "verdicts": [
            {"entry": v.label, "metric": v.metric, "regressed": v.regressed, "note": v.note,
             "reference": list(v.reference), "now": list(v.now),
             **({"drop": v.judgement.drop, "p": v.judgement.p_value, "min_effect": v.judgement.min_effect} if v.judgement else {})}
            for v in result.verdicts
        ],
    }  # fmt: skip


def _measure(work: Path, name: str, env: dict[str, str], options: dict) -> dict:
    target = work / f"{name}.json"
    if target.is_file():
        return json.loads(target.read_text())
    print(f"{name} ...", flush=True)
    with tempfile.TemporaryDirectory() as cache:  # trained models and mean images computed with its kernels
        child_env = {**os.environ, **env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "BENCH_CACHE": cache}
        child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        subprocess.run(
            [sys.executable, __file__, "--child", str(target), "--options", json.dumps(options)],
            env=child_env, check=True, cwd=ROOT,
        )  # fmt: skip
    return json.loads(target.read_text())


def _cell_text(text: str) -> str:
    """`text` inside a Markdown table cell (an entry's label holds ' | ')."""
    return text.replace("|", "\\|")


def _cell(v: dict) -> str:
    if "drop" not in v:
        return "**REGRESSED**" if v["regressed"] else "ok"
    text = f"{v['drop']:+.2f} (p {v['p']:.2g})"
    return f"**REGRESSED** {text}" if v["regressed"] else f"ok {text}"


def rejudged(result: dict, reference: dict) -> dict:
    """A run's verdicts judged again by the rule and the reference as they are now, from the per-seed values
    the run kept (a changed rule or minimum effect needs no new run)."""
    from bench.check import _higher_is_better
    from bench.check_rule import judge

    by_label = {key.rsplit(" | ", 1)[0]: entry for key, entry in reference["entries"].items()}
    verdicts = []
    for v in result["verdicts"]:
        summary = by_label.get(v["entry"], {}).get("metrics", {}).get(v["metric"])
        if summary is None or not v.get("now"):
            verdicts.append(v)  # a status or missing-reference verdict: as the run gave it
            continue
        j = judge(v["metric"], summary["values"], v["now"], summary["min_effect"], _higher_is_better(v["metric"]))
        verdicts.append({**v, "reference": summary["values"], "regressed": j.regressed, "drop": j.drop,
                         "p": j.p_value, "min_effect": j.min_effect})  # fmt: skip
    return {**result, "verdicts": verdicts}


def render(false_alarms: dict[str, dict], power: dict[str, tuple[dict, str]], reference: dict) -> str:
    false_alarms = {name: rejudged(result, reference) for name, result in false_alarms.items()}
    power = {name: (rejudged(result, reference), what) for name, (result, what) in power.items()}
    settings = list(false_alarms)
    lines = [
        "# The quality gate: false alarms and power",
        "",
        "Rendered by `python scripts/check_study.py` from the runs in `docs/quality-gate/` (the gate is `python -m bench check`,",
        "`bench/check.py`; its rule is `bench/check_rule.py`). The reference (`bench/presets/check/reference.json`)",
        f"was made on {reference['machine']['cpu']} ({reference['machine']['cpu_capability']} kernels), commit "
        f"{str(reference.get('commit'))[:10]}, one thread. GradInversion is not in the suite: `docs/gradinversion-on-cpu.md`.",
        "",
        "## The rule",
        "",
        f"- Regressed: {reference['rule']['regressed']}.",
        f"- Minimum effect: {reference['rule']['min_effect']}.",
        "",
        "## Entries and their measured spread",
        "",
        "Per entry: the seeds' spread, and what the imitated kernels (avx2, default) did to the same seeds: the",
        "largest |median drop| (sets the minimum effect), the largest |mean drop| and the 0.9 quantile of the",
        "per-seed |drops| (both moved by the seeds that flip to another basin). p(floor): the one-sided t-test",
        "that the mean gain is above the prior floor.",
        "",
        "| entry | metric | seeds | reference mean ± sd | p (floor) | largest median drop | largest mean drop | 0.9 quantile of per-seed drops | min effect |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, entry in reference["entries"].items():
        for metric, s in entry["metrics"].items():
            lines.append(
                f"| {_cell_text(key.rsplit(' | ', 1)[0])} | {metric} | {len(entry['seeds'])} | {s['mean']:.3g} ± {s['sd']:.2g} | "
                f"{_p(s.get('above_floor_p'))} | {_num(s.get('largest_median_drop'))} | {_num(s.get('largest_mean_drop'))} | "
                f"{_num(s.get('drop_quantile'))} | {s['min_effect']:.3g} |"
            )
    lines += [
        "",
        "## False alarms: unchanged code with other CPUs' kernels",
        "",
        "Each cell: the mean drop against the reference (positive: worse) and the p-value of the rule's test.",
        "Settings marked † measured the minimum effects (so they pass by construction); the others are held out.",
        "",
        "| entry | metric | " + " | ".join(f"{s}{' †' if SETTINGS[s][1] else ''}" for s in settings) + " |",
        "|---|---|" + "---|" * len(settings),
    ]
    first = false_alarms[settings[0]]["verdicts"]
    for i, v in enumerate(first):
        cells = [_cell(false_alarms[s]["verdicts"][i]) for s in settings]
        lines.append(f"| {_cell_text(v['entry'])} | {v['metric']} | " + " | ".join(cells) + " |")
    regressions = {s: sum(v["regressed"] for v in r["verdicts"]) for s, r in false_alarms.items()}
    lines += [
        "| **regressions** | | " + " | ".join(str(regressions[s]) for s in settings) + " |",
        "| kernels (ATen) | | " + " | ".join(false_alarms[s]["machine"]["cpu_capability"] for s in settings) + " |",
        "| wall / CPU s | | " + " | ".join(f"{false_alarms[s]['wall_s']:.0f} / {false_alarms[s]['cpu_s']:.0f}" for s in settings) + " |",
        "",
        "Kernel variables of each setting: " + "; ".join(
            f"{s}: " + (", ".join(f"{k}={v}" for k, v in SETTINGS[s][0].items()) or "none") for s in settings
        ) + ".",
        "",
        "## Power: weakened methods must fail",
        "",
        "Each weakened method runs in place of the one it weakens (`bench/check_variants.py`), or every attack at",
        "3/10 of its budget (`--budget-scale 0.3`); the rows are the entries whose values changed.",
        "",
        "| weakened | what | entry | metric | reference mean | now mean | mean drop | min effect | p | caught |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for name, (result, what) in power.items():
        for v in result["verdicts"]:
            if v.get("now") == v.get("reference") and not v["regressed"]:
                continue  # an entry the weakening does not touch (e.g. the label method of the same name)
            lines.append(
                f"| {name} | {what} | {_cell_text(v['entry'])} | {v['metric']} | {_mean(v.get('reference'))} | {_mean(v.get('now'))} "
                f"| {_num(v.get('drop'))} | {_num(v.get('min_effect'))} | {_p(v.get('p'))} | "
                f"{'yes' if v['regressed'] else '**no**'} |"
            )
    native = false_alarms[settings[0]]
    lines += [
        "",
        f"## Time",
        "",
        f"The whole gate here: {native['runs']} runs in {native['wall_s']:.0f} s wall, {native['cpu_s']:.0f} s CPU "
        f"(one thread; {native['machine']['cpu']}, shared with other work while measured).",
        "",
    ]
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.2g}"


def _mean(values: list[float] | None) -> str:
    return f"{sum(values) / len(values):.3g}" if values else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "quality-gate.md"))
    parser.add_argument("--work", default=str(ROOT / "docs" / "quality-gate"), help="folder keeping each run's verdicts (resume)")
    parser.add_argument("--part", choices=("all", "false-alarms", "power"), default="all",
                        help="measure only this part (two processes can measure the two parts at once); render with all")
    parser.add_argument("--settings", help="comma-separated kernel settings to measure (default: all)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        Path(args.child).write_text(json.dumps(verdicts_json(**json.loads(args.options)), indent=1))
        return 0
    from bench.check import load_reference

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    reference = load_reference()
    if args.part in ("all", "false-alarms"):
        chosen = args.settings.split(",") if args.settings else list(SETTINGS)
        false_alarms = {name: _measure(work, name, SETTINGS[name][0], {}) for name in chosen}
    if args.part in ("all", "power"):
        power = {
            name: (_measure(work, f"weak-{name}", {}, options), what) for name, (options, what) in _weakenings().items()
        }
    if args.part != "all":
        return 0
    Path(args.out).write_text(render(false_alarms, power, reference))
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
