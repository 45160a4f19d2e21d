"""The audit's verdict in words: per defense, one sentence on the labels and one on the images.

A sentence says "leak" only where a method's gain over what an attacker gets without the update is
significantly above 0 (bench.audit.findings); elsewhere it says "not significantly", with the best method's
numbers, so that a reader sees how far from the line it was. Absence of a leak is stated for this audit's
attacks and compute only.

Example:
    >>> heading, sentences = verdict(findings, ["none"])[0]
    >>> sentences[0][0]
    'Labels leak at every B ≤ 32: at B = 32, 100% recovered by ilrg (95% CI ± 0%; guessing from the class frequencies: 31%).'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from bench.audit.findings import Finding, Leak

Sentences = list[tuple[str, bool]]  # (sentence, whether it reports a leak)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def _b_list(values: Sequence[int]) -> str:
    return ", ".join(str(b) for b in values)


def _where(leaking: Sequence[int], tested: Sequence[int]) -> str:
    """'at every B ≤ 32', 'up to B = 2', 'at B = 1, 8'."""
    if list(leaking) == list(tested):
        return f"at every B ≤ {tested[-1]}" if len(tested) > 1 else f"at B = {tested[0]}"
    if list(leaking) == list(tested[: len(leaking)]):
        return f"up to B = {leaking[-1]}"
    return f"at B = {_b_list(leaking)}"


PHRASES = {
    "labels": {
        "none_ran": "Labels: no label-recovery method could run on this update.",
        "nothing": "Labels do not leak significantly beyond guessing from the class frequencies at any B tested "
                   "(closest: {method} at B = {b}, {spread} against {guess} by guessing).",
        "leak": "Labels leak {where}: at B = {b}, {value} recovered by {method} (95% CI{ci}; guessing from the class "
                "frequencies: {guess})",
        "quiet": "; not significantly beyond guessing at B = {sizes}.",
    },
    "images": {
        "none_ran": "Images: no attack applies to this model and update, or none fitted the time allowed.",
        "nothing": "No attack reconstructs images significantly better than the prior floor at any B tested within "
                   "this audit's compute (closest: {method} at B = {b}, {spread} over the floor).",
        "leak": "Images leak {where}: at B = {b}, {method} reconstructs them {value} dB over the prior floor (95% CI{ci})",
        "quiet": "; not significantly above the floor at B = {sizes} within this audit's compute.",
    },
}  # fmt: skip


def _numbers(kind: str, finding: Finding, leak: Leak) -> dict[str, str]:
    """The method and its mean as the sentence writes them: `value` (labels in %, images in dB over the floor,
    without the unit), `ci` (' ± 3.1 dB', ' –' without one) and `spread` (both: '+8.3 ± 24.5 dB')."""
    cell, ci = leak.cell, leak.cell.ci95
    if kind == "labels":
        value, unit, half = _pct(cell.mean), "", None if ci is None else f"{100 * ci:.0f}%"
    else:
        value, unit, half = f"{cell.mean:+.1f}", " dB", None if ci is None else f"{ci:.1f}"
    return {
        "method": leak.method, "b": str(finding.batch_size), "value": value, "guess": _pct(finding.guess),
        "ci": " –" if half is None else f" ± {half}{unit}", "spread": value + ("" if half is None else f" ± {half}") + unit,
    }  # fmt: skip


def sentence(findings: Sequence[Finding], kind: str) -> tuple[str, bool]:
    """One sentence on the labels or the images ("labels", "images") over the batch sizes of one defense
    (findings in increasing B), and whether it reports a leak."""
    phrases = PHRASES[kind]
    tested = [f.batch_size for f in findings]
    leaking = [f for f in findings if f.leaking(kind) is not None]
    if not any(f.best(kind) for f in findings):
        return phrases["none_ran"], False
    if not leaking:
        closest = max((f for f in findings if f.best(kind)), key=lambda f: f.best(kind).cell.mean)
        return phrases["nothing"].format(**_numbers(kind, closest, closest.best(kind))), False
    last = leaking[-1]
    text = phrases["leak"].format(where=_where([f.batch_size for f in leaking], tested), **_numbers(kind, last, last.leaking(kind)))
    quiet = [f.batch_size for f in findings if f.leaking(kind) is None]
    return text + (phrases["quiet"].format(sizes=_b_list(quiet)) if quiet else "."), True


def defense_facts(findings: Sequence[Finding]) -> str:
    """'ε = 2.31–4.1 at δ=1e-05 (B = 1..32), cosine to the undefended update 0.41–0.6' of one defense."""
    parts = []
    epsilons = [e for f in findings for e in f.facts.epsilons]
    deltas = {f.facts.delta for f in findings if f.facts.epsilons}
    if epsilons:
        low, high = min(epsilons), max(epsilons)
        spent = _number(low) if low == high else f"{_number(low)}–{_number(high)}"
        parts.append(f"ε = {spent}" + (f" at δ={deltas.pop():g}" if len(deltas) == 1 and None not in deltas else ""))
    cosines = [f.facts.cosine.mean for f in findings if f.facts.cosine.mean is not None]
    if cosines:
        low, high = min(cosines), max(cosines)
        parts.append(f"cosine to the undefended update {low:.2f}" + (f"–{high:.2f}" if high - low >= 0.005 else ""))
    return ", ".join(parts)


def _number(value: float) -> str:
    return "∞" if math.isinf(value) else f"{value:.3g}"


def verdict(findings: Mapping[tuple[str, int], Finding], defenses: Sequence[str]) -> list[tuple[str, Sentences]]:
    """(heading, sentences) per defense: the deployment as it is first, then each defense given."""
    result = []
    for defense in defenses:
        rows = sorted((f for (d, _), f in findings.items() if d == defense), key=lambda f: f.batch_size)
        if not rows:
            continue
        if defense == "none":
            heading = "Without a defense"
        else:
            facts = defense_facts(rows)
            heading = f"With {defense}" + (f" ({facts})" if facts else "")
        result.append((heading, [sentence(rows, "labels"), sentence(rows, "images")]))
    return result
