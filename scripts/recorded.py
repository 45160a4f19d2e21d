"""Walk recorded runs with their re-simulated cases, for the scripts that rewrite records in place.

    for sweep, record, case, secret in with_cases(folder, keep):
        ...

Records are taken in scenario order, so each scenario's case is simulated once (the same seeded batch the
runner simulated when it wrote them).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from bench.case import Case, Secret
from bench.client import simulate
from bench.leaderboard.runs import Sweep, load_sweep
from bench.plugins import load_plugins
from bench.record import Record
from bench.scenario import Scenario


def folders_argument(description: str, argv: list[str] | None) -> list[Path]:
    """The folders named on the command line; plugins loaded and one thread, as every rewrite runs."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("folders", nargs="+", type=Path)
    folders = parser.parse_args(argv).folders
    load_plugins()
    torch.set_num_threads(1)
    return folders


def with_cases(folder: Path, keep: Callable[[Record], bool]) -> Iterator[tuple[Sweep, Record, Case, Secret]]:
    """Every ok attack record under `folder` that `keep` accepts, with its case and secret."""
    sweep = load_sweep(folder)
    records = [r for r in sweep.records if r.status == "ok" and "attack" in r.config and keep(r)]
    records.sort(key=lambda r: Scenario.from_dict(r.config["scenario"]).key())
    cache: dict = {}
    for record in records:
        scenario = Scenario.from_dict(record.config["scenario"])
        if cache.get("key") != scenario.key():
            cache = {"key": scenario.key(), "simulated": simulate(scenario)}
        yield sweep, record, *cache["simulated"]
