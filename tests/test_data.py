"""Dataset loaders: the embedded default set and users' local copies (tiny stand-ins written in tmp_path)."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.data import DATASETS, open_dataset
from bench.data.cifar import CIFAR10, CIFAR100
from bench.data.embedded import DEFAULT_ROOT, MIN_CROP_SCALE, NEAR_UNIFORM, EmbeddedDataset
from bench.data.transforms import IMAGENET
from bench.errors import BenchError

REPO = Path(__file__).resolve().parents[1]


def check_source(data, size: int = 32, indices=(0,)) -> None:
    """What every ImageSource promises: consistent metadata, C x size x size float images in [0, 1]."""
    assert data.labels.dtype == np.int64 and len(data.labels) == len(data)
    assert len(data.class_names) == data.num_classes
    assert 0 <= data.labels.min() and data.labels.max() < data.num_classes
    assert len(data.normalization.mean) == len(data.normalization.std) == data.channels
    for index in indices:
        image = data.load(index, size, 0)
        assert image.shape == (data.channels, size, size) and image.dtype == torch.float32
        assert 0.0 <= image.min() and image.max() <= 1.0


def save_png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def one_line_error(opener, path, flag: str = "--data-path") -> str:
    with pytest.raises(BenchError) as caught:
        opener(path)
    message = str(caught.value)
    assert flag in message and "\n" not in message
    return message


# ---- embedded ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedded() -> EmbeddedDataset:
    return open_dataset("embedded")


def test_registry_holds_every_dataset():
    assert set(DATASETS.names()) >= {"embedded", "imagenet", "cifar10", "cifar100", "mnist", "celeba"}


def test_embedded_index_matches_files():
    index = json.loads((DEFAULT_ROOT / "index.json").read_text())
    classes = index["classes"]
    assert classes == sorted(classes) and 20 <= len(classes) <= 30
    listed = set()
    for item in index["items"]:
        path = DEFAULT_ROOT / item["file"]
        with Image.open(path) as image:
            assert image.mode == "RGB"
            pixels = np.asarray(image)
        assert list(pixels.shape[:2]) == item["size"] and max(item["size"]) <= index["max_side"]
        assert hashlib.sha256(pixels.tobytes()).hexdigest() == item["pixels_sha256"]
        assert item["label"] == classes.index(item["class"])
        assert item["licence"] and item["source"] and item["package"]
        listed.add(path)
    on_disk = {p for p in DEFAULT_ROOT.rglob("*") if p.is_file() and p.name != "index.json"}
    assert on_disk == listed
    # one item per photograph, many for the face class
    counts = {name: sum(item["class"] == name for item in index["items"]) for name in classes}
    assert counts.pop("face") == 100 and set(counts.values()) == {1}
    assert sum(p.stat().st_size for p in DEFAULT_ROOT.rglob("*")) < 8e6


def test_card_lists_every_class():
    card = (REPO / "datasets" / "CARD.md").read_text()
    for name in json.loads((DEFAULT_ROOT / "index.json").read_text())["classes"]:
        assert f"`{name}`" in card


def test_build_script_reproduces_the_bundled_set(tmp_path, monkeypatch):
    module = _script("build_embedded", monkeypatch)
    bundled = json.loads((DEFAULT_ROOT / "index.json").read_text())
    versions = {item["package"] for item in bundled["items"]}
    rebuilt = module.build(tmp_path / "embedded")
    if {item["package"] for item in rebuilt["items"]} != versions:
        pytest.skip("installed scikit-image/scikit-learn differ from the versions the bundled set was built with")
    assert rebuilt == bundled


def _script(name: str, monkeypatch):
    spec = importlib.util.spec_from_file_location(name, REPO / "datasets" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_near_uniform_classes_are_the_measured_ones(embedded, monkeypatch):
    uniformity = _script("uniformity", monkeypatch)
    rows = uniformity.class_uniformity(embedded, size=32, samples=64)
    assert {row.name for row in rows if row.near_uniform} == set(NEAR_UNIFORM)
    # re-cropping cannot rescue them: hardly any of their crops shows detail at 32 px
    assert all(row.detailed_share <= 0.05 for row in rows if row.near_uniform)
    assert sum(row.detailed_share >= 0.8 for row in rows if not row.near_uniform) >= 15


def test_embedded_detail_drops_the_near_uniform_classes_and_keeps_every_other_sample(embedded):
    detail = open_dataset("embedded-detail")
    assert detail.name == "embedded-detail" and detail.num_classes == 17 == len(embedded.class_names) - 6
    assert not set(detail.class_names) & set(NEAR_UNIFORM)
    assert sorted(set(detail.labels.tolist())) == list(range(17))
    kept = [i for i, label in enumerate(embedded.labels) if embedded.class_names[label] not in NEAR_UNIFORM]
    assert len(detail) == len(kept)
    for j in (0, 5, len(kept) - 1):
        i = kept[j]
        assert detail.class_names[detail.labels[j]] == embedded.class_names[embedded.labels[i]]
        assert torch.equal(detail.load(j, 32, crop_seed=9), embedded.load(i, 32, crop_seed=9))


def test_embedded_metadata(embedded):
    check_source(embedded, 32, indices=range(0, len(embedded), 7))
    assert embedded.normalization == IMAGENET and embedded.channels == 3
    assert embedded.class_names[embedded.labels[0]] == "astronaut"


@pytest.mark.parametrize("size", [32, 224])
def test_embedded_crops_are_deterministic_per_seed(embedded, size):
    fresh = open_dataset("embedded")  # a new object, nothing cached: same bits
    for index in (0, 9, len(embedded) - 1):
        first = embedded.load(index, size, crop_seed=3)
        assert first.shape == (3, size, size)
        assert torch.equal(first, embedded.load(index, size, crop_seed=3))
        assert torch.equal(first, fresh.load(index, size, crop_seed=3))
        assert not torch.equal(first, embedded.load(index, size, crop_seed=4))


def test_embedded_crop_follows_seed_not_size(embedded):
    # The 32 px sample is (nearly) the 224 px sample downscaled: same content at every resolution.
    large, small = embedded.load(0, 224, 11), embedded.load(0, 32, 11)
    down = torch.nn.functional.interpolate(large[None], size=(32, 32), mode="bilinear", antialias=True)[0]
    assert (down - small).abs().mean() < 0.01
    other = embedded.load(0, 32, 12)
    assert (other - small).abs().mean() > 0.02


def ramp_folder(root: Path, height: int, width: int) -> Path:
    """An embedded-format folder with one image whose red = row and green = column (blue 0)."""
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    save_png(root / "ramp.png", np.stack([rows, cols, np.zeros_like(rows)], axis=2).astype(np.uint8))
    item = {"file": "ramp.png", "class": "ramp", "label": 0}
    (root / "index.json").write_text(json.dumps({"classes": ["ramp"], "items": [item]}))
    return root


def test_embedded_crop_is_a_square_of_random_scale_and_position(tmp_path):
    height, width = 200, 250
    data = open_dataset("embedded", str(ramp_folder(tmp_path, height, width)))
    tops, lefts, sides = [], [], []
    for seed in range(200):
        left, top, right, bottom = data.crop_box(0, seed)
        side = right - left
        assert bottom - top == side
        assert MIN_CROP_SCALE * height - 1 <= side <= height
        assert 0 <= top <= height - side and 0 <= left <= width - side
        tops.append(top), lefts.append(left), sides.append(side)
        if seed < 20:
            # The output shows exactly that window of the ramp: rows top..top+side-1, columns left..left+side-1.
            image = data.load(0, 16, seed) * 255
            assert image[0].min() >= top - 1e-3 and image[0].max() <= top + side - 1 + 1e-3
            assert image[1].min() >= left - 1e-3 and image[1].max() <= left + side - 1 + 1e-3
            assert image[0].max() - image[0].min() > 0.8 * (side - 1)
    assert min(sides) < 0.6 * height and max(sides) > 0.95 * height
    assert max(lefts) > 0.5 * (width - height * MIN_CROP_SCALE) and len(set(tops)) > 20


def test_embedded_errors_name_the_flag(tmp_path):
    one_line_error(DATASETS.get("embedded").obj, str(tmp_path))  # no index.json
    ramp_folder(tmp_path, 8, 8)
    (tmp_path / "ramp.png").unlink()
    one_line_error(DATASETS.get("embedded").obj, str(tmp_path))  # listed file missing


# ---- ImageNet (ImageFolder) --------------------------------------------------------------------------


def banded(height: int, width: int, inner: tuple[int, int, int], outer=(255, 0, 0)) -> np.ndarray:
    """`outer` outside the centred square, `inner` inside it: a centre crop must see only `inner`."""
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    pixels[:] = outer
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    pixels[top : top + side, left : left + side] = inner
    return pixels


def test_imagenet_folder(tmp_path):
    colours = {"n02": (0, 255, 0), "n01": (0, 0, 255), "n03": (255, 255, 255)}
    for wnid, colour in colours.items():
        save_png(tmp_path / wnid / "a.png", banded(40, 60, colour))
        save_png(tmp_path / wnid / "b.png", banded(70, 30, colour))
    Image.fromarray(banded(50, 50, colours["n03"])).save(tmp_path / "n03" / "c.JPEG", quality=100, subsampling=0)
    (tmp_path / "n01" / "notes.txt").write_text("not an image")
    (tmp_path / "empty").mkdir()
    data = open_dataset("imagenet", str(tmp_path))
    assert data.class_names == ["n01", "n02", "n03"]
    assert data.labels.tolist() == [0, 0, 1, 1, 2, 2, 2]
    assert data.normalization == IMAGENET
    check_source(data, 224, indices=range(len(data)))
    for index in range(6):
        expected = torch.tensor(colours[data.class_names[data.labels[index]]]).view(3, 1, 1) / 255
        for size in (32, 224):
            assert torch.allclose(data.load(index, size, 0), expected.expand(3, size, size), atol=1e-5)
    assert torch.equal(data.load(0, 32, 0), data.load(0, 32, 99))  # crop_seed is ignored


def test_imagenet_errors(tmp_path):
    opener = DATASETS.get("imagenet").obj
    one_line_error(opener, None)
    one_line_error(opener, str(tmp_path / "nowhere"))
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "x.txt").write_text("x")
    one_line_error(opener, str(tmp_path))


# ---- CIFAR -------------------------------------------------------------------------------------------


def cifar_records(labels: list[list[int]], seed: int) -> tuple[bytes, np.ndarray]:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(len(labels), 3, 32, 32), dtype=np.uint8)
    rows = [bytes(label) + image.tobytes() for label, image in zip(labels, pixels)]
    return b"".join(rows), pixels


def write_cifar10(root: Path) -> tuple[list[int], np.ndarray]:
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    labels, images = [], []
    for batch, count in enumerate([3, 1, 2, 1, 2], start=1):
        batch_labels = [(batch * 3 + k) % 10 for k in range(count)]
        blob, pixels = cifar_records([[label] for label in batch_labels], seed=batch)
        (folder / f"data_batch_{batch}.bin").write_bytes(blob)
        labels += batch_labels
        images.append(pixels)
    names = "airplane automobile bird cat deer dog frog horse ship truck".split()
    (folder / "batches.meta.txt").write_text("\n".join(names) + "\n\n")
    return labels, np.concatenate(images)


def test_cifar10_binary(tmp_path):
    labels, images = write_cifar10(tmp_path)
    for path in (tmp_path, tmp_path / "cifar-10-batches-bin"):
        data = open_dataset("cifar10", str(path))
        assert data.labels.tolist() == labels and data.num_classes == 10
        assert data.class_names[3] == "cat" and data.normalization == CIFAR10.normalization
        check_source(data, 224, indices=(0, len(data) - 1))
    # the first byte after the label is the red value of the top-left pixel, then red row-major
    first = data.load(0, 32, 0)
    assert torch.equal(first[:, 0, 0], torch.tensor(images[0, :, 0, 0], dtype=torch.float32) / 255)
    assert torch.equal(first[0, 0, 1], torch.tensor(images[0, 0, 0, 1], dtype=torch.float32) / 255)
    for index in range(len(images)):
        assert torch.equal(data.load(index, 32, 5), torch.from_numpy(images[index]).float() / 255)


def test_cifar100_uses_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    coarse_fine = [[1, 42], [19, 99], [0, 7]]
    blob, images = cifar_records(coarse_fine, seed=0)
    (folder / "train.bin").write_bytes(blob)
    data = open_dataset("cifar100", str(tmp_path))
    assert data.labels.tolist() == [42, 99, 7] and data.num_classes == 100
    assert data.class_names[42] == "42" and data.normalization == CIFAR100.normalization
    assert torch.equal(data.load(1, 32, 0), torch.from_numpy(images[1]).float() / 255)
    check_source(data, 64, indices=(0, 2))


def test_cifar_errors(tmp_path):
    for name in ("cifar10", "cifar100"):
        opener = DATASETS.get(name).obj
        one_line_error(opener, None)
        one_line_error(opener, str(tmp_path))  # no binary files
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    (folder / "train.bin").write_bytes(bytes(3074 + 5))  # not whole records
    assert "multiple of 3074" in one_line_error(DATASETS.get("cifar100").obj, str(tmp_path))
    (folder / "train.bin").write_bytes(bytes([0, 100]) + bytes(3072))  # fine label out of range
    one_line_error(DATASETS.get("cifar100").obj, str(folder))


# ---- MNIST -------------------------------------------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


@pytest.mark.parametrize("gzipped", [False, True])
def test_mnist_idx(tmp_path, gzipped):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    images[2, 0, 0] = 200
    labels = np.array([5, 0, 4, 1, 9], dtype=np.uint8)
    folder = tmp_path / "MNIST" / "raw"
    folder.mkdir(parents=True)
    suffix = ".gz" if gzipped else ""
    for stem, array in (("train-images-idx3-ubyte", images), ("train-labels-idx1-ubyte", labels)):
        blob = idx_bytes(array)
        (folder / (stem + suffix)).write_bytes(gzip.compress(blob) if gzipped else blob)
    data = open_dataset("mnist", str(tmp_path))
    assert data.labels.tolist() == labels.tolist() and data.channels == 1
    assert data.normalization.mean == (0.1307,) and data.normalization.std == (0.3081,)
    assert torch.equal(data.load(2, 28, 0), torch.from_numpy(images[2]).float()[None] / 255)
    assert data.load(2, 28, 0)[0, 0, 0] == torch.tensor(200.0) / 255
    check_source(data, 32, indices=range(5))


def test_mnist_errors(tmp_path):
    opener = DATASETS.get("mnist").obj
    one_line_error(opener, None)
    one_line_error(opener, str(tmp_path))
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((2, 28, 28))))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x0d\x01" + bytes(6))  # float type byte
    one_line_error(opener, str(tmp_path))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(3)))  # 3 labels, 2 images
    one_line_error(opener, str(tmp_path))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(2))[:-1])  # truncated
    one_line_error(opener, str(tmp_path))


# ---- CelebA ------------------------------------------------------------------------------------------


def write_celeba(root: Path) -> None:
    """Aligned-size images (218 x 178) whose centred square is blue, and an identity file."""
    folder = root / "img_align_celeba"
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for number, identity in enumerate([2880, 5, 2880, 17], start=1):
        name = f"{number:06d}.jpg"
        Image.fromarray(banded(218, 178, (0, 0, 255), outer=(255, 255, 0))).save(
            folder / name, quality=100, subsampling=0  # full-resolution colour: no bleeding across the band edge
        )
        lines.append(f"{name} {identity}")
    (root / "identity_CelebA.txt").write_text("\n".join(lines) + "\n")


def test_celeba_identities(tmp_path):
    write_celeba(tmp_path)
    data = open_dataset("celeba", str(tmp_path))
    assert data.class_names == ["5", "17", "2880"] and data.labels.tolist() == [2, 0, 2, 1]
    check_source(data, 64, indices=range(4))
    blue = torch.tensor([0.0, 0.0, 1.0]).view(3, 1, 1).expand(3, 32, 32)
    assert (data.load(0, 32, 0) - blue).abs().max() < 0.03  # JPEG noise only: the centred square is blue
    (tmp_path / "img_align_celeba" / "000004.jpg").unlink()
    lazy = open_dataset("celeba", str(tmp_path))  # opens without touching the images
    one_line_error(lambda _: lazy.load(3, 32, 0), None, flag="--data-path")


def test_celeba_errors(tmp_path):
    opener = DATASETS.get("celeba").obj
    one_line_error(opener, None)
    write_celeba(tmp_path)
    (tmp_path / "identity_CelebA.txt").write_text("000001.jpg not-a-number\n")
    one_line_error(opener, str(tmp_path))
    (tmp_path / "identity_CelebA.txt").unlink()
    assert "identity_CelebA.txt" in one_line_error(opener, str(tmp_path))


# ---- digits (scikit-learn's bundled copy) -------------------------------------------------------------


def test_digits_are_scikit_learns_upsampled_and_class_balanced():
    from sklearn.datasets import load_digits

    data, reference = open_dataset("digits"), load_digits()
    assert (len(data), data.num_classes, data.channels) == (1797, 10, 1)
    assert data.labels.tolist() == reference.target.tolist()
    native = data.load(5, 8, crop_seed=0)
    assert torch.equal(native[0], torch.from_numpy(reference.images[5] / 16.0).float())  # 8 px: the data itself
    large = data.load(5, 32, crop_seed=0)
    assert large.shape == (1, 32, 32) and 0.0 <= large.min() and large.max() <= 1.0
    assert torch.equal(large, data.load(5, 32, crop_seed=99))  # no crops: deterministic
    assert abs(large.mean().item() - native.mean().item()) < 0.02  # upsampling keeps the ink
    pixels = reference.images / 16.0
    assert data.normalization.mean[0] == pytest.approx(pixels.mean(), abs=1e-4)
    assert data.normalization.std[0] == pytest.approx(pixels.std(), abs=1e-4)


def test_digits_without_scikit_learn_is_a_one_line_error(monkeypatch):
    from bench.data import digits

    digits._bundled.cache_clear()
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # import fails as if it were not installed
    try:
        with pytest.raises(BenchError, match="pip install scikit-learn"):
            open_dataset("digits")
    finally:
        digits._bundled.cache_clear()
    with pytest.raises(BenchError, match="takes no --data-path"):
        open_dataset("digits", "/some/where")
