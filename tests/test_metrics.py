"""Metrics: closed forms, scikit-image's SSIM, brute-force assignments, the lpips package's own LPIPS."""

from __future__ import annotations

import itertools
import json
import math
import warnings
from pathlib import Path

import lpips
import numpy as np
import pytest
import torch
import torchvision
from skimage import data
from skimage.metrics import structural_similarity

import bench.metrics.lpips_offline as lpips_offline
from bench.attack import Reconstruction
from bench.case import Secret
from bench.errors import BenchError
from bench.metrics import (
    METRICS,
    PSNR_CAP_DB,
    MetricConfig,
    best_match,
    label_penalised,
    label_scores,
    mse,
    one_to_one,
    pairwise_mse,
    psnr,
    score,
    ssim,
)
from bench.metrics.lpips_offline import BACKBONE_FILES, MIN_SIDE, Lpips, LpipsUnavailableWarning
from bench.metrics.ssim import gaussian_kernel, window_size

NO_LPIPS = MetricConfig(lpips=False)


def _crops(gray: bool, size: int, n: int, seed: int = 0) -> torch.Tensor:
    """n crops of a real scikit-image picture as N x C x H x W in [0, 1]."""
    img = data.camera() if gray else data.astronaut()
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        y, x = rng.integers(0, img.shape[0] - size), rng.integers(0, img.shape[1] - size)
        crop = img[y : y + size, x : x + size].astype(np.float64) / 255.0
        out.append(torch.from_numpy(crop[None] if gray else crop.transpose(2, 0, 1)))
    return torch.stack(out).float()


