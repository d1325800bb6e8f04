"""ResNets for CIFAR-sized and larger images: basic, bottleneck, pre-activation, SE, ECA and ResNeXt blocks."""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from autoaug.models import register_model
from autoaug.models.layers import Layers, downsample
from autoaug.models.slimmable import Slimmable, check_widths


class SqueezeExcite(nn.Module):
    """SE (Hu et al., 2018): channel gates from a bottlenecked MLP over the pooled features."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(channels, channels // reduction), nn.ReLU(inplace=True),
                                nn.Linear(channels // reduction, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean((2, 3)))[:, :, None, None]


class EfficientChannelAttention(nn.Module):
    """ECA (Wang et al., 2020): a 1-D conv across channels, its kernel size adapted to the channel count."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        k = int((math.log2(channels) + 1) / 2) | 1  # the nearest odd size to (log2 C + 1) / 2
        self.conv = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.conv(x.mean((2, 3))[:, None]).sigmoid()
        return x * weight[:, 0, :, None, None]


ATTENTION: dict[str, type[nn.Module]] = {"se": SqueezeExcite, "eca": EfficientChannelAttention}


@dataclass(frozen=True)
class BlockShape:
    """Channels of one block: ``inner`` for its middle convs, ``cout`` at its output."""

    cin: int
    inner: int
    cout: int
    stride: int
    groups: int = 1
    attention: str | None = None


def _attend(shape: BlockShape) -> nn.Module:
    return ATTENTION[shape.attention](shape.cout) if shape.attention else nn.Identity()


def _projection(shape: BlockShape, layers: Layers, norm: bool = True) -> nn.Module:
    """Identity where the shape is kept, else a strided 1x1 conv (and norm) onto the new shape."""
    if shape.stride == 1 and shape.cin == shape.cout:
        return nn.Identity()
    conv = layers.conv(shape.cin, shape.cout, 1, shape.stride)
    return nn.Sequential(conv, layers.norm(shape.cout)) if norm else conv


