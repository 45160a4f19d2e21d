"""Equal tuning budget: one Optuna study per attack and setting, the same number of trials for each, on case
seeds apart from those the attacks are scored on (AlgoPerf's external-tuning ruleset).

A trial runs the attack with the options it draws from the attack's search space (bench.search_space) on
every cell of the setting at the tuning seeds, through the runner (bench.runner), at the cell's budget (at
equal FLOPs when the sweep gives `compute`); its value is the mean `psnr_gain` over those runs. A trial in
which a run fails (or is skipped for want of compute) fails, and counts against the budget: options that
break an attack are part of its tuning. The first trial of every study is the attack's own settings (the
paper's), so tuning never reports options worse than them on the tuning cases.

The studies live in OUT/study.db (SQLite): a killed `bench tune` resumes where it stopped, a second call with
a larger --trials continues, and several processes may share one folder (a process asks for no trial that
the others' running trials already make up). A trial that was running in a process now gone (this machine,
killed) is marked failed, is not counted, and its options are tried again first; the runs it finished are
reused (the runs folder, OUT/runs, is resumed like `bench run --resume`).
OUT/tuned.yaml holds the best options of every study in the folder; `bench run --tuned OUT/tuned.yaml`
applies them and refuses case seeds that overlap the tuning seeds.

Example:
    >>> python -m bench tune --config leaderboard/sweeps/cpu-images-lenet.yaml --trials 20 --out runs/tune
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml
from tqdm import tqdm

from bench.attack import attack_from_config
from bench.client import simulate
from bench.errors import BenchError
from bench.files import write_atomic
from bench.record import Record, run_id
from bench.runner import RunOptions, run_cells
from bench.search_space import Param, space_text
from bench.sweep import Cell

DEFAULT_TUNE_SEEDS = (100, 101, 102, 103, 104)
STUDY_DB = "study.db"
TUNED_FILE = "tuned.yaml"
RUNS_DIR = "runs"
OBJECTIVE = "psnr_gain"


def setting_of(cell: Cell) -> str:
    """The setting a cell belongs to, for tuning (see `setting_key`)."""
    return setting_key(cell.config())


def setting_key(config: Mapping[str, Any]) -> str:
    """The setting of a run's configuration: its scenario without the case seed, batch size and repetition (a
    study spans those), and its compute. Readable, and exact through a digest of the rest:
    'lenet/embedded-detail/16px/1e+10 FLOPs#3f2a9c'."""
    scenario = {k: v for k, v in config["scenario"].items() if k not in ("seed", "batch_size", "repetition")}
    flops, budget = config.get("flops"), config.get("budget")
    compute = f"{flops:.0e} FLOPs" if flops is not None else f"{budget or 'paper'} it"
    digest = run_id({"scenario": scenario, "flops": flops, "budget": budget})[:6]
    return f"{scenario['model']}/{scenario['dataset']}/{scenario['image_size']}px/{compute}#{digest}"


@dataclass(frozen=True)
class Study:
    """One attack on one setting: the cells of its tuning seeds and the space its options are drawn from."""

    attack: str
    setting: str
    cells: tuple[Cell, ...]
    space: Mapping[str, Param]
    seeds: tuple[int, ...]

    @property
    def name(self) -> str:
        return f"{self.attack} @ {self.setting}"

    def fingerprint(self) -> str:
        """What a stored study must agree with to be continued: the space, the seeds and the runs."""
        return run_id({"space": space_text(self.space), "seeds": list(self.seeds), "cells": [c.config() for c in self.cells]})

    def defaults(self) -> dict[str, Any]:
        """The attack's own values (its registered settings with the sweep's options) of the space's fields."""
        config = self.cells[0].attack_config
        return {name: getattr(config, name) for name in self.space}


def plan_studies(cells: list[Cell], spaces: Mapping[str, Mapping[str, Param]], seeds: tuple[int, ...]) -> list[Study]:
    """Group the tuning cells (the sweep at the tuning seeds) by attack and setting, leaving out the cells the
    attack does not run on (its threat-model requirements; a case is simulated once per scenario to know)."""
    groups: dict[tuple[str, str], list[Cell]] = {}
    cases: dict[str, Any] = {}
    for cell in cells:
        if cell.attack not in spaces or cell.skip is not None:
            continue
        key = cell.scenario.key()
        if key not in cases:
            cases[key] = simulate(cell.scenario)[0]
        if attack_from_config(cell.attack, cell.attack_config).incompatibility(cases[key]) is None:
            groups.setdefault((cell.attack, setting_of(cell)), []).append(cell)
    return [Study(attack, setting, tuple(group), spaces[attack], seeds) for (attack, setting), group in groups.items()]


