"""Find the records under a runs folder (subfolders included), refusing anything ambiguous."""

from __future__ import annotations

import json
from pathlib import Path

from bench.errors import BenchError
from bench.record import Record, load_record


def _is_record(path: Path) -> bool:
    """Records are JSON objects with a run id, config and status; case files and others lie beside them."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return True  # let load_record name the problem rather than skip a broken record
    return isinstance(data, dict) and {"run_id", "config", "status"} <= set(data)


def load_runs(runs_dir: Path) -> list[Record]:
    """Every record below `runs_dir`, sorted by run id.

    A run id seen in two files would count one run twice in every mean, so it is an error.
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise BenchError(f"runs folder {runs_dir} does not exist (pass --runs DIR with the records of a sweep)")
    seen: dict[str, Path] = {}
    records = []
    for path in sorted(runs_dir.rglob("*.json")):
        if not _is_record(path):
            continue
        record = load_record(path)
        if record.run_id in seen:
            raise BenchError(f"run {record.run_id} is recorded twice: {seen[record.run_id]} and {path}")
        seen[record.run_id] = path
        records.append(record)
    if not records:
        raise BenchError(f"no records (*.json) under {runs_dir}")
    return sorted(records, key=lambda r: r.run_id)
