"""The attack contract (bench.contract), checked for EVERY registered attack, plugins loaded included.

An attack receives a Case (never the Secret), returns B images in [0, 1] of the batch's shape and B labels
or None, declares what it requires of the threat model, and cannot reach the client's private batch: the
Case holds no copy of the images or (when hidden) the labels, and only the Secret references them.
"""

from __future__ import annotations

import dataclasses
import gc
from collections.abc import Iterator

import pytest
import torch

from bench.attack import ATTACKS, Attack, Reconstruction, create_attack
from bench.case import Case, Secret
from bench.contract import (
    CONTRACT_SCENARIOS,
    ContractError,
    check_declaration,
    check_output,
    check_refusals,
    check_requirements,
    contract_cases,
)
from bench.errors import BenchError
from bench.plugins import load_plugins
from bench.registry import Entry

load_plugins()  # the built-in attacks, and those of any plugin declared (GIBENCH_PLUGINS, entry points)
SCENARIOS = CONTRACT_SCENARIOS


@pytest.fixture(scope="module")
def cases() -> dict[str, tuple[Case, Secret]]:
    return contract_cases()


def test_the_attacks_of_the_benchmark_are_registered():
    assert {"noise", "prior-grey", "prior-mean", "dlg", "idlg", "inverting-gradients", "gradinversion"} <= set(ATTACKS.names())


@pytest.mark.parametrize("name", ATTACKS.names())
def test_attack_signature_takes_a_case_and_never_a_secret(name):
    check_declaration(name)


@pytest.mark.parametrize("name", ATTACKS.names())
def test_attack_output_contract_on_every_compatible_case(name, cases):
    check_output(name, cases)


@pytest.mark.parametrize("name", ATTACKS.names())
def test_declared_requirements_match_the_threat_models(name, cases):
    """An attack needing BN statistics or BN layers says so before running, not by failing half-way."""
    check_requirements(name, cases)


def test_idlg_refuses_a_batch_it_declares_incompatible(cases):
    case, _ = cases["convnet-b2-none"]
    attack = create_attack("idlg")
    assert attack.requires.incompatibility(case.threat, case.has_bn_layers(), case.batch_size) is not None
    with pytest.raises(BenchError):
        attack.reconstruct(case, budget=1)


@pytest.mark.parametrize("name", ATTACKS.names())
def test_every_attack_refuses_every_case_its_requirements_exclude(name, cases):
    check_refusals(name, cases)


def test_the_checks_catch_a_broken_attack(cases, monkeypatch):
    """An attack that returns images of the wrong shape, or runs on a case it declares excluded, fails."""

    class WrongShape(Attack):
        Config = type(create_attack("noise").config)

        def invert(self, case, budget, seed, progress):
            return Reconstruction(torch.zeros(1, *case.image_shape), None)

    class IgnoresItsRequirements(WrongShape):
        requires = dataclasses.replace(WrongShape.requires, labels_known=True)

        def reconstruct(self, case, budget=None, seed=0, progress=None):
            return self.invert(case, budget, seed, progress)

    for name, cls in (("probe-wrong-shape", WrongShape), ("probe-ignores-requirements", IgnoresItsRequirements)):
        monkeypatch.setitem(ATTACKS._entries, name, Entry(name, cls, "contract probe"))
    with pytest.raises(ContractError, match="images"):
        check_output("probe-wrong-shape", cases)
    with pytest.raises(ContractError, match="ran on a case its requirements exclude"):
        check_refusals("probe-ignores-requirements", cases)


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
