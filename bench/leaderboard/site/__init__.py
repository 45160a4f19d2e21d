"""The leaderboard as a static site: an index of sweeps and one page per sweep, rendered from the records
alone through the same aggregation as every other format. HTML, one style sheet and one small script; no
network, no time stamps, every file name stable.

Example:
    >>> write_site([Path("leaderboard/records/quick")], Path("site"))
    # open site/index.html in a browser
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bench.leaderboard.aggregate import DEFAULT_VIEWS, View
from bench.leaderboard.runs import load_sweeps
from bench.leaderboard.site.output import check_site_folder, write_site_files
from bench.leaderboard.site.pages import MANIFEST, above_floor, build_site
from bench.leaderboard.site.showcase import showcase

__all__ = ["MANIFEST", "above_floor", "build_site", "showcase", "write_site"]


def write_site(runs_dirs: Sequence[str | Path], out: str | Path, views: Sequence[View] = DEFAULT_VIEWS) -> Path:
    """Render the sweeps (one per runs folder) into the folder `out`; returns its index page.

    The target is checked before any work; a previous site there is replaced whole.
    """
    out = Path(out)
    check_site_folder(out)
    write_site_files(build_site(load_sweeps([Path(d) for d in runs_dirs]), views), out)
    return out / "index.html"
