"""The client's update pipeline: FedAvg against a plain training loop, aggregation against per-client
gradients, today's Case unchanged at the defaults, stable run ids, and what attacks and label methods do
with updates they cannot match."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from bench.attack import create_attack
from bench.case import load_case, load_secret, save_case
from bench.client import simulate
from bench.defenses import parse_defense
from bench.errors import BenchError
from bench.labels import LABELS, missing_need, recover_labels
from bench.record import run_id
from bench.preflight import validate
from bench.runner import run_cells
from bench.scenario import Scenario
from bench.sweep import Cell, sweep_from_dict, expand
from bench.threat import Requirements, ThreatModel
from bench.update import ClientUpdate

ROOT = Path(__file__).resolve().parents[1]
CONVNET = dict(model="convnet", model_options={"width": 4}, image_size=16, batch_size=4, seed=3)


def scenario(update: ClientUpdate, **values) -> Scenario:
    values = {**CONVNET, **values}
    threat = ThreatModel(**values.pop("threat", {}), update=update)
    return Scenario(**values, threat=threat)


def sgd_loop(model, inputs, labels, lr: float, steps: int, batch: int, order) -> dict[str, torch.Tensor]:
    """FedAvg by hand: torch.optim.SGD on the minibatches `order(i)` picks; returns theta_0 - theta_n."""
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for i in range(steps):
        j = order(i)
        optimizer.zero_grad()
        F.cross_entropy(model(inputs[j * batch : (j + 1) * batch]), labels[j * batch : (j + 1) * batch]).backward()
        optimizer.step()
    return {n: start[n] - p.detach() for n, p in model.named_parameters()}


def test_fedavg_update_equals_a_plain_training_loop():
    """5 steps of 2 images over a batch of 4, train-mode BN, the batch's own order (steps 0..4 use halves 0,1,0,1,0)."""
    update = ClientUpdate(local_steps=5, local_batch_size=2, local_lr=0.5)
    case, secret = simulate(scenario(update))
    inputs = case.normalization.normalize(secret.images)
    expected = sgd_loop(case.build_model(), inputs, secret.labels, 0.5, 5, 2, order=lambda i: i % 2)
    assert list(case.gradients) == list(expected)
    for name, delta in case.gradients.items():
        torch.testing.assert_close(delta, expected[name], rtol=1e-4, atol=1e-6, msg=name)
    swapped = sgd_loop(case.build_model(), inputs, secret.labels, 0.5, 5, 2, order=lambda i: (i + 1) % 2)
    assert any(not torch.allclose(case.gradients[n], swapped[n], rtol=1e-3, atol=1e-5) for n in swapped)  # order matters


def client_gradient(case, images, labels) -> dict[str, torch.Tensor]:
    model = case.build_model()
    F.cross_entropy(model(case.normalization.normalize(images)), labels).backward()
    return {n: p.grad for n, p in model.named_parameters()}


def test_aggregation_is_the_mean_of_per_client_updates_with_their_own_bn_statistics():
    case, secret = simulate(scenario(ClientUpdate(clients=2)))
    single_case, single_secret = simulate(scenario(ClientUpdate()))
    assert secret.images.shape[0] == 8 and case.num_images == 8 and case.batch_size == 4
    assert torch.equal(secret.images[:4], single_secret.images)  # client 0 is today's client
    assert not torch.equal(secret.images[4:], secret.images[:4])
    halves = [client_gradient(case, secret.images[k * 4 : (k + 1) * 4], secret.labels[k * 4 : (k + 1) * 4]) for k in range(2)]
    pooled = client_gradient(case, secret.images, secret.labels)
    for name, g in case.gradients.items():
        torch.testing.assert_close(g, (halves[0][name] + halves[1][name]) / 2, rtol=1e-5, atol=1e-7)
    conv = next(iter(case.gradients))
    assert not torch.allclose(case.gradients[conv], pooled[conv], rtol=1e-3)  # train-mode BN: not one batch of 8
    # exact BN: the mean over clients of each client's own batch statistics, not the pooled batch's
    first = case.bn_layers[0]
    stats = [simulate_first_bn_input(case, secret.images[k * 4 : (k + 1) * 4]) for k in range(2)]
    torch.testing.assert_close(case.bn_stats[first].mean, (stats[0].mean((0, 2, 3)) + stats[1].mean((0, 2, 3))) / 2)
    per_client_var = (stats[0].var((0, 2, 3), unbiased=False) + stats[1].var((0, 2, 3), unbiased=False)) / 2
    torch.testing.assert_close(case.bn_stats[first].var, per_client_var)
    assert not torch.allclose(case.bn_stats[first].var, torch.cat(stats).var((0, 2, 3), unbiased=False), rtol=1e-3)


