"""DenseNet-BC (Huang et al., 2017): bottleneck dense layers and compressing transitions."""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from autoaug.models import register_model
from autoaug.models.layers import downsample


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 (4k channels), BN-ReLU-3x3 (k channels), concatenated onto its input."""

    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, 4 * growth, 1, bias=False),
            nn.BatchNorm2d(4 * growth), nn.ReLU(inplace=True), nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], 1)


def _transition(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, cout, 1, bias=False),
                         nn.AvgPool2d(2))


class DenseNetBC(nn.Module):
    """Three dense blocks of (depth - 4) / 6 layers each; transitions halve the channels and the resolution."""

    def __init__(self, depth: int, growth: int, compression: float = 0.5, *, num_classes: int,
                 in_channels: int, small_input: bool) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"DenseNet-BC depth must be 6n + 4 (e.g. 100, 190), got {depth}")
        per_block, channels = (depth - 4) // 6, 2 * growth
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 3, 1 if small_input else 2, 1, bias=False),
                                   *downsample(small_input)]
        for block in range(3):
            for _ in range(per_block):
                layers.append(DenseLayer(channels, growth))
                channels += growth
            if block < 2:
                layers.append(_transition(channels, int(channels * compression)))
                channels = int(channels * compression)
        self.features = nn.Sequential(*layers, nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((2, 3)))


register_model("densenet_bc_100")(partial(DenseNetBC, 100, 12))
