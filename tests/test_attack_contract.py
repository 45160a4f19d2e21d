"""The attack contract, checked for EVERY registered attack.

An attack receives a Case (never the Secret), returns B images in [0, 1] of the batch's shape and B labels
or None, declares what it requires of the threat model, and cannot reach the client's private batch: the
Case holds no copy of the images or (when hidden) the labels, and only the Secret references them.
"""

from __future__ import annotations

import dataclasses
import gc
import re
import typing
from collections.abc import Iterator

import pytest
import torch

import attacks  # noqa: F401  (registers E2EGI)
import baselines  # noqa: F401  (registers the baselines and the floor)
import baselines.dlg  # noqa: F401
import baselines.gradinversion  # noqa: F401
import baselines.idlg  # noqa: F401
import baselines.inverting_gradients  # noqa: F401
from bench.attack import ATTACKS, Attack, Reconstruction, create_attack
from bench.case import Case, Secret
from bench.client import simulate
from bench.errors import BenchError
from bench.plugins import load_plugins
from bench.scenario import Scenario
from bench.threat import ThreatModel

load_plugins()


def _lenet(seed: int, threat: ThreatModel) -> Scenario:
    return Scenario(model="lenet", image_size=16, batch_size=1, seed=seed, threat=threat)


def _convnet(seed: int, threat: ThreatModel) -> Scenario:
    return Scenario(model="convnet", model_options={"width": 4}, image_size=16, batch_size=2, seed=seed, threat=threat)


# Tiny cases that between them satisfy every declared requirement: no BN and BN, B = 1 and B = 2,
# labels known and unknown, BN statistics none / running / exact.
SCENARIOS = {
    "lenet-b1-unknown": _lenet(1, ThreatModel(labels_known=False, bn_stats="none")),
    "lenet-b1-known": _lenet(2, ThreatModel(labels_known=True, bn_stats="none")),
    "convnet-b2-exact": _convnet(3, ThreatModel(labels_known=False, bn_stats="exact")),
    "convnet-b2-running-known": _convnet(4, ThreatModel(labels_known=True, bn_stats="running")),
    "convnet-b2-none": _convnet(5, ThreatModel(labels_known=False, bn_stats="none")),
}
BUDGET = 3  # iterations: the contract is about shapes, ranges and information flow, not quality


@pytest.fixture(scope="module")
def cases() -> dict[str, tuple[Case, Secret]]:
    return {name: simulate(scenario) for name, scenario in SCENARIOS.items()}


def test_the_attacks_of_the_benchmark_are_registered():
    assert {"noise", "prior-grey", "prior-mean", "dlg", "idlg", "inverting-gradients", "gradinversion"} <= set(ATTACKS.names())


@pytest.mark.parametrize("name", ATTACKS.names())
def test_attack_signature_takes_a_case_and_never_a_secret(name):
    cls = ATTACKS.get(name).obj
    assert issubclass(cls, Attack)
    hints = typing.get_type_hints(cls.reconstruct)
    assert hints["case"] is Case and hints["return"] is Reconstruction
    assert Secret not in hints.values()
    assert dataclasses.is_dataclass(cls.Config) and cls.Config.__dataclass_params__.frozen
    assert ATTACKS.get(name).description and "\n" not in ATTACKS.get(name).description


@pytest.mark.parametrize("name", ATTACKS.names())
def test_attack_output_contract_on_every_compatible_case(name, cases):
    ran = 0
    for case_name, (case, secret) in cases.items():
        attack = create_attack(name)
        reason = attack.requires.incompatibility(case.threat, case.has_bn_layers(), case.batch_size)
        if reason is not None:
            assert isinstance(reason, str) and reason and "\n" not in reason
            continue
        rec = attack.reconstruct(case, budget=BUDGET, seed=0)
        assert isinstance(rec, Reconstruction), case_name
        assert rec.images.shape == secret.images.shape, case_name
        assert rec.images.dtype == torch.float32 and torch.isfinite(rec.images).all(), case_name
        assert rec.images.min() >= 0 and rec.images.max() <= 1, case_name
        if rec.labels is not None:
            assert rec.labels.shape == (case.batch_size,) and rec.labels.dtype == torch.int64, case_name
            assert rec.labels.min() >= 0 and rec.labels.max() < case.num_classes, case_name
        assert 0 <= rec.iterations
        ran += 1
    assert ran > 0, f"{name} declared itself incompatible with every contract case"


@pytest.mark.parametrize("name", ATTACKS.names())
def test_declared_requirements_match_the_threat_models(name, cases):
    """An attack needing BN statistics or BN layers says so before running, not by failing half-way."""
    requires = ATTACKS.get(name).obj.requires
    for case, _ in cases.values():
        reason = requires.incompatibility(case.threat, case.has_bn_layers(), case.batch_size)
        if requires.labels_known and not case.threat.labels_known:
            assert reason is not None
        if requires.needs_bn_layers and not case.has_bn_layers():
            assert reason is not None
        if case.threat.bn_stats not in requires.bn_stats:
            assert reason is not None
        if requires.max_batch_size is not None and case.batch_size > requires.max_batch_size:
            assert reason is not None


