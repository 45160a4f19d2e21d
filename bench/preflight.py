"""Checks made before any work, so a user's mistake ends in one line and nothing is written.

`validate` looks at every cell of a sweep (methods, sharding, datasets, sampling, the model at its image
size, local weights, LPIPS weights), `check_device` at `--device`, `check_writable` at an output folder.

Example:
    >>> cells = validate(expand(sweep, methods), world_size=1, metric=MetricConfig())
    >>> check_writable(Path("runs/quick"))
"""

from __future__ import annotations

import dataclasses
import os
import resource
from pathlib import Path

import torch

from bench.attack import create_attack
from bench.data import open_dataset
from bench.engine.collective import check_splittable
from bench.errors import BenchError
from bench.files import default_cache_dir, partial_path
from bench.labels import LABELS
from bench.metrics import MetricConfig
from bench.models import Architecture, build_model
from bench.sampler import InfeasibleBatch, sample_batch
from bench.scenario import Scenario
from bench.sweep import Cell


def validate(
    cells: list[Cell],
    world_size: int = 1,
    shard_above: int | None = None,
    skip_infeasible: bool = False,
    metric: MetricConfig | None = None,
) -> list[Cell]:
    """Fail before anything runs when a cell names an unknown method, cannot be sharded over the ranks, or
    its scenario fails `check_scenario`, or the LPIPS weights given cannot be read; with `skip_infeasible`
    cells whose batch cannot be sampled are returned marked to be recorded as skipped."""
    seen: set[str] = set()
    built: set[tuple[str, str | None]] = set()
    infeasible: dict[str, str] = {}
    for cell in cells:
        batch = cell.scenario.batch_size
        if world_size > 1 and (shard_above is None or batch > shard_above):
            check_splittable(batch, world_size)
            update = cell.scenario.threat.update
            if update.to_dict():
                raise BenchError(f"a sharded client computes one plain FedSGD gradient, not {update.short()}; use --shard-above")
        if cell.label_method is not None:
            LABELS.get(cell.label_method)
        else:
            create_attack(cell.attack)
        if cell.scenario.key() in seen:
            continue
        seen.add(cell.scenario.key())
        try:
            check_scenario(cell.scenario, built)
        except InfeasibleBatch as err:
            if not skip_infeasible:
                raise
            infeasible[cell.scenario.key()] = f"infeasible: {err}"
    if metric is not None and any(cell.attack is not None for cell in cells):
        check_lpips_weights(metric)
    return [dataclasses.replace(cell, skip=infeasible.get(cell.scenario.key())) for cell in cells]


def check_scenario(scenario: Scenario, built: set[tuple[str, str | None]] | None = None) -> None:
    """What can be known of a scenario without simulating it: its dataset opens, its model builds and takes
    its images (with its weights: once per architecture and weights, tracked in `built`), and its batch can
    be sampled (InfeasibleBatch otherwise)."""
    if scenario.weights is not None and not Path(scenario.weights).is_file():
        raise BenchError(f"weights file {scenario.weights} not found; pass a local checkpoint with --weights")
    dataset = open_dataset(scenario.dataset, scenario.data_path)
    num_classes = scenario.num_classes or dataset.num_classes
    arch = Architecture(scenario.model, num_classes, dataset.channels, scenario.image_size, scenario.model_options)
    check_batch_memory(scenario, dataset.channels)
    if scenario.train_steps > 0:
        check_writable(default_cache_dir())  # trained weights are cached there ($BENCH_CACHE)
    built = set() if built is None else built
    if (arch.key(), scenario.weights) not in built:
        check_model(arch, scenario)
        built.add((arch.key(), scenario.weights))
    sample_batch(dataset, scenario.batch_size, scenario.repetition, scenario.seed, num_classes, scenario.label_source)


def memory_limit() -> int:
    """Bytes this process may hold: the machine's memory, or the address-space limit when lower."""
    limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return limit if soft == resource.RLIM_INFINITY else min(limit, soft)


