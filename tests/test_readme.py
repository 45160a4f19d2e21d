"""The README's Quickstart is the contract: CI installs and tests with exactly its commands."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quickstart_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quickstart", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.strip() for line in block.strip().splitlines()]


def test_quickstart_is_install_main_job_tests():
    install, main_job, tests = quickstart_commands()
    assert install.startswith("pip install")
    assert main_job == "python -m bench run --attacks all"
    assert "pytest" in tests


def test_ci_runs_the_readme_commands():
    install, _, tests = quickstart_commands()
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(rf"(python -m )?{re.escape(install)}", ci)
    assert tests in ci
