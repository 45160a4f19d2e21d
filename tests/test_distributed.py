"""Distributed gradient inversion is exact: two gloo ranks on CPU reproduce the single-process numbers.

One spawn of two ranks computes everything the comparisons need (objective values and image gradients
for every distance / BN mode / BN prior / shard layout, the distributed client's update, and a short
noisy Adam run); the single-process references are computed here, in the test process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file
from torch import nn

from bench.case import load_case, load_secret, save_case
from bench.client import leak, simulate
from bench.distributed import (
    SynchronisedBatchNorm,
    close_world,
    distributed_leak,
    open_world,
    spawn_local,
    synchronise_batchnorm,
    world_from_env,
)
from bench.distributed.launch import (
    free_port,
    is_writer,
    rank_environment,
    should_spawn,
)
from bench.engine.collective import Shard, shard_for
from bench.engine.distances import GradientDistance
from bench.engine.loop import LoopConfig, Variables, run_loop
from bench.engine.objective import Weights
from bench.engine.setup import setup_attack
from bench.errors import BenchError
from bench.scenario import Scenario
from bench.threat import ThreatModel

WORLD = 2
REL = 1e-5
# name -> (client BN mode, batch size); 5 over 2 ranks gives unequal shards (3 + 2)
CASES = {"train4": ("train", 4), "eval4": ("eval", 4), "train5": ("train", 5), "eval5": ("eval", 5)}
# name -> (distance, BN prior weight, soft labels optimised as logits)
OBJECTIVES = {
    "l2sq": ("l2_squared", 0.0, False),
    "l2sq_bn": ("l2_squared", 0.1, False),
    "l2": ("l2", 0.0, False),
    "l2_bn": ("l2", 0.1, False),
    "cos": ("cosine", 0.0, False),
    "cos_bn": ("cosine", 0.1, False),
    "cos_bn_soft": ("cosine", 0.1, True),
}
# every distance x BN prior on both BN modes with unequal shards, a sample with equal shards
PAIRS = [(c, o) for c in ("train5", "eval5") for o in ("l2sq", "l2sq_bn", "cos", "cos_bn")]
PAIRS += [("train5", "l2_bn"), ("train5", "cos_bn_soft"), ("eval5", "l2"), ("train4", "l2sq_bn"), ("train4", "cos")]
PAIRS += [("eval4", "cos_bn"), ("eval4", "cos_bn_soft")]
ATTACK_CASE, ATTACK_ITERATIONS = "train5", 8


def _scenario(bn_mode: str, batch_size: int) -> Scenario:
    return Scenario(
        model="convnet",
        model_options={"width": 4},
        image_size=16,
        batch_size=batch_size,
        seed=3,
        bn_mode=bn_mode,
        threat=ThreatModel(labels_known=True, bn_stats="exact"),
    )


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = torch.as_tensor(a).detach().double(), torch.as_tensor(b).detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def assert_gradients_close(got: list[torch.Tensor], want: list[torch.Tensor], names: list[str]) -> None:
    """Relative error of the whole update, and of each tensor against the update's scale.

    Per-tensor relative errors are meaningless for tensors whose exact gradient is zero (a conv bias
    before train-mode BN), where both sides are rounding noise.
    """
    flat_got, flat_want = torch.cat([g.flatten() for g in got]), torch.cat([w.flatten() for w in want])
    assert rel_err(flat_got, flat_want) < REL
    scale = float(flat_want.double().norm())
    for name, g, w in zip(names, got, want):
        assert float((g.double() - w.double()).norm()) < REL * scale, name


# ---- what both the ranks and the reference compute ----------------------------------------------------


def evaluate_objective(case, collective, distance: str, bn_weight: float, soft: bool) -> dict[str, torch.Tensor]:
    """One evaluation of the objective and its backward, on this process's shard."""
    setup = setup_attack(case, "cpu", collective)
    weights = Weights(tv=0.05, l2=1e-3, bn=bn_weight)
    objective = setup.objective(GradientDistance(distance), weights, bn=bn_weight > 0)
    generator = setup.generator(7)
    images = setup.random_images(generator).requires_grad_(True)
    leaves = [images]
    if soft:
        whole = torch.randn((case.batch_size, case.num_classes), generator=generator)
        logits = setup.shard.take(whole).clone().requires_grad_(True)
        targets, leaves = logits.softmax(dim=1), [images, logits]
    else:
        targets = setup.labels()
    evaluation = objective.evaluate(images, targets)
    evaluation.backward.backward(inputs=leaves)
    out = {
        "total": torch.tensor(evaluation.total, dtype=torch.float64),
        "gradient_loss": torch.tensor(evaluation.gradient_loss, dtype=torch.float64),
        "share": evaluation.backward.detach().double(),
        "images_grad": images.grad,
    }
    if soft:
        out["logits_grad"] = logits.grad
    return out


