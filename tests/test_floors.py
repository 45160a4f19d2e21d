"""Prior-only floors: the floors' PSNRs equal a direct computation, every attack record's `psnr_gain` is its
PSNR minus the stronger floor on the same case, and the dataset mean is the class-balanced mean it claims."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bench.attack import ATTACKS, create_attack
from bench.client import simulate
from bench.data import mean as mean_module
from bench.data import open_dataset
from bench.data.mean import mean_image, sample_mean
from bench.floors import FLOORS, floor_metrics, floor_psnrs, floor_reconstruction
from bench.leaderboard.aggregate import reference_role
from bench.metrics import MetricConfig, psnr
from bench.normalization import Normalization
from bench.runner import RunOptions, run_cells
from bench.scenario import Scenario
from bench.sweep import expand, load_preset, override
from bench.threat import ThreatModel


def _case(labels_known: bool = False, seed: int = 4):
    scenario = Scenario(
        model="convnet", model_options={"width": 4}, image_size=16, batch_size=3, seed=seed,
        threat=ThreatModel(labels_known=labels_known),
    )  # fmt: skip
    return simulate(scenario)


def test_floor_psnrs_equal_a_direct_computation():
    case, secret = _case()
    grey = psnr(secret.images, torch.full_like(secret.images, 0.5)).mean().item()
    assert len(secret.items) == 3 and secret.items <= set(range(len(open_dataset("embedded", None).labels)))
    mean = mean_image("embedded", None, 16, secret.items)
    assert mean.shape == (3, 16, 16)
    averaged = psnr(secret.images, mean.expand_as(secret.images)).mean().item()
    floors = floor_psnrs(case, secret)
    assert floors == pytest.approx({"prior-grey": grey, "prior-mean": averaged}, abs=1e-9)
    assert grey != pytest.approx(averaged, abs=0.1)  # two different floors, not one computed twice


def test_the_mean_floor_leaves_the_clients_own_images_out():
    """The attacker knows the data, not the client's images: with them in the mean (5-7% of it on the
    embedded set) the floor scores the client's own image and rises."""
    case, secret = _case()
    whole = mean_image("embedded", None, 16)
    without = mean_image("embedded", None, 16, secret.items)
    assert (whole - without).abs().max() > 0.01
    scored = floor_psnrs(case, secret)["prior-mean"]
    with_own = psnr(secret.images, whole.expand_as(secret.images)).mean().item()
    assert scored == pytest.approx(psnr(secret.images, without.expand_as(secret.images)).mean().item(), abs=1e-9)
    assert with_own > scored  # the client's own images in the mean flatter the floor


def test_prior_attacks_ignore_the_gradient_and_return_labels_only_when_given():
    for known in (False, True):
        case, secret = _case(labels_known=known)
        for name in FLOORS:
            rec = create_attack(name).reconstruct(case, seed=7)
            assert rec.images.shape == secret.images.shape and rec.iterations == 0
            assert torch.equal(rec.images, rec.images[:1].expand_as(rec.images))  # one image for every sample
            assert (rec.labels is not None) == known
            if known:
                assert rec.labels.tolist() == secret.labels.tolist()
        blind = dict(case.gradients)
        case.gradients.clear()  # a floor must not need the leaked update
        assert torch.equal(create_attack("prior-grey").reconstruct(case).images, torch.full_like(secret.images, 0.5))
        case.gradients.update(blind)


def test_every_attack_record_carries_its_gain_over_the_stronger_floor(tmp_path: Path):
    sweep = override(load_preset("smoke"), budget=2, batch_sizes=[1, 2])
    names = ["noise", "prior-grey", "prior-mean", "inverting-gradients"]
    options = RunOptions(metric=MetricConfig(lpips=False), save_images=False)
    records = run_cells(expand(sweep, names), tmp_path, options)
    assert [r.status for r in records] == ["ok"] * 8
    by_case: dict[str, dict[str, dict]] = {}
    for record in records:
        by_case.setdefault(record.config["scenario"]["batch_size"], {})[record.config["attack"]] = record.metrics
    for batch_size, metrics in by_case.items():
        case, secret = simulate(Scenario.from_dict(next(r for r in records if r.config["scenario"]["batch_size"] == batch_size).config["scenario"]))
        direct = {
            "prior-grey": psnr(secret.images, torch.full_like(secret.images, 0.5)).mean().item(),
            "prior-mean": psnr(secret.images, mean_image("embedded", None, 16, secret.items).expand_as(secret.images)).mean().item(),
        }
        strongest = max(direct.values())
        for attack, m in metrics.items():
            assert m["psnr_prior_grey"] == pytest.approx(direct["prior-grey"], abs=1e-9)
            assert m["psnr_prior_mean"] == pytest.approx(direct["prior-mean"], abs=1e-9)
            assert m["psnr_floor"] == pytest.approx(strongest, abs=1e-9)
            assert m["psnr_gain"] == pytest.approx(m["psnr"] - strongest, abs=1e-9), attack
        # the floor rows are the same numbers as the floors recorded beside every attack
        assert metrics["prior-grey"]["psnr"] == pytest.approx(direct["prior-grey"], abs=1e-9)
        assert metrics["prior-mean"]["psnr"] == pytest.approx(direct["prior-mean"], abs=1e-9)  # the leave-out mean
        assert max(metrics["prior-grey"]["psnr_gain"], metrics["prior-mean"]["psnr_gain"]) == pytest.approx(0.0, abs=1e-9)
        assert metrics["noise"]["psnr_gain"] < -5  # random start is far below the floor


