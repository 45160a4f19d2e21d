"""The claims table: each claim of `bench.claims` evaluated on its records, rendered as Markdown.

Example:
    >>> text = render_claims(Path("leaderboard"))
    >>> outcome = evaluate(claim("idlg-labels-b1").measures[0], load_runs(Path("leaderboard/records/claims-idlg-b1")))
    >>> outcome.verdict
    'reproduced'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from scipy.stats import binomtest

from bench.claims import CLAIMS, VERDICTS, Claim, Measure
from bench.compute import flops_text
from bench.errors import BenchError
from bench.leaderboard.aggregate import run_flops
from bench.files import write_atomic
from bench.leaderboard.runs import load_runs
from bench.leaderboard.stats import fixed, mean_ci95
from bench.record import Record
from bench.scenario import Scenario

PENDING = "pending"
_SCENARIO_DEFAULTS = Scenario().to_dict()
_ALWAYS_SHOWN = ("dataset", "model", "image_size", "num_classes", "batch_size", "repetition")


@dataclass(frozen=True)
class Outcome:
    """A measure evaluated on records: the estimate, its 95% CI, the values behind it and the verdict."""

    measure: Measure
    verdict: str
    estimate: float | None = None
    ci: tuple[float, float] | None = None
    values: tuple[float, ...] = ()
    n_ok: int = 0
    n_total: int = 0
    versus: str | None = None  # the `against` selection a difference was taken with
    unmeasured: tuple[str, ...] = ()  # `against` selections without a value yet: the margin cannot be reproduced
    runs: tuple[Record, ...] = ()  # the selected runs (for margins: the measured method's)
    versus_runs: tuple[Record, ...] = ()  # for margins: the runs of the selection compared with


def config_value(record: Record, dotted: str) -> object:
    """A config field by its dotted path ("scenario.batch_size"); None when absent."""
    value: object = record.config
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _equal(a: object, b: object) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, abs_tol=1e-12)
    return a == b


def select(records: Sequence[Record], where: Mapping[str, object]) -> list[Record]:
    """The records whose config has every `where` field at its value."""
    return [r for r in records if all(_equal(config_value(r, k), v) for k, v in where.items())]


def by_seed(runs: Sequence[Record], metric: str) -> dict[int, float]:
    """Each ok run's metric by its seed; two runs of one seed make the selection ambiguous."""
    values: dict[int, float] = {}
    for run in runs:
        seed = int(config_value(run, "scenario.seed"))
        if seed in values:
            raise BenchError(f"claim selection holds two runs of seed {seed}; narrow its 'where'")
        if run.status == "ok" and run.metrics.get(metric) is not None:
            values[seed] = float(run.metrics[metric])
    return values


def _verdict(measure: Measure, estimate: float, ci: tuple[float, float] | None) -> str:
    low, high = ci if ci is not None else (None, None)
    if measure.reproduced.holds(estimate, low, high):
        return "reproduced"
    return "partly" if measure.partly is not None and measure.partly.holds(estimate, low, high) else "not"