def test_idlg_refuses_a_batch_it_declares_incompatible(cases):
    case, _ = cases["convnet-b2-none"]
    attack = create_attack("idlg")
    assert attack.requires.incompatibility(case.threat, case.has_bn_layers(), case.batch_size) is not None
    with pytest.raises(BenchError):
        attack.reconstruct(case, budget=1)


@pytest.mark.parametrize("name", ATTACKS.names())
def test_every_attack_refuses_every_case_its_requirements_exclude(name, cases):
    attack = create_attack(name)
    for case, _ in cases.values():
        reason = attack.incompatibility(case)
        if reason is not None:
            with pytest.raises(BenchError, match=re.escape(reason)):
                attack.reconstruct(case, budget=1)


# ---- the Case cannot reach the Secret ----------------------------------------------------------------


def _walk(obj, seen: set[int] | None = None) -> Iterator[object]:
    """Every object reachable from `obj` through attributes, dataclass fields, dict keys/values and sequences."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    yield obj
    if isinstance(obj, torch.Tensor) or isinstance(obj, (str, bytes, int, float, bool, type(None))):
        return
    if isinstance(obj, dict):
        children = [*obj.keys(), *obj.values()]
    elif isinstance(obj, (list, tuple, set, frozenset)):
        children = list(obj)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        children = [getattr(obj, f.name) for f in dataclasses.fields(obj)]
        children += list(getattr(obj, "__dict__", {}).values())
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        children = list(vars(obj).values())
    else:
        children = []
    for child in children:
        yield from _walk(child, seen)


def _holds(tensor: torch.Tensor, secret_values: torch.Tensor) -> bool:
    """Whether `tensor` holds `secret_values` (any shape, any float dtype)."""
    if tensor.numel() != secret_values.numel() or tensor.numel() == 0:
        return False
    return torch.allclose(tensor.detach().double().flatten().cpu(), secret_values.double().flatten(), atol=1e-6)


@pytest.mark.parametrize("case_name", list(SCENARIOS))
def test_the_case_holds_no_copy_of_the_private_batch(case_name, cases):
    case, secret = cases[case_name]
    assert_no_secret_inside(case, secret)


def test_the_scan_finds_a_planted_copy(cases):
    case, secret = cases["convnet-b2-exact"]
    planted_copies = (
        case.normalization.normalize(secret.images).flatten(),
        secret.images.clone(),
        secret.labels.clone(),
        secret.labels.tolist(),
    )
    for planted in planted_copies:
        leaky = dataclasses.replace(case, info={**case.info, "cache": [planted]})
        with pytest.raises(AssertionError):
            assert_no_secret_inside(leaky, secret)


def assert_no_secret_inside(case: Case, secret: Secret) -> None:
    pixels, normalised = secret.images, case.normalization.normalize(secret.images)
    reachable = list(_walk(case))
    tensors = [obj for obj in reachable if isinstance(obj, torch.Tensor)]
    assert any(t is case.gradients[next(iter(case.gradients))] for t in tensors)  # the walk reaches tensors
    for tensor in tensors:
        assert tensor is not secret.images
        assert not _holds(tensor, pixels) and not _holds(tensor, normalised)
    if not case.threat.labels_known:
        assert case.labels is None
        for obj in reachable:
            if isinstance(obj, torch.Tensor) and not obj.is_floating_point() and obj.dim() == 1:
                assert not torch.equal(obj.cpu(), secret.labels), "a label tensor is reachable from the Case"
            if isinstance(obj, (list, tuple)) and len(obj) == secret.labels.numel() and obj:
                assert list(obj) != secret.labels.tolist() or not all(isinstance(v, int) for v in obj)
    else:
        assert torch.equal(case.labels, secret.labels) and case.labels is not secret.labels


def test_only_the_secret_references_the_private_images(cases):
    for case_name in ("lenet-b1-unknown", "convnet-b2-exact"):
        case, secret = cases[case_name]
        for name in ATTACKS.names():
            attack = create_attack(name)
            if attack.requires.incompatibility(case.threat, case.has_bn_layers(), case.batch_size) is None:
                attack.reconstruct(case, budget=1)
        gc.collect()
        for field in ("images", "labels"):
            holders = gc.get_referrers(getattr(secret, field))
            # the Secret itself, or its attribute dict (which of the two CPython reports depends on its version)
            owners = (secret, vars(secret))
            assert len(holders) == 1 and any(holders[0] is h for h in owners), [type(h) for h in holders]
