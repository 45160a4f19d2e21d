"""The report folder, written whole or not at all.

Everything an audit writes (its records as they complete, then the report) goes into a temporary folder
beside the target, `.<name>.<host>.<pid>.<token>.partial` (bench.files), which replaces the target in one
rename once the report is complete; an audit that fails or is interrupted removes it, and leaves the target
as it was. The target may be new, empty, or an earlier audit report (every file listed in its manifest and a
`report.json` of an audit): anything else in it is the user's, and the audit refuses before any work.

Example:
    >>> check_report_folder(Path("audit"))
    >>> with report_folder(Path("audit")) as partial:
    ...     run_cells(cells, partial / RECORDS)   # records land in the partial folder
    ...     write_report(partial, ...)            # then the report; on leaving, it becomes audit/
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.errors import BenchError
from bench.files import make_partial_folder, remove_dead_leftovers, replace_folder
from bench.leaderboard.site.output import check_site_folder
from bench.leaderboard.site.pages import MANIFEST

REPORT_KIND = "gibench-audit"
REPORT_JSON = "report.json"
RECORDS = "records"


def check_report_folder(out: Path) -> None:
    """Refuse a file, the working folder, or a folder holding anything but an earlier audit report."""
    out = Path(os.path.abspath(out))
    if out.is_dir() and Path.cwd().is_relative_to(out.resolve()):
        raise BenchError(f"--out {out} is the working folder (or holds it); give a folder for the report inside it")
    check_site_folder(out, "--out", "an audit report")
    if out.is_dir() and any(out.iterdir()) and _kind(out / REPORT_JSON) != REPORT_KIND:
        raise BenchError(f"--out {out} holds files but no audit's {REPORT_JSON}; give a new or empty folder, or an earlier audit report")


def _kind(path: Path) -> str | None:
    try:
        return json.loads(path.read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return None


def write_manifest(folder: Path) -> None:
    """List every file of the folder (and the manifest itself), so a later audit may replace them."""
    names = sorted({p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} | {MANIFEST})
    (folder / MANIFEST).write_text("".join(f"{name}\n" for name in names))


@contextmanager
def report_folder(out: Path) -> Iterator[Path]:
    """A fresh partial folder beside `out` (with `records/` in it) to fill; put in place of `out` when the
    block ends normally, removed when it raises."""
    out = Path(os.path.abspath(out))
    if out.parent.is_dir():
        remove_dead_leftovers(out.parent)  # what killed audits left beside it
    partial = make_partial_folder(out)
    try:
        (partial / RECORDS).mkdir()
        yield partial
        write_manifest(partial)
        check_report_folder(out)  # still nothing of the user's there (one may have added a file meanwhile)
        replace_folder(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