def simulate_first_bn_input(case, images) -> torch.Tensor:
    model = case.build_model()
    captured = []
    module = dict(model.named_modules())[case.bn_layers[0]]
    module.register_forward_pre_hook(lambda m, args: captured.append(args[0].detach()))
    model(case.normalization.normalize(images))
    return captured[0]


@pytest.mark.parametrize("defense", ["noise(0)", "prune(0)"])
@pytest.mark.parametrize("memory", ["full", "low"])
def test_defenses_at_zero_strength_leave_todays_case_bit_for_bit(defense, memory):
    plain, plain_secret = simulate(scenario(ClientUpdate(), client_memory=memory))
    case, secret = simulate(scenario(ClientUpdate(local_steps=1, clients=1, defense=parse_defense(defense)), client_memory=memory))
    for name, g in plain.gradients.items():
        assert torch.equal(case.gradients[name], g) and torch.equal(torch.signbit(case.gradients[name]), torch.signbit(g))
    for name, stats in plain.bn_stats.items():
        assert torch.equal(case.bn_stats[name].mean, stats.mean) and torch.equal(case.bn_stats[name].var, stats.var)
    assert torch.equal(secret.images, plain_secret.images) and torch.equal(secret.labels, plain_secret.labels)
    assert plain_secret.facts == {} and secret.facts["cosine_to_undefended"] == pytest.approx(1.0, abs=1e-12)


def test_dp_without_noise_or_clipping_is_todays_gradient_up_to_summation_order():
    """Per-sample gradients summed are the batch gradient, in another floating-point order."""
    plain, _ = simulate(scenario(ClientUpdate(), bn_mode="eval"))
    case, _ = simulate(scenario(ClientUpdate(defense=parse_defense("dp(clip=1e9, sigma=0)")), bn_mode="eval"))
    for name, g in plain.gradients.items():
        torch.testing.assert_close(case.gradients[name], g, rtol=1e-5, atol=1e-7)


def test_default_update_keeps_run_ids_and_committed_records_recompute():
    records = sorted((ROOT / "leaderboard" / "records").glob("*/*.json"))
    assert len(records) > 100
    for path in records[::25]:
        record = json.loads(path.read_text())
        config = {**record["config"], "scenario": Scenario.from_dict(record["config"]["scenario"]).to_dict()}
        assert run_id(config) == record["run_id"], path
    plain = Scenario(**CONVNET)
    inert = scenario(ClientUpdate(local_lr=0.3, local_batch_size=2))  # FedSGD ignores both
    assert "update" not in plain.to_dict()["threat"] and inert.key() == plain.key()
    fedavg = scenario(ClientUpdate(local_steps=2))
    assert fedavg.to_dict()["threat"]["update"] == {"local_steps": 2} and fedavg.key() != plain.key()


def test_case_files_carry_the_update_and_the_secret_its_facts(tmp_path):
    update = ClientUpdate(local_steps=2, local_batch_size=2, clients=2, defense=parse_defense("prune(0.5)"))
    case, secret = simulate(scenario(update, threat={"labels_known": True}))
    save_case(case, tmp_path / "c", secret)
    loaded, loaded_secret = load_case(tmp_path / "c"), load_secret(tmp_path / "c")
    assert loaded.threat == case.threat and loaded.threat.update == update and loaded.num_images == 8
    assert loaded_secret.facts == secret.facts and torch.equal(loaded.labels, secret.labels)
    assert "2 clients" in loaded.summary() and "prune(ratio=0.5)" in loaded.summary()


def test_recipes_a_client_cannot_follow_are_refused_in_one_line():
    with pytest.raises(BenchError, match="must divide"):
        scenario(ClientUpdate(local_steps=4, local_batch_size=3))
    with pytest.raises(BenchError, match="never reach all 4 images"):
        scenario(ClientUpdate(local_steps=2, local_batch_size=1))


