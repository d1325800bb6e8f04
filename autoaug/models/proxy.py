"""The fast proxy net for search trials, after airbench94: a stem and three conv-pool blocks, no residuals."""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from autoaug.models import register_model
from autoaug.models.layers import Layers, downsample
from autoaug.models.slimmable import Slimmable, check_widths

LOGIT_SCALE = 1 / 9  # airbench94's fixed head scale: small logits keep early training calm without tuning


def _block(cin: int, cout: int, layers: Layers) -> nn.Sequential:
    # pooling right after the first conv quarters the cost of everything that follows (airbench's trick)
    return nn.Sequential(layers.conv(cin, cout, 3), nn.MaxPool2d(2), layers.norm(cout), nn.GELU(),
                         layers.conv(cout, cout, 3), layers.norm(cout), nn.GELU())


class ProxyNet(Slimmable):
    """Stem conv, three conv-pool-norm blocks, global max pool, a bias-free linear head with a fixed scale.

    Built with ``width_multipliers`` it is slimmable: every layer but the stem's input and the classes
    shrinks with ``set_width``.
    """

    def __init__(self, widths: tuple[int, int, int, int] = (32, 64, 256, 256), *, num_classes: int,
                 in_channels: int, small_input: bool, width_multipliers: tuple[float, ...] | None = None) -> None:
        super().__init__()
        self.width_multipliers = None if width_multipliers is None else check_widths(width_multipliers)
        layers = Layers(self.width_multipliers)
        self.features = nn.Sequential(
            layers.stem_conv(in_channels, widths[0], small_input), *downsample(small_input),
            layers.norm(widths[0]), nn.GELU(), *[_block(a, b, layers) for a, b in zip(widths, widths[1:])])
        self.head = layers.linear(widths[-1], num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # max pooling as airbench does over its last 3x3 map, made global so that any input size works
        return self.head(self.features(x).amax(dim=(2, 3))) * LOGIT_SCALE


register_model("proxy", slimmable=True)(ProxyNet)
register_model("proxy_tiny", slimmable=True)(partial(ProxyNet, (16, 16, 32, 64)))  # for CPU tests and smoke runs
