"""ShuffleNetV2 1.0x (Ma et al., 2018): channel split, two branches, channel shuffle."""
from __future__ import annotations

import torch
from torch import nn

from autoaug.models import register_model
from autoaug.models.layers import conv_bn, stem

# (output channels, units) per stage of the 1.0x network, from the paper's Table 5
STAGES_1X: tuple[tuple[int, int], ...] = ((116, 4), (232, 8), (464, 4))


def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    """Interleave the channels of ``groups`` branches so information crosses them in the next unit."""
    b, c, h, w = x.shape
    return x.reshape(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class ShuffleUnit(nn.Module):
    """Stride 1: half the channels pass through untouched; stride 2: both branches see all, the width doubles."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        half = cout // 2
        self.stride = stride
        self.branch1 = nn.Sequential(conv_bn(cin, cin, 3, stride, groups=cin, act=False), conv_bn(cin, half, 1)) \
            if stride == 2 else nn.Identity()
        branch_in = cin if stride == 2 else cin // 2
        self.branch2 = nn.Sequential(conv_bn(branch_in, half, 1),
                                     conv_bn(half, half, 3, stride, groups=half, act=False), conv_bn(half, half, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            keep, work = x.chunk(2, dim=1)
            return channel_shuffle(torch.cat([keep, self.branch2(work)], 1))
        return channel_shuffle(torch.cat([self.branch1(x), self.branch2(x)], 1))


class ShuffleNetV2(nn.Module):
    """Stem, three stages that each start with a stride-2 unit, a 1x1 conv to ``final`` channels, linear."""

    def __init__(self, stages: tuple[tuple[int, int], ...] = STAGES_1X, final: int = 1024, *, num_classes: int,
                 in_channels: int, small_input: bool) -> None:
        super().__init__()
        layers, cin = [stem(in_channels, 24, small_input)], 24
        for cout, units in stages:
            layers += [ShuffleUnit(cin if i == 0 else cout, cout, 2 if i == 0 else 1) for i in range(units)]
            cin = cout
        self.features = nn.Sequential(*layers, conv_bn(cin, final, 1))
        self.fc = nn.Linear(final, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((2, 3)))


# 2.28M on ImageNet less the 1000-class head; as in kuangliu/pytorch-cifar's ShuffleNetV2(net_size=1)
register_model("shufflenet_v2")(ShuffleNetV2)
