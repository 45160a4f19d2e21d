"""The CUDA path: attacks, the client, seeds batched, DGI with two ranks on one device, records with the
allocator's peak memory. Run with `python -m pytest -m gpu`; every test skips cleanly without CUDA.

`BENCH_GPU_TEST_DEVICE=cpu python -m pytest -m gpu tests/test_gpu.py` runs them on the CPU instead, to
check the tests themselves on a machine without a GPU. Comparisons run with TF32 off (float32 matmuls and
convolutions in full precision), so device and CPU results agree to float32 rounding.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from bench.attack import ATTACKS, create_attack
from bench.case import load_case, save_case
from bench.client import simulate
from bench.engine.collective import close_world, open_world
from bench.engine.distances import GradientDistance
from bench.engine.loop import LoopConfig, Variables, run_loop
from bench.engine.objective import Weights
from bench.engine.schedule import Schedule
from bench.engine.seed_group import SeedGroup
from bench.engine.setup import setup_attack
from bench.distributed.launch import free_port
from bench.runner import RunOptions, run_cells
from bench.scenario import Scenario
from bench.sweep import Sweep, expand
from bench.threat import ThreatModel

pytestmark = pytest.mark.gpu
DEVICE_VARIABLE = "BENCH_GPU_TEST_DEVICE"
REL = 1e-4
TINY = {"model": "convnet", "model_options": {"width": 4}, "image_size": 16}


@pytest.fixture(scope="module")
def device() -> torch.device:
    forced = os.environ.get(DEVICE_VARIABLE)
    if forced:
        return torch.device(forced)
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return torch.device("cuda")


@pytest.fixture(autouse=True)
def full_precision():
    """TF32 off for float32 matmuls and cuDNN convolutions while a test runs."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def tiny_case(batch_size: int = 4, bn_mode: str = "train", labels_known: bool = False):
    threat = ThreatModel(labels_known=labels_known, bn_stats="exact")
    return simulate(Scenario(**TINY, batch_size=batch_size, bn_mode=bn_mode, seed=1, threat=threat))


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


@pytest.mark.parametrize("bn_mode", ["train", "eval"])
def test_client_update_on_the_device_equals_the_cpu_one(device, bn_mode):
    scenario = Scenario(**TINY, batch_size=4, bn_mode=bn_mode, seed=2, threat=ThreatModel(True, "exact"))
    on_device, _ = simulate(scenario, device)
    on_cpu, _ = simulate(scenario, "cpu")
    for name, grad in on_cpu.gradients.items():
        assert rel_err(on_device.gradients[name], grad) < REL, name
    for name, stats in on_cpu.bn_stats.items():
        assert rel_err(on_device.bn_stats[name].var, stats.var) < REL, name


@pytest.mark.parametrize("bn_mode", ["train", "eval"])
def test_objective_on_the_device_equals_the_cpu_one(device, bn_mode):
    case, _ = tiny_case(bn_mode=bn_mode, labels_known=True)
    results = []
    for where in (device, torch.device("cpu")):
        setup = setup_attack(case, where)
        objective = setup.objective(GradientDistance("cosine"), Weights(tv=1e-2, bn=0.1), bn=True)
        images = setup.random_images(torch.Generator().manual_seed(0)).to(where).requires_grad_(True)
        evaluation = objective.differentiate(images, setup.labels(), None, [images])
        results.append((evaluation.total, images.grad))
    (total, grad), (total_cpu, grad_cpu) = results
    assert total == pytest.approx(total_cpu, rel=REL)
    assert rel_err(grad, grad_cpu) < REL


def test_every_attack_runs_on_the_device(device):
    case, secret = tiny_case(batch_size=2)
    single, _ = tiny_case(batch_size=1)
    for name in ATTACKS.names():
        attack = create_attack(name, device=device)
        target = single if attack.incompatibility(case) else case
        if attack.incompatibility(target):
            continue
        rec = attack.reconstruct(target, budget=2, seed=0)
        assert rec.images.shape[0] == target.batch_size and torch.isfinite(rec.images).all(), name