def short_attack(case, collective) -> dict[str, torch.Tensor]:
    """A few noisy Adam steps with TV and the BN prior; the whole batch's images at the end."""
    setup = setup_attack(case, "cpu", collective)
    objective = setup.objective(GradientDistance("cosine"), Weights(tv=0.01, bn=0.01), bn=True)
    generator = setup.generator(11)
    variables = Variables(images=setup.random_images(generator), labels=setup.labels())
    config = LoopConfig(iterations=ATTACK_ITERATIONS, noise=0.2)
    result = run_loop(objective, variables, config, box=setup.box, generator=generator)
    return {"images": setup.whole_batch(result.images), "trace": torch.tensor(result.trace, dtype=torch.float64)}


def client_update(case, secret, collective) -> dict[str, torch.Tensor]:
    model = case.build_model("cpu")
    inputs = case.normalization.normalize(secret.images)
    shard = shard_for(case.batch_size, collective)
    if shard.distributed:
        gradients, bn_stats = distributed_leak(model, shard.take(inputs), shard.take(secret.labels), case.loss, shard)
    else:
        gradients, bn_stats = leak(model, inputs, secret.labels, case.loss)
    out = {f"grad/{k}": v for k, v in gradients.items()}
    for name, stats in bn_stats.items():
        out[f"bn/{name}/mean"], out[f"bn/{name}/var"] = stats.mean, stats.var
    return out


# ---- the ranks ----------------------------------------------------------------------------------------


def _rank_main(rank: int, world_size: int, port: int, folder: str) -> None:
    torch.set_num_threads(1)
    collective = open_world("cpu", rank, world_size, port=port, timeout_s=60)
    try:
        results: dict[str, torch.Tensor] = {}
        for case_name in CASES:
            case = load_case(Path(folder) / case_name)
            for name in [o for c, o in PAIRS if c == case_name]:
                for key, value in evaluate_objective(case, collective, *OBJECTIVES[name]).items():
                    results[f"objective/{case_name}/{name}/{key}"] = value
            for key, value in client_update(case, load_secret(Path(folder) / case_name), collective).items():
                results[f"client/{case_name}/{key}"] = value
        attack = short_attack(load_case(Path(folder) / ATTACK_CASE), collective)
        results.update({f"attack/{k}": v for k, v in attack.items()})
        save_file({k: v.contiguous() for k, v in results.items()}, str(Path(folder) / f"rank{rank}.safetensors"))
    finally:
        close_world()


def run_ranks(fn, *args, deadline_s: float = 240.0) -> None:
    """Start WORLD spawned ranks running fn(rank, WORLD, port, *args); fail the test if they do not finish."""
    context = mp.start_processes(fn, args=(WORLD, free_port(), *args), nprocs=WORLD, join=False, start_method="spawn")
    deadline = time.monotonic() + deadline_s
    while not context.join(timeout=1.0):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"ranks still running after {deadline_s:.0f} s")


