"""Find the records under a runs folder (subfolders included), refusing anything ambiguous.

A runs folder is one sweep: its records and the files they were read from (a run's image grid
`<run_id>.png` lies next to its record `<run_id>.json`).

Example:
    >>> sweep = load_sweep(Path("leaderboard/records/quick"))
    >>> sweep.name, len(sweep.records), sweep.files[sweep.records[0].run_id]
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Sweep:
    """The records of one runs folder, sorted by run id, and the file each was read from."""

    name: str
    folder: Path
    records: tuple[Record, ...]
    files: dict[str, Path]

    def grid(self, run_id: str) -> Path | None:
        """The run's image grid next to its record, when it was written."""
        path = self.files[run_id].with_suffix(".png")
        return path if path.is_file() else None


def sweep_name(folder: Path) -> str:
    """The folder's own name, kept to letters, digits, '.', '_' and '-' (it names files and pages)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(folder).resolve().name).strip("-.")
    return name or "runs"


def load_sweep(runs_dir: Path) -> Sweep:
    """Every record below `runs_dir`. A run id seen in two files would count one run twice in every mean,
    so it is an error."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise BenchError(f"runs folder {runs_dir} does not exist (pass --runs DIR with the records of a sweep)")
    files: dict[str, Path] = {}
    records = []
    for path in sorted(runs_dir.rglob("*.json")):
        if not _is_record(path):
            continue
        record = load_record(path)
        if record.run_id in files:
            raise BenchError(f"run {record.run_id} is recorded twice: {files[record.run_id]} and {path}")
        files[record.run_id] = path
        records.append(record)
    if not records:
        raise BenchError(f"no records (*.json) under {runs_dir}")
    return Sweep(sweep_name(runs_dir), runs_dir, tuple(sorted(records, key=lambda r: r.run_id)), files)


def load_sweeps(runs_dirs: Sequence[Path]) -> list[Sweep]:
    """One sweep per folder, in the order given; two folders of the same name would share pages."""
    sweeps = [load_sweep(Path(d)) for d in runs_dirs]
    names = [s.name for s in sweeps]
    for name in names:
        if names.count(name) > 1:
            raise BenchError(f"two runs folders are named {name!r}; each sweep needs a folder of its own name")
    return sweeps


def load_runs(runs_dir: Path) -> list[Record]:
    """Every record below `runs_dir`, sorted by run id (see load_sweep)."""
    return list(load_sweep(runs_dir).records)