def _noisy(x: torch.Tensor, std: float, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (x + std * torch.randn(x.shape, generator=g)).clamp(0, 1)


def _secret(images: torch.Tensor, labels: list[int] | None = None) -> Secret:
    labels = labels if labels is not None else list(range(images.shape[0]))
    return Secret(images, torch.tensor(labels, dtype=torch.int64))


# ---- PSNR / MSE / SSIM ----------------------------------------------------------------------------


@pytest.mark.parametrize("gray", [False, True])
@pytest.mark.parametrize("std", [0.02, 0.1, 0.3])
def test_ssim_matches_scikit_image(gray: bool, std: float) -> None:
    a = _crops(gray, 48, 3)
    b = _noisy(a, std)
    ours = ssim(a, b)
    for k in range(a.shape[0]):
        x, y = a[k].double().numpy(), b[k].double().numpy()
        ref = structural_similarity(
            x[0] if gray else x.transpose(1, 2, 0),
            y[0] if gray else y.transpose(1, 2, 0),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1,
            channel_axis=None if gray else 2,
        )
        assert abs(float(ours[k]) - ref) < 1e-3
        assert abs(float(ours[k]) - ref) < 1e-8  # in fact identical up to float rounding


def _ssim_brute_force(x: np.ndarray, y: np.ndarray, size: int) -> float:
    """SSIM from its definition: Gaussian-weighted statistics of every window that fits, per channel."""
    r = (size - 1) // 2
    g = np.exp(-0.5 * (np.arange(-r, r + 1) / 1.5) ** 2)
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for c in range(x.shape[0]):
        for i in range(x.shape[1] - size + 1):
            for j in range(x.shape[2] - size + 1):
                p, q = x[c, i : i + size, j : j + size], y[c, i : i + size, j : j + size]
                mp, mq = (w * p).sum(), (w * q).sum()
                vp, vq = (w * (p - mp) ** 2).sum(), (w * (q - mq) ** 2).sum()
                cov = (w * (p - mp) * (q - mq)).sum()
                values.append((2 * mp * mq + c1) * (2 * cov + c2) / ((mp**2 + mq**2 + c1) * (vp + vq + c2)))
    return float(np.mean(values))


@pytest.mark.parametrize("shape", [(12, 14), (8, 9), (5, 5), (4, 7)])
def test_ssim_window_shrinks_for_small_images(shape: tuple[int, int]) -> None:
    a = _crops(False, 16, 1)[:, :, : shape[0], : shape[1]]
    b = _noisy(a, 0.1)
    size = window_size(*shape)
    assert size == min(11, *shape) - (min(11, *shape) % 2 == 0)
    assert size % 2 == 1
    ref = _ssim_brute_force(a[0].double().numpy(), b[0].double().numpy(), size)
    assert float(ssim(a, b)[0]) == pytest.approx(ref, abs=1e-10)


def test_gaussian_window_is_the_standard_one() -> None:
    k = gaussian_kernel(11)
    assert k.shape == (11,) and float(k.sum()) == pytest.approx(1.0)
    assert float(k[5] / k[4]) == pytest.approx(math.exp(0.5 / 1.5**2))


def test_psnr_and_mse_closed_forms() -> None:
    a = torch.zeros(3, 3, 8, 8)
    b = torch.stack([torch.full((3, 8, 8), c) for c in (0.1, 0.01, 0.5)])
    assert mse(a, b).tolist() == pytest.approx([0.01, 1e-4, 0.25])
    assert psnr(a, b).tolist() == pytest.approx([20.0, 40.0, -20 * math.log10(0.5)])
    x, y = torch.rand(4, 3, 10, 10), torch.rand(4, 3, 10, 10)
    ref = ((x.double() - y.double()) ** 2).mean(dim=(1, 2, 3))
    assert torch.allclose(mse(x, y), ref)
    assert torch.allclose(psnr(x, y), 10 * torch.log10(1 / ref))


def test_psnr_is_averaged_per_image_not_pooled() -> None:
    true = torch.stack([torch.zeros(1, 8, 8), torch.full((1, 8, 8), 0.5)])
    rec = torch.stack([torch.full((1, 8, 8), 0.6), torch.full((1, 8, 8), 0.01)])  # 20 dB to true 1, 40 dB to 0
    s = score(Reconstruction(rec, None), _secret(true), NO_LPIPS)
    assert s.per_image["assignment"] == [1, 0]
    assert s.summary["psnr"] == pytest.approx((40.0 + 20.0) / 2, abs=1e-5)  # pooled MSE would give 23.0 dB
    assert s.summary["mse"] == pytest.approx((1e-4 + 0.01) / 2, rel=1e-5)
    assert s.summary["psnr_worst"] == pytest.approx(20.0, abs=1e-5) and s.indices["psnr_worst"] == 1
    assert s.summary["psnr_best"] == pytest.approx(40.0, abs=1e-5) and s.indices["psnr_best"] == 0


def test_identical_images_give_capped_psnr_and_ssim_one() -> None:
    x = _crops(False, 32, 3)
    s = score(Reconstruction(x.clone(), None), _secret(x), NO_LPIPS)
    assert PSNR_CAP_DB == 100.0
    assert s.per_image["psnr"] == [100.0] * 3 and s.summary["psnr"] == 100.0
    assert s.summary["ssim"] == pytest.approx(1.0, abs=1e-12)
    assert s.summary["mse"] == 0.0
    assert psnr(x, x + 1e-6).tolist() == pytest.approx([120.0 - 20.0] * 3, abs=1e-3)  # cap, not 120 dB
    text = json.dumps(s.to_dict(), allow_nan=False)
    assert "Infinity" not in text and "NaN" not in text


def test_recognisable_fraction_uses_the_configured_threshold() -> None:
    true = torch.zeros(4, 1, 8, 8)
    rec = torch.stack([torch.full((1, 8, 8), v) for v in (0.1, 0.01, 0.3, 0.001)])  # 20, 40, 10.5, 60 dB
    for threshold, expected in [(20.0, 0.5), (19.9, 0.75), (5.0, 1.0)]:
        cfg = MetricConfig(lpips=False, recognisable_psnr=threshold)
        s = score(Reconstruction(rec, None), _secret(true), cfg)
        assert s.summary["recognisable_fraction"] == expected
        assert s.to_dict()["config"]["recognisable_psnr"] == threshold


# ---- pairing --------------------------------------------------------------------------------------


def test_pairwise_mse_matches_direct_differences() -> None:
    x, y = torch.rand(5, 3, 7, 6), torch.rand(4, 3, 7, 6)
    ref = torch.stack([mse(x[i : i + 1].expand_as(y), y) for i in range(5)])
    assert torch.allclose(pairwise_mse(x, y), ref, atol=1e-12)


@pytest.mark.parametrize("b", [1, 2, 3, 4, 5, 6])
def test_one_to_one_is_optimal_by_brute_force(b: int) -> None:
    g = torch.Generator().manual_seed(b)
    for _ in range(5):
        cost = torch.rand(b, b, generator=g, dtype=torch.float64)
        pairs = one_to_one(cost)
        assert sorted(pairs) == list(range(b))
        best = min(sum(float(cost[i, p[i]]) for i in range(b)) for p in itertools.permutations(range(b)))
        assert sum(float(cost[i, pairs[i]]) for i in range(b)) == pytest.approx(best, abs=1e-12)


@pytest.mark.parametrize("b", [3, 4, 5, 6])
def test_label_restricted_pairing_is_lexicographically_optimal(b: int) -> None:
    """Brute force: most equal-label pairs first, then the least image cost among those."""
    g = torch.Generator().manual_seed(100 + b)
    for _ in range(5):
        cost = torch.rand(b, b, generator=g, dtype=torch.float64)
        true = torch.randint(0, 3, (b,), generator=g)
        pred = torch.randint(0, 3, (b,), generator=g)
        pairs = one_to_one(label_penalised(cost, true, pred))

        def key(p: tuple[int, ...]) -> tuple[int, float]:
            mismatches = sum(int(true[i] != pred[p[i]]) for i in range(b))
            return mismatches, sum(float(cost[i, p[i]]) for i in range(b))

        ref = min(key(p) for p in itertools.permutations(range(b)))
        got = key(tuple(pairs))
        assert got[0] == ref[0] and got[1] == pytest.approx(ref[1], abs=1e-9)


def test_best_match_by_label_prefers_same_label_else_cheapest() -> None:
    cost = torch.tensor([[0.1, 0.5, 0.9], [0.2, 0.3, 0.4]], dtype=torch.float64)
    true, pred = torch.tensor([7, 9]), torch.tensor([1, 7, 2])
    # row 0 (label 7): only column 1 has label 7; row 1 (label 9): nobody has it, cheapest overall is 0
    assert best_match(label_penalised(cost, true, pred)) == [1, 0]
    assert best_match(cost) == [0, 0]


def test_assignment_is_invariant_to_shuffling_the_batch() -> None:
    true = _crops(False, 24, 6, seed=3)
    rec = _noisy(true, 0.15)
    labels = [3, 3, 1, 0, 2, 1]
    base = score(Reconstruction(rec, torch.tensor(labels)), _secret(true, labels), NO_LPIPS)
    assert base.per_image["assignment"] == list(range(6))
    perm = [4, 0, 5, 2, 1, 3]
    shuffled = score(Reconstruction(rec[perm], torch.tensor(labels)[perm]), _secret(true, labels), NO_LPIPS)
    assert [perm[j] for j in shuffled.per_image["assignment"]] == list(range(6))
    for name in ("mse", "psnr", "ssim"):
        assert shuffled.per_image[name] == pytest.approx(base.per_image[name], abs=1e-12)
        assert shuffled.summary[name] == pytest.approx(base.summary[name], abs=1e-12)
    assert shuffled.summary["label_acc"] == base.summary["label_acc"] == 1.0


def test_best_match_can_reuse_one_reconstruction_one_to_one_cannot() -> None:
    a = _crops(False, 24, 3, seed=5)
    true = torch.stack([a[0], (a[0] + 0.02).clamp(0, 1), a[1]])  # two near-identical true images
    rec = torch.stack([a[0], torch.rand(3, 24, 24), a[1]])  # one good copy of both, one noise image
    s = score(Reconstruction(rec, None), _secret(true), NO_LPIPS)
    assert s.per_image["best_match"] == [0, 0, 2]
    assert sorted(s.per_image["assignment"]) == [0, 1, 2]
    assert s.per_image["assignment"][1] == 1  # the second near-copy has to take the noise image
    assert s.per_image["psnr_best_match"][1] > s.per_image["psnr"][1] + 10
    assert s.summary["psnr_best_match"] > s.summary["psnr"]
    assert s.summary["psnr_best_match"] == pytest.approx(np.mean(s.per_image["psnr_best_match"]))


def test_pair_by_label_changes_the_pairing_when_labels_are_recovered() -> None:
    a = _crops(False, 24, 2, seed=7)
    true = a
    rec = a.flip(0)  # image-wise, rec 1 is true 0 and rec 0 is true 1
    s_img = score(Reconstruction(rec, torch.tensor([5, 6])), _secret(true, [5, 6]), NO_LPIPS)
    by_label = MetricConfig(lpips=False, pair_by_label=True)
    s_lab = score(Reconstruction(rec, torch.tensor([5, 6])), _secret(true, [5, 6]), by_label)
    assert s_img.per_image["assignment"] == [1, 0] and s_img.per_image["label_assigned"] == [6, 5]
    assert s_lab.per_image["assignment"] == [0, 1] and s_lab.per_image["label_assigned"] == [5, 6]
    s_none = score(Reconstruction(rec, None), _secret(true, [5, 6]), by_label)
    assert s_none.per_image["assignment"] == [1, 0] and any("no labels" in n for n in s_none.notes)


def test_fewer_reconstructions_than_true_images() -> None:
    true = _crops(False, 16, 3, seed=9)
    s = score(Reconstruction(true[[2]].clone(), None), _secret(true), NO_LPIPS)
    assert s.per_image["assignment"] == [None, None, 0]
    assert s.per_image["psnr"][:2] == [None, None] and s.summary["psnr"] == 100.0
    assert s.summary["recognisable_fraction"] == pytest.approx(1 / 3)
    assert s.per_image["best_match"] == [0, 0, 0]
    json.dumps(s.to_dict(), allow_nan=False)


def test_bad_reconstructions_are_refused_with_one_line() -> None:
    true = torch.rand(2, 3, 8, 8)
    with pytest.raises(BenchError, match="shape"):
        score(Reconstruction(torch.rand(2, 3, 8, 9), None), _secret(true), NO_LPIPS)
    nan = torch.rand(2, 3, 8, 8)
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(BenchError, match="NaN"):
        score(Reconstruction(nan, None), _secret(true), NO_LPIPS)
    with pytest.raises(BenchError, match="labels"):
        score(Reconstruction(true, torch.tensor([1, 2, 3])), _secret(true), NO_LPIPS)
    with pytest.raises(BenchError):
        MetricConfig(pairing="ssim")


# ---- labels ---------------------------------------------------------------------------------------


def test_label_metrics_on_multisets_with_repeats() -> None:
    s = label_scores(torch.tensor([1, 1, 1, 2, 3]), torch.tensor([2, 1, 4, 1, 2]))
    # intersection {1: 2, 2: 1}; classes true {1, 2, 3}, predicted {1, 2, 4}; counts |3-2|+|1-2|+|1-0|+|0-1|
    assert s.label_acc == pytest.approx(3 / 5)
    assert s.label_precision == pytest.approx(2 / 3) and s.label_recall == pytest.approx(2 / 3)
    assert s.label_count_mae == pytest.approx(4 / 4)
    t = label_scores(torch.tensor([0, 0, 0, 0]), torch.tensor([0, 0, 5, 5]))
    assert (t.label_acc, t.label_precision, t.label_recall, t.label_count_mae) == (0.5, 0.5, 1.0, 2.0)
    perfect = label_scores(torch.tensor([4, 2, 4]), torch.tensor([4, 4, 2]))
    assert (perfect.label_acc, perfect.label_count_mae) == (1.0, 0.0)
    assert label_scores(torch.tensor([1, 2]), None).to_dict() == dict.fromkeys(
        ["label_acc", "label_precision", "label_recall", "label_count_mae"]
    )


def test_label_metrics_in_scores_and_json() -> None:
    x = torch.rand(4, 3, 12, 12)
    s = score(Reconstruction(x, torch.tensor([0, 0, 1, 1])), _secret(x, [0, 0, 0, 2]), NO_LPIPS)
    assert s.summary["label_acc"] == 0.5 and s.summary["label_recall"] == 0.5
    s_none = score(Reconstruction(x, None), _secret(x), NO_LPIPS)
    assert s_none.to_dict()["summary"]["label_acc"] is None
    assert json.loads(json.dumps(s_none.to_dict()))["summary"]["label_precision"] is None


# ---- registry and result schema -------------------------------------------------------------------


def test_every_summary_value_is_a_registered_metric_with_a_direction() -> None:
    x = torch.rand(2, 3, 12, 12)
    s = score(Reconstruction(x, torch.tensor([0, 1])), _secret(x), NO_LPIPS)
    from bench.floors import FLOORS, floor_metrics

    floors = floor_metrics(20.0, {name: 10.0 for name in FLOORS})  # what the runner adds to attack records
    assert set(s.summary) | set(floors) == set(METRICS.names()) and not set(s.summary) & set(floors)
    for entry in METRICS.entries():
        assert entry.info["better"] in ("higher", "lower") and entry.obj.better == entry.info["better"]
    assert METRICS.get("psnr").obj.arrow() == "↑" and METRICS.get("lpips").obj.arrow() == "↓"


def test_scores_round_trip_through_json() -> None:
    x = _crops(False, 16, 3)
    s = score(Reconstruction(_noisy(x, 0.1), torch.tensor([1, 2, 2])), _secret(x, [1, 2, 3]), NO_LPIPS)
    data = json.loads(json.dumps(s.to_dict(), allow_nan=False))
    back = type(s).from_dict(data)
    assert back.summary == s.summary and back.per_image == s.per_image and back.config == s.config


# ---- LPIPS, offline -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def alex_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded random AlexNet state dict under torchvision's file name (a test fixture, not ImageNet)."""
    torch.manual_seed(1234)
    folder = tmp_path_factory.mktemp("lpips")
    path = folder / BACKBONE_FILES["alex"]
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)
    return path