@pytest.fixture(scope="module")
def world_results(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("distributed")
    cases = {}
    for name, (bn_mode, batch_size) in CASES.items():
        case, secret = simulate(_scenario(bn_mode, batch_size))
        save_case(case, folder / name, secret)
        cases[name] = (case, secret)
    run_ranks(_rank_main, str(folder))
    ranks = [load_file(str(folder / f"rank{r}.safetensors")) for r in range(WORLD)]
    return {"cases": cases, "ranks": ranks}


# ---- exactness of the objective -----------------------------------------------------------------------


@pytest.mark.parametrize("case_name,objective", PAIRS)
def test_sharded_objective_equals_single_process(world_results, case_name: str, objective: str) -> None:
    case, _ = world_results["cases"][case_name]
    reference = evaluate_objective(case, None, *OBJECTIVES[objective])
    ranks = [{k.rsplit("/", 1)[1]: v for k, v in r.items() if k.startswith(f"objective/{case_name}/{objective}/")} for r in world_results["ranks"]]
    for rank, got in enumerate(ranks):
        # every rank reports the whole batch's loss
        assert rel_err(got["total"], reference["total"]) < REL, f"rank {rank} total"
        assert rel_err(got["gradient_loss"], reference["gradient_loss"]) < REL, f"rank {rank} gradient loss"
    # the per-rank shares add up to the single-process objective, and so do their gradients
    assert rel_err(sum(r["share"] for r in ranks), reference["total"]) < REL
    images_grad = torch.cat([r["images_grad"] for r in ranks])
    assert images_grad.shape == reference["images_grad"].shape
    assert rel_err(images_grad, reference["images_grad"]) < REL
    if "logits_grad" in reference:
        assert rel_err(torch.cat([r["logits_grad"] for r in ranks]), reference["logits_grad"]) < REL


class _FakeCollective:
    """Only a rank and a world size: enough to split a batch, never asked to communicate."""

    def __init__(self, rank: int, world_size: int) -> None:
        self.rank, self.world_size = rank, world_size

    def all_sum(self, tensor):  # pragma: no cover - never called
        raise AssertionError

    all_sum_values = all_sum


def test_unequal_shards_really_are_unequal() -> None:
    sizes = [shard_for(5, _FakeCollective(rank, 2)).size for rank in range(2)]
    assert sizes == [3, 2]


def test_batch_smaller_than_world_is_refused(world_results) -> None:
    case, _ = world_results["cases"]["train4"]
    with pytest.raises(BenchError, match="cannot be split over 5 ranks"):
        setup_attack(case, "cpu", _FakeCollective(0, 5))
    with pytest.raises(BenchError, match="cannot be split"):
        shard_for(4, _FakeCollective(0, 5))


# ---- the distributed client ---------------------------------------------------------------------------


@pytest.mark.parametrize("case_name", list(CASES))
def test_distributed_client_equals_single_process_client(world_results, case_name: str) -> None:
    case, _ = world_results["cases"][case_name]  # built by bench.client.simulate on the whole batch
    ranks = [{k.split("/", 2)[2]: v for k, v in r.items() if k.startswith(f"client/{case_name}/")} for r in world_results["ranks"]]
    names = list(case.gradients)
    assert_gradients_close([ranks[0][f"grad/{n}"] for n in names], list(case.gradients.values()), names)
    assert case.bn_stats
    for name, stats in case.bn_stats.items():
        # the whole batch's statistics, not rank 0's shard's
        assert rel_err(ranks[0][f"bn/{name}/mean"], stats.mean) < REL, name
        assert rel_err(ranks[0][f"bn/{name}/var"], stats.var) < REL, name
    for key, value in ranks[0].items():
        assert torch.equal(value, ranks[1][key]), f"ranks disagree on {key}"


def test_shard_statistics_differ_from_whole_batch(world_results) -> None:
    """Guards the comparison above: rank 0's own statistics would fail it."""
    case, secret = world_results["cases"]["train4"]
    model = case.build_model("cpu")
    inputs = case.normalization.normalize(secret.images)
    _, rank0_only = leak(model, inputs[:2], secret.labels[:2], case.loss)
    name = next(iter(case.bn_stats))
    assert rel_err(rank0_only[name].mean, case.bn_stats[name].mean) > 1e-3


# ---- a short attack -----------------------------------------------------------------------------------


def test_distributed_attack_matches_single_process(world_results) -> None:
    case, _ = world_results["cases"][ATTACK_CASE]
    reference = short_attack(case, None)
    ranks = world_results["ranks"]
    assert torch.equal(ranks[0]["attack/images"], ranks[1]["attack/images"])
    assert ranks[0]["attack/trace"].numel() == ATTACK_ITERATIONS
    assert (ranks[0]["attack/images"] - reference["images"]).abs().max() < 1e-4
    assert rel_err(ranks[0]["attack/trace"], reference["trace"]) < 1e-4
    # the run moved the images (so the comparison is not between two untouched initialisations)
    start = setup_attack(case).random_images(setup_attack(case).generator(11))
    assert (reference["images"] - start).abs().max() > 1e-2


# ---- synchronised BN in one process -------------------------------------------------------------------


def _bn_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 8), nn.BatchNorm1d(8))
    with torch.no_grad():
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
        net[1].weight.uniform_(0.5, 2)
    return net