def evaluate(measure: Measure, records: Sequence[Record]) -> Outcome:
    """`measure` on `records` (a claim's folder); "pending" when they hold none of its runs."""
    runs = select(records, measure.where)
    n_ok = sum(r.status == "ok" for r in runs)
    if not runs:
        return Outcome(measure, PENDING)
    values = by_seed(runs, measure.metric)
    versus, unmeasured, versus_runs = None, (), ()
    if measure.against:
        others = [(sel, by_seed(select(records, {**measure.where, **sel}), measure.metric)) for sel in measure.against]
        unmeasured = tuple(_selection_text(sel) for sel, vals in others if not vals)
        others = [(sel, vals) for sel, vals in others if vals]
        if not others:
            return Outcome(measure, PENDING, n_ok=n_ok, n_total=len(runs), runs=tuple(runs))
        best, best_values = max(others, key=lambda item: mean_ci95(list(item[1].values()))[0])
        versus = _selection_text(best)
        versus_runs = tuple(select(records, {**measure.where, **best}))
        values = {seed: values[seed] - best_values[seed] for seed in sorted(values.keys() & best_values.keys())}
    ordered = tuple(values[seed] for seed in sorted(values))
    if not ordered:
        return Outcome(measure, "not", n_ok=n_ok, n_total=len(runs), versus=versus, unmeasured=unmeasured, runs=tuple(runs))
    if measure.at_least is not None:
        hits = sum(v >= measure.at_least for v in ordered)
        interval = binomtest(hits, len(ordered)).proportion_ci(0.95, method="exact")
        estimate, ci = hits / len(ordered), (float(interval.low), float(interval.high))
    else:
        estimate, half = mean_ci95(ordered)
        ci = None if half is None else (estimate - half, estimate + half)
    verdict = _verdict(measure, estimate, ci)
    if measure.against and unmeasured and verdict == "reproduced":
        verdict = "partly"  # a compared method without runs might still beat it
    return Outcome(
        measure, verdict, estimate, ci, ordered, n_ok, len(runs), versus, unmeasured, tuple(runs), versus_runs
    )


def _selection_text(selection: Mapping[str, object]) -> str:
    return ", ".join(f"{v}" if k in ("attack", "label_method") else f"{k.split('.')[-1]}={v}" for k, v in selection.items())


def claim_verdict(outcomes: Sequence[Outcome]) -> str:
    """The weakest measure's verdict; "pending" while any measure is."""
    if any(o.verdict == PENDING for o in outcomes):
        return PENDING
    return min((o.verdict for o in outcomes), key=VERDICTS.index)


def evaluate_claim(claim: Claim, board: Path) -> list[Outcome]:
    """Every measure of `claim` on the records in `board/records/<claim.records>` (pending when absent)."""
    folder = Path(board) / "records" / claim.records
    records = load_runs(folder) if folder.is_dir() and any(folder.rglob("*.json")) else []
    return [evaluate(measure, records) for measure in claim.measures]


# ---- text ---------------------------------------------------------------------------------------------


def _signed(value: float, digits: int, signed: bool) -> str:
    text = fixed(value, digits)
    return f"+{text}" if signed and not text.startswith("-") else text


def paper_text(measure: Measure) -> str:
    if measure.paper is None:
        return f"{measure.name}: not stated as a number"
    return f"{measure.name}: {_signed(measure.paper, measure.digits, bool(measure.against))}"


def ours_text(outcome: Outcome) -> str:
    m = outcome.measure
    if outcome.verdict == PENDING:
        return f"{m.name}: pending"
    if outcome.estimate is None:
        return f"{m.name}: no ok run ({outcome.n_ok}/{outcome.n_total})"
    value = _signed(outcome.estimate, m.digits, bool(m.against))
    if m.at_least is not None:
        low, high = outcome.ci
        text = f"{value} [{fixed(low, m.digits)}, {fixed(high, m.digits)}] ({sum(v >= m.at_least for v in outcome.values)} of {len(outcome.values)} seeds)"
    else:
        half = "–" if outcome.ci is None else fixed((outcome.ci[1] - outcome.ci[0]) / 2, m.digits)
        text = f"{value} ± {half}"
    if outcome.versus:
        text += f" vs {outcome.versus}"
    if outcome.unmeasured:
        text += f" (no runs yet: {'; '.join(outcome.unmeasured)})"
    if outcome.n_ok != outcome.n_total:
        text += f" ({outcome.n_ok}/{outcome.n_total} ok)"
    if m.per_seed and m.against == ():
        text += "; per seed: " + ", ".join(f"{v:.1f}" for v in outcome.values)
    return f"{m.name}: {text}{compute_text(outcome)}"