class BasicBlock(nn.Module):
    """Two 3x3 convs, post-activation (He et al., 2016a)."""

    expansion = 1

    def __init__(self, shape: BlockShape, layers: Layers) -> None:
        super().__init__()
        self.body = nn.Sequential(
            layers.conv(shape.cin, shape.inner, 3, shape.stride), layers.norm(shape.inner), nn.ReLU(inplace=True),
            layers.conv(shape.inner, shape.cout, 3), layers.norm(shape.cout), _attend(shape))
        self.shortcut = _projection(shape, layers)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class PreActBlock(nn.Module):
    """Two 3x3 convs with BN-ReLU before each; the projection reads the pre-activation (He et al., 2016b)."""

    expansion = 1

    def __init__(self, shape: BlockShape, layers: Layers) -> None:
        super().__init__()
        self.pre = nn.Sequential(layers.norm(shape.cin), nn.ReLU(inplace=True))
        self.body = nn.Sequential(
            layers.conv(shape.cin, shape.inner, 3, shape.stride), layers.norm(shape.inner), nn.ReLU(inplace=True),
            layers.conv(shape.inner, shape.cout, 3), _attend(shape))
        self.shortcut = _projection(shape, layers, norm=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pre(x)
        shortcut = x if isinstance(self.shortcut, nn.Identity) else self.shortcut(out)
        return self.body(out) + shortcut


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped for ResNeXt, strided here as in ResNet v1.5), 1x1 expand."""

    expansion = 4

    def __init__(self, shape: BlockShape, layers: Layers) -> None:
        super().__init__()
        inner = shape.inner
        self.body = nn.Sequential(
            layers.conv(shape.cin, inner, 1), layers.norm(inner), nn.ReLU(inplace=True),
            layers.conv(inner, inner, 3, shape.stride, shape.groups), layers.norm(inner), nn.ReLU(inplace=True),
            layers.conv(inner, shape.cout, 1), layers.norm(shape.cout), _attend(shape))
        self.shortcut = _projection(shape, layers)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


@dataclass(frozen=True)
class ResNetConfig:
    """One ResNet variant as data: block type, blocks per stage, and what goes inside a block."""

    block: type[BasicBlock] | type[PreActBlock] | type[Bottleneck]
    depths: tuple[int, ...]
    base_width: int = 64  # stage k is base_width * 2**k wide (before the block's expansion)
    attention: str | None = None  # a key of ATTENTION
    groups: int = 1
    group_width: int | None = None  # ResNeXt: the 3x3 conv has groups * group_width * 2**k channels

    def shape(self, stage: int, index: int, cin: int) -> BlockShape:
        width = self.base_width * 2 ** stage
        inner = self.groups * self.group_width * 2 ** stage if self.group_width else width
        stride = 2 if index == 0 and stage > 0 else 1
        return BlockShape(cin, inner, width * self.block.expansion, stride, self.groups, self.attention)


class ResNet(nn.Module):
    """A stem, stages of blocks that halve the resolution and double the width, global average pool, linear."""

    def __init__(self, config: ResNetConfig, *, num_classes: int, in_channels: int, small_input: bool,
                 layers: Layers = Layers()) -> None:
        super().__init__()
        preact, base = config.block is PreActBlock, config.base_width
        stem: list[nn.Module] = [layers.stem_conv(in_channels, base, small_input, large_kernel=7)]
        if not (preact and small_input):  # a pre-activation net's first block normalises the stem's output
            stem += [layers.norm(base), nn.ReLU(inplace=True), *downsample(small_input)]
        self.stem = nn.Sequential(*stem)
        blocks, cin = [], base
        for stage, depth in enumerate(config.depths):
            for index in range(depth):
                shape = config.shape(stage, index, cin)
                blocks.append(config.block(shape, layers))
                cin = shape.cout
        self.blocks = nn.Sequential(*blocks)
        self.head_norm = nn.Sequential(layers.norm(cin), nn.ReLU(inplace=True)) if preact else nn.Identity()
        self.fc = layers.linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head_norm(self.blocks(self.stem(x)))
        return self.fc(x.mean((2, 3)))


class SlimResNet(Slimmable, ResNet):
    """A ResNet whose width switches at run time; the stem's input and the classes never shrink.

    Without ``width_multipliers`` it is exactly the plain ResNet: same layers, state-dict keys and parameters.
    """

    def __init__(self, config: ResNetConfig, *, num_classes: int, in_channels: int, small_input: bool,
                 width_multipliers: tuple[float, ...] | None = None) -> None:
        if config.attention or config.groups != 1:
            raise ValueError("slimmable ResNets support plain blocks only (no attention, groups=1)")
        widths = None if width_multipliers is None else check_widths(width_multipliers)
        super().__init__(config, num_classes=num_classes, in_channels=in_channels, small_input=small_input,
                         layers=Layers(widths))
        self.width_multipliers = widths


RESNET18 = ResNetConfig(BasicBlock, (2, 2, 2, 2))
register_model("resnet18", slimmable=True)(partial(SlimResNet, RESNET18))
register_model("resnet34")(partial(ResNet, ResNetConfig(BasicBlock, (3, 4, 6, 3))))
register_model("resnet50")(partial(ResNet, ResNetConfig(Bottleneck, (3, 4, 6, 3))))
register_model("preact_resnet18")(partial(ResNet, ResNetConfig(PreActBlock, (2, 2, 2, 2))))
register_model("se_resnet18")(partial(ResNet, ResNetConfig(BasicBlock, (2, 2, 2, 2), attention="se")))
register_model("eca_resnet18")(partial(ResNet, ResNetConfig(BasicBlock, (2, 2, 2, 2), attention="eca")))
register_model("resnext29_8x64d")(
    partial(ResNet, ResNetConfig(Bottleneck, (3, 3, 3), groups=8, group_width=64)))
