"""ResNet-18 and ResNet-50 (He et al., CVPR 2016) as built by torchvision, never with downloaded weights.

`small_stem=True` swaps the 7x7 stride-2 stem and its max pool for one 3x3 stride-1 convolution, as CIFAR
ResNets do, so 32 px inputs keep a 4x4 map before pooling. By default images of 64 px or less get the
small stem. Parameter names stay torchvision's, so its checkpoints (and MoCo backbones) load.
"""

from __future__ import annotations

from torch import nn

from bench.errors import BenchError
from bench.models import MODELS

SMALL_STEM_MAX_SIZE = 64
STEM_WIDTH = 64


def _stem(channels: int, small: bool) -> nn.Conv2d:
    if small:
        conv = nn.Conv2d(channels, STEM_WIDTH, kernel_size=3, stride=1, padding=1, bias=False)
    else:
        conv = nn.Conv2d(channels, STEM_WIDTH, kernel_size=7, stride=2, padding=3, bias=False)
    # torchvision's own init for every convolution
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


def _build(
    name: str,
    num_classes: int,
    channels: int,
    image_size: int,
    small_stem: bool | None,
) -> nn.Module:
    small = image_size <= SMALL_STEM_MAX_SIZE if small_stem is None else bool(small_stem)
    # total downsampling: 8 with the small stem, 32 with the standard one
    minimum = 8 if small else 32
    if image_size < minimum:
        stem = "small" if small else "standard"
        raise BenchError(f"{name} with the {stem} stem needs images of at least {minimum} px, got {image_size}")
    import torchvision  # on first use: importing it costs more than the rest of `bench.models` together

    model = getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
    if small or channels != 3:
        model.conv1 = _stem(channels, small)
    if small:
        model.maxpool = nn.Identity()
    return model


@MODELS.register("resnet18", description="torchvision ResNet-18; small_stem (3x3, no max pool) by default up to 64 px")
def build_resnet18(num_classes: int, channels: int, image_size: int, small_stem: bool | None = None) -> nn.Module:
    return _build("resnet18", num_classes, channels, image_size, small_stem)


@MODELS.register("resnet50", description="torchvision ResNet-50; small_stem (3x3, no max pool) by default up to 64 px")
def build_resnet50(num_classes: int, channels: int, image_size: int, small_stem: bool | None = None) -> nn.Module:
    return _build("resnet50", num_classes, channels, image_size, small_stem)
