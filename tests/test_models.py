"""Model architectures, local weights loading and the "trained here" model states."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file
from scipy import stats
from torch import nn

from bench.errors import BenchError
from bench.models import MODELS, Architecture, build_model, classifier_names
from bench.models import training
from bench.models.convnet import ConvNet
from bench.models.prepare import TrainSpec, prepare_model
from bench.models.training import state_hash, trained_state, train_steps
from bench.models.weights import load_pretrained
from bench.normalization import Normalization


def _feature_map(model: nn.Module, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    seen = []
    handle = layer.register_forward_hook(lambda _m, _i, out: seen.append(out))
    with torch.no_grad():
        model(x)
    handle.remove()
    return seen[0]


def _fresh_head(model: nn.Module, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What a new nn.Linear of the model's head shape looks like when drawn under `seed`."""
    head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    torch.manual_seed(seed)
    fresh = nn.Linear(head.in_features, head.out_features)
    return fresh.weight.detach(), fresh.bias.detach()


# --- LeNet ---------------------------------------------------------------------------------------------


def test_lenet_structure_matches_dlg():
    model = build_model(Architecture("lenet", num_classes=10, channels=3, image_size=32), seed=0)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs] == [
        (3, 12, (5, 5), (2, 2), (2, 2)),
        (12, 12, (5, 5), (2, 2), (2, 2)),
        (12, 12, (5, 5), (1, 1), (2, 2)),
    ]
    assert sum(isinstance(m, nn.Sigmoid) for m in model.modules()) == 3
    assert not any(isinstance(m, (nn.ReLU, nn.BatchNorm2d, nn.MaxPool2d)) for m in model.modules())
    assert classifier_names(model) == ("fc.weight", "fc.bias")
    assert model.fc.in_features == 768 and model.fc.out_features == 10
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    # 12 * (size / 4)^2 features at other sizes, and grey images
    grey = build_model(Architecture("lenet", num_classes=100, channels=1, image_size=64), seed=0)
    assert grey.fc.in_features == 12 * 16 * 16
    assert grey(torch.rand(1, 1, 64, 64)).shape == (1, 100)


def test_lenet_init_is_uniform_half():
    model = build_model(Architecture("lenet", num_classes=10), seed=3)
    for name, param in model.named_parameters():
        assert param.min() >= -0.5 and param.max() <= 0.5, name
    values = torch.cat([p.detach().flatten() for p in model.parameters()]).numpy()
    assert values.min() < -0.49 and values.max() > 0.49
    # U(-0.5, 0.5) over all weights and biases (biases too: PyTorch's default would be far narrower)
    assert stats.kstest(values, stats.uniform(loc=-0.5, scale=1.0).cdf).pvalue > 1e-3
    assert model.fc.bias.abs().max() > 1 / np.sqrt(768)


def test_build_model_is_seeded():
    arch = Architecture("lenet", num_classes=10)
    a, b, c = build_model(arch, 1), build_model(arch, 1), build_model(arch, 2)
    assert state_hash(a.state_dict()) == state_hash(b.state_dict()) != state_hash(c.state_dict())


# --- ConvNet -------------------------------------------------------------------------------------------