def open_storage(out_dir: Path):
    """The studies' SQLite storage in OUT/study.db, waiting for a lock held by another process."""
    import optuna

    out_dir.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{(out_dir / STUDY_DB).resolve()}"
    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 120}})


def trial_sampler(sampler_seed: int, trials_so_far: int):
    """The TPE sampler that draws a study's next trial, seeded by the sampler seed and the trials stored so
    far: the draws depend on the study's history alone, not on which process asks or how often the study was
    resumed (one sampler seeded once per process would repeat its first draw after every resume)."""
    import optuna

    return optuna.samplers.TPESampler(seed=int(run_id({"sampler_seed": sampler_seed, "trial": trials_so_far})[:8], 16))


def load_study(storage, study: Study, sampler_seed: int):
    """Create the study, or load the stored one after checking it was made for the same space, seeds and runs."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    stored = optuna.create_study(
        study_name=study.name, storage=storage, direction="maximize", load_if_exists=True,
        sampler=trial_sampler(sampler_seed, 0),
    )  # fmt: skip
    if "fingerprint" not in stored.user_attrs:
        for key, value in _study_attrs(study).items():
            stored.set_user_attr(key, value)
    return stored


def check_stored(out_dir: Path, studies: list[Study]) -> None:
    """Refuse, before any trial, to continue a stored study made with another search space, tuning seeds or
    runs (the sweep's cells and options): its trials would not be comparable."""
    import optuna

    if not (out_dir / STUDY_DB).is_file():
        return
    storage = open_storage(out_dir)
    names = set(optuna.get_all_study_names(storage))
    for study in (s for s in studies if s.name in names):
        stored = optuna.load_study(study_name=study.name, storage=storage)
        if stored.user_attrs.get("fingerprint", study.fingerprint()) != study.fingerprint():
            raise BenchError(
                f"the study {study.name!r} in {out_dir / STUDY_DB} was made with another search space, tuning "
                f"seeds or runs; tune into another --out"
            )


def _study_attrs(study: Study) -> dict[str, Any]:
    return {
        "fingerprint": study.fingerprint(), "attack": study.attack, "setting": study.setting,
        "space": space_text(study.space), "seeds": list(study.seeds), "runs": len(study.cells),
        "objective": f"mean {OBJECTIVE} (dB) over the setting's runs at the tuning seeds",
    }  # fmt: skip


def counted(trials: list) -> list:
    """The trials that spent the budget: completed ones, and those failed by a run (not by a kill)."""
    from optuna.trial import TrialState

    return [t for t in trials if t.state == TrialState.COMPLETE or (t.state == TrialState.FAIL and "failed_runs" in t.user_attrs)]


def recover_stale(storage, stored) -> int:
    """Mark failed the trials left running by a process of this machine that no longer exists (killed), and
    queue their options to be tried first again; returns how many."""
    from optuna.trial import TrialState

    host = socket.gethostname()
    stale = 0
    for trial in stored.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker_host, pid = _worker(trial)
        if worker_host != host or pid is None or _alive(pid):
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(
            storage.get_study_id_from_name(stored.study_name), trial.number
        )
        storage.set_trial_user_attr(trial_id, "stopped", "its process ended while it ran; not counted")
        storage.set_trial_state_values(trial_id, TrialState.FAIL)
        if trial.params:
            stored.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
        stale += 1
    return stale


def running_elsewhere(trials: list) -> list:
    """The trials running in other processes (alive on this machine, or on another machine) when this one
    asks for a trial: they count towards --trials unless they end failed by a kill."""
    from optuna.trial import TrialState

    host, me = socket.gethostname(), os.getpid()
    running = []
    for trial in (t for t in trials if t.state == TrialState.RUNNING):
        worker_host, pid = _worker(trial)
        if worker_host != host or (pid is not None and pid != me and _alive(pid)):
            running.append(trial)
    return running


def _worker(trial) -> tuple[str, int | None]:
    """The machine and process id a trial runs in (its `worker` attribute, 'host:pid')."""
    host, _, pid = str(trial.user_attrs.get("worker", "")).rpartition(":")
    return host, int(pid) if pid.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def trial_value(records: list[Record]) -> tuple[float, list[str]]:
    """The mean gain over the trial's runs, and the runs that did not end ok (the trial fails with any)."""
    bad = [f"{r.run_id}: {r.status}: {r.error}" for r in records if r.status != "ok" or r.metrics.get(OBJECTIVE) is None]
    if bad:
        return math.nan, bad
    gains = sorted(r.metrics[OBJECTIVE] for r in records)
    return math.fsum(gains) / len(gains), []


def objective(study: Study, out_dir: Path, options: RunOptions):
    """The function Optuna maximises: the study's cells with the trial's options, run through the runner."""

    def evaluate(trial) -> float:
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        params = {name: param.suggest(trial, name) for name, param in study.space.items()}
        cells = [dataclasses.replace(c, options={**c.options, **params}) for c in study.cells]
        records = run_cells(cells, out_dir / RUNS_DIR, options)
        value, bad = trial_value(records)
        trial.set_user_attr("run_ids", [r.run_id for r in records])
        trial.set_user_attr("wall_s", sum(r.cost.get("wall_s", 0.0) for r in records if r.cost))
        if bad:
            trial.set_user_attr("failed_runs", bad)
        return value

    return evaluate


def run_study(study: Study, trials: int, sampler_seed: int, out_dir: Path, options: RunOptions, bar: bool) -> dict:
    """Run trials until `trials` of them count; returns the study's entry of tuned.yaml."""
    from optuna.trial import TrialState

    storage = open_storage(out_dir)
    stored = load_study(storage, study, sampler_seed)
    recovered = recover_stale(storage, stored)
    if not stored.get_trials(deepcopy=False):
        stored.enqueue_trial(study.defaults(), user_attrs={"defaults": True})
    done = len(counted(stored.get_trials(deepcopy=False)))
    note = f", {recovered} interrupted trial(s) to try again" if recovered else ""
    print(f"{study.name}: {done} of {trials} trials done{note}; space {space_text(study.space)}", flush=True)
    evaluate = objective(study, out_dir, options)
    progress = tqdm(total=trials, initial=min(done, trials), desc=study.attack, unit="trial", file=sys.stderr, disable=not bar)
    while done < trials:
        stored_trials = stored.get_trials(deepcopy=False)
        running = running_elsewhere(stored_trials)
        if done + len(running) >= trials:  # the other processes' trials complete the count
            print(f"{study.name}: trial(s) {', '.join(str(t.number) for t in running)} still running in another "
                  f"process complete the {trials}; run again once they end if one of them fails", flush=True)  # fmt: skip
            break
        started = time.monotonic()
        stored.sampler = trial_sampler(sampler_seed, len(stored_trials))
        trial = stored.ask()
        value = evaluate(trial)
        if math.isnan(value):
            stored.tell(trial, state=TrialState.FAIL)
        else:
            stored.tell(trial, value)
        done = len(counted(stored.get_trials(deepcopy=False)))
        progress.update(min(done, trials) - progress.n)
        if not bar:
            print(_trial_line(study, stored, trial.number, value, done, trials, time.monotonic() - started), flush=True)
    progress.close()
    return study_entry(stored)


def _trial_line(study: Study, stored, number: int, value: float, done: int, trials: int, wall_s: float) -> str:
    shown = "failed" if math.isnan(value) else f"{value:.2f} dB"
    best = best_trial(stored.get_trials(deepcopy=False))
    best_text = f" · best {best.value:.2f} dB (trial {best.number})" if best is not None else ""
    return f"[{done}/{trials}] {study.name} · trial {number}: {shown}{best_text} · {wall_s:.1f} s"


def best_trial(trials: list):
    """The completed trial of highest value; the earliest among equals (ties are decided the same way on
    every machine and order of completion)."""
    from optuna.trial import TrialState

    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    return max(complete, key=lambda t: (t.value, -t.number)) if complete else None


def defaults_trial(trials: list):
    """The counted trial of the attack's own settings: the study's first, or its retry after a kill."""
    first = {t.number for t in trials if t.user_attrs.get("defaults")}
    return next((t for t in counted(trials) if t.number in first or t.user_attrs.get("retry_of") in first), None)


def study_entry(stored) -> dict:
    """A study as tuned.yaml holds it: its best options and what they were chosen on."""
    trials = stored.get_trials(deepcopy=False)
    spent = counted(trials)
    best = best_trial(trials)
    defaults = defaults_trial(trials)
    attrs = stored.user_attrs
    return {
        "study": stored.study_name,
        "trials": len(spent),
        "failed_trials": len(spent) - sum(t.value is not None for t in spent),
        "space": attrs["space"],
        "seeds": attrs["seeds"],
        "objective": attrs["objective"],
        "best_trial": None if best is None else best.number,
        "best_value": None if best is None else round(best.value, 4),
        "default_value": None if defaults is None or defaults.value is None else round(defaults.value, 4),
        "default_options": None if defaults is None else dict(defaults.params),
        "study_s": round(sum((t.datetime_complete - t.datetime_start).total_seconds() for t in spent), 1),
        "options": {} if best is None else dict(best.params),
    }


def write_tuned(out_dir: Path) -> Path:
    """OUT/tuned.yaml from every study in OUT/study.db: attack -> setting -> entry."""
    import optuna

    storage = open_storage(out_dir)
    tuned: dict[str, dict[str, dict]] = {}
    for summary in sorted(optuna.get_all_study_summaries(storage, include_best_trial=False), key=lambda s: s.study_name):
        stored = optuna.load_study(study_name=summary.study_name, storage=storage)
        if "attack" in stored.user_attrs:
            tuned.setdefault(stored.user_attrs["attack"], {})[stored.user_attrs["setting"]] = study_entry(stored)
    header = "# Tuned attack options (bench tune); apply with: python -m bench run ... --tuned <this file>\n"
    path = out_dir / TUNED_FILE
    write_atomic(path, header + yaml.safe_dump({"attacks": tuned}, sort_keys=False, width=200))
    return path


def load_tuned(path: str | Path) -> dict[str, dict[str, dict]]:
    """tuned.yaml as attack -> setting -> entry; a missing or malformed file is one line."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"--tuned: {path} does not exist (bench tune writes OUT/{TUNED_FILE})")
    try:
        data = yaml.safe_load(path.read_text())
        tuned = data["attacks"]
        for attack, settings in tuned.items():
            for setting, entry in settings.items():
                entry["options"], entry["seeds"]  # noqa: B018  (both must be there)
    except (yaml.YAMLError, TypeError, KeyError, AttributeError, UnicodeDecodeError):
        raise BenchError(f"--tuned: {path} is not a tuned-options file written by bench tune") from None
    return tuned


def apply_tuned(cells: list[Cell], tuned: Mapping[str, Mapping[str, dict]]) -> list[Cell]:
    """The cells with the tuned options of their attack and setting on top, each carrying its `tuning`; a cell
    whose case seed was a tuning seed is refused (tuning and scoring cases must be apart)."""
    applied = []
    for cell in cells:
        entry = tuned.get(cell.attack or "", {}).get(setting_of(cell)) if cell.attack else None
        if entry is None:
            applied.append(cell)
            continue
        if cell.scenario.seed in entry["seeds"]:
            raise BenchError(
                f"--tuned: seed {cell.scenario.seed} was a tuning seed of {entry['study']!r} (tuned on seeds "
                f"{', '.join(map(str, entry['seeds']))}); score on other seeds"
            )
        tuning = {k: entry.get(k) for k in ("study", "trials", "best_value", "options", "seeds")}
        applied.append(dataclasses.replace(cell, options={**cell.options, **entry["options"]}, tuning=tuning))
    if tuned and all(c.tuning is None for c in applied):
        raise BenchError("--tuned: no run of this sweep matches a study of the file (other attacks or settings)")
    return applied


def tuning_table(path: Path) -> str:
    """tuned.yaml as a table: per attack and setting, the trials, the defaults' and the best value, the options."""
    from tabulate import tabulate

    rows = []
    for attack, settings in load_tuned(path).items():
        for setting, entry in settings.items():
            options = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in entry["options"].items())
            rows.append([attack, setting, entry["trials"], entry.get("default_value"), entry.get("best_value"), options,
                         f"{entry.get('study_s', 0) / 60:.1f}"])  # fmt: skip
    headers = ["attack", "setting", "trials", "defaults (dB)", "best (dB)", "best options", "study min"]
    return tabulate(rows, headers=headers, floatfmt=".2f")
