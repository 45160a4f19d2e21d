"""The ConvNet of Inverting Gradients (Geiping et al., NeurIPS 2020; JonasGeiping/invertinggradients).

As published in `inversefed/nn/models.py` (ConvNet, built with width 64): conv-BN-ReLU blocks with 3x3
convolutions (padding 1) of widths w, 2w, 2w, 4w, 4w, 4w, a 3x3 max pool, two more 4w blocks, another
3x3 max pool, and a linear layer on 36w features at 32 px (32 -> 10 -> 3). The published module lists a
`conv6` block twice under the same name, so the built network holds it once: 8 convolutions, as here.
Layer names match the published ones, so its checkpoints load directly.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from bench.errors import BenchError
from bench.models import MODELS

# (name, output width as a multiple of w); "pool" marks a 3x3 max pool.
LAYOUT: tuple[tuple[str, int], ...] = (
    ("0", 1), ("1", 2), ("2", 2), ("3", 4), ("4", 4), ("5", 4),
    ("pool0", 0),
    ("6", 4), ("7", 4),
    ("pool1", 0),
)  # fmt: skip
POOL = 3


def feature_side(image_size: int) -> int:
    return image_size // POOL // POOL


class ConvNet(nn.Module):
    def __init__(self, num_classes: int, channels: int, image_size: int, width: int = 64) -> None:
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        in_width = channels
        for name, multiple in LAYOUT:
            if name.startswith("pool"):
                layers[name] = nn.MaxPool2d(POOL)
                continue
            out_width = multiple * width
            layers[f"conv{name}"] = nn.Conv2d(in_width, out_width, kernel_size=3, padding=1)
            layers[f"bn{name}"] = nn.BatchNorm2d(out_width)
            layers[f"relu{name}"] = nn.ReLU()
            in_width = out_width
        layers["flatten"] = nn.Flatten()
        layers["linear"] = nn.Linear(in_width * feature_side(image_size) ** 2, num_classes)
        self.model = nn.Sequential(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


@MODELS.register("convnet", description="Inverting Gradients ConvNet: 8 conv-BN-ReLU blocks, 2 max pools, width 64")
def build(num_classes: int, channels: int, image_size: int, width: int = 64) -> nn.Module:
    if image_size < POOL * POOL:
        raise BenchError(f"convnet needs images of at least {POOL * POOL} px (two 3x3 max pools), got {image_size}")
    if width < 1:
        raise BenchError(f"convnet width must be positive, got {width}")
    return ConvNet(num_classes, channels, image_size, width)