def test_seeds_batched_on_the_device_take_the_steps_of_separate_runs(device):
    case, _ = tiny_case(batch_size=3, labels_known=True)
    setup = setup_attack(case, device)
    objective = setup.objective(GradientDistance("l2"), Weights(tv=1e-2, bn=0.1), bn=True)
    seeds = [setup.random_images(setup.generator(s)) for s in range(3)]
    labels = setup.labels()
    config = LoopConfig(3, schedule=Schedule("cosine", lr=0.1, warmup=1), signed=False, keep_best=True)
    group = SeedGroup(objective, 3)
    together = run_loop(group, Variables(torch.cat(seeds), labels=group.stack(labels)), config, setup.box)
    apart = [run_loop(objective, Variables(s.clone(), labels=labels), config, setup.box) for s in seeds]
    for joint, alone in zip(together.per_seed(), apart):
        assert rel_err(joint.images, alone.images) < REL
        assert joint.gradient_loss == pytest.approx(alone.gradient_loss, rel=REL)


def _dgi_rank(rank: int, world: int, port: int, device: str, folder: str) -> None:
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    index = rank if torch.device(device).type == "cuda" and torch.cuda.device_count() >= world else None
    where = torch.device(device) if index is None else torch.device("cuda", index)
    # NCCL refuses two ranks on one GPU; gloo all-reduces CUDA tensors as well
    backend = "nccl" if index is not None else "gloo"
    collective = open_world(where, rank, world, port=port, timeout_s=120, backend=backend)
    try:
        setup = setup_attack(load_case(folder), where, collective)
        objective = setup.objective(GradientDistance("cosine"), Weights(tv=1e-2, bn=0.1), bn=True)
        torch.manual_seed(0)  # every rank draws the same whole batch, and takes its rows
        whole = setup.case.normalization.normalize(torch.rand((setup.shard.total, *setup.case.image_shape)))
        images = setup.shard.take(whole.to(where)).requires_grad_(True)
        evaluation = objective.differentiate(images, setup.labels(), None, [images])
        torch.save({"total": evaluation.total, "grad": images.grad.cpu()}, Path(folder, f"rank{rank}.pt"))
    finally:
        close_world()


def test_dgi_with_two_ranks_on_one_device_equals_one_process(device, tmp_path):
    case, _ = tiny_case(batch_size=4, labels_known=True)
    save_case(case, tmp_path / "case")
    mp.start_processes(
        _dgi_rank, args=(2, free_port(), str(device), str(tmp_path / "case")), nprocs=2, start_method="spawn"
    )
    ranks = [torch.load(tmp_path / "case" / f"rank{r}.pt") for r in range(2)]
    setup = setup_attack(case, device)
    objective = setup.objective(GradientDistance("cosine"), Weights(tv=1e-2, bn=0.1), bn=True)
    torch.manual_seed(0)  # the batch the ranks drew
    images = case.normalization.normalize(torch.rand((4, *case.image_shape))).to(device).requires_grad_(True)
    evaluation = objective.differentiate(images, setup.labels(), None, [images])
    assert all(r["total"] == pytest.approx(evaluation.total, rel=REL) for r in ranks)
    assert rel_err(torch.cat([r["grad"] for r in ranks]), images.grad) < REL


def test_records_carry_the_device_and_its_peak_memory(device, tmp_path):
    sweep = Sweep(models=("convnet",), model_options={"convnet": {"width": 4}}, image_size=16, batch_sizes=(2,),
                  budget=2)  # fmt: skip
    records = run_cells(expand(sweep, ["inverting-gradients"]), tmp_path, RunOptions(device=str(device)))
    assert [r.status for r in records] == ["ok"]
    record = records[0]
    assert record.cost["peak_memory_bytes"] > 0 and record.cost["client"]["peak_memory_bytes"] > 0
    if device.type == "cuda":  # the allocator's peak (bench.cost), on the named device
        assert record.environment["device"] == torch.cuda.get_device_name(device)
    assert (tmp_path / f"{record.run_id}.json").is_file()