def test_floor_metrics_take_the_stronger_floor():
    values = floor_metrics(25.0, {"prior-grey": 21.0, "prior-mean": 22.5})
    assert values == {"psnr_floor": 22.5, "psnr_prior_grey": 21.0, "psnr_prior_mean": 22.5, "psnr_gain": 2.5}
    assert floor_metrics(None, {"prior-grey": 21.0, "prior-mean": 20.0})["psnr_gain"] is None


def test_the_leaderboard_knows_the_floors():
    assert {name for name in ATTACKS.names() if reference_role(name) == "floor"} == set(FLOORS)
    assert reference_role("noise") == "random start" and reference_role("dlg") is None


class TwoClasses:
    """Class 0: three items, all black; class 1: one item, all white. Crops do not apply."""

    name = "two-classes"
    channels = 1
    num_classes = 2
    class_names = ["black", "white"]
    normalization = Normalization((0.5,), (0.5,))
    labels = np.array([0, 0, 0, 1])

    def load(self, index: int, size: int, crop_seed: int) -> torch.Tensor:
        return torch.full((1, size, size), float(self.labels[index]))


def test_the_mean_image_is_class_balanced_like_the_sampler():
    mean = sample_mean(TwoClasses(), size=4)
    # classes are drawn uniformly, so white covers about half the draws (item-uniform would give 1/4)
    assert torch.allclose(mean, mean[0, 0, 0].expand_as(mean))
    assert abs(mean[0, 0, 0].item() - 0.5) < 0.05


def test_the_mean_image_is_cached_on_disk(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    mean_image.cache_clear()
    calls = []
    real = mean_module.sample_mean
    monkeypatch.setattr(mean_module, "sample_mean", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = mean_image("embedded", None, 8)
    mean_image.cache_clear()  # a new process: only the disk cache is left
    second = mean_image("embedded", None, 8)
    assert calls == [1] and torch.equal(first, second)
    assert len(list((tmp_path / "means").glob("*.safetensors"))) == 1
    mean_image.cache_clear()


def test_the_mean_leaves_out_excluded_items_and_classes():
    data = TwoClasses()
    assert torch.equal(sample_mean(data, size=4, exclude=frozenset({3})), torch.zeros(1, 4, 4))  # no white left
    half = sample_mean(data, size=4, exclude=frozenset({0, 1}))  # one black item left: classes still balanced
    assert abs(half[0, 0, 0].item() - 0.5) < 0.05
    assert sample_mean(data, size=4, exclude=frozenset({0, 1, 2, 3})) is None
    assert torch.equal(sample_mean(data, size=4, exclude=frozenset()), sample_mean(data, size=4))


def test_a_mean_floor_with_no_item_left_is_the_grey_image(monkeypatch):
    case, secret = _case()
    monkeypatch.setattr("bench.floors.mean_image", lambda *args: None)
    rec = floor_reconstruction("prior-mean", case, secret)
    assert torch.equal(rec.images, torch.full_like(secret.images, 0.5))


def test_scoring_by_lpips_pairing_still_scores_the_floors():
    """A floor repeats one image: its pairing is by MSE whatever the attacks' (LPIPS pairing needs LPIPS,
    which floors do not compute)."""
    case, secret = _case()
    by_mse = floor_psnrs(case, secret)
    by_lpips = floor_psnrs(case, secret, MetricConfig(pairing="lpips", lpips=True))
    assert by_lpips == by_mse