def compute_text(outcome: Outcome) -> str:
    """'; FLOPs per run 7.35e11 vs 7.31e11': the compute each side of a margin spent (mean over its runs), where
    the records counted it."""
    sides = [outcome.runs, outcome.versus_runs] if outcome.measure.against else [outcome.runs]
    means = []
    for runs in sides:
        spent = [f for f in (run_flops(r) for r in runs) if f is not None]
        if not spent:
            return ""
        means.append(flops_text(sum(spent) / len(spent)))
    return f"; FLOPs per run {' vs '.join(means)}"


def _flat(name: str, value: object) -> list[str]:
    if isinstance(value, Mapping):
        return [t for key in sorted(value) for t in _flat(f"{name}.{key}", value[key])]
    return [f"{name}={value}"]


def setting_text(runs: Sequence[Record]) -> str:
    """What the selected runs share (the main fields, then any other field off its default), and their seeds."""
    scenarios = [r.config.get("scenario", {}) for r in runs]
    if not scenarios:
        return "–"
    parts = []
    for name, value in scenarios[0].items():
        if name in ("seed", "data_path", "threat") or any(s.get(name) != value for s in scenarios):
            continue
        if name in _ALWAYS_SHOWN or value != _SCENARIO_DEFAULTS.get(name):
            parts += _flat(name, value) if value is not None else []
    return ", ".join(parts) + f", seeds {seed_text(sorted({s.get('seed') for s in scenarios}))}"


def seed_text(seeds: Sequence[int]) -> str:
    """'0-4' for a run of consecutive seeds, else the list: '0, 2, 5'."""
    if len(seeds) > 2 and list(seeds) == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds))


def _cell(items: Sequence[str]) -> str:
    return "<br>".join(item.replace("|", "\\|") for item in items)


def render_claims(board: str | Path, claims: Sequence[Claim] = CLAIMS) -> str:
    """leaderboard/claims.md: one row per claim, then the verdict rule of every measure."""
    board = Path(board)
    lines = [
        "# Paper claims",
        "",
        "Rendered by `python -m bench claims --out leaderboard/claims.md` from the claims in `bench/claims.py`",
        "and the records under `leaderboard/records/`; `tests/test_published.py` re-renders it. Ours: mean ± 95% CI",
        "over seeds (Student t), for a fraction the Clopper-Pearson 95% interval; a margin is the paired per-seed",
        "difference against the best (highest mean) of the compared selections. A margin between different cases",
        "(another repetition rate draws other batches) compares each case's gain over its own prior floor, never",
        "raw PSNR.",
        "",
        "| claim | source | paper | paper setting | ours | our setting | verdict | records |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rules = []
    for entry in claims:
        outcomes = evaluate_claim(entry, board)
        runs = next((o.runs for o in outcomes if o.runs), ())
        records = f"`records/{entry.records}/` (`sweeps/{entry.sweep}`)"
        row = [
            entry.key, entry.source, _cell([entry.statement, *map(paper_text, entry.measures)]), entry.paper_setting,
            _cell([ours_text(o) for o in outcomes]), setting_text(runs), claim_verdict(outcomes), records,
        ]
        lines.append("| " + " | ".join(row) + " |")
        for measure in entry.measures:
            partly = "" if measure.partly is None else f"partly when {measure.partly.text()}; "
            rules.append(f"- {entry.key}, {measure.name}: reproduced when {measure.reproduced.text()}; {partly}otherwise not.")
        if entry.note:
            rules.append(f"  Note: {entry.note}.")
    return "\n".join([*lines, "", "## Verdict rules", "", *rules, ""])


def write_claims(board: str | Path, out: str | Path | None) -> str:
    """Render the claims table of `board`; write it atomically to `out` when given. Returns the text."""
    text = render_claims(board)
    if out is not None:
        try:
            write_atomic(Path(out), text)
        except OSError as err:
            raise BenchError(f"cannot write {out}: {err.strerror or err}") from None
    return text
