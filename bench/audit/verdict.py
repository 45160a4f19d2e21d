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
from bench.leaderboard.stats import CellStats

Sentences = list[tuple[str, bool]]  # (sentence, whether it reports a leak)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def _ci(cell: CellStats, unit: str, scale: float = 1.0) -> str:
    ci = cell.ci95
    return "" if ci is None else f" ± {scale * ci:.0f}{unit}" if unit == "%" else f" ± {ci:.1f}{unit}"


def _b_list(values: Sequence[int]) -> str:
    return ", ".join(str(b) for b in values)


def _where(leaking: Sequence[int], tested: Sequence[int]) -> str:
    """'at every B ≤ 32', 'up to B = 2', 'at B = 1, 8'."""
    if list(leaking) == list(tested):
        return f"at every B ≤ {tested[-1]}" if len(tested) > 1 else f"at B = {tested[0]}"
    if list(leaking) == list(tested[: len(leaking)]):
        return f"up to B = {leaking[-1]}"
    return f"at B = {_b_list(leaking)}"


def label_sentence(findings: Sequence[Finding]) -> tuple[str, bool]:
    """One sentence on the labels over the batch sizes of one defense (findings in increasing B), and
    whether it reports a leak."""
    tested = [f.batch_size for f in findings]
    leaking = [f for f in findings if f.labels_leak]
    if not any(f.best_labels for f in findings):
        return "Labels: no label-recovery method could run on this update.", False
    if not leaking:
        best = max((f for f in findings if f.best_labels), key=lambda f: f.best_labels.cell.mean)
        return (
            f"Labels do not leak significantly beyond guessing from the class frequencies at any B tested "
            f"(closest: {best.best_labels.method} at B = {best.batch_size}, {_pct(best.best_labels.cell.mean)} "
            f"against {_pct(best.guess)} by guessing).",
            False,
        )
    last = leaking[-1]
    leak = last.leaking_labels
    text = (
        f"Labels leak {_where([f.batch_size for f in leaking], tested)}: at B = {last.batch_size}, "
        f"{_pct(leak.cell.mean)} recovered by {leak.method} (95% CI{_ci(leak.cell, '%', 100) or ' –'}; guessing from "
        f"the class frequencies: {_pct(last.guess)})"
    )
    quiet = [f.batch_size for f in findings if not f.labels_leak]
    return text + (f"; not significantly beyond guessing at B = {_b_list(quiet)}." if quiet else "."), True


def image_sentence(findings: Sequence[Finding]) -> tuple[str, bool]:
    """One sentence on the images over the batch sizes of one defense (findings in increasing B), and
    whether it reports a leak."""
    tested = [f.batch_size for f in findings]
    leaking = [f for f in findings if f.images_leak]
    if not any(f.best_images for f in findings):
        return "Images: no attack applies to this model and update, or none fitted the time allowed.", False
    if not leaking:
        best = max((f for f in findings if f.best_images), key=lambda f: f.best_images.cell.mean)
        return (
            f"No attack reconstructs images significantly better than the prior floor at any B tested within this "
            f"audit's compute (closest: {best.best_images.method} at B = {best.batch_size}, "
            f"{best.best_images.cell.mean:+.1f}{_ci(best.best_images.cell, ' dB') or ' dB'} over the floor).",
            False,
        )
    last = leaking[-1]
    leak: Leak = last.leaking_images
    text = (
        f"Images leak {_where([f.batch_size for f in leaking], tested)}: at B = {last.batch_size}, "
        f"{leak.method} reconstructs them {leak.cell.mean:+.1f} dB over the prior floor (95% CI{_ci(leak.cell, ' dB') or ' –'})"
    )
    quiet = [f.batch_size for f in findings if not f.images_leak]
    return text + (f"; not significantly above the floor at B = {_b_list(quiet)} within this audit's compute." if quiet else "."), True


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
        result.append((heading, [label_sentence(rows), image_sentence(rows)]))
    return result
