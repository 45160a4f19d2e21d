"""The audit's report: `index.html` (a one-screen verdict first, then the evidence), `report.json`, plots.

It is rendered from the records (already in `records/`) through the leaderboard's statistics and plots:
per batch size the attacks' gain over the prior floor and the label methods' accuracy against guessing,
mean ± 95% CI over the cases, the best attack's reconstructions beside the client's images (the runner's
image grid of each run), the leakage against B, and with defenses the leakage against each defense with its
epsilon and the cosine of the shared to the undefended update (the leaderboard's plots against a defense's
strength). Static HTML with two style sheets, no script, no network; the page states how the audit ran
(threat model, budgets and their calibration, what did not apply and why, times, environment).

Example:
    >>> report = write_report(partial, AuditRun(options, target, calibration, plan, records, times, argv))
    >>> report["verdict"][0]["sentences"]
"""

from __future__ import annotations

import io
import json
import math
import shlex
import shutil
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from PIL import Image

from bench.audit.calibrate import Calibration
from bench.audit.findings import GUESS, Finding, Leak, collect, defense_of, over_batch_sizes
from bench.audit.folder import RECORDS, REPORT_JSON, REPORT_KIND
from bench.audit.options import AuditOptions
from bench.audit.plan import Plan, not_run
from bench.audit.target import Target
from bench.audit.verdict import Sentences, verdict
from bench.defenses import parse_defense
from bench.environment import environment
from bench.leaderboard import aggregate
from bench.leaderboard.plots import table_plots
from bench.leaderboard.aggregate import GAIN_METRIC
from bench.leaderboard.site.pages import HERE as SITE_HERE, duration_text
from bench.leaderboard.stats import CellStats
from bench.leaderboard.strength import defense_order
from bench.record import Record

HERE = Path(__file__).parent
REPORT_SCHEMA = 1
PLOTS = "plots"
SHOT_WIDTH = 320  # pixels a run's grid is scaled up to at most (whole multiples, no smoothing)


@dataclass(frozen=True)
class Times:
    """Seconds: before the calibration (checks), the calibration, the planned estimate of the rest, and the
    whole audit until the report was written."""

    checks_s: float
    calibration_s: float
    estimate_s: float
    wall_s: float = 0.0


@dataclass(frozen=True)
class AuditRun:
    options: AuditOptions
    target: Target
    calibration: Calibration
    plan: Plan
    records: Sequence[Record]
    times: Times
    argv: Sequence[str] = ()


@dataclass(frozen=True)
class Shot:
    image: str
    width: int
    height: int
    caption: str


@dataclass(frozen=True)
class MethodRow:
    method: str
    iterations: str
    headline: str
    gain: str
    leaks: bool
    others: tuple[str, ...]
    counts: str
    seconds: str
    note: str


@dataclass(frozen=True)
class BatchSection:
    batch_size: int
    repetition: float
    distinct: int
    attacks: tuple[MethodRow, ...]
    floor: str
    best_attack: str | None
    shots: tuple[Shot, ...]
    labels: tuple[MethodRow, ...]
    guess: str
    not_run: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class DefenseRow:
    defense: str
    batch_size: int
    epsilon: str
    cosine: str
    label_method: str
    labels: str
    labels_leak: bool
    attack: str
    images: str
    images_leak: bool


@dataclass
class Page:
    title: str
    subtitle: str
    verdict: list[tuple[str, Sentences]]
    evidence: str
    sections: list[BatchSection]
    over_b: list[tuple[str, str, int, int]] = field(default_factory=list)  # (caption, path, width, height)
    defenses: list[DefenseRow] = field(default_factory=list)
    strength: list[tuple[str, str, int, int]] = field(default_factory=list)
    method: list[tuple[str, str]] = field(default_factory=list)  # (what, how), the audit's own setting
    budgets: list[tuple[str, list[str]]] = field(default_factory=list)  # attack, iterations per B
    budget_columns: list[int] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)  # attacks left out, why
    timing: list[tuple[str, str]] = field(default_factory=list)
    command: str = ""


def _seconds(run_ids: Sequence[str], by_id: dict[str, Record]) -> str:
    walls = [float(by_id[r].cost["wall_s"]) for r in run_ids if (by_id[r].cost or {}).get("wall_s") is not None]
    return "–" if not walls else f"{statistics.fmean(walls):.1f}"


def _counts(cell: CellStats) -> str:
    return f"{cell.n_ok}/{cell.n_total}"


