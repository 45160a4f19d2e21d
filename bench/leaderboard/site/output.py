"""Writing a site folder whole: built beside the target, then swapped in, so a reader never sees half a
site and an error leaves the old one as it was.

A folder is replaced only when it is empty or holds nothing but the files a previous rendering listed in
its manifest; anything else in it is the user's and the command refuses before doing any work.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path

from bench.errors import BenchError
from bench.leaderboard.site.pages import MANIFEST


def check_site_folder(out: Path, flag: str = "--site", what: str = "a site") -> None:
    """Refuse a target that is a file, or a folder holding files no earlier rendering wrote (the files its
    manifest lists); `flag` and `what` name the option and the rendering in the message."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BenchError(f"{flag} {out} is a file; give a folder for {what}")
    if not out.is_dir():
        return
    present = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if not p.is_dir())
    if not present:
        return
    manifest = out / MANIFEST
    try:
        listed = set(manifest.read_text().splitlines()) if manifest.is_file() else set()
    except (OSError, UnicodeDecodeError) as err:
        raise BenchError(f"cannot read {manifest}: {err}") from None
    foreign = [name for name in present if name not in listed]
    if foreign:
        raise BenchError(
            f"{flag} {out} holds {foreign[0]}, which no earlier rendering of {what} wrote; "
            f"give a new or empty folder, or one holding {what}"
        )


def write_site_files(files: Mapping[str, bytes | Path], out: Path) -> None:
    """Write every file (bytes, or a file copied byte for byte) into `out`, replacing a previous site."""
    out = Path(out)
    check_site_folder(out)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    stage, old = out.parent / f".{out.name}.new-{tag}", out.parent / f".{out.name}.old-{tag}"
    try:
        for name, content in files.items():
            target = stage / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, Path):
                shutil.copyfile(content, target)
            else:
                target.write_bytes(content)
        if out.exists():
            out.rename(old)
        stage.rename(out)
    except OSError as err:
        shutil.rmtree(stage, ignore_errors=True)
        if old.exists() and not out.exists():
            old.rename(out)
        raise BenchError(f"cannot write the site to {out}: {err.strerror or err}") from None
    shutil.rmtree(old, ignore_errors=True)
