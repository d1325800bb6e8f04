"""GhostNet 1.0x (Han et al., 2020): ghost modules make half their features with cheap depthwise convs."""
from __future__ import annotations

import math

import torch
from torch import nn

from autoaug.models import register_model
from autoaug.models.layers import conv_bn, stem


class GhostModule(nn.Module):
    """Half the channels from a 1x1 conv, the other half from a cheap depthwise conv of those."""

    def __init__(self, cin: int, cout: int, act: bool) -> None:
        super().__init__()
        self.cout = cout
        primary = math.ceil(cout / 2)
        self.primary = conv_bn(cin, primary, 1, act=act)
        self.cheap = conv_bn(primary, primary, 3, groups=primary, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.primary(x)
        return torch.cat([y, self.cheap(y)], 1)[:, : self.cout]


class SqueezeExcite(nn.Module):
    """Channel gates with a hard sigmoid, as in MobileNetV3 and GhostNet."""

    def __init__(self, channels: int, ratio: float) -> None:
        super().__init__()
        hidden = max(8, int(channels * ratio))
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True),
                                  nn.Conv2d(hidden, channels, 1), nn.Hardsigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class GhostBottleneck(nn.Module):
    """Ghost module (expand), optional strided depthwise conv and SE, ghost module (project), plus shortcut."""

    def __init__(self, cin: int, mid: int, cout: int, k: int, stride: int, se: float) -> None:
        super().__init__()
        body: list[nn.Module] = [GhostModule(cin, mid, act=True)]
        if stride > 1:
            body.append(conv_bn(mid, mid, k, stride, groups=mid, act=False))
        if se:
            body.append(SqueezeExcite(mid, se))
        body.append(GhostModule(mid, cout, act=False))
        self.body = nn.Sequential(*body)
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            conv_bn(cin, cin, k, stride, groups=cin, act=False), conv_bn(cin, cout, 1, act=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


# (kernel, expansion width, output width, squeeze-excite ratio, stride) per bottleneck, from the paper's Table 7
GHOSTNET_1X: tuple[tuple[int, int, int, float, int], ...] = (
    (3, 16, 16, 0, 1), (3, 48, 24, 0, 2), (3, 72, 24, 0, 1), (5, 72, 40, 0.25, 2), (5, 120, 40, 0.25, 1),
    (3, 240, 80, 0, 2), (3, 200, 80, 0, 1), (3, 184, 80, 0, 1), (3, 184, 80, 0, 1), (3, 480, 112, 0.25, 1),
    (3, 672, 112, 0.25, 1), (5, 672, 160, 0.25, 2), (5, 960, 160, 0, 1), (5, 960, 160, 0.25, 1),
    (5, 960, 160, 0, 1), (5, 960, 160, 0.25, 1))


class GhostNet(nn.Module):
    """Stem, 16 ghost bottlenecks, a 1x1 conv to 960, pooling, a 1280-wide embedding, linear."""

    def __init__(self, *, num_classes: int, in_channels: int, small_input: bool) -> None:
        super().__init__()
        layers, cin = [stem(in_channels, 16, small_input)], 16
        for k, mid, cout, se, stride in GHOSTNET_1X:
            layers.append(GhostBottleneck(cin, mid, cout, k, stride, se))
            cin = cout
        self.features = nn.Sequential(*layers, conv_bn(cin, 960, 1))
        self.embed = nn.Sequential(nn.Linear(960, 1280), nn.ReLU(inplace=True))
        self.fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embed(self.features(x).mean((2, 3))))


register_model("ghostnet")(GhostNet)
