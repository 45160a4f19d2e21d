"""Plugins: an attack from outside the repository, found through an installed distribution's entry point
(`gibench.plugins`) or through GIBENCH_PLUGINS, listed, run beside the built-ins in every rank, and checked
by the same contract; a plugin that cannot load is one line naming it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "tests" / "plugin"
SMALL = ["--models", "lenet", "--image-size", "16", "--batch-sizes", "1", "--seeds", "0", "--budget", "2", "--no-images"]


def bench(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`python -m bench ARGS` with the repository first on the path and only the plugins `env` declares."""
    base = {k: v for k, v in os.environ.items() if k != "GIBENCH_PLUGINS"}
    extra = dict(env or {})
    paths = [str(ROOT), extra.pop("PYTHONPATH", None), os.environ.get("PYTHONPATH")]
    full = {**base, **extra, "PYTHONPATH": os.pathsep.join(filter(None, paths))}
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, cwd=cwd, env=full, timeout=600)


def install(site: Path) -> Path:
    """What `pip install tests/plugin` puts into a site folder: the module, and a dist-info whose
    entry_points.txt declares the entry points of its pyproject.toml (how importlib.metadata finds them)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    project = tomllib.loads((PLUGIN / "pyproject.toml").read_text())["project"]
    site.mkdir(parents=True)
    shutil.copy(PLUGIN / "cosine_adam.py", site)
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    groups = project["entry-points"]
    (info / "entry_points.txt").write_text(
        "".join(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()) for group, points in groups.items())
    )
    return site


def test_an_installed_distribution_declares_its_attack_through_the_entry_point(tmp_path):
    site = install(tmp_path / "site")
    env = {"PYTHONPATH": str(site)}
    listed = bench("ls", "attacks", env=env)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith("cosine-adam "))
    assert row.rstrip().endswith("cosine-adam") and "example plugin" in row  # marked as the plugin's row
    assert "dlg" in listed.stdout and "built-in" in listed.stdout
    assert "cosine-adam (entry point of gibench-cosine-adam 0.1.0, cosine_adam): attacks cosine-adam" in listed.stdout
    assert "listing.json indexes the built-ins only" in listed.stdout
    out = tmp_path / "runs"
    ran = bench("run", "--attacks", "cosine-adam,dlg", "--attack-option", "dlg.lr=0.5", *SMALL, "--out", str(out), env=env)
    assert ran.returncode == 0, ran.stderr
    records = {json.loads(p.read_text())["config"]["attack"]: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert records["cosine-adam"]["status"] == "ok" and records["dlg"]["status"] == "ok"
    assert records["cosine-adam"]["config"]["attack_options"] == {"iterations": 500, "label_method": "llg", "lr": 0.1}
    assert records["dlg"]["config"]["attack_options"]["lr"] == 0.5
    assert records["dlg"]["environment"]["plugins"] == ["cosine-adam (entry point of gibench-cosine-adam 0.1.0, cosine_adam): attacks cosine-adam"]


def test_gibench_plugins_imports_modules_from_the_path(tmp_path):
    env = {"GIBENCH_PLUGINS": "cosine_adam", "PYTHONPATH": str(PLUGIN)}
    ran = bench("run", "--attacks", "cosine-adam", "--attack-option", "cosine-adam.lr=0.05", *SMALL, "--out", str(tmp_path / "b"), env=env)
    assert ran.returncode == 0, ran.stderr
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "b").glob("*.json")]
    assert record["status"] == "ok" and record["config"]["attack_options"]["lr"] == 0.05
    listed = bench("ls", "attacks", env=env)
    assert "cosine_adam (GIBENCH_PLUGINS): attacks cosine-adam" in listed.stdout


@pytest.mark.parametrize(
    "source, fragment",
    [
        ("import no_such_dependency\n", "ModuleNotFoundError: No module named 'no_such_dependency'"),
        ("from bench.attack import register_attack\nfrom baselines.dlg import DLG\nregister_attack('dlg', description='again')(DLG)\n",
         "ValueError: duplicate attack name 'dlg'"),
    ],
    ids=["broken-import", "name-taken"],
)
def test_a_plugin_that_cannot_load_is_one_line_naming_it(tmp_path, monkeypatch, capsys, source, fragment):
    """(A plugin that is not there at all: tests/test_bad_input.py.)"""
    (tmp_path / "broken_plugin.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("GIBENCH_PLUGINS", "broken_plugin")
    for args in (["ls", "attacks"], ["run", "--attacks", "noise", *SMALL, "--out", str(tmp_path / "r")]):
        assert main(args) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.startswith("error: plugin broken_plugin (GIBENCH_PLUGINS) failed to load: "), err
        assert fragment in err and err.count("\n") == 1, err
    assert not (tmp_path / "r").exists()


def test_every_rank_loads_the_plugins(tmp_path):
    """`--nproc 2` starts fresh processes: each loads the plugins from the environment it inherits."""
    env = {"GIBENCH_PLUGINS": "cosine_adam", "PYTHONPATH": str(PLUGIN)}
    out = tmp_path / "r"
    ran = bench("run", "--nproc", "2", "--attacks", "cosine-adam", *SMALL, "--batch-sizes", "2", "--out", str(out), env=env)
    assert ran.returncode == 0, ran.stderr
    (record,) = [json.loads(p.read_text()) for p in out.glob("*.json")]
    assert record["status"] == "ok" and record["environment"]["world_size"] == 2  # sharded over both ranks


def test_the_contract_test_covers_a_plugin_attack(tmp_path):
    """The README's command: the contract tests collect the plugin's attack and pass."""
    env = {**os.environ, "GIBENCH_PLUGINS": "cosine_adam", "PYTHONPATH": os.pathsep.join([str(ROOT), str(PLUGIN)])}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_attack_contract.py", "-k", "cosine-adam"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "4 passed" in done.stdout, done.stdout[-2000:]  # declaration, output, requirements, refusals
