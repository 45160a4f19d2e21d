"""What `bench run` says about its runs: one line per finished run, skipped runs grouped by reason (as
`pytest -rs` does), failures with their first line, and the closing count of new and reused runs.

Example:
    >>> run_line(record, done=3, total=6)
    '[3/6] dlg · lenet 16 px B=1 r=0 · labels unknown, BN none · seed 0 · ok · psnr 10.44 dB (gain -2.59) · 0.12 s'
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from bench.attack import ATTACKS, attack_config, config_values
from bench.compute import flops_text
from bench.errors import BenchError
from bench.record import Record
from bench.threat import ThreatModel


def method_text(record: Record) -> str:
    """The method, with its budget (iterations, or FLOPs) and the attack options that differ from its registered
    settings: 'dlg (50 it, lr=0.5)', 'dlg (1.00e9 FLOPs)'."""
    config = record.config
    if "label_method" in config:
        return str(config["label_method"])
    notes = [] if config.get("budget") is None else [f"{config['budget']} it"]
    notes += [] if config.get("flops") is None else [f"{flops_text(config['flops'])} FLOPs"]
    notes += [f"{k}={v}" for k, v in sorted(changed_options(config).items())]
    return f"{config['attack']} ({', '.join(notes)})" if notes else str(config["attack"])


def changed_options(config: dict) -> dict:
    """The recorded attack options whose values differ from the attack's registered settings (here and now)."""
    recorded = config.get("attack_options") or {}
    if config.get("attack") not in ATTACKS:
        return {}
    try:
        registered = config_values(attack_config(config["attack"]))
    except BenchError:
        return {}
    return {k: v for k, v in recorded.items() if registered.get(k) != v}


def case_text(record: Record) -> str:
    """'lenet 16 px B=1 r=0 · labels unknown, BN none · seed 0'."""
    s = record.config["scenario"]
    threat = ThreatModel.from_dict(s["threat"]).short()
    return f"{s['model']} {s['image_size']} px B={s['batch_size']} r={s['repetition']:g} · {threat} · seed {s['seed']}"


def outcome_text(record: Record) -> str:
    """'ok · psnr 10.44 dB (gain -2.59)', 'skipped: <reason>', 'failed: <error line>'."""
    if record.status != "ok":
        return f"{record.status}: {record.error}"
    m = record.metrics
    if "psnr" in m:
        gain = f" (gain {m['psnr_gain']:.2f})" if isinstance(m.get("psnr_gain"), (int, float)) else ""
        return f"ok · psnr {m['psnr']:.2f} dB{gain}" if isinstance(m["psnr"], (int, float)) else "ok"
    return f"ok · label acc {m['label_acc']:.3f}" if isinstance(m.get("label_acc"), (int, float)) else "ok"


def run_line(record: Record, done: int, total: int, reused: bool = False) -> str:
    """One finished run on one line: which, on what, how it went, the main metric and the method's seconds."""
    seconds = (record.cost or {}).get("wall_s")
    parts = [f"[{done}/{total}] {method_text(record)}", case_text(record), outcome_text(record)]
    parts += [f"{seconds:.2f} s"] if isinstance(seconds, (int, float)) else []
    parts += ["reused (--resume)"] if reused else []
    return " · ".join(parts)


def skip_lines(records: Sequence[Record]) -> list[str]:
    """Skipped runs grouped by method and reason, most frequent first: 'skipped [15] idlg: <reason>'."""
    groups = Counter((method_text(r), r.error or "no reason given") for r in records if r.status == "skipped")
    return [f"skipped [{n}] {method}: {reason}" for (method, reason), n in sorted(groups.items(), key=lambda g: (-g[1], g[0]))]


def failure_lines(records: Sequence[Record], out_dir: Path) -> list[str]:
    """Each failed run with the first line of its error and where its traceback lies."""
    return [
        f"failed: {method_text(r)} · {case_text(r)}: {(r.error or '').splitlines()[0] if r.error else 'no error text'} "
        f"(traceback in {out_dir / f'{r.run_id}.json'})"
        for r in records
        if r.status == "failed"
    ]


def closing_line(records: Sequence[Record], reused: int, seconds: float, out_dir: Path) -> str:
    """'6 runs in 4.4 s (5 new, 1 reused): 5/6 ok, 0 failed, 1 skipped; records in runs/quick'."""
    status = Counter(r.status for r in records)
    return (
        f"{runs(len(records))} in {duration(seconds)} ({len(records) - reused} new, {reused} reused): "
        f"{status['ok']}/{len(records)} ok, {status['failed']} failed, {status['skipped']} skipped; records in {out_dir}"
    )


def runs(n: int) -> str:
    return f"{n} run{'' if n == 1 else 's'}"


def duration(seconds: float) -> str:
    """'4.4 s', '12 min 5 s', '3 h 2 min'."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"
