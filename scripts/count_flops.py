"""Count the FLOPs of recorded attack runs from before FLOPs were counted, and add them to their records.

Usage: python scripts/count_flops.py FOLDER [FOLDER ...]

FLOPs depend on shapes only (bench.compute), so an Adam-based attack's FLOPs at its recorded budget are
what a dry count of the same configuration on the same case gives (tests/test_compute.py checks that a dry
count equals the real run). For every ok attack record under the folders without `cost.flops`, this
re-simulates its case (once per scenario) and writes `cost.flops` and `cost.flops_by_kind` from a dry count;
`environment.flops_counted` names the commit that counted them. L-BFGS attacks (DLG, iDLG) are left alone:
how often their closure runs depends on the values, which a dry count does not compute. Every other field
stays as recorded (no trace: the checkpoints of a past run cannot be scored again). Each record is
rewritten atomically; rerunning the script on counted records changes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from bench.attack import attack_config, attack_from_config
from bench.client import simulate
from bench.compute_budget import dry_count
from bench.environment import git_commit
from bench.leaderboard.runs import load_sweep
from bench.plugins import load_plugins
from bench.record import Record, save_record
from bench.scenario import Scenario

OPEN_ENDED = ("dlg", "idlg")  # L-BFGS: the closure evaluations of a step depend on the values


def counted(record: Record, case, commit: str) -> Record:
    name = record.config["attack"]
    attack = attack_from_config(name, attack_config(name, record.config.get("attack_options")))  # as recorded
    meter = dry_count(attack, case, record.config.get("budget"), record.config["scenario"]["seed"])
    cost = {**record.cost, "flops": meter.flops, "flops_by_kind": meter.by_kind()}
    environment = {**record.environment, "flops_counted": commit}
    return Record(**{**record.__dict__, "cost": cost, "environment": environment})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args(argv)
    load_plugins()
    torch.set_num_threads(1)
    commit = git_commit() or "unknown"
    for folder in args.folders:
        sweep = load_sweep(folder)
        records = [
            r for r in sweep.records
            if r.status == "ok" and "attack" in r.config and "flops" not in r.cost and r.config["attack"] not in OPEN_ENDED
        ]  # fmt: skip
        records.sort(key=lambda r: Scenario.from_dict(r.config["scenario"]).key())
        cache: dict = {}
        for record in records:
            scenario = Scenario.from_dict(record.config["scenario"])
            if cache.get("key") != scenario.key():
                cache = {"key": scenario.key(), "case": simulate(scenario)[0]}
            save_record(counted(record, cache["case"], commit), sweep.files[record.run_id].parent)
        print(f"{folder}: {len(records)} attack records counted", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
