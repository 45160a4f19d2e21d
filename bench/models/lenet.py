"""The LeNet of Deep Leakage from Gradients (Zhu et al., NeurIPS 2019; mit-han-lab/dlg), also used by iDLG.

Three 5x5 convolutions with 12 channels (strides 2, 2, 1; padding 2) and sigmoid activations, then one
fully connected layer: 12 * (32/4)^2 = 768 features at 32 px. Every weight and bias is drawn from
U(-0.5, 0.5), the authors' initialisation; the wide uniform init is part of why DLG converges on it.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.errors import BenchError
from bench.models import MODELS

WIDTH = 12
INIT_RANGE = 0.5


def _conv_out(size: int, stride: int) -> int:
    return (size + 2 * 2 - 5) // stride + 1


def feature_size(image_size: int) -> int:
    """Number of features entering the classifier, e.g. 768 at 32 px."""
    side = _conv_out(_conv_out(_conv_out(image_size, 2), 2), 1)
    return WIDTH * side * side


class LeNet(nn.Module):
    def __init__(self, num_classes: int, channels: int, image_size: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, WIDTH, kernel_size=5, stride=2, padding=2),
            nn.Sigmoid(),
            nn.Conv2d(WIDTH, WIDTH, kernel_size=5, stride=2, padding=2),
            nn.Sigmoid(),
            nn.Conv2d(WIDTH, WIDTH, kernel_size=5, stride=1, padding=2),
            nn.Sigmoid(),
        )
        self.fc = nn.Linear(feature_size(image_size), num_classes)
        with torch.no_grad():
            for param in self.parameters():
                param.uniform_(-INIT_RANGE, INIT_RANGE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).flatten(1))


@MODELS.register("lenet", description="DLG/iDLG LeNet: 3 sigmoid convs (12 ch), FC 768 at 32 px, U(-0.5,0.5) init")
def build(num_classes: int, channels: int, image_size: int) -> nn.Module:
    if image_size < 4:
        raise BenchError(f"lenet needs images of at least 4 px, got {image_size}")
    return LeNet(num_classes, channels, image_size)
