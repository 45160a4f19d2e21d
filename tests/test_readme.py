"""The README is the contract: CI installs and tests with exactly its Quickstart commands, and every other
command it shows runs as shown (here at the smallest scale that exercises it: flags appended to the
command override its sizes; nothing else changes).

Commands are read from the README's bash blocks, so a command added there is run here without a change to
this file (with the default scaling of its subcommand).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# .ci/run runs these in a fresh virtual environment; running the suite from inside the suite would recurse
RUN_BY_CI = ("pip install", "python -m pytest")
# (pattern, flags appended): the first pattern found in a command scales it
SCALE = [
    (r"bench run .*--track labels .*--num-classes 1000", ["--image-size", "32", "--batch-sizes", "32", "--seeds", "0"]),
    (r"bench run .*--track labels", ["--image-size", "32", "--batch-sizes", "8", "--seeds", "0"]),
    (r"bench run .*--preset paper", ["--image-size", "32", "--batch-sizes", "8", "--repetitions", "0", "--seeds", "0",
                                     "--budget", "1", "--attacks", "noise,dlg"]),  # fmt: skip
    (r"bench run .*--models resnet18", ["--budget", "1", "--seeds", "0", "--batch-sizes", "2", "--image-size", "16"]),
    (r"bench run .*--flops", ["--flops", "2e8", "--seeds", "0"]),
    # a tuning and its scoring at the same small setting (a tuned study applies to its own setting only)
    (r"bench tune", ["--models", "lenet", "--batch-sizes", "1", "--flops", "1e8", "--tune-seeds", "100", "--trials", "2"]),
    (r"bench run .*--preset quick --attacks dlg,inverting-gradients", ["--models", "lenet", "--batch-sizes", "1", "--flops", "1e8", "--seeds", "0"]),
    (r"bench run", ["--budget", "1", "--seeds", "0"]),
    (r"bench check --suite .*--update", ["--only", "dlg", "--imitate", "none"]),  # the kernels' runs: tests/test_check.py
    (r"bench check --suite", ["--only", "dlg"]),  # the user's gate on the README's my_sweep.yaml, DLG's entries
    (r"bench check", ["--only", "llg"]),  # the whole gate is CI's last step; tests/test_check.py runs iDLG's entry
    (r"bench audit", ["--attacks", "dlg", "--max-minutes", "3", "--cases", "2", "--batch-sizes", "2"]),  # DLG stops at its paper budget, well within the time
]
PLUGIN = ROOT / "tests" / "plugin"  # the README's example plugin, run from a folder holding tests/plugin


def readme_block(language: str, first_line: str) -> str:
    """The README's code block in `language` that starts with `first_line`."""
    blocks = re.findall(rf"```{language}\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return next(block for block in blocks if block.startswith(first_line))


def quickstart_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quickstart", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.strip() for line in block.strip().splitlines()]


def readme_commands() -> list[str]:
    """Every command of every bash block, in order, continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S):
        for command in block.replace("\\\n", " ").splitlines():
            words = shlex.split(command, comments=True)
            if words:
                commands.append(shlex.join(words))
    return commands


def test_quickstart_is_install_main_job_tests():
    install, main_job, tests = quickstart_commands()
    assert install.startswith("pip install")
    assert main_job == "python -m bench run --attacks all"
    assert "pytest" in tests


def test_ci_runs_the_readme_commands():
    install, _, tests = quickstart_commands()
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(rf"(python -m )?{re.escape(install)}", ci)
    assert tests in ci and "python -m bench check" in ci
    assert re.search(r"python3? -m venv", ci) and "--system-site-packages" not in ci  # from nothing


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """One folder for every command, so later commands find what earlier ones wrote (runs/, cases/), with
    the user's files the README names: my_sweep.yaml, my_model.py (as the README shows it), my_images/."""
    from tests.test_audit import write_images

    folder = tmp_path_factory.mktemp("readme")
    (folder / "my_sweep.yaml").write_text(readme_block("yaml", "# my_sweep.yaml"))
    shutil.copytree(PLUGIN, folder / "tests" / "plugin", ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "my_model.py").write_text(readme_block("python", "# my_model.py"))
    write_images(folder / "my_images")
    return folder


def test_the_readme_example_attack_is_the_tested_plugin():
    assert readme_block("python", '"""cosine-adam') == (PLUGIN / "cosine_adam.py").read_text()


def _records_folder(words: list[str], workspace: Path, env: dict[str, str]) -> str:
    """Where `bench run` WORDS writes its records when run as shown (scaling flags would name another folder)."""
    code = (
        "import sys\nfrom bench.cli import build_parser\nfrom bench.commands import records_folder, run_sweep\n"
        "args = build_parser().parse_args(sys.argv[1:])\nprint(records_folder(args, run_sweep(args)))"
    )
    done = subprocess.run([sys.executable, "-c", code, *words], cwd=workspace, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _cuda_devices_needed(words: list[str]) -> int:
    if not any(w.startswith("cuda") for w in words):
        return 0
    for flag in ("--nproc-per-node", "--nproc"):
        if flag in words:
            return int(words[words.index(flag) + 1])
    return 1


@pytest.mark.parametrize("command", [c for c in readme_commands() if not c.startswith(RUN_BY_CI)])
def test_readme_command_runs_as_shown(command: str, workspace: Path):
    words = shlex.split(command)
    needed = _cuda_devices_needed(words)
    if needed > torch.cuda.device_count():
        pytest.skip(f"needs {needed} CUDA device(s)")
    extra = next((flags for pattern, flags in SCALE if re.search(pattern, command)), [])
    assignments = {}
    while "=" in words[0]:  # VARIABLE=value before the program, as a shell reads them
        name, _, value = words.pop(0).partition("=")
        assignments[name] = value
    program = {"python": [sys.executable], "torchrun": [sys.executable, "-m", "torch.distributed.run"]}[words[0]]
    paths = [str(ROOT), assignments.pop("PYTHONPATH", None), os.environ.get("PYTHONPATH")]
    env = {**os.environ, **assignments, "PYTHONPATH": os.pathsep.join(filter(None, paths))}
    if words[1:4] == ["-m", "bench", "run"] and "--out" not in words:  # scaled, it writes where it would unscaled
        extra = [*extra, "--out", _records_folder(words[3:], workspace, env)]
    done = subprocess.run(
        program + words[1:] + extra, cwd=workspace, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
