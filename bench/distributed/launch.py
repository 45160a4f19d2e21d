"""Running `python -m bench run` on several local ranks, or under torchrun.

`python -m bench run --nproc N ...` re-invokes itself N times with torchrun's environment variables
(RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1, MASTER_PORT=<free port>);
`torchrun --nproc-per-node N -m bench run ...` sets the same variables itself. Either way a rank calls
`world_from_env` to join the process group. Rank 0 alone writes records and images (`is_writer`).

If a rank fails, the launcher names the rank that failed first and how (exit code, signal, or no heartbeat
within the heartbeat timeout: stopped or frozen), gives the others a short grace period to stop on their
own (their collectives fail once a peer is gone, or after the collective timeout), then terminates them; a
terminated rank raises SystemExit, so `finally` blocks and atomic writers clean up their temporary files.
Ranks end when their launcher dies, even by SIGKILL (bench.heartbeat).

Example:
    >>> if should_spawn(args.nproc):
    ...     return spawn_local(args.nproc, sys.argv[1:])
    >>> collective = world_from_env(args.device)  # None for a single process
"""

from __future__ import annotations

import os
import queue
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.engine.collective import DEFAULT_TIMEOUT_S, Collective, TorchCollective, close_world, open_world
from bench.errors import BenchError
from bench.heartbeat import FD_VARIABLE, LAUNCHER_VARIABLE, follow_launcher

LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
TIMEOUT_VARIABLE = "BENCH_COLLECTIVE_TIMEOUT_S"  # passed from the launcher to its ranks
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _env_int(name: str, default: str | None = None) -> int:
    value = os.environ.get(name, default)
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise BenchError(f"environment variable {name}={value!r} is not an integer") from None


def launched() -> bool:
    """Whether this process is one rank of a multi-process launch (torchrun or `--nproc`)."""
    return world_size_from_env() > 1


def world_size_from_env() -> int:
    return _env_int("WORLD_SIZE", "1")


def probes_output() -> bool:
    """Whether this process checks that the output folder can be written: a single process, or rank 0 of a
    launch (the ranks share the folder; probing it at once, one rank would remove the folder it created
    while another writes its probe in it)."""
    return not launched() or _env_int("RANK", "0") == 0


def local_world_size_from_env() -> int:
    """Ranks of this launch on this machine (torchrun's LOCAL_WORLD_SIZE; all of them if unset)."""
    return _env_int("LOCAL_WORLD_SIZE", str(world_size_from_env()))


def should_spawn(nproc: int | None) -> bool:
    """Whether `--nproc nproc` asks this process to start the ranks (not already one of them)."""
    return nproc is not None and nproc > 1 and not launched()


def rank_device(device: torch.device | str) -> torch.device:
    """The device of this rank: an unindexed "cuda" becomes cuda:LOCAL_RANK under a launch."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and launched():
        return torch.device("cuda", _env_int("LOCAL_RANK", "0"))
    return device


def world_from_env(device: torch.device | str = "cpu", timeout_s: float | None = None) -> TorchCollective | None:
    """Join the process group described by torchrun-style environment variables; None for one process.

    The backend follows `device` (NCCL on CUDA, gloo on CPU); collectives give up after `timeout_s`
    (default: $BENCH_COLLECTIVE_TIMEOUT_S, else 90 s).
    """
    if not launched():
        return None
    missing = [name for name in LAUNCH_VARIABLES if name not in os.environ]
    if missing:
        raise BenchError(f"multi-process launch without {', '.join(missing)} in the environment; use torchrun or --nproc")
    rank, world_size = _env_int("RANK"), _env_int("WORLD_SIZE")
    if not 0 <= rank < world_size:
        raise BenchError(f"RANK={rank} is outside WORLD_SIZE={world_size}")
    if timeout_s is None:
        timeout_s = float(os.environ.get(TIMEOUT_VARIABLE, DEFAULT_TIMEOUT_S))
    follow_launcher()
    exit_on_sigterm()
    return open_world(
        rank_device(device),
        rank,
        world_size,
        address=os.environ["MASTER_ADDR"],
        port=_env_int("MASTER_PORT"),
        timeout_s=timeout_s,
    )


@contextmanager
def world(device: torch.device | str = "cpu", timeout_s: float | None = None) -> Iterator[TorchCollective | None]:
    """`world_from_env` for the duration of a block; the process group is closed when it ends."""
    collective = world_from_env(device, timeout_s)
    try:
        yield collective
        if collective is not None:
            torch.distributed.barrier(collective.group)  # every rank done before any leaves: a gloo peer that vanishes aborts the others
    finally:
        if collective is not None:
            close_world()


def is_writer(collective: Collective | None) -> bool:
    """Rank 0 (or the only process) writes records, images and summaries; the other ranks only compute."""
    return collective is None or collective.rank == 0


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so cleanup code runs when the launcher stops this rank."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_exit)


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def free_port(address: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


def rank_environment(rank: int, nproc: int, port: int, timeout_s: float, base: dict[str, str]) -> dict[str, str]:
    """The environment of local rank `rank`: torchrun's variables, one share of the CPU threads."""
    env = dict(base)
    # ranks import the same `bench` as this process, whatever their working directory
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), base.get("PYTHONPATH")]))
    env.update(
        RANK=str(rank),
        WORLD_SIZE=str(nproc),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(nproc),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        **{TIMEOUT_VARIABLE: str(timeout_s)},
    )
    # N ranks each using every core would oversubscribe the CPU (torchrun sets 1 thread for the same reason)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return env