def test_convnet_layers_as_published():
    model = build_model(Architecture("convnet", num_classes=10), seed=0)
    assert isinstance(model, ConvNet)
    w = 64  # the published default
    expected = [
        ("conv0", 3, w), ("bn0", w), ("relu0",),
        ("conv1", w, 2 * w), ("bn1", 2 * w), ("relu1",),
        ("conv2", 2 * w, 2 * w), ("bn2", 2 * w), ("relu2",),
        ("conv3", 2 * w, 4 * w), ("bn3", 4 * w), ("relu3",),
        ("conv4", 4 * w, 4 * w), ("bn4", 4 * w), ("relu4",),
        ("conv5", 4 * w, 4 * w), ("bn5", 4 * w), ("relu5",),
        ("pool0",),
        ("conv6", 4 * w, 4 * w), ("bn6", 4 * w), ("relu6",),
        ("conv7", 4 * w, 4 * w), ("bn7", 4 * w), ("relu7",),
        ("pool1",), ("flatten",), ("linear", 36 * w, 10),
    ]  # fmt: skip
    layers = list(model.model.named_children())
    assert [name for name, _ in layers] == [e[0] for e in expected]
    for (name, layer), spec in zip(layers, expected):
        if name.startswith("conv"):
            assert (layer.in_channels, layer.out_channels) == spec[1:]
            assert layer.kernel_size == (3, 3) and layer.padding == (1, 1) and layer.stride == (1, 1)
            assert layer.bias is not None
        elif name.startswith("bn"):
            assert isinstance(layer, nn.BatchNorm2d) and layer.num_features == spec[1]
        elif name.startswith("relu"):
            assert isinstance(layer, nn.ReLU)
        elif name.startswith("pool"):
            assert isinstance(layer, nn.MaxPool2d) and layer.kernel_size == 3 and layer.stride == 3
        elif name == "linear":
            assert (layer.in_features, layer.out_features) == spec[1:]
    # parameter count of the published ConvNet64 for 10 classes
    assert sum(p.numel() for p in model.parameters()) == 2_904_970
    assert "model.conv0.weight" in model.state_dict() and classifier_names(model)[0] == "model.linear.weight"
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_convnet_width_and_sizes():
    model = build_model(Architecture("convnet", num_classes=5, channels=1, image_size=64, options={"width": 8}), 0)
    assert model.model.linear.in_features == 4 * 8 * 7 * 7  # 64 -> 21 -> 7
    assert model(torch.randn(2, 1, 64, 64)).shape == (2, 5)
    with pytest.raises(BenchError, match="at least 9 px"):
        build_model(Architecture("convnet", num_classes=5, image_size=8), 0)


# --- ResNet --------------------------------------------------------------------------------------------


def test_resnet18_small_stem_at_32px():
    model = build_model(Architecture("resnet18", num_classes=10, image_size=32), seed=0).eval()
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    x = torch.randn(2, 3, 32, 32)
    assert _feature_map(model, model.layer1, x).shape == (2, 64, 32, 32)
    assert _feature_map(model, model.layer4, x).shape == (2, 512, 4, 4)
    assert model(x).shape == (2, 10)
    assert classifier_names(model) == ("fc.weight", "fc.bias")


def test_resnet18_standard_stem_at_64px_and_option_default():
    arch = Architecture("resnet18", num_classes=10, image_size=64, options={"small_stem": False})
    model = build_model(arch, seed=0).eval()
    assert model.conv1.kernel_size == (7, 7) and model.conv1.stride == (2, 2)
    assert isinstance(model.maxpool, nn.MaxPool2d)
    x = torch.randn(2, 3, 64, 64)
    assert _feature_map(model, model.layer1, x).shape == (2, 64, 16, 16)
    assert _feature_map(model, model.layer4, x).shape == (2, 512, 2, 2)
    # the default: small stem up to 64 px, standard above
    assert build_model(Architecture("resnet18", 10, image_size=64), 0).conv1.kernel_size == (3, 3)
    assert build_model(Architecture("resnet18", 10, image_size=96), 0).conv1.kernel_size == (7, 7)
    grey = build_model(Architecture("resnet18", 10, channels=1, image_size=128), 0).eval()
    assert grey(torch.randn(1, 1, 128, 128)).shape == (1, 10)
    with pytest.raises(BenchError, match="at least 32 px"):
        build_model(Architecture("resnet18", 10, image_size=16, options={"small_stem": False}), 0)


def test_resnet50_standard_stem_at_224px():
    model = build_model(Architecture("resnet50", num_classes=1000, image_size=224), seed=0).eval()
    assert model.conv1.kernel_size == (7, 7)
    x = torch.randn(1, 3, 224, 224)
    assert _feature_map(model, model.layer4, x).shape == (1, 2048, 7, 7)
    assert model.fc.in_features == 2048 and model.fc.out_features == 1000


