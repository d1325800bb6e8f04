"""The op table: each op's name, native ranges and sign, without torch, so policies validate fast.

The kernels that do the work live in ``autoaug.ops``, registered by name against this table; ``kernel``
loads them (and torch) the first time an op is applied.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from autoaug.errors import Registry

if TYPE_CHECKING:
    import torch

    Kernel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

RANGE_SETS = ("standard", "wide")


@dataclass(frozen=True)
class NativeRange:
    """Native parameter at magnitude 0 (``low``) and 1 (``high``), in ``unit``.

    Units ending in ``_of_width``/``_of_height`` are scaled by the image size before the kernel sees
    them, so the kernel always works in pixels.
    """

    unit: str
    low: float
    high: float

    def scale(self, height: int, width: int) -> float:
        return {"fraction_of_width": width, "fraction_of_height": height}.get(self.unit, 1.0)


@dataclass(frozen=True)
class OpSpec:
    """One op: its native range in each range set, whether it flips sign, and (lazily) its kernel."""

    name: str
    standard: NativeRange
    wide: NativeRange
    signed: bool = False
    uses_aux: bool = False

    def native_range(self, range_set: str) -> NativeRange:
        return self.standard if range_set == "standard" else self.wide

    def bin_values(self, range_set: str, bins: int, height: int, width: int) -> torch.Tensor:
        """float32 ``[bins]``: the native value at magnitude ``k / (bins - 1)``, bit for bit torchvision's."""
        from autoaug.ops import bin_values

        return bin_values(self, range_set, bins, height, width)

    @property
    def kernel(self) -> Kernel:
        from autoaug.ops import KERNELS  # torch loads here, when an op is first applied

        return KERNELS[self.name]


OPS: Registry = Registry("op")
_NONE = NativeRange("none", 0.0, 0.0)


def declare(name: str, *, standard: NativeRange = _NONE, wide: NativeRange | None = None,
            signed: bool = False, uses_aux: bool = False) -> None:
    """Add ``name`` to the table; ``wide`` defaults to the ``standard`` range."""
    OPS.add(name, OpSpec(name, standard, wide or standard, signed, uses_aux))


def op_names() -> list[str]:
    """All op names, in table order."""
    return list(OPS)


_SHEAR = NativeRange("shear_factor", 0.0, 0.3), NativeRange("shear_factor", 0.0, 0.99)
_TRANSLATE_X = NativeRange("fraction_of_width", 0.0, 150 / 331), NativeRange("pixels", 0.0, 32.0)
_TRANSLATE_Y = NativeRange("fraction_of_height", 0.0, 150 / 331), NativeRange("pixels", 0.0, 32.0)
_ROTATE = NativeRange("degrees", 0.0, 30.0), NativeRange("degrees", 0.0, 135.0)
_ENHANCE = NativeRange("factor_delta", 0.0, 0.9), NativeRange("factor_delta", 0.0, 0.99)

declare("Identity")
declare("ShearX", standard=_SHEAR[0], wide=_SHEAR[1], signed=True)
declare("ShearY", standard=_SHEAR[0], wide=_SHEAR[1], signed=True)
declare("TranslateX", standard=_TRANSLATE_X[0], wide=_TRANSLATE_X[1], signed=True)
declare("TranslateY", standard=_TRANSLATE_Y[0], wide=_TRANSLATE_Y[1], signed=True)
declare("Rotate", standard=_ROTATE[0], wide=_ROTATE[1], signed=True)
declare("Brightness", standard=_ENHANCE[0], wide=_ENHANCE[1], signed=True)
declare("Color", standard=_ENHANCE[0], wide=_ENHANCE[1], signed=True)
declare("Contrast", standard=_ENHANCE[0], wide=_ENHANCE[1], signed=True)
declare("Sharpness", standard=_ENHANCE[0], wide=_ENHANCE[1], signed=True)
declare("Posterize", standard=NativeRange("bits_removed", 0.0, 4.0), wide=NativeRange("bits_removed", 0.0, 6.0))
declare("Solarize", standard=NativeRange("threshold_fraction", 1.0, 0.0))
declare("AutoContrast")
declare("Equalize")
declare("Invert")
declare("HorizontalFlip")
declare("RandomCrop", standard=NativeRange("padding_fraction", 0.0, 0.25), uses_aux=True)
declare("Cutout", standard=NativeRange("size_fraction", 0.0, 1.0), uses_aux=True)
declare("RandomErasing", standard=NativeRange("max_area_fraction", 0.02, 0.4), uses_aux=True)