def check_batch_memory(scenario: Scenario, channels: int) -> None:
    """Refuse, before sampling allocates anything, a batch whose pixels alone exceed the memory this process
    may hold (the client needs its activations on top)."""
    images = scenario.threat.update.clients * scenario.batch_size
    needed = images * channels * scenario.image_size**2 * 4  # float32 pixels
    limit = memory_limit()
    if needed > limit:
        raise BenchError(
            f"batch size {scenario.batch_size}"
            + (f" x {scenario.threat.update.clients} clients" if scenario.threat.update.clients > 1 else "")
            + f" at {scenario.image_size} px needs {_gib(needed)} for its images alone; this process may hold "
            f"{_gib(limit)} of memory"
        )


def _gib(size: int) -> str:
    return f"{size / 2**30:,.1f} GiB"


def check_model(arch: Architecture, scenario: Scenario) -> None:
    """Build the model with its options, load its local weights, and pass one blank image through it."""
    from bench.models.weights import load_pretrained

    what = f"model {arch.name}" + (f" with options {arch.options}" if arch.options else "")
    try:
        model = build_model(arch, scenario.seed)
    except TypeError as err:  # an option the builder does not take
        raise BenchError(f"{what} cannot be built: {_first_line(err)}") from None
    if scenario.weights is not None:
        load_pretrained(model, scenario.weights, scenario.seed, arch.options.get("head_init", "default"))
    blank = torch.zeros(1, arch.channels, arch.image_size, arch.image_size)
    try:
        with torch.no_grad():
            output = model.eval()(blank)
    except RuntimeError as err:
        raise BenchError(f"{what} cannot take {arch.image_size} px images: {_first_line(err)}") from None
    check_scores(what, output, arch.num_classes)


def check_scores(what: str, output: object, num_classes: int) -> None:
    """A model's output must be one score per class for each image: a tensor of shape (images, num_classes)."""
    if not isinstance(output, torch.Tensor):
        raise BenchError(f"{what} returns a {type(output).__name__}; the client's loss needs a tensor of class scores")
    if output.dim() != 2 or output.shape[1] != num_classes:
        raise BenchError(
            f"{what} outputs shape {tuple(output.shape)} for {output.shape[0] if output.dim() else 0} image(s); "
            f"the data has {num_classes} classes, so one score per class, shape (images, {num_classes}), is needed"
        )


def check_lpips_weights(metric: MetricConfig) -> None:
    """LPIPS weights named by --lpips-weights or $BENCH_LPIPS_WEIGHTS must exist and load."""
    from bench.metrics.lpips_offline import ENV_VAR, Lpips, find_backbone_weights

    if not metric.lpips or not (metric.lpips_weights or os.environ.get(ENV_VAR)):
        return
    weights = find_backbone_weights(metric.lpips_net, metric.lpips_weights)
    if weights is not None:
        Lpips.load(metric.lpips_net, weights, "cpu")  # cached: the runs reuse it


def check_device(text: str, ranks: int = 1) -> torch.device:
    """The device `--device text` names, when this machine has it (and one per local rank for CUDA)."""
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise BenchError(f"unknown device {text!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise BenchError(f"device {text!r} is not supported; use cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise BenchError(f"--device {text}: this machine has no CUDA device that torch can use")
    count = torch.cuda.device_count()
    wanted = ranks if device.index is None else device.index + 1
    if wanted > count:
        raise BenchError(f"--device {text} with {ranks} rank(s) needs {wanted} CUDA devices; this machine has {count}")
    return device


def check_writable(folder: Path) -> None:
    """Refuse an output folder that cannot be written, before running anything.

    What is missing of the folder is created, a file is created in it, then exactly what was created is
    removed again: the real file system answers (read-only mounts, /proc, names too long), not a guess.
    """
    folder = Path(folder)
    created: list[Path] = []
    try:
        missing = []
        existing = folder
        while not existing.exists() and not existing.is_symlink() and existing != existing.parent:
            missing.append(existing)
            existing = existing.parent
        if not existing.is_dir():
            raise BenchError(f"output folder {folder}: {existing} is not a folder")
        for path in reversed(missing):
            path.mkdir()
            created.append(path)
        probe = partial_path(folder / "probe")
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        probe.unlink()
    except OSError as err:
        raise BenchError(f"output folder {folder} cannot be written: {err.strerror or err}") from None
    finally:
        for path in reversed(created):
            path.rmdir()


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
