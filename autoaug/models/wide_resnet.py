"""Wide ResNets (Zagoruyko and Komodakis, 2016): WRN-depth-k, three stages of pre-activation blocks."""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from autoaug.models import register_model
from autoaug.models.layers import downsample


class WideBlock(nn.Module):
    """BN-ReLU-conv twice; where the shape changes, a 1x1 conv of the pre-activation is the shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.pre = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(inplace=True))
        self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                                  nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, 1, 1, bias=False))
        self.shortcut = None if stride == 1 and cin == cout else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pre(x)
        return self.body(out) + (x if self.shortcut is None else self.shortcut(out))


class WideResNet(nn.Module):
    """WRN-``depth``-``widen``: (depth - 4) / 6 blocks per stage at widths 16k, 32k, 64k."""

    def __init__(self, depth: int, widen: int, *, num_classes: int, in_channels: int, small_input: bool) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n + 4 (e.g. 16, 28, 40), got {depth}")
        per_stage = (depth - 4) // 6
        stem = nn.Conv2d(in_channels, 16, 3, 1 if small_input else 2, 1, bias=False)
        blocks, cin = [], 16
        for stage, width in enumerate((16 * widen, 32 * widen, 64 * widen)):
            for index in range(per_stage):
                blocks.append(WideBlock(cin, width, 2 if index == 0 and stage > 0 else 1))
                cin = width
        self.features = nn.Sequential(stem, *downsample(small_input), *blocks,
                                      nn.BatchNorm2d(cin), nn.ReLU(inplace=True))
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((2, 3)))


register_model("wrn_28_10")(partial(WideResNet, 28, 10))
register_model("wrn_40_2")(partial(WideResNet, 40, 2))
register_model("wrn_16_8")(partial(WideResNet, 16, 8))
