"""The backbone registry: one decorator registers a model; the tests run over every entry."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from autoaug.errors import AutoaugError, Registry
from autoaug.models.slimmable import WIDTHS

SMALL_INPUT_MAX = 64  # up to this size the stem keeps full resolution (CIFAR style); above it, it downsamples 4x


class Builder(Protocol):
    """What a registered builder is called with; ``small_input`` picks the CIFAR-style stem.

    A slimmable model's builder also takes ``width_multipliers``: given, the model is built from slim
    layers with one batch norm per width; left out, it is the plain network (standard state-dict keys
    and parameter count).
    """

    def __call__(self, *, num_classes: int, in_channels: int, small_input: bool) -> torch.nn.Module: ...


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry: how to build the model (its parameter count is in ``autoaug.model_specs``)."""

    name: str
    builder: Builder
    slimmable: bool = False  # built with slimmable=True, has ``set_width`` (MutualNet training)


MODELS = Registry("model")


def register_model(name: str, *, slimmable: bool = False) -> Callable[[Builder], Builder]:
    """Decorator (or call on a ``functools.partial``) that adds a builder; a duplicate name is a ValueError.

    A shipped model also needs its row in ``autoaug.model_specs`` (its parameter count, for the listing).
    """
    def wrap(builder: Builder) -> Builder:
        MODELS.add(name, ModelSpec(name, builder, slimmable))
        return builder
    return wrap


def build_model(name: str, *, num_classes: int, in_channels: int = 3, image_size: int = 32,
                slimmable: bool = False) -> torch.nn.Module:
    """Build a registered model that maps normalised float images ``[B, C, H, W]`` to logits ``[B, classes]``.

    Images up to 64 pixels get a CIFAR-style stem that keeps full resolution; larger ones a
    stride-2 conv and a max pool, as in ImageNet ResNets. Every model pools globally at the end,
    so it accepts other input sizes too. ``slimmable=True`` builds the width-switchable variant
    (``set_width``, per-width batch norm) for width/resolution training; only slimmable entries have one.
    """
    spec: ModelSpec = MODELS[name]
    for arg, value in (("num_classes", num_classes), ("in_channels", in_channels), ("image_size", image_size)):
        if value < 1:
            raise AutoaugError(f"{arg} must be a positive integer, got {value}")
    if slimmable and not spec.slimmable:
        known = ", ".join(sorted(key for key, entry in MODELS.items() if entry.slimmable))
        raise AutoaugError(f"model {name!r} has no slimmable variant (slimmable models: {known})")
    slim = {"width_multipliers": WIDTHS} if slimmable else {}
    return spec.builder(num_classes=num_classes, in_channels=in_channels, small_input=image_size <= SMALL_INPUT_MAX,
                        **slim)


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(MODELS)


def count_parameters(module: torch.nn.Module) -> int:
    """Number of parameters (each shared tensor once), trainable or not."""
    return sum(p.numel() for p in module.parameters())


# Imported last: each family module registers its models through ``register_model`` above.
from autoaug.models import densenet, ghostnet, proxy, resnet, shufflenet, wide_resnet  # noqa: E402,F401