def test_label_methods_say_where_they_cannot_apply():
    fedavg, _ = simulate(scenario(ClientUpdate(local_steps=3)))
    assert "inverts a FedSGD gradient" in missing_need(fedavg, LABELS.get("ilrg").info["needs"])
    assert "inverts a FedSGD gradient" in missing_need(fedavg, LABELS.get("llg-star").info["needs"])
    assert recover_labels("llg", fedavg).shape == (4,)
    aggregated, secret = simulate(scenario(ClientUpdate(clients=2), model="lenet", model_options={}))
    for method in ("llg", "ilrg", "idlg", "bias-corrected"):
        assert recover_labels(method, aggregated).shape == (8,), method
    # lenet has no BN: the mean of two clients' gradients is one batch of 8, which iLRG counts exactly
    assert torch.equal(recover_labels("ilrg", aggregated), torch.sort(secret.labels).values)


def test_attacks_say_which_updates_they_match(tmp_path):
    fedavg, _ = simulate(scenario(ClientUpdate(local_steps=2), batch_size=1))
    aggregated, _ = simulate(scenario(ClientUpdate(clients=2), batch_size=1))
    for name in ("dlg", "inverting-gradients", "gradinversion", "e2egi", "noise", "prior-mean"):
        assert create_attack(name).incompatibility(aggregated) is None, name
    assert create_attack("idlg").incompatibility(fedavg) is None
    # iDLG's label rule reads one image; two clients' mean update holds two
    assert "mean of 2 clients" in create_attack("idlg").incompatibility(aggregated)
    undeclared = Requirements()  # an attack that declares nothing matches one client's FedSGD gradient
    assert "fedavg update" in undeclared.incompatibility(fedavg.threat, model_has_bn=True)
    assert "mean of 2 clients" in undeclared.incompatibility(aggregated.threat, model_has_bn=True)
    (record,) = run_cells([Cell(scenario(ClientUpdate(clients=2), batch_size=1), attack="idlg", budget=1)], tmp_path)
    assert record.status == "skipped" and "2 clients" in record.error


def test_sweep_axes_expand_into_updates_and_records_carry_their_facts(tmp_path):
    sweep = sweep_from_dict(
        {"track": "labels", "models": ["lenet"], "image_size": 16, "batch_sizes": [4], "bn_mode": "eval",
         "defenses": ["none", "dp(clip=1, sigma=0.5)", "prune(0.9)"], "local_steps": [1, 2], "clients": [1, 2]},
        "test",
    )  # fmt: skip
    cells = expand(sweep, ["llg"])
    updates = {c.scenario.threat.update for c in cells}
    assert len(cells) == len(updates) == 12 and len({c.run_id for c in cells}) == 12
    dp_cell = next(c for c in cells if c.scenario.threat.update == ClientUpdate(defense=parse_defense("dp(1, 0.5)")))
    (record,) = run_cells([dp_cell], tmp_path)
    assert record.status == "ok" and record.update["epsilon"] > 0 and -1 <= record.update["cosine_to_undefended"] < 1
    assert json.loads((tmp_path / f"{record.run_id}.json").read_text())["update"] == record.update
    with pytest.raises(BenchError, match="dp has no parameter C"):
        sweep_from_dict({"defenses": ["dp(C=1, sigma=0.5)"]}, "test")
    with pytest.raises(BenchError, match=r"local_steps\[0\]: Input should be a valid integer"):
        sweep_from_dict({"local_steps": ["five"]}, "test")


def test_cli_refuses_bad_defenses_before_any_work(tmp_path):
    def run(*args):
        command = [sys.executable, "-m", "bench", "run", "--track", "labels", "--models", "lenet", "--out", str(tmp_path / "r"), *args]
        return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)

    for args, message in [(["--defenses", "none,prun(0.9)"], "did you mean prune"),
                          (["--defenses", "dp(clip=1, sigma=0.5)", "--bn-mode", "train"], "set bn_mode: eval")]:  # fmt: skip
        out = run(*args)
        assert out.returncode == 2 and out.stderr.strip().count("\n") == 0 and message in out.stderr, out.stderr
    assert not (tmp_path / "r").exists()


def test_sharded_runs_refuse_updates_other_than_fedsgd_before_any_work():
    cells = [Cell(scenario(ClientUpdate(clients=2)), attack="noise", budget=1)]
    with pytest.raises(BenchError, match="sharded client computes one plain FedSGD gradient"):
        validate(cells, world_size=2)
    assert validate(cells, world_size=2, shard_above=4)[0].skip is None  # one rank per cell: allowed