def spawn_local(
    nproc: int,
    argv: Sequence[str],
    program: Sequence[str] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    grace_s: float = 10.0,
    heartbeat_timeout_s: float | None = None,
) -> int:
    """Run `program argv` (default `python -m bench argv`) as ranks 0..nproc-1; return the exit code.

    0 when every rank succeeds. When a rank fails (the first to: it exits non-zero, is killed by a signal,
    or sends no heartbeat for `heartbeat_timeout_s`, default a third of the collective timeout), it is
    named on stderr, the others are stopped within `grace_s` seconds (plus a few for SIGKILL), and its
    exit code (at least 1) is returned.
    """
    if nproc < 1:
        raise BenchError(f"--nproc must be at least 1, got {nproc}")
    command = list(program) if program is not None else [sys.executable, "-m", "bench"]
    port = free_port()
    ranks: list[_Rank] = []
    previous = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
    exit_on_sigterm()  # a launcher stopped by SIGTERM still stops its ranks (the finally below)
    try:
        for r in range(nproc):
            env = rank_environment(r, nproc, port, timeout_s, dict(os.environ))
            ranks.append(_Rank.start(command + list(argv), env))
        return _supervise(ranks, grace_s, heartbeat_timeout_s or timeout_s / 3)
    except KeyboardInterrupt:
        print("interrupted; stopping every rank", file=sys.stderr)
        return 130
    finally:
        _stop([rank.process for rank in ranks], grace_s=0.0)  # nothing left to stop when every rank has ended
        for rank in ranks:
            os.close(rank.heartbeats)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


@dataclass
class _Rank:
    """A started rank: its process and the read end of its heartbeat pipe."""

    process: subprocess.Popen
    heartbeats: int
    last_beat: float | None = None  # None until the first beat: importing torch may take long

    @classmethod
    def start(cls, command: list[str], env: dict[str, str]) -> "_Rank":
        read_end, write_end = os.pipe()
        env = {**env, FD_VARIABLE: str(write_end), LAUNCHER_VARIABLE: str(os.getpid())}
        try:
            process = subprocess.Popen(command, env=env, pass_fds=(write_end,))
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        return cls(process, read_end)


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _supervise(ranks: list[_Rank], grace_s: float, heartbeat_timeout_s: float) -> int:
    """Wait for every rank; on the first failure (in the order they happened) name it and stop the rest."""
    ended: queue.Queue[tuple[int, int]] = queue.Queue()  # (rank, exit code), in the order the ranks ended
    for r, rank in enumerate(ranks):
        threading.Thread(target=lambda r=r, p=rank.process: ended.put((r, p.wait())), daemon=True).start()
    with selectors.DefaultSelector() as watch:
        for r, rank in enumerate(ranks):
            watch.register(rank.heartbeats, selectors.EVENT_READ, r)
        running = set(range(len(ranks)))
        while running:
            while not ended.empty():
                r, code = ended.get()
                running.discard(r)
                if code != 0:
                    return _fail(ranks, r, _describe(code), code if code > 0 else 128 - code, grace_s)
            for key, _ in watch.select(timeout=0.05):
                if os.read(key.fd, 4096):
                    ranks[key.data].last_beat = time.monotonic()
                else:
                    watch.unregister(key.fd)  # the rank is ending; its exit code follows
            now = time.monotonic()
            for r in sorted(running):
                last = ranks[r].last_beat
                if last is not None and now - last > heartbeat_timeout_s and ranks[r].process.poll() is None:
                    how = f"sent no heartbeat for {heartbeat_timeout_s:g} s (stopped or frozen)"
                    return _fail(ranks, r, how, 1, grace_s)
    return 0


def _fail(ranks: list[_Rank], rank: int, how: str, code: int, grace_s: float) -> int:
    print(f"error: rank {rank} {how}; stopping the other ranks", file=sys.stderr)
    _stop([r.process for r in ranks], grace_s)
    return code


def _stop(ranks: list[subprocess.Popen], grace_s: float) -> None:
    """Let running ranks end on their own for grace_s, then SIGTERM, then SIGKILL after 5 s more."""
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(p.poll() is None for p in ranks):
        time.sleep(0.05)
    for p in ranks:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + 5.0
    for p in ranks:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