@pytest.mark.parametrize("train", [True, False])
def test_synchronised_bn_matches_bn_in_one_process(train: bool) -> None:
    plain, synced = _bn_net(), _bn_net()
    keys = list(synced.state_dict())
    synced = synchronise_batchnorm(synced, Shard.whole(6))
    assert list(synced.state_dict()) == keys
    assert isinstance(synced[1], SynchronisedBatchNorm) and isinstance(synced[5], SynchronisedBatchNorm)
    plain.train(train)
    synced.train(train)
    x = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(1), requires_grad=True)
    out_plain, out_synced = plain(x), synced(x)
    assert rel_err(out_synced, out_plain) < REL
    # a fixed random projection (a sum of squares of BN outputs would be nearly constant)
    direction = torch.randn(out_plain.shape, generator=torch.Generator().manual_seed(2))
    g_plain = torch.autograd.grad((out_plain * direction).sum(), [x] + list(plain.parameters()))
    g_synced = torch.autograd.grad((out_synced * direction).sum(), [x] + list(synced.parameters()))
    assert rel_err(g_synced[0], g_plain[0]) < REL  # w.r.t. the input
    assert_gradients_close(list(g_synced[1:]), list(g_plain[1:]), [n for n, _ in plain.named_parameters()])
    for key, value in plain.state_dict().items():  # running statistics update as BN's do
        assert rel_err(synced.state_dict()[key], value) < REL or torch.equal(synced.state_dict()[key], value), key


def test_synchronised_bn_keeps_timm_activation() -> None:
    from timm.layers import BatchNormAct2d

    layer = BatchNormAct2d(4, act_layer=nn.ReLU)
    synced = synchronise_batchnorm(nn.Sequential(layer), Shard.whole(3))
    x = torch.randn(3, 4, 5, 5)
    assert rel_err(synced(x), layer(x)) < REL
    assert (synced(x) >= 0).all()


def test_unknown_bn_subclass_is_refused() -> None:
    class CustomBN(nn.BatchNorm2d):
        pass

    with pytest.raises(BenchError, match="CustomBN"):
        synchronise_batchnorm(nn.Sequential(CustomBN(2)), Shard.whole(2))


# ---- launching ----------------------------------------------------------------------------------------


def test_no_launch_environment_means_one_process(monkeypatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert world_from_env("cpu") is None
    assert should_spawn(2) and not should_spawn(1) and not should_spawn(None)
    assert is_writer(None)


def test_incomplete_launch_environment_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    assert not should_spawn(2)  # already a rank: never spawn again
    with pytest.raises(BenchError, match="MASTER_ADDR, MASTER_PORT"):
        world_from_env("cpu")


def test_rank_environment_is_torchrun_style() -> None:
    env = rank_environment(1, 2, 12345, 30.0, {"OMP_NUM_THREADS": "1"})
    assert (env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"]) == ("1", "2", "1")
    assert (env["MASTER_ADDR"], env["MASTER_PORT"]) == ("127.0.0.1", "12345")
    assert env["OMP_NUM_THREADS"] == "1"


def _program(body: str) -> list[str]:
    prelude = "import os, sys, time, torch\nfrom bench.distributed.launch import is_writer, world, world_from_env\n"
    return [sys.executable, "-c", prelude + textwrap.dedent(body)]


def test_spawned_ranks_sum_over_the_world(tmp_path) -> None:
    program = _program(
        """
        with world("cpu") as c:  # leaves the process group as `bench run` does
            total = c.all_sum_values(torch.tensor([c.rank + 1.0]))
            assert c.world_size == 2 and os.environ["LOCAL_RANK"] == str(c.rank), c
            if is_writer(c):
                open(sys.argv[1], "w").write(str(float(total)))
        """
    )
    code = spawn_local(2, [str(tmp_path / "sum.txt")], program=program, timeout_s=30)
    assert code == 0
    assert (tmp_path / "sum.txt").read_text() == "3.0"


def test_killed_rank_stops_the_launch_with_its_name(capfd) -> None:
    program = _program(
        """
        c = world_from_env("cpu")
        for step in range(100000):
            c.all_sum_values(torch.ones(4))
            if c.rank == 1 and step == 5:
                os._exit(1)
            time.sleep(0.01)
        """
    )
    start = time.monotonic()
    code = spawn_local(2, [], program=program, timeout_s=20, grace_s=3)
    elapsed = time.monotonic() - start
    assert code == 1
    assert "error: rank 1 exited with code 1" in capfd.readouterr().err
    assert elapsed < 60


def test_stopped_rank_runs_its_cleanup(tmp_path) -> None:
    """A rank that outlives the grace period gets SIGTERM, which unwinds (so atomic writes clean up)."""
    marker = tmp_path / "cleaned"
    program = _program(
        """
        c = world_from_env("cpu")
        c.all_sum_values(torch.ones(1))
        if c.rank == 1:
            os._exit(3)
        try:
            time.sleep(120)
        finally:
            open(sys.argv[1], "w").write("yes")
        """
    )
    start = time.monotonic()
    code = spawn_local(2, [str(marker)], program=program, timeout_s=20, grace_s=1)
    assert code == 3
    assert marker.read_text() == "yes"
    assert time.monotonic() - start < 60


@pytest.mark.slow
def test_torchrun_launch_is_detected(tmp_path) -> None:
    script = tmp_path / "rank.py"
    script.write_text(_program(
        """
        from bench.distributed.launch import world
        with world("cpu", timeout_s=30) as c:
            total = c.all_sum_values(torch.tensor([1.0]))
            if is_writer(c):
                open(sys.argv[1], "w").write(f"{c.world_size} {float(total)}")
        """
    )[2])
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port())]
    done = subprocess.run(command + [str(script), str(tmp_path / "out.txt")], env=env, timeout=120, check=False)
    assert done.returncode == 0
    assert (tmp_path / "out.txt").read_text() == "2 2.0"


