"""Rescore the prior floors of recorded attack runs in place, after the floors' definition changed.

Usage: python scripts/rescore_floors.py FOLDER [FOLDER ...]

The dataset-mean floor is formed without the clients' own images (bench.floors); records written before
that scored it with the whole dataset's mean. For every ok attack record under the folders this re-simulates
its case (once per scenario; the same seeded batch), first checks that the whole-dataset mean still gives
the recorded floors (else it stops: the case is not the one recorded, and nothing more is written), then
writes the floors, `psnr_floor` and `psnr_gain` again; the records of the `prior-mean` floor itself are
rescored whole (its image changed), and their image grid redrawn where one exists. Every other field stays
as recorded; `environment.floors_rescored` names the commit that rescored it. Each record is rewritten
atomically; rerunning the script on rescored records changes nothing.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

from bench.case import Case, Secret
from bench.client import simulate
from bench.data.mean import mean_image
from bench.environment import git_commit
from bench.floors import floor_metrics, floor_psnrs, floor_reconstruction
from bench.leaderboard.runs import load_sweep
from bench.metrics import MetricConfig, psnr, score
from bench.plugins import load_plugins
from bench.record import Record, save_record
from bench.runner import save_images
from bench.scenario import Scenario

SCORING = MetricConfig(lpips=False)  # the records' LPIPS is null: no offline backbone weights were given
TOLERANCE_DB = 1e-6


def whole_mean_psnr(case: Case, secret: Secret) -> float:
    """The old prior-mean floor: the whole dataset's mean image, one-to-one PSNR averaged over the images."""
    mean = mean_image(case.info["dataset"], case.info.get("data_path"), case.image_shape[-1])
    return float(psnr(secret.images, mean.expand_as(secret.images)).mean())


def rescored(record: Record, case: Case, secret: Secret, floors: dict[str, float], commit: str) -> Record:
    metrics = dict(record.metrics)
    per_image = record.per_image
    if record.config["attack"] == "prior-mean":
        scores = score(floor_reconstruction("prior-mean", case, secret), secret, SCORING)
        metrics.update(scores.summary)
        per_image = {**scores.per_image, "attack_extra": record.per_image.get("attack_extra", {})}
    metrics.update(floor_metrics(metrics.get("psnr"), floors))
    environment = {**record.environment, "floors_rescored": commit}
    return Record(**{**record.__dict__, "metrics": metrics, "per_image": per_image, "environment": environment})


def check_recorded(record: Record, case: Case, secret: Secret, floors: dict[str, float]) -> None:
    """The re-simulated case must reproduce the floors as recorded (grey as it is, the mean as it was)."""
    recorded_grey, recorded_mean = record.metrics.get("psnr_prior_grey"), record.metrics.get("psnr_prior_mean")
    if "floors_rescored" in record.environment:
        expected = {"prior-grey": recorded_grey, "prior-mean": recorded_mean}
        if all(math.isclose(floors[k], v, abs_tol=TOLERANCE_DB) for k, v in expected.items()):
            return
    elif math.isclose(floors["prior-grey"], recorded_grey, abs_tol=TOLERANCE_DB) and math.isclose(
        whole_mean_psnr(case, secret), recorded_mean, abs_tol=TOLERANCE_DB
    ):
        return
    raise SystemExit(f"{record.run_id}: the re-simulated case does not give the recorded floors; nothing more written")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args(argv)
    load_plugins()
    torch.set_num_threads(1)
    commit = git_commit() or "unknown"
    for folder in args.folders:
        sweep = load_sweep(folder)
        records = [r for r in sweep.records if r.status == "ok" and "attack" in r.config and "psnr_floor" in r.metrics]
        records.sort(key=lambda r: Scenario.from_dict(r.config["scenario"]).key())
        cache: dict = {}
        changed = 0
        for record in records:
            key = Scenario.from_dict(record.config["scenario"]).key()
            if cache.get("key") != key:
                case, secret = simulate(Scenario.from_dict(record.config["scenario"]))
                cache = {"key": key, "case": case, "secret": secret, "floors": floor_psnrs(case, secret)}
            case, secret, floors = cache["case"], cache["secret"], cache["floors"]
            check_recorded(record, case, secret, floors)
            new = rescored(record, case, secret, floors, commit)
            if new.metrics == record.metrics and new.per_image == record.per_image:
                continue
            changed += 1
            save_record(new, sweep.files[record.run_id].parent)
            if record.config["attack"] == "prior-mean" and sweep.grid(record.run_id) is not None:
                save_images(new, floor_reconstruction("prior-mean", case, secret), secret, sweep.files[record.run_id].parent)
        print(f"{folder}: {len(records)} attack records, {changed} changed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
