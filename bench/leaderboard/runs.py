"""Find the records under a runs folder (subfolders included), refusing anything ambiguous.

A JSON file that is not a record (malformed, not an object, without a config, ...) is skipped, never
silently: it is named in a notice and counted in the rendered leaderboard's closing note. Case files
(`case.json`, `secret.json`) lying beside records are not records and are passed over.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from bench.case import CASE_FILES
from bench.errors import BenchError
from bench.record import Record, load_record


class SkippedFileWarning(UserWarning):
    """A JSON file under a runs folder that is not a record."""


@dataclass(frozen=True)
class Runs:
    """The records found under a folder, and the JSON files that were not records (path, why)."""

    records: list[Record]
    skipped: list[tuple[Path, str]]

    def notify(self) -> None:
        """One notice per skipped file (the CLI prints each as one `note:` line)."""
        for _, why in self.skipped:
            warnings.warn(f"skipped {why}", SkippedFileWarning, stacklevel=2)


def find_runs(runs_dir: Path) -> Runs:
    """Every record below `runs_dir`, sorted by run id, and the files that are not records (see `notify`).

    A run id seen in two files would count one run twice in every mean, so it is an error.
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise BenchError(f"runs folder {runs_dir} does not exist (pass --runs DIR with the records of a sweep)")
    seen: dict[str, Path] = {}
    records, skipped = [], []
    for path in sorted(runs_dir.rglob("*.json")):
        if path.name in CASE_FILES:
            continue
        try:
            record = load_record(path)
        except BenchError as err:
            skipped.append((path, str(err)))
            continue
        if record.run_id in seen:
            raise BenchError(f"run {record.run_id} is recorded twice: {seen[record.run_id]} and {path}")
        seen[record.run_id] = path
        records.append(record)
    if not records:
        raise BenchError(f"no records (*.json) under {runs_dir}" + (f"; {len(skipped)} file(s) skipped" if skipped else ""))
    return Runs(sorted(records, key=lambda r: r.run_id), skipped)


def load_runs(runs_dir: Path) -> list[Record]:
    """The records of `find_runs` (files that are not records are named in notices and left out)."""
    runs = find_runs(runs_dir)
    runs.notify()
    return runs.records
