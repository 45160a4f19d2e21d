"""Atomic writes: a temporary file (or folder) beside the target, then a rename. Never a half-written file.

A temporary name carries its writer's identity, `.<target>.<host>.<pid>.<token>.partial`, so a later run
removes only leftovers it can prove dead (same host, process gone): another run writing to the same
folder keeps its files in flight, and a user's `.settings.json.bak` is never touched. Files and folders are
created with the user's umask, like any other tool's (a shared results folder stays readable by the team).

Also the on-disk cache of computed tensors (trained model states, dataset mean images): safetensors files
under `default_cache_dir()`, written atomically; a damaged entry reads as missing and is recomputed.

Example:
    >>> write_atomic(Path("runs/quick/0123abcd.json"), text)
    >>> remove_dead_leftovers(Path("runs/quick"))  # what killed writers left behind
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import secrets
import shutil
import socket
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

SUFFIX = ".partial"
_LEFTOVER = re.compile(r"^\.(?P<rest>.+)\.(?P<pid>\d+)\.(?P<token>[0-9a-f]{12})" + re.escape(SUFFIX) + "$")
_TARGET_CHARS = 100  # of the target's name kept in the temporary name (NAME_MAX is 255)
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2  # <fcntl.h>, <linux/fs.h>


def partial_path(target: Path) -> Path:
    """A fresh temporary name beside `target` that says who writes it: host, process id, random token."""
    name = target.name[:_TARGET_CHARS]
    return target.parent / f".{name}.{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(6)}{SUFFIX}"


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write `data` to `path` all or nothing; an OSError (full disk, read-only) leaves no temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    try:
        # O_EXCL: never reuse a name; mode 0o666 is narrowed by the umask, as open() does
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            err.filename = str(path)  # the file the user asked for, not our temporary name
        raise


def make_partial_folder(target: Path) -> Path:
    """An empty temporary folder beside `target` (created with the umask) to fill and then rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(target)
    tmp.mkdir(mode=0o777)
    return tmp


def _writer_is_dead(host: str, pid: int) -> bool:
    if host != socket.gethostname():
        return False  # another machine's process (a shared file system): we cannot tell
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False


def is_dead_leftover(name: str) -> bool:
    """Whether `name` is a temporary name of ours whose writer provably no longer runs."""
    match = _LEFTOVER.match(name)
    if match is None:
        return False
    host = socket.gethostname()
    if not match["rest"].endswith(f".{host}"):
        return False
    return _writer_is_dead(host, int(match["pid"]))


def remove_dead_leftovers(folder: Path) -> list[Path]:
    """Remove the temporary files and folders in `folder` whose writers are dead; return what was removed."""
    removed = []
    if Path(folder).is_dir():
        for path in Path(folder).iterdir():
            if is_dead_leftover(path.name):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def replace_folder(filled: Path, target: Path) -> None:
    """Put the folder `filled` at `target` atomically; an existing `target` is swapped out, then removed.

    On Linux the swap is one renameat2(RENAME_EXCHANGE): at every instant `target` is the old folder or the
    new one. Where that is unsupported, the old folder is first renamed to a temporary name.
    """
    try:
        os.replace(filled, target)  # no target, or an empty folder: a plain rename
        return
    except OSError as err:
        if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
    if _exchange(filled, target):
        shutil.rmtree(filled)  # now the old folder
        return
    old = partial_path(target)
    os.replace(target, old)
    os.replace(filled, target)
    shutil.rmtree(old)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2); False where the call or the file system lacks it."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def default_cache_dir() -> Path:
    """$BENCH_CACHE, else ~/.cache/gibench."""
    return Path(os.environ.get("BENCH_CACHE") or Path.home() / ".cache" / "gibench")


def read_tensors(path: str | Path) -> dict[str, torch.Tensor] | None:
    """The tensors of a cache file on CPU, or None when it is missing or damaged (to be recomputed)."""
    try:
        return st_load(Path(path).read_bytes())
    except (SafetensorError, OSError):
        return None


def write_tensors(path: str | Path, tensors: Mapping[str, torch.Tensor]) -> None:
    """Write a cache file atomically."""
    write_atomic(path, st_save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}))