# --- timm ----------------------------------------------------------------------------------------------


def test_timm_prefix_builds_any_timm_model():
    arch = Architecture("timm:resnet10t", num_classes=7, channels=1, image_size=32)
    model = build_model(arch, seed=0).eval()
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 7)
    assert MODELS.get("timm:resnet10t").name == "timm:resnet10t"
    again = build_model(arch, seed=0)
    assert state_hash(model.state_dict()) == state_hash(again.state_dict())


@pytest.mark.skipif(not timm.is_model("test_vit"), reason="timm version without test_vit")
def test_timm_fixed_input_size_follows_image_size():
    model = build_model(Architecture("timm:test_vit", num_classes=3, image_size=32), seed=0).eval()
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)


def test_timm_unknown_name_suggests_close_matches():
    with pytest.raises(BenchError, match=r"unknown timm model 'resnet10'.*timm:resnet10t"):
        MODELS.get("timm:resnet10")
    with pytest.raises(BenchError, match="unknown timm model"):
        MODELS.get("timm:hf-hub:someone/model")


# --- weights -------------------------------------------------------------------------------------------


def _resnet(num_classes: int, seed: int) -> nn.Module:
    return build_model(Architecture("resnet18", num_classes, image_size=224), seed)


def _assert_backbone_equal(model: nn.Module, state: dict[str, torch.Tensor], skip: str = "fc.") -> None:
    own = model.state_dict()
    backbone = [k for k in own if not k.startswith(skip)]
    assert len(backbone) > 100
    for key in backbone:
        assert torch.equal(own[key], state[key]), key


def test_weights_torchvision_state_dict(tmp_path):
    source = _resnet(1000, seed=1)  # an ImageNet-shaped checkpoint
    torch.save(source.state_dict(), tmp_path / "resnet18.pth")
    target = _resnet(10, seed=2)
    before = target.fc.weight.detach().clone()
    load_pretrained(target, str(tmp_path / "resnet18.pth"), seed=5)
    _assert_backbone_equal(target, source.state_dict())
    weight, bias = _fresh_head(target, seed=5)
    assert torch.equal(target.fc.weight, weight) and torch.equal(target.fc.bias, bias)
    assert not torch.equal(target.fc.weight, before)
    # same number of classes: the checkpoint's head is kept
    same = load_pretrained(_resnet(1000, seed=2), str(tmp_path / "resnet18.pth"), seed=5)
    assert torch.equal(same.fc.weight, source.fc.weight)


def test_weights_containers_ddp_prefix_and_safetensors(tmp_path):
    source = build_model(Architecture("convnet", 10, options={"width": 4}), seed=1)
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}
    torch.save(wrapped, tmp_path / "ddp.pth.tar")
    save_file(source.state_dict(), str(tmp_path / "plain.safetensors"))
    torch.save({"model": source.state_dict(), "optimizer": {"lr": 0.1}}, tmp_path / "model.pt")
    for name in ("ddp.pth.tar", "plain.safetensors", "model.pt"):
        target = build_model(Architecture("convnet", 10, options={"width": 4}), seed=2)
        load_pretrained(target, str(tmp_path / name), seed=0)
        for key, value in source.state_dict().items():
            assert torch.equal(target.state_dict()[key], value), (name, key)


