import json
import pickle

import pytest
import torch
import torch.nn.functional as F

from bench.case import load_case, load_secret, save_case
from bench.client import simulate
from bench.errors import CaseFileError
from bench.scenario import Scenario
from bench.threat import ThreatModel


def _independent_gradient(case, secret):
    """Recompute the client's update by hand: fresh model, mean CE, torch.autograd on every parameter."""
    model = case.build_model()
    inputs = case.normalization.normalize(secret.images)
    loss = F.cross_entropy(model(inputs), secret.labels)
    loss.backward()
    return {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("bn_mode", ["train", "eval"])
def test_gradient_equals_independent_recomputation(bn_mode):
    case, secret = simulate(
        Scenario(model="convnet", model_options={"width": 4}, image_size=16, batch_size=4, bn_mode=bn_mode, seed=1)
    )
    expected = _independent_gradient(case, secret)
    assert list(case.gradients) == list(expected)
    for name, grad in case.gradients.items():
        torch.testing.assert_close(grad, expected[name], rtol=1e-5, atol=1e-7)


def test_bn_statistics_are_those_of_the_whole_batch(small_case):
    case, secret = small_case
    model = case.build_model()
    inputs = case.normalization.normalize(secret.images)
    # Direct computation: run the layers before the first BN by hand and take batch moments.
    first = case.bn_layers[0]
    captured = {}
    module = dict(model.named_modules())[first]
    module.register_forward_pre_hook(lambda m, args: captured.setdefault("x", args[0].detach()))
    model(inputs)
    x = captured["x"]
    assert x.shape[0] == case.batch_size
    torch.testing.assert_close(case.bn_stats[first].mean, x.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(case.bn_stats[first].var, x.var(dim=(0, 2, 3), unbiased=False))
    assert set(case.bn_stats) == set(case.bn_layers)


def test_case_hides_labels_and_bn_stats_when_the_threat_model_does():
    case, secret = simulate(
        Scenario(model="lenet", image_size=16, batch_size=2, threat=ThreatModel(labels_known=False, bn_stats="none"))
    )
    assert case.labels is None and case.bn_stats is None and case.bn_prior() is None
    known, _ = simulate(Scenario(model="lenet", image_size=16, batch_size=2, threat=ThreatModel(labels_known=True)))
    assert torch.equal(known.labels, secret.labels)


def test_round_trip_is_bit_for_bit(tmp_path, small_case):
    case, secret = small_case
    save_case(case, tmp_path / "c", secret)
    loaded, loaded_secret = load_case(tmp_path / "c"), load_secret(tmp_path / "c")
    for name in case.gradients:
        assert torch.equal(case.gradients[name], loaded.gradients[name])
    for name in case.model_state:
        assert torch.equal(case.model_state[name], loaded.model_state[name])
    for name in case.bn_stats:
        assert torch.equal(case.bn_stats[name].mean, loaded.bn_stats[name].mean)
        assert torch.equal(case.bn_stats[name].var, loaded.bn_stats[name].var)
    assert list(loaded.gradients) == list(case.gradients)
    assert (loaded.architecture, loaded.threat, loaded.loss, loaded.bn_layers) == (
        case.architecture, case.threat, case.loss, case.bn_layers
    )
    assert torch.equal(loaded_secret.images, secret.images) and torch.equal(loaded_secret.labels, secret.labels)
    # Written again, the files are byte-identical.
    save_case(loaded, tmp_path / "d", loaded_secret)
    for name in ("case.safetensors", "case.json", "secret.safetensors"):
        assert (tmp_path / "c" / name).read_bytes() == (tmp_path / "d" / name).read_bytes()


def test_attacker_files_never_contain_the_secret(tmp_path, small_case):
    case, secret = small_case
    save_case(case, tmp_path / "c")
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["case.json", "case.safetensors"]


def test_tampered_tensor_file_is_refused(tmp_path, small_case):
    case, _ = small_case
    folder = save_case(case, tmp_path / "c")
    blob = bytearray((folder / "case.safetensors").read_bytes())
    blob[-1] ^= 0x01
    (folder / "case.safetensors").write_bytes(bytes(blob))
    with pytest.raises(CaseFileError, match="checksum"):
        load_case(folder)


def test_pickled_file_is_refused_without_unpickling(tmp_path, small_case):
    case, _ = small_case
    folder = save_case(case, tmp_path / "c")
    marker = tmp_path / "unpickled"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    blob = pickle.dumps({"grad": Payload()})
    (folder / "case.safetensors").write_bytes(blob)
    meta = json.loads((folder / "case.json").read_text())
    import hashlib

    meta["tensors_sha256"] = hashlib.sha256(blob).hexdigest()  # even with a matching checksum
    (folder / "case.json").write_text(json.dumps(meta))
    with pytest.raises(CaseFileError, match="not a safetensors file"):
        load_case(folder)
    assert not marker.exists()


def test_missing_and_corrupt_json(tmp_path, small_case):
    case, _ = small_case
    with pytest.raises(CaseFileError, match="missing file"):
        load_case(tmp_path / "nothing")
    folder = save_case(case, tmp_path / "c")
    (folder / "case.json").write_text("{not json")
    with pytest.raises(CaseFileError, match="not valid JSON"):
        load_case(folder)
