"""Files are written whole, with the user's umask, and never deleted unless this program wrote them and its
writer is provably gone: runs sharing a folder, a user's files beside records, cases replaced in place."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bench.case import save_case
from bench.cli import main
from bench.files import is_dead_leftover, partial_path, remove_dead_leftovers, write_atomic

ROOT = Path(__file__).resolve().parents[1]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_only_dead_writers_leftovers_are_removed(tmp_path: Path):
    host = socket.gethostname()
    dead, alive = _dead_pid(), os.getpid()
    names = {
        "dead": f".abc.json.{host}.{dead}.0123456789ab.partial",
        "alive": f".abc.json.{host}.{alive}.0123456789ab.partial",
        "other-host": f".abc.json.elsewhere.{dead}.0123456789ab.partial",
        "user-backup": ".settings.json.bak",
        "user-dotfile": ".abc.json.1234",  # the pattern a former version cleaned up: not ours to delete
        "user-file": "notes.partial",
    }
    for name in names.values():
        (tmp_path / name).write_text("x")
    (tmp_path / f".case.{host}.{dead}.ffffffffffff.partial").mkdir()  # a killed `case make`
    removed = remove_dead_leftovers(tmp_path)
    assert sorted(p.name for p in removed) == sorted([names["dead"], f".case.{host}.{dead}.ffffffffffff.partial"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(v for k, v in names.items() if k != "dead")
    assert is_dead_leftover(partial_path(tmp_path / "x.json").name) is False  # our own, in flight


def test_two_runs_into_one_folder_both_finish(tmp_path: Path):
    """Each run cleans only dead writers' leftovers, so neither breaks the other's writes in flight."""
    out = tmp_path / "shared"
    out.mkdir()
    (out / ".settings.json.bak").write_text("the user's")
    args = ["-m", "bench", "run", "--preset", "smoke", "--attacks", "noise", "--seeds", "0,1,2,3,4,5", "--out", str(out)]
    runs = [subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]  # fmt: skip
    results = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], results
    records = sorted(out.glob("*.json"))
    assert len(records) == 6 and len({json.loads(p.read_text())["run_id"] for p in records}) == 6  # each cell once
    assert all(json.loads(p.read_text())["status"] == "ok" for p in records)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [".settings.json.bak"]


@pytest.fixture
def umask_027():
    previous = os.umask(0o027)
    yield 0o027
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_records_images_and_cases_follow_the_umask(tmp_path: Path, umask_027, small_case):
    out = tmp_path / "runs"
    assert main(["run", "--preset", "smoke", "--attacks", "noise", "--out", str(out)]) == 0
    written = sorted(out.iterdir())
    assert {p.suffix for p in written} == {".json", ".png", ".txt"}  # records, their images, runs.txt
    assert {_mode(p) for p in written} == {0o640}  # 0o666 & ~0o027, as any tool would create them
    write_atomic(tmp_path / "board.md", "text")
    assert _mode(tmp_path / "board.md") == 0o640
    case, secret = small_case
    folder = save_case(case, tmp_path / "case", secret)
    assert _mode(folder) == 0o750 and {_mode(p) for p in folder.iterdir()} == {0o640}


def test_case_make_replaces_a_case_whole_and_keeps_anything_else(tmp_path: Path, small_case):
    case, secret = small_case
    folder = save_case(case, tmp_path / "c", secret)
    before = (folder / "case.json").read_bytes()
    inode = folder.stat().st_ino
    save_case(case, folder)  # the attacker's files only: the secret files of the old case go with it
    assert sorted(p.name for p in folder.iterdir()) == ["case.json", "case.safetensors"]
    assert (folder / "case.json").read_bytes() == before and folder.stat().st_ino != inode  # a new folder, swapped in
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    (folder / "notes.txt").write_text("mine")
    command = ["case", "make", "--model", "lenet", "--image-size", "16", "--batch-size", "2", "--out", str(folder)]
    assert main(command) == 2
    assert (folder / "notes.txt").read_text() == "mine" and (folder / "case.json").read_bytes() == before