def test_weights_moco_v2_checkpoint(tmp_path):
    source = _resnet(1000, seed=1)
    backbone = {k: v for k, v in source.state_dict().items() if not k.startswith("fc.")}
    state = {}
    for encoder in ("encoder_q", "encoder_k"):
        offset = 0.0 if encoder == "encoder_q" else 1.0  # the key encoder must not be the one loaded
        state.update({f"module.{encoder}.{k}": v + offset if v.is_floating_point() else v for k, v in backbone.items()})
        # the MoCo v2 MLP projection head: fc.0 (512 -> 512), ReLU, fc.2 (512 -> 128)
        state[f"module.{encoder}.fc.0.weight"] = torch.randn(512, 512)
        state[f"module.{encoder}.fc.0.bias"] = torch.randn(512)
        state[f"module.{encoder}.fc.2.weight"] = torch.randn(128, 512)
        state[f"module.{encoder}.fc.2.bias"] = torch.randn(128)
    state["module.queue"] = torch.randn(128, 64)
    state["module.queue_ptr"] = torch.zeros(1, dtype=torch.long)
    checkpoint = {"epoch": 800, "arch": "resnet18", "state_dict": state, "optimizer": {"state": {}, "param_groups": []}}
    torch.save(checkpoint, tmp_path / "moco_v2.pth.tar")
    target = load_pretrained(_resnet(10, seed=2), str(tmp_path / "moco_v2.pth.tar"), seed=7)
    _assert_backbone_equal(target, backbone)
    weight, bias = _fresh_head(target, seed=7)
    assert torch.equal(target.fc.weight, weight) and torch.equal(target.fc.bias, bias)


