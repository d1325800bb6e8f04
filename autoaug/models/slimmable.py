"""Slimmable layers (MutualNet / US-Nets): sub-networks share sliced weights, batch norm is per width."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as nnf
from torch import nn

WIDTHS: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)


def active(channels: int, width: float) -> int:
    """Channels a layer of ``channels`` uses at ``width``: the first ``ceil(width * channels)``."""
    return max(1, math.ceil(width * channels))


def check_widths(widths: tuple[float, ...]) -> tuple[float, ...]:
    """Sorted, de-duplicated multipliers in (0, 1] that include 1.0 (the full network)."""
    widths = tuple(sorted(set(widths)))
    if not widths or widths[0] <= 0 or widths[-1] != 1.0:
        raise ValueError(f"width multipliers must lie in (0, 1] and include 1.0, got {list(widths)}")
    return widths


class SlimLayer:
    """Marker for layers that follow the model's current width; ``apply_width`` sets ``width`` on each."""

    width: float = 1.0


class SlimConv2d(SlimLayer, nn.Conv2d):
    """A conv that uses the first ``ceil(width * C)`` filters over the first ``ceil(width * C_in)`` channels.

    ``slim_in=False`` keeps every input channel (the stem sees the image's channels at every width).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
                 padding: int = 0, bias: bool = False, slim_in: bool = True, slim_out: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
        self.slim_in, self.slim_out = slim_in, slim_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cin = active(self.in_channels, self.width) if self.slim_in else self.in_channels
        cout = active(self.out_channels, self.width) if self.slim_out else self.out_channels
        if (cin, cout) == (self.in_channels, self.out_channels):  # full width: exactly a plain conv
            return super().forward(x)
        bias = None if self.bias is None else self.bias[:cout]
        return nnf.conv2d(x, self.weight[:cout, :cin], bias, self.stride, self.padding)


class SlimLinear(SlimLayer, nn.Linear):
    """A linear layer over the first ``ceil(width * in_features)`` features; the outputs (classes) never shrink."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cin = active(self.in_features, self.width)
        if cin == self.in_features:
            return super().forward(x)
        return nnf.linear(x, self.weight[:, :cin], self.bias)


class SwitchableBatchNorm2d(SlimLayer, nn.Module):
    """One BatchNorm2d per width: the statistics of different sub-networks differ and must not mix."""

    def __init__(self, channels: int, widths: tuple[float, ...] = WIDTHS) -> None:
        super().__init__()
        self.widths = check_widths(widths)
        self.norms = nn.ModuleList(nn.BatchNorm2d(active(channels, w)) for w in self.widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norms[self.widths.index(self.width)](x)


def apply_width(module: nn.Module, multiplier: float) -> None:
    """Switch every slim layer inside ``module`` to ``multiplier``."""
    for layer in module.modules():
        if isinstance(layer, SlimLayer):
            layer.width = multiplier


class Slimmable(nn.Module):
    """Base for models that can be built from slim layers; the subclass sets ``width_multipliers`` in its
    constructor, to None when it was built plain (standard layers, no width switching)."""

    width_multipliers: tuple[float, ...] | None = None

    def set_width(self, multiplier: float) -> None:
        """Run the sub-network of width ``multiplier`` from now on (1.0 is the full network)."""
        if self.width_multipliers is None:
            raise ValueError(f"this {type(self).__name__} was built plain; build it with slimmable=True to switch widths")
        if multiplier not in self.width_multipliers:
            raise ValueError(f"width {multiplier} is not one of this model's widths {list(self.width_multipliers)}")
        apply_width(self, multiplier)
