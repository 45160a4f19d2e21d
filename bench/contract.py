"""The attack contract as checks anyone can run on a registered attack, built-in or from a plugin.

An attack receives a Case (never the Secret), returns B images in [0, 1] of the batch's shape and B labels
or None, declares what it requires of the threat model and refuses every case those requirements exclude,
and has a frozen dataclass Config whose values a record can hold. `check_attack(name)` checks all of it on
tiny cases of the real client simulation (`contract_cases`: no BN and BN, B = 1 and 2, labels known and
unknown, BN statistics none / running / exact) in a few seconds. tests/test_attack_contract.py runs it for
every registered attack, plugins loaded included, and a plugin's own tests can call it:

    from bench.contract import check_attack
    from bench.plugins import load_plugins

    def test_my_attack_keeps_the_contract():
        load_plugins()
        check_attack("my-attack")

A broken promise raises ContractError (an AssertionError, so pytest reports it) naming the attack and case.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import typing

import torch

from bench.attack import ATTACKS, Attack, Reconstruction, attack_config, config_values, create_attack
from bench.case import Case, Secret
from bench.errors import BenchError
from bench.scenario import Scenario
from bench.threat import ThreatModel

BUDGET = 3  # iterations: the contract is about shapes, ranges and information flow, not quality


class ContractError(AssertionError):
    pass


def _lenet(seed: int, threat: ThreatModel) -> Scenario:
    return Scenario(model="lenet", image_size=16, batch_size=1, seed=seed, threat=threat)


def _convnet(seed: int, threat: ThreatModel) -> Scenario:
    return Scenario(model="convnet", model_options={"width": 4}, image_size=16, batch_size=2, seed=seed, threat=threat)


# Tiny cases that between them satisfy every declared requirement: no BN and BN, B = 1 and B = 2,
# labels known and unknown, BN statistics none / running / exact.
CONTRACT_SCENARIOS = {
    "lenet-b1-unknown": _lenet(1, ThreatModel(labels_known=False, bn_stats="none")),
    "lenet-b1-known": _lenet(2, ThreatModel(labels_known=True, bn_stats="none")),
    "convnet-b2-exact": _convnet(3, ThreatModel(labels_known=False, bn_stats="exact")),
    "convnet-b2-running-known": _convnet(4, ThreatModel(labels_known=True, bn_stats="running")),
    "convnet-b2-none": _convnet(5, ThreatModel(labels_known=False, bn_stats="none")),
}
Cases = dict[str, tuple[Case, Secret]]


@functools.cache
def contract_cases() -> Cases:
    """The contract's cases, simulated once per process."""
    from bench.client import simulate

    return {name: simulate(scenario) for name, scenario in CONTRACT_SCENARIOS.items()}


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ContractError(message)


def check_declaration(name: str) -> None:
    """A registered Attack subclass whose `reconstruct` takes a Case (never a Secret) and returns a
    Reconstruction, with a one-line description and a frozen dataclass Config that a record can hold."""
    entry = ATTACKS.get(name)
    cls = entry.obj
    _require(isinstance(cls, type) and issubclass(cls, Attack), f"{name}: {cls!r} is not a subclass of bench.attack.Attack")
    hints = typing.get_type_hints(cls.reconstruct)
    _require(hints.get("case") is Case and hints.get("return") is Reconstruction, f"{name}: reconstruct's signature changed")
    _require(Secret not in hints.values(), f"{name}: reconstruct must not take a Secret")
    config = cls.Config
    _require(dataclasses.is_dataclass(config) and config.__dataclass_params__.frozen, f"{name}: Config must be a frozen dataclass")
    _require(bool(entry.description) and "\n" not in entry.description, f"{name}: needs a one-line description")
    values = config_values(attack_config(name))
    _require(json.loads(json.dumps(values)) == values, f"{name}: Config values must be JSON values (numbers, text, lists)")


def check_output(name: str, cases: Cases | None = None) -> None:
    """On every compatible case: B images of the batch's shape in [0, 1] (float32, finite), labels None or B
    int64 classes of the model, a non-negative iteration count; at least one case must be compatible."""
    ran = 0
    for case_name, (case, secret) in (cases or contract_cases()).items():
        attack = create_attack(name)
        reason = attack.incompatibility(case)
        if reason is not None:
            _require(isinstance(reason, str) and bool(reason) and "\n" not in reason, f"{name}: reasons are one line")
            continue
        rec = attack.reconstruct(case, budget=BUDGET, seed=0)
        where = f"{name} on {case_name}"
        _require(isinstance(rec, Reconstruction), f"{where}: returned {type(rec).__name__}, not a Reconstruction")
        _require(rec.images.shape == secret.images.shape, f"{where}: images {tuple(rec.images.shape)}, batch {tuple(secret.images.shape)}")
        _require(rec.images.dtype == torch.float32 and bool(torch.isfinite(rec.images).all()), f"{where}: images not finite float32")
        _require(bool(rec.images.min() >= 0) and bool(rec.images.max() <= 1), f"{where}: images outside [0, 1]")
        if rec.labels is not None:
            _require(rec.labels.shape == (case.batch_size,) and rec.labels.dtype == torch.int64, f"{where}: labels' shape or type")
            _require(bool(rec.labels.min() >= 0) and bool(rec.labels.max() < case.num_classes), f"{where}: labels outside the classes")
        _require(rec.iterations >= 0, f"{where}: negative iteration count")
        ran += 1
    _require(ran > 0, f"{name} declared itself incompatible with every contract case")


def check_requirements(name: str, cases: Cases | None = None) -> None:
    """What the attack declares excludes the cases it should: an attack needing known labels, BN statistics,
    BN layers or a small batch says so before running, not by failing half-way."""
    requires = ATTACKS.get(name).obj.requires
    for case_name, (case, _) in (cases or contract_cases()).items():
        reason = requires.incompatibility(case.threat, case.has_bn_layers(), case.batch_size)
        excluded = (
            (requires.labels_known and not case.threat.labels_known)
            or (requires.needs_bn_layers and not case.has_bn_layers())
            or case.threat.bn_stats not in requires.bn_stats
            or (requires.max_batch_size is not None and case.batch_size > requires.max_batch_size)
        )
        _require(not excluded or reason is not None, f"{name} on {case_name}: requirements exclude it, yet no reason")


def check_refusals(name: str, cases: Cases | None = None) -> None:
    """`reconstruct` refuses (BenchError, with the reason) every case the attack's requirements exclude."""
    attack = create_attack(name)
    for case_name, (case, _) in (cases or contract_cases()).items():
        reason = attack.incompatibility(case)
        if reason is None:
            continue
        try:
            attack.reconstruct(case, budget=1)
        except BenchError as err:
            _require(reason in str(err), f"{name} on {case_name}: refused with {err}, not with its reason {reason!r}")
        else:
            raise ContractError(f"{name} on {case_name}: ran on a case its requirements exclude ({reason})")


def check_attack(name: str, cases: Cases | None = None) -> None:
    """Every check of the contract on registered attack `name`."""
    check_declaration(name)
    check_requirements(name, cases)
    check_refusals(name, cases)
    check_output(name, cases)