class _Payload:
    """Unpickling this touches a marker file: a loader that runs it has executed arbitrary code."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_weights_refuse_pickled_objects(tmp_path):
    marker = tmp_path / "executed"
    model = build_model(Architecture("lenet", 10), seed=0)
    torch.save({"state_dict": model.state_dict(), "payload": _Payload(marker)}, tmp_path / "evil.pth")
    with pytest.raises(BenchError, match="refused"):
        load_pretrained(build_model(Architecture("lenet", 10), seed=1), str(tmp_path / "evil.pth"), seed=0)
    assert not marker.exists()


def test_weights_errors_are_one_line(tmp_path):
    model = build_model(Architecture("lenet", 10), seed=0)
    with pytest.raises(BenchError, match="--weights") as missing:
        load_pretrained(model, str(tmp_path / "nowhere.pth"), seed=0)
    state = model.state_dict()
    torch.save({k: v for k, v in state.items() if k != "body.0.weight"}, tmp_path / "partial.pth")
    with pytest.raises(BenchError, match=r"missing: body\.0\.weight"):
        load_pretrained(model, str(tmp_path / "partial.pth"), seed=0)
    torch.save({**state, "extra.weight": torch.zeros(1)}, tmp_path / "extra.pth")
    with pytest.raises(BenchError, match=r"unexpected: extra\.weight"):
        load_pretrained(model, str(tmp_path / "extra.pth"), seed=0)
    (tmp_path / "broken.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(BenchError, match="could not be read"):
        load_pretrained(model, str(tmp_path / "broken.safetensors"), seed=0)
    # a standard-stem checkpoint does not fit the small stem: the 3x3 conv1 is named
    torch.save(_resnet(10, 0).state_dict(), tmp_path / "imagenet.pth")
    small = build_model(Architecture("resnet18", 10, image_size=32), 0)
    with pytest.raises(BenchError, match=r"shape mismatch: conv1\.weight") as mismatch:
        load_pretrained(small, str(tmp_path / "imagenet.pth"), seed=0)
    for error in (missing, mismatch):
        assert "\n" not in str(error.value)


# --- trained here --------------------------------------------------------------------------------------


class TinyImages:
    """A fake ImageSource: each class a fixed colour pattern plus per-item noise, seeded by index."""

    def __init__(self, num_items: int = 48, num_classes: int = 4, channels: int = 3) -> None:
        self.name = f"tiny{num_classes}"
        self.num_classes = num_classes
        self.channels = channels
        self.normalization = Normalization((0.5,) * channels, (0.25,) * channels)
        self.class_names = [str(c) for c in range(num_classes)]
        self.labels = np.arange(num_items, dtype=np.int64) % num_classes
        self.loads = 0

    def load(self, index: int, size: int, crop_seed: int) -> torch.Tensor:
        self.loads += 1
        label = int(self.labels[index])
        pattern = torch.Generator().manual_seed(1000 + label)
        noise = torch.Generator().manual_seed(index * 7919 + crop_seed % 7919)
        base = torch.rand(self.channels, size, size, generator=pattern)
        return (0.8 * base + 0.2 * torch.rand(self.channels, size, size, generator=noise)).clamp(0, 1)


def _all_items(data: TinyImages, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    pixels = torch.stack([data.load(i, size, 0) for i in range(len(data.labels))])
    return data.normalization.normalize(pixels), torch.as_tensor(data.labels)


def test_training_reduces_the_loss(tmp_path):
    data = TinyImages()
    arch = Architecture("lenet", num_classes=4, image_size=12)
    model = build_model(arch, seed=0)
    images, labels = _all_items(data, 12)

    def full_loss(m: nn.Module) -> float:
        with torch.no_grad():
            return nn.functional.cross_entropy(m(images), labels).item()

    start = full_loss(model)
    state = trained_state(arch, model.state_dict(), data, steps=20, lr=0.5, batch_size=16, seed=0, cache_dir=tmp_path)
    model.load_state_dict(state)
    assert full_loss(model) < 0.5 * start
    losses = train_steps(build_model(arch, seed=0), data, steps=20, lr=0.5, batch_size=16, seed=0, image_size=12)
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])


def test_training_is_deterministic_and_seeded(tmp_path):
    data = TinyImages(num_classes=6)  # more classes than the model: labels fold modulo 3
    arch = Architecture("convnet", num_classes=3, image_size=12, options={"width": 4})
    init = build_model(arch, seed=0).state_dict()
    kwargs = dict(steps=3, lr=0.05, batch_size=8, image_size=12)
    a = trained_state(arch, init, data, seed=1, cache_dir=tmp_path / "a", **kwargs)
    b = trained_state(arch, init, data, seed=1, cache_dir=tmp_path / "b", **kwargs)
    c = trained_state(arch, init, data, seed=2, cache_dir=tmp_path / "c", **kwargs)
    assert a.keys() == init.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["model.conv0.weight"], c["model.conv0.weight"])
    assert not torch.equal(a["model.conv0.weight"], init["model.conv0.weight"])
    assert a["model.bn0.num_batches_tracked"].item() == 3  # BN ran in train mode
    assert not torch.equal(a["model.bn0.running_mean"], init["model.bn0.running_mean"])


def test_training_cache_hit_does_not_retrain(tmp_path, monkeypatch):
    data = TinyImages()
    arch = Architecture("lenet", num_classes=4, image_size=8)
    init = build_model(arch, seed=0).state_dict()
    calls = []
    real = training.train_steps
    monkeypatch.setattr(training, "train_steps", lambda *a, **k: calls.append(1) or real(*a, **k))
    kwargs = dict(steps=4, lr=0.1, batch_size=4, seed=0, image_size=8, cache_dir=tmp_path)
    first = trained_state(arch, init, data, **kwargs)
    files = list((tmp_path / "trained").iterdir())
    assert len(calls) == 1 and len(files) == 1 and files[0].suffix == ".safetensors"
    loads = data.loads
    second = trained_state(arch, init, data, **kwargs)
    assert len(calls) == 1 and data.loads == loads  # no retraining, no data read
    assert all(torch.equal(first[k], second[k]) for k in first)
    # anything that changes the result changes the key
    trained_state(arch, init, data, **{**kwargs, "steps": 5})
    trained_state(arch, build_model(arch, seed=1).state_dict(), data, **kwargs)
    assert len(calls) == 3 and len(list((tmp_path / "trained").iterdir())) == 3


def test_cache_dir_defaults_to_env(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    data = TinyImages()
    arch = Architecture("lenet", num_classes=4, image_size=8)
    trained_state(arch, build_model(arch, 0).state_dict(), data, steps=1, lr=0.1, batch_size=4, seed=0)
    assert len(list((tmp_path / "trained").glob("*.safetensors"))) == 1
    assert not list((tmp_path / "trained").glob("*.tmp"))


# --- prepare_model -------------------------------------------------------------------------------------


def test_prepare_model_builds_loads_and_trains(tmp_path):
    data = TinyImages()
    arch = Architecture("lenet", num_classes=4, image_size=16)
    plain = prepare_model(arch, seed=3)
    assert state_hash(plain.state_dict()) == state_hash(build_model(arch, 3).state_dict())
    source = build_model(arch, seed=9)
    save_file(source.state_dict(), str(tmp_path / "lenet.safetensors"))
    loaded = prepare_model(arch, seed=3, weights=str(tmp_path / "lenet.safetensors"))
    assert state_hash(loaded.state_dict()) == state_hash(source.state_dict())
    spec = TrainSpec(steps=2, lr=0.1, batch_size=4, seed=0)
    trained = prepare_model(arch, seed=3, train=spec, dataset=data, cache_dir=str(tmp_path))
    expected = trained_state(arch, plain.state_dict(), data, 2, 0.1, 4, 0, 16, tmp_path)
    assert state_hash(trained.state_dict()) == state_hash(expected)
    with pytest.raises(BenchError, match="needs a dataset"):
        prepare_model(arch, seed=3, train=spec)
    with pytest.raises(BenchError):
        TrainSpec(steps=1, lr=0.0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_weights_and_training_follow_the_model_device(tmp_path):
    data = TinyImages()
    arch = Architecture("convnet", num_classes=4, image_size=12, options={"width": 4})
    source = build_model(arch, seed=1)
    save_file(source.state_dict(), str(tmp_path / "convnet.safetensors"))
    model = build_model(arch, seed=2).to("cuda")
    load_pretrained(model, str(tmp_path / "convnet.safetensors"), seed=0)
    assert torch.equal(model.model.conv0.weight.cpu(), source.model.conv0.weight)
    state = trained_state(arch, model.state_dict(), data, steps=2, lr=0.1, batch_size=4, seed=0, cache_dir=tmp_path)
    assert all(v.device.type == "cuda" for v in state.values())


# --- classifier head initialisation ----------------------------------------------------------------------


def test_head_init_normal_is_e2egi_head_and_default_is_unchanged(tmp_path):
    plain = build_model(Architecture("resnet18", 1000, image_size=32), seed=3)
    default = build_model(Architecture("resnet18", 1000, image_size=32, options={"head_init": "default"}), seed=3)
    normal = build_model(Architecture("resnet18", 1000, image_size=32, options={"head_init": "normal"}), seed=3)
    for key, value in plain.state_dict().items():
        assert torch.equal(default.state_dict()[key], value), key
        if not key.startswith("fc."):
            assert torch.equal(normal.state_dict()[key], value), key  # the backbone is untouched
    weight = normal.fc.weight.detach().flatten().numpy()
    assert torch.count_nonzero(normal.fc.bias) == 0
    assert abs(weight.std() - 0.01) < 5e-4 and abs(weight.mean()) < 5e-4
    assert stats.kstest(weight / 0.01, "norm").pvalue > 1e-3  # N(0, 0.01^2), not PyTorch's uniform
    again = build_model(Architecture("resnet18", 1000, image_size=32, options={"head_init": "normal"}), seed=3)
    assert torch.equal(again.fc.weight, normal.fc.weight)
    # a checkpoint without a matching head gets the same kind of head
    torch.save(_resnet(1000, seed=1).state_dict(), tmp_path / "backbone.pth")
    target = _resnet(10, seed=2)
    load_pretrained(target, str(tmp_path / "backbone.pth"), seed=5, head_init="normal")
    assert torch.count_nonzero(target.fc.bias) == 0 and target.fc.weight.abs().max() < 0.06


def test_head_init_refuses_unknown_kind():
    with pytest.raises(BenchError, match="head_init must be one of default, normal"):
        build_model(Architecture("lenet", 10, options={"head_init": "xavier"}), seed=0)