def test_frozen_rank_is_named_by_its_missing_heartbeat(capfd) -> None:
    """A stopped rank is named, before the others' collectives time out (which would name rank 0)."""
    program = _program(
        """
        import signal
        c = world_from_env("cpu")
        for step in range(100000):
            c.all_sum_values(torch.ones(4))
            if c.rank == 1 and step == 5:
                os.kill(os.getpid(), signal.SIGSTOP)
            time.sleep(0.01)
        """
    )
    start = time.monotonic()
    code = spawn_local(2, [], program=program, timeout_s=60, grace_s=1, heartbeat_timeout_s=3)
    assert code == 1
    assert "error: rank 1 sent no heartbeat for 3 s (stopped or frozen)" in capfd.readouterr().err
    assert time.monotonic() - start < 45  # well before rank 0's collective gives up (60 s)


def test_rank_killed_by_a_signal_is_named_even_when_others_fail_after_it(capfd) -> None:
    program = _program(
        """
        import signal
        c = world_from_env("cpu")
        for step in range(100000):
            c.all_sum_values(torch.ones(4))
            if c.rank == 1 and step == 5:
                os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    code = spawn_local(2, [], program=program, timeout_s=20, grace_s=5)
    err = capfd.readouterr().err
    named = [line for line in err.splitlines() if line.startswith("error: rank")]
    # rank 0 fails too (its peer is gone), but it did not cause the failure
    assert code == 128 + 9 and named == ["error: rank 1 was killed by SIGKILL; stopping the other ranks"]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie has ended; only its exit status waits to be collected


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_ranks_end_when_their_launcher_is_killed(tmp_path) -> None:
    rank = _program(
        """
        c = world_from_env("cpu")
        open(os.path.join(sys.argv[1], f"{c.rank}.pid"), "w").write(str(os.getpid()))
        while True:
            c.all_sum_values(torch.ones(1))
            time.sleep(0.05)
        """
    )
    launcher = subprocess.Popen(
        [sys.executable, "-c", "import sys; from bench.distributed.launch import spawn_local; "
         f"sys.exit(spawn_local(2, [{str(tmp_path)!r}], program={rank!r}, timeout_s=60))"],
        cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("*.pid"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    pids = [int(p.read_text()) for p in tmp_path.glob("*.pid")]
    assert len(pids) == 2 and all(_alive(pid) for pid in pids)
    launcher.kill()  # SIGKILL: the launcher cannot stop its ranks itself
    launcher.wait()
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in pids if _alive(pid)], "ranks outlived their launcher"
