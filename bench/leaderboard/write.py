"""The leaderboard of a runs folder: every table in one format, to a file or as text, and its plots.

Example:
    >>> text = write_leaderboard(Path("runs/quick"), None, "md")
    >>> write_leaderboard(Path("runs/paper"), Path("leaderboard/paper.tex"), "latex", Path("leaderboard/plots"))
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from bench.errors import BenchError
from bench.files import write_atomic
from bench.leaderboard.aggregate import DEFAULT_VIEWS, View, tables_for
from bench.leaderboard.plots import write_plots
from bench.leaderboard.render import EXTENSIONS, check_format, closing_note, render
from bench.leaderboard.runs import find_runs


def views_for(metrics: Sequence[str] | None = None, columns: str | None = None) -> tuple[View, ...]:
    """Attack tables of `metrics` over `columns` (defaults: psnr over batch size), then the label track's."""
    if not metrics and not columns:
        return DEFAULT_VIEWS
    attack = tuple(View("attack", m, columns or "batch_size") for m in (metrics or ["psnr"]))
    return attack + DEFAULT_VIEWS[1:]


def leaderboard_path(out: str | Path, format: str) -> Path:
    """`out` itself, or `out/leaderboard.<ext>` when `out` is a folder (existing, or a str ending in a slash)."""
    if Path(out).is_dir() or str(out).endswith(("/", os.sep)):
        return Path(out) / f"leaderboard.{EXTENSIONS[format]}"
    return Path(out)


def write_leaderboard(
    runs_dir: str | Path,
    out: str | Path | None = None,
    format: str = "md",
    plots_dir: str | Path | None = None,
    views: Sequence[View] = DEFAULT_VIEWS,
) -> str:
    """Render the records under `runs_dir`; write the text to `out` (file or folder) when given, and PNG
    plots and per-attack grids to `plots_dir` when given. Returns the text.

    Every file is written atomically; a folder that cannot be written is a BenchError naming it.
    """
    check_format(format)
    runs = find_runs(Path(runs_dir))
    records = runs.records
    tables = tables_for(records, views)
    if not tables:
        tracks = ", ".join(sorted({v.rows for v in views}))
        raise BenchError(f"no records under {runs_dir} belong to the tables asked for ({tracks})")
    text = render(tables, format)
    if runs.skipped:
        names = ", ".join(str(path.relative_to(runs_dir)) for path, _ in runs.skipped)
        text += closing_note(f"{len(runs.skipped)} file(s) under {runs_dir} skipped, not records: {names}", format)
    if out is not None:
        try:
            path = leaderboard_path(out, format)
            write_atomic(path, text)
        except OSError as err:
            raise BenchError(f"cannot write {out}: {err.strerror or err}") from None
    if plots_dir is not None:
        try:
            write_plots(tables, Path(plots_dir), records, runs_dir=Path(runs_dir))
        except OSError as err:
            raise BenchError(f"cannot write plots to {plots_dir}: {err.strerror or err}") from None
    runs.notify()  # after the work succeeded: a refusal stays one line
    return text
