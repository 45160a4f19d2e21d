"""Find the records under a runs folder (subfolders included), refusing anything ambiguous.

A runs folder is one sweep: its records and the files they were read from (a run's image grid
`<run_id>.png` lies next to its record `<run_id>.json`). A JSON file that is not a record (malformed, not an
object, without a config, ...) is skipped, never silently: it is named in a notice and counted in the
rendered leaderboard's closing note. Case files (`case.json`, `secret.json`) lying beside records are not
records and are passed over.

Example:
    >>> sweep = load_sweep(Path("leaderboard/records/quick"))
    >>> sweep.name, len(sweep.records), sweep.files[sweep.records[0].run_id]
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.case import CASE_FILES
from bench.errors import BenchError
from bench.record import Record, load_record


class SkippedFileWarning(UserWarning):
    """A JSON file under a runs folder that is not a record."""


@dataclass(frozen=True)
class Sweep:
    """The records of one runs folder, sorted by run id, the file each was read from, and the JSON files
    that were not records (path, why)."""

    name: str
    folder: Path
    records: tuple[Record, ...]
    files: dict[str, Path]
    skipped: tuple[tuple[Path, str], ...] = ()

    def grid(self, run_id: str) -> Path | None:
        """The run's image grid next to its record, when it was written."""
        path = self.files[run_id].with_suffix(".png")
        return path if path.is_file() else None

    def notify(self) -> None:
        """One notice per skipped file (the CLI prints each as one `note:` line)."""
        for _, why in self.skipped:
            warnings.warn(f"skipped {why}", SkippedFileWarning, stacklevel=2)


def sweep_name(folder: Path) -> str:
    """The folder's own name, kept to letters, digits, '.', '_' and '-' (it names files and pages)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(folder).resolve().name).strip("-.")
    return name or "runs"


def load_sweep(runs_dir: Path) -> Sweep:
    """Every record below `runs_dir`, and the files that are not records (see `Sweep.notify`). A run id seen
    in two files would count one run twice in every mean, so it is an error."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise BenchError(f"runs folder {runs_dir} does not exist (pass --runs DIR with the records of a sweep)")
    files: dict[str, Path] = {}
    records, skipped = [], []
    for path in sorted(runs_dir.rglob("*.json")):
        if path.name in CASE_FILES:
            continue
        try:
            record = load_record(path)
        except BenchError as err:
            skipped.append((path, str(err)))
            continue
        if record.run_id in files:
            raise BenchError(f"run {record.run_id} is recorded twice: {files[record.run_id]} and {path}")
        files[record.run_id] = path
        records.append(record)
    if not records:
        raise BenchError(f"no records (*.json) under {runs_dir}" + (f"; {len(skipped)} file(s) skipped" if skipped else ""))
    return Sweep(sweep_name(runs_dir), runs_dir, tuple(sorted(records, key=lambda r: r.run_id)), files, tuple(skipped))


def load_sweeps(runs_dirs: Sequence[Path]) -> list[Sweep]:
    """One sweep per folder, in the order given; two folders of the same name would share pages."""
    sweeps = [load_sweep(Path(d)) for d in runs_dirs]
    names = [s.name for s in sweeps]
    for name in names:
        if names.count(name) > 1:
            raise BenchError(f"two runs folders are named {name!r}; each sweep needs a folder of its own name")
    return sweeps


def load_runs(runs_dir: Path) -> list[Record]:
    """Every record below `runs_dir`, sorted by run id (files that are not records are named in notices)."""
    sweep = load_sweep(runs_dir)
    sweep.notify()
    return list(sweep.records)