def _attack_row(leak: Leak, by_id: dict[str, Record]) -> MethodRow:
    more = leak.more
    others = tuple(more[m].text(d) if m in more else "" for m, d in (("psnr", 1), ("ssim", 3), ("label_acc", 3)))
    return MethodRow(
        leak.method, "–" if leak.budget is None else f"{leak.budget:,}", leak.cell.text(1), leak.cell.text(1),
        leak.leaks, others, _counts(leak.cell), _seconds(leak.cell.run_ids, by_id), leak.skipped or "",
    )  # fmt: skip


def _label_row(leak: Leak, by_id: dict[str, Record]) -> MethodRow:
    gains = CellStats(leak.cell.gains, len(leak.cell.gains))
    return MethodRow(
        leak.method, "", leak.cell.text(3), gains.text(3), leak.leaks, (), _counts(leak.cell),
        _seconds(leak.cell.run_ids, by_id), leak.skipped or "",
    )  # fmt: skip


def _shots(leak: Leak | None, by_id: dict[str, Record], folder: Path) -> tuple[Shot, ...]:
    """The grid of every case the attack ran on: the client's images above their reconstructions."""
    if leak is None:
        return ()
    shots = []
    for run_id in sorted(leak.cell.run_ids, key=lambda r: by_id[r].config["scenario"]["seed"]):
        record, grid = by_id[run_id], folder / RECORDS / f"{run_id}.png"
        if record.status != "ok" or not grid.is_file():
            continue
        with Image.open(grid) as image:
            width, height = image.size
        scale = max(1, min(6, SHOT_WIDTH // width))
        m = record.metrics
        caption = (
            f"case {record.config['scenario']['seed']}: {m['psnr_gain']:+.1f} dB over the floor "
            f"(PSNR {m['psnr']:.1f} dB, floor {m['psnr_floor']:.1f} dB)"
        )
        shots.append(Shot(f"{RECORDS}/{run_id}.png", width * scale, height * scale, caption))
    return tuple(shots)


def _batch_section(finding: Finding, run: AuditRun, by_id: dict[str, Record], folder: Path) -> BatchSection:
    b = finding.batch_size
    floors = {  # the floor of each case, from any of its attack runs
        by_id[r].config["scenario"]["seed"]: by_id[r].metrics["psnr_floor"]
        for leak in finding.images for r in leak.cell.run_ids if by_id[r].metrics.get("psnr_floor") is not None
    }  # fmt: skip
    floor = CellStats(tuple(floors.values()), len(floors))
    best = finding.best("images")
    left_out: dict[str, list[str]] = defaultdict(list)  # reason -> attacks
    for (attack, at), reason in {**run.calibration.excluded, **run.plan.dropped}.items():
        if at == b:
            left_out[reason].append(attack)
    return BatchSection(
        b, finding.repetition, round((1 - finding.repetition) * b),
        tuple(_attack_row(leak, by_id) for leak in finding.images), floor.text(1) if floor.values else "–",
        None if best is None else best.method, _shots(best, by_id, folder),
        tuple(_label_row(leak, by_id) for leak in finding.labels), f"{finding.guess:.3f}",
        tuple((", ".join(sorted(attacks)), reason) for reason, attacks in sorted(left_out.items())),
    )  # fmt: skip


def _png(folder: Path, name: str, data: bytes) -> tuple[str, int, int]:
    path = folder / PLOTS / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    width, height = Image.open(io.BytesIO(data)).size
    return f"{PLOTS}/{name}", width, height


def _plots_over_b(run: AuditRun, findings: dict, folder: Path) -> list[tuple[str, str, int, int]]:
    """The gain of every attack and the accuracy of every label method (guessing dashed) against B."""
    if len(run.options.batch_sizes) < 2:
        return []
    undefended = [r for r in run.records if defense_of(r) == "none"]  # the defenses have their own plots
    guesses = {"none": {GUESS: {b: CellStats((f.guess,), 1) for (d, b), f in findings.items() if d == "none"}}}
    shown = []
    for caption, tables in (
        ("Attacks: gain over the prior floor against B", over_batch_sizes(aggregate(undefended, "attack", "batch_size", GAIN_METRIC))),
        ("Label methods: accuracy against B (guessing from the class frequencies dashed)",
         over_batch_sizes(aggregate(undefended, "label_method", "batch_size", "label_acc"), guesses)),
    ):  # fmt: skip
        for table in tables:
            shown += [(caption, *_png(folder, name, data)) for name, data in table_plots(table)]
    return shown


def _strength(run: AuditRun, folder: Path) -> list[tuple[str, str, int, int]]:
    """Per batch size and kind of defense: leakage against the defense's strength, the cosine beside it."""
    if len(run.options.defenses) < 2:
        return []
    shown = []
    for rows, metric, what in (("attack", GAIN_METRIC, "attacks' gain over the prior floor"), ("label_method", "label_acc", "label accuracy")):
        for table in aggregate(run.records, rows, "defense", metric):
            b = int(table.group.fixed_value("batch_size"))
            for name, data in table_plots(table):  # one per kind of defense: <metric>-vs-<kind>-<digest>.png
                kind = name.removeprefix(f"{metric}-vs-").rsplit("-", 1)[0]
                shown.append((f"B = {b}: {what} against {kind}", *_png(folder, name, data)))
    return shown


def _defense_rows(findings: dict) -> list[DefenseRow]:
    """One row per defense (none first, then by kind and strength) and batch size."""
    rows = []
    for (defense, b), f in sorted(findings.items(), key=lambda kv: (defense_order(parse_defense(kv[0][0])), kv[0][1])):
        labels, images = f.best("labels"), f.best("images")
        rows.append(DefenseRow(
            defense, b, f.facts.epsilon_text() if f.facts.epsilons else ("∞" if defense == "none" else "–"),
            f.facts.cosine.text(3) or ("1" if defense == "none" else "–"),
            "–" if labels is None else labels.method, "–" if labels is None else labels.cell.text(3), f.labels_leak,
            "–" if images is None else images.method, "–" if images is None else images.cell.text(1), f.images_leak,
        ))  # fmt: skip
    return rows


def _compute_text(run: AuditRun) -> str:
    device = run.records[0].environment.get("device", run.options.device) if run.records else run.options.device
    return f"{duration_text(run.times.wall_s)} on {device}"


def _method(run: AuditRun) -> list[tuple[str, str]]:
    o, t = run.options, run.target
    update = o.update("none").short()
    bn = f"{t.bn_layers} BatchNorm layers" if t.bn_layers else "no BatchNorm layers"
    return [
        ("model", f"{t.description} with {o.model_args or 'no arguments'}; {t.parameters:,} parameters, {bn}; "
                  f"weights: {o.weights or 'its own initialisation (seed 0)'}"),
        ("data", f"{o.data}: {t.images} images in {t.num_classes} classes ({', '.join(t.class_names[:8])}"
                 f"{', ...' if t.num_classes > 8 else ''}), {t.channels} channel(s) at {o.image_size} px, normalised by "
                 f"mean {t.normalization.mean} and std {t.normalization.std} ({'their own' if o.normalization == 'data' else 'given'})"),
        ("client", f"{update}: the update of one client's batch of B images, BN in {o.bn_mode} mode; batches drawn "
                   "like a random minibatch of the data (distinct labels as expected from the class frequencies)"),
        ("attacker", f"the server: white-box model and the shared update; labels {'known' if o.labels_known else 'unknown'}; "
                     f"BN statistics {t.bn_stats}; the batch size known"),
        ("evidence", f"{o.cases} cases (client batches) per batch size and defense, seeds {', '.join(map(str, o.seeds))}; "
                     "mean ± 95% CI (Student's t) over them"),
    ]  # fmt: skip


def _budgets(run: AuditRun) -> tuple[list[tuple[str, list[str]]], list[int]]:
    columns = list(run.options.batch_sizes)
    rows = []
    for attack in run.options.attacks:
        cells = []
        for b in columns:
            if (attack, b) in run.plan.budgets:
                cost = run.calibration.costs[(attack, b)]
                cells.append(f"{run.plan.budgets[(attack, b)]:,} it ({cost.seconds(run.plan.budgets[(attack, b)]):.1f} s/run)")
            else:
                cells.append("not run")
        rows.append((attack, cells))
    return rows, columns


def _timing(run: AuditRun) -> list[tuple[str, str]]:
    t = run.times
    planned = t.checks_s + t.calibration_s + t.estimate_s
    return [
        ("time allowed", f"{run.options.max_minutes:g} min (--max-minutes)"),
        ("checks of the model and data", f"{t.checks_s:.1f} s"),
        ("calibration", f"{t.calibration_s:.1f} s: each attack at {', '.join(str(b) for b in (1, 4))} iterations on the first case of each B"),
        ("estimate before the runs", f"{planned / 60:.1f} min in all"),
        *[(f"budgets at B = {b}", "fitted again to the time left; time taken so far against the calibration's: "
           + ", ".join(f"{n} {p:.2f}x" for n, p in sorted(paces.items()))) for b, paces in run.plan.refits],
        ("measured", f"{t.wall_s / 60:.1f} min from the start to the end of the runs (rendering this report not included)"),
    ]  # fmt: skip


def _environment_env(run: AuditRun) -> dict:
    return run.records[0].environment if run.records else environment(run.options.device)


def _report_json(run: AuditRun, findings: dict, lines: list[tuple[str, Sentences]]) -> dict:
    def cell(c: CellStats) -> dict:
        return {"mean": c.mean, "ci95": c.ci95, "n_ok": c.n_ok, "n_total": c.n_total, "gain_mean": c.gain_mean,
                "gain_ci95": c.gain_ci95, "above_floor": c.above_floor, "run_ids": list(c.run_ids)}  # fmt: skip

    results = []
    for (defense, b), f in findings.items():
        results.append({
            "defense": defense, "batch_size": b, "repetition": f.repetition,
            "epsilon": [None if math.isinf(e) else e for e in f.facts.epsilons], "delta": f.facts.delta, "cosine_to_undefended": cell(f.facts.cosine),
            "labels_leak": f.labels_leak, "images_leak": f.images_leak, "guess_label_acc": f.guess,
            "labels": [{"method": leak.method, "label_acc": cell(leak.cell), "leaks": leak.leaks, "skipped": leak.skipped} for leak in f.labels],
            "attacks": [{"attack": leak.method, "iterations": leak.budget, "psnr_gain": cell(leak.cell), "leaks": leak.leaks,
                         "skipped": leak.skipped, **{m: cell(c) for m, c in leak.more.items() if m != GAIN_METRIC}} for leak in f.images],
        })  # fmt: skip
    return {
        "kind": REPORT_KIND, "schema": REPORT_SCHEMA, "command": list(run.argv), "options": run.options.to_dict(),
        "target": run.target.to_dict(), "verdict": [{"heading": h, "sentences": [t for t, _ in s], "leaks": [leak for _, leak in s]} for h, s in lines],
        "results": results, "calibration": run.calibration.to_dict(), "plan": run.plan.to_dict(),
        "times": {"checks_s": run.times.checks_s, "calibration_s": run.times.calibration_s,
                  "estimate_s": run.times.estimate_s, "wall_s": run.times.wall_s},
        "runs": {"total": len(run.records), **{s: sum(r.status == s for r in run.records) for s in ("ok", "failed", "skipped")}},
        "records": RECORDS, "environment": _environment_env(run),
    }  # fmt: skip


def write_report(folder: Path, run: AuditRun) -> dict:
    """Write index.html, report.json, the plots and the style sheets into `folder` (whose `records/` holds
    the run's records and grids); returns report.json's content."""
    by_id = {r.run_id: r for r in run.records}
    findings = collect(run.records, run.target)
    lines = verdict(findings, run.options.defenses)
    o = run.options
    page = Page(
        title=f"Does {o.class_name} leak its clients' data?",
        subtitle=f"{o.class_name} ({o.model_file}) on {o.data} · {o.image_size} px · B = "
                 f"{', '.join(map(str, o.batch_sizes))} · {o.update('none').short()}"
                 + (f" · defenses: {', '.join(o.defenses[1:])}" if len(o.defenses) > 1 else ""),
        verdict=lines,
        evidence=(f"{o.cases} cases per batch size; compute: {_compute_text(run)}. A method leaks where its gain over an attacker without the update "
                  "(images: the stronger prior floor; labels: guessing from the class frequencies) is above 0 with 95% "
                  "confidence, each method tested on its own. Where nothing leaks, only these attacks at this compute "
                  "were tried: it is not a proof of privacy."),
        sections=[_batch_section(f, run, by_id, folder) for (d, _), f in findings.items() if d == "none"],
        over_b=_plots_over_b(run, findings, folder),
        defenses=_defense_rows(findings) if len(o.defenses) > 1 else [],
        strength=_strength(run, folder),
        method=_method(run),
        not_run=not_run(run.calibration, run.plan),
        timing=_timing(run),
        command="python -m bench " + shlex.join(run.argv),
    )  # fmt: skip
    page.budgets, page.budget_columns = _budgets(run)
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)  # fmt: skip
    (folder / "index.html").write_text(env.get_template("report.html").render(page=page))
    shutil.copyfile(SITE_HERE / "static" / "style.css", folder / "style.css")
    shutil.copyfile(HERE / "static" / "audit.css", folder / "audit.css")
    report = _report_json(run, findings, lines)
    (folder / REPORT_JSON).write_text(json.dumps(report, indent=1, sort_keys=True, allow_nan=False) + "\n")
    return report