@pytest.fixture
def empty_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv(lpips_offline.ENV_VAR, raising=False)
    monkeypatch.setattr(lpips_offline, "_notice_shown", False)
    return tmp_path


def _reference_lpips(weights: Path, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The lpips package's own model, its random backbone overwritten with the same weights."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
    features = torchvision.models.alexnet(weights=None).features
    state = torch.load(weights, weights_only=True)
    features.load_state_dict({k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")})
    for part in (ref.net.slice1, ref.net.slice2, ref.net.slice3, ref.net.slice4, ref.net.slice5):
        for name, module in part.named_children():
            module.load_state_dict(features[int(name)].state_dict())
    with torch.no_grad():
        return ref(a, b, normalize=True).flatten().double()


def test_lpips_unavailable_offline_is_none_with_one_notice(empty_hub: Path) -> None:
    assert Path(torch.hub.get_dir()).is_relative_to(empty_hub)
    x = _crops(False, 64, 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = score(Reconstruction(x, None), _secret(x))
        second = score(Reconstruction(_noisy(x, 0.1), None), _secret(x))
    notices = [w for w in caught if issubclass(w.category, LpipsUnavailableWarning)]
    assert len(notices) == 1
    assert "--lpips-weights" in str(notices[0].message) and "BENCH_LPIPS_WEIGHTS" in str(notices[0].message)
    for s in (first, second):
        assert s.summary["lpips"] is None and s.summary["lpips_best_match"] is None
        assert s.per_image["lpips"] == [None, None]
        assert json.loads(json.dumps(s.to_dict()))["summary"]["lpips"] is None
        assert any("LPIPS unavailable" in n for n in s.notes)
    assert first.summary["psnr"] == 100.0  # the rest is still scored
    with pytest.raises(BenchError, match="LPIPS"):
        score(Reconstruction(x, None), _secret(x), MetricConfig(pairing="lpips"))


def test_lpips_matches_the_lpips_package_with_the_same_backbone(empty_hub: Path, alex_weights: Path) -> None:
    true = _crops(False, 64, 3, seed=11)
    rec = _noisy(true, 0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LpipsUnavailableWarning)
        s = score(Reconstruction(rec, None), _secret(true), MetricConfig(lpips_weights=str(alex_weights)))
    assert s.per_image["assignment"] == [0, 1, 2]
    ref = _reference_lpips(alex_weights, true, rec)
    assert s.per_image["lpips"] == pytest.approx(ref.tolist(), abs=1e-5)
    assert s.summary["lpips"] == pytest.approx(float(ref.mean()), abs=1e-5)
    same = score(Reconstruction(true.clone(), None), _secret(true), MetricConfig(lpips_weights=str(alex_weights)))
    assert same.per_image["lpips"] == pytest.approx([0.0] * 3, abs=1e-7)


def test_lpips_weights_found_by_env_folder_and_hub_cache(
    empty_hub: Path, alex_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = _crops(False, 40, 2)
    rec = _noisy(x, 0.1)
    explicit = MetricConfig(lpips_weights=str(alex_weights))
    expected = score(Reconstruction(rec, None), _secret(x), explicit).summary["lpips"]
    assert expected is not None
    monkeypatch.setenv(lpips_offline.ENV_VAR, str(alex_weights.parent))  # a folder holding the file
    assert score(Reconstruction(rec, None), _secret(x)).summary["lpips"] == pytest.approx(expected)
    monkeypatch.delenv(lpips_offline.ENV_VAR)
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    cache.mkdir(parents=True)
    (cache / alex_weights.name).symlink_to(alex_weights)
    assert score(Reconstruction(rec, None), _secret(x)).summary["lpips"] == pytest.approx(expected)
    with pytest.raises(BenchError, match="--lpips-weights"):
        score(Reconstruction(rec, None), _secret(x), MetricConfig(lpips_weights=str(empty_hub / "missing.pth")))


def test_lpips_pairwise_matches_per_pair_forward(alex_weights: Path) -> None:
    lp = Lpips.load("alex", alex_weights)
    true, rec = _crops(False, 48, 3, seed=2), _crops(False, 48, 4, seed=3)
    grid = lp.pairwise(true, rec, chunk=2)
    direct = torch.stack([lp.pairs(true[i : i + 1].expand_as(rec), rec) for i in range(3)])
    assert torch.allclose(grid, direct, atol=1e-5)
    by_lpips = MetricConfig(pairing="lpips", lpips_weights=str(alex_weights))
    s = score(Reconstruction(rec[[2, 0, 1]], None), _secret(rec[:3]), by_lpips)
    assert s.per_image["assignment"] == [1, 2, 0]
    assert s.summary["lpips"] == pytest.approx(0.0, abs=1e-6)


def test_lpips_on_grayscale_and_too_small_images(alex_weights: Path) -> None:
    gray = _crops(True, 40, 2)
    s = score(Reconstruction(_noisy(gray, 0.1), None), _secret(gray), MetricConfig(lpips_weights=str(alex_weights)))
    ref = _reference_lpips(alex_weights, gray.expand(-1, 3, -1, -1), _noisy(gray, 0.1).expand(-1, 3, -1, -1))
    assert s.per_image["lpips"] == pytest.approx(ref.tolist(), abs=1e-5)
    tiny = torch.rand(2, 3, 28, 28)
    t = score(Reconstruction(tiny, None), _secret(tiny), MetricConfig(lpips_weights=str(alex_weights)))
    assert t.summary["lpips"] is None and any("at least 31 px" in n for n in t.notes)


def test_backbone_file_names_and_minimum_sizes_match_the_packages() -> None:
    assert BACKBONE_FILES["alex"] == Path(torchvision.models.AlexNet_Weights.IMAGENET1K_V1.url).name
    assert BACKBONE_FILES["vgg"] == Path(torchvision.models.VGG16_Weights.IMAGENET1K_V1.url).name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(net="alex", pretrained=False, pnet_rand=True, verbose=False)
    side = MIN_SIDE["alex"]
    with torch.no_grad():
        model(torch.rand(1, 3, side, side), torch.rand(1, 3, side, side))
        with pytest.raises(RuntimeError):
            model(torch.rand(1, 3, side - 1, side - 1), torch.rand(1, 3, side - 1, side - 1))


def test_corrupt_weights_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / BACKBONE_FILES["alex"]
    bad.write_bytes(b"not a checkpoint")
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(BenchError, match="cannot read"):
        score(Reconstruction(x, None), _secret(x), MetricConfig(lpips_weights=str(bad)))
    wrong = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, wrong)
    with pytest.raises(BenchError, match="does not hold"):
        score(Reconstruction(x, None), _secret(x), MetricConfig(lpips_weights=str(wrong)))


# ---- scale ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_256_images_of_224_px_are_practical_on_cpu() -> None:
    import time

    g = torch.Generator().manual_seed(0)
    true = torch.rand(256, 3, 224, 224, generator=g)
    rec = (true[torch.randperm(256, generator=g)] + 0.1 * torch.randn(true.shape, generator=g)).clamp(0, 1)
    start = time.perf_counter()
    s = score(Reconstruction(rec, None), _secret(true), NO_LPIPS)
    elapsed = time.perf_counter() - start
    assert s.summary["psnr"] == pytest.approx(20.0, abs=0.5)
    assert elapsed < 120


@pytest.mark.slow
def test_vgg_lpips_matches_the_lpips_package(tmp_path: Path) -> None:
    torch.manual_seed(7)
    state = {k: v for k, v in torchvision.models.vgg16(weights=None).state_dict().items() if k.startswith("features.")}
    path = tmp_path / BACKBONE_FILES["vgg"]
    torch.save(state, path)
    true = _crops(False, 32, 2, seed=4)
    rec = _noisy(true, 0.2)
    s = score(Reconstruction(rec, None), _secret(true), MetricConfig(lpips_net="vgg", lpips_weights=str(path)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False)
    features = torchvision.models.vgg16(weights=None).features
    features.load_state_dict({k[len("features.") :]: v for k, v in state.items()})
    for part in (ref.net.slice1, ref.net.slice2, ref.net.slice3, ref.net.slice4, ref.net.slice5):
        for name, module in part.named_children():
            module.load_state_dict(features[int(name)].state_dict())
    with torch.no_grad():
        expected = ref(true, rec, normalize=True).flatten().tolist()
    assert s.per_image["lpips"] == pytest.approx(expected, abs=1e-5)
