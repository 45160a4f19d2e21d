"""A spawned rank's link to its launcher: a heartbeat out, and the rank's end when the launcher is gone.

The launcher (`bench.distributed.launch.spawn_local`) gives each rank the write end of a pipe. A daemon
thread in the rank writes one byte per HEARTBEAT_S: the launcher reads them, so a rank that stops beating
(stopped, frozen) is named; when the launcher dies the pipe breaks (or the rank's parent changes) and the
rank ends: SIGTERM first, so `finally` blocks and atomic writers clean up, then a hard exit after GRACE_S.

Deliberately light (no torch): `follow_launcher` runs first thing in a rank, before heavy imports.

Example:
    >>> follow_launcher()  # a no-op unless this process is a rank started by spawn_local
"""

from __future__ import annotations

import os
import signal
import threading
import time

FD_VARIABLE = "BENCH_HEARTBEAT_FD"
LAUNCHER_VARIABLE = "BENCH_LAUNCHER_PID"
HEARTBEAT_S = 0.5
GRACE_S = 5.0

_following = threading.Event()


def follow_launcher() -> bool:
    """Start beating to the launcher and watching it, when this process is one of its ranks (once)."""
    fd, launcher = os.environ.pop(FD_VARIABLE, None), os.environ.pop(LAUNCHER_VARIABLE, None)
    if fd is None or launcher is None or _following.is_set():
        return _following.is_set()
    _following.set()
    os.set_inheritable(int(fd), False)  # processes this rank starts must not hold the launcher's pipe open
    os.set_blocking(int(fd), False)  # a launcher that stops reading never blocks the rank
    threading.Thread(target=_beat, args=(int(fd), int(launcher)), name="launcher-heartbeat", daemon=True).start()
    return True


def _beat(fd: int, launcher: int) -> None:
    while os.getppid() == launcher:
        try:
            os.write(fd, b".")
        except BlockingIOError:
            pass  # the launcher is alive but busy; the pipe is full of earlier beats
        except OSError:
            break  # broken pipe: the launcher is gone
        time.sleep(HEARTBEAT_S)
    _end_orphan()


def _end_orphan() -> None:
    os.kill(os.getpid(), signal.SIGTERM)  # unwinds a rank that turned SIGTERM into SystemExit, else ends it
    time.sleep(GRACE_S)
    os._exit(128 + signal.SIGTERM)  # still here: the main thread is stuck in a collective
