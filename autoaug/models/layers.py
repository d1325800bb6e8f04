"""Layer factories shared by the model families: plain or slimmable convs, norms and stems."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from autoaug.models.slimmable import SlimConv2d, SlimLinear, SwitchableBatchNorm2d, check_widths


@dataclass(frozen=True)
class Layers:
    """Plain layers, or slim ones with per-width batch norm when ``widths`` is given."""

    widths: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.widths is not None:
            object.__setattr__(self, "widths", check_widths(self.widths))

    def conv(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, *,
             slim_in: bool = True) -> nn.Conv2d:
        """A bias-free ``k`` x ``k`` conv with "same" padding; ``slim_in=False`` for the stem."""
        if self.widths is None:
            return nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False)
        if groups != 1:
            raise ValueError(f"slimmable convs support groups=1 only, got groups={groups}")
        return SlimConv2d(cin, cout, k, stride=stride, padding=k // 2, slim_in=slim_in)

    def norm(self, channels: int) -> nn.Module:
        return nn.BatchNorm2d(channels) if self.widths is None else SwitchableBatchNorm2d(channels, self.widths)

    def linear(self, cin: int, cout: int, bias: bool = True) -> nn.Linear:
        """The classifier: in slim networks its inputs shrink with the width, its outputs never do."""
        return (nn.Linear if self.widths is None else SlimLinear)(cin, cout, bias=bias)

    def stem_conv(self, cin: int, cout: int, small_input: bool, large_kernel: int = 3) -> nn.Conv2d:
        """Stride 1 for CIFAR-sized images; stride 2 (and a ``large_kernel``) for larger ones."""
        return self.conv(cin, cout, 3 if small_input else large_kernel, 1 if small_input else 2, slim_in=False)


def downsample(small_input: bool) -> list[nn.Module]:
    """The max pool that follows a stride-2 stem conv on larger images, as in ImageNet ResNets."""
    return [] if small_input else [nn.MaxPool2d(3, 2, 1)]


def conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    """Conv, batch norm and (optionally) ReLU: the unit the mobile networks are built from."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, *([nn.ReLU(inplace=True)] if act else []))


def stem(in_channels: int, cout: int, small_input: bool) -> nn.Sequential:
    """A conv-BN-ReLU stem: stride 1 for CIFAR-sized images, stride 2 and a max pool for larger ones."""
    return nn.Sequential(conv_bn(in_channels, cout, 3, 1 if small_input else 2), *downsample(small_input))
