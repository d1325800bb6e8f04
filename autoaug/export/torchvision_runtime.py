"""Runtime of an exported torchvision pipeline: torch and torchvision only, no autoaug import.

``autoaug export --to torchvision`` copies this file into the module it writes, with ``RANGES`` filled
in and a ``build_transform()`` that composes the classes below.  Every op is a
``torchvision.transforms.v2.functional`` call made exactly as torchvision's own RandAugment makes it;
drawing (which op, its sign, its position) is kept apart from applying, as in autoaug.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import PIL.Image
import torch
from torch.nn import functional as nnf
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as F

NEAREST = InterpolationMode.NEAREST
# range set -> op -> (unit, value at magnitude 0, value at magnitude 1, signed); written by the export
RANGES: dict[str, dict[str, tuple[str, float, float, bool]]] = {}
Step = tuple[str, float, torch.Tensor]  # (op, native signed value, 4 uniform position draws)


def _f32(value: float) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float32)


def native_value(op: str, range_set: str, magnitude: float, height: int, width: int) -> float:
    """An op's native parameter at a magnitude in [0, 1] (pixels for translations), as autoaug draws it."""
    unit, low, high, _ = RANGES[range_set][op]
    scale = {"fraction_of_width": width, "fraction_of_height": height}.get(unit, 1.0)
    low, high, magnitude = low * scale, high * scale, float(_f32(magnitude))
    return float(_f32(low + (high - low) * magnitude))


def _crop(image: Any, value: float, aux: torch.Tensor) -> Any:
    """Zero-pad by round(value * size) pixels and crop back at an offset uniform in [-pad, pad]."""
    height, width = F.get_size(image)
    pad_y, pad_x = (int(torch.round(_f32(value) * size)) for size in (height, width))
    top = int((aux[0] * (2 * pad_y + 1)).floor().clamp(max=2 * pad_y))  # in the padded image
    left = int((aux[1] * (2 * pad_x + 1)).floor().clamp(max=2 * pad_x))
    return F.crop(F.pad(image, [pad_x, pad_y, pad_x, pad_y]), top, left, height, width)


def cutout_box(value: float, aux: torch.Tensor, height: int, width: int) -> tuple[int, int, int, int]:
    """(top, left, box height, box width) of a square of side value * size centred at a uniform point."""
    side_y, side_x = int(torch.round(_f32(value) * height)), int(torch.round(_f32(value) * width))
    cy, cx = int(torch.floor(aux[0] * height)), int(torch.floor(aux[1] * width))
    top, left = min(max(cy - side_y // 2, 0), height), min(max(cx - side_x // 2, 0), width)
    bottom = min(max(cy - side_y // 2 + side_y, 0), height)
    right = min(max(cx - side_x // 2 + side_x, 0), width)
    return top, left, bottom - top, right - left


def erasing_box(value: float, aux: torch.Tensor, height: int, width: int) -> tuple[int, int, int, int]:
    """v2.RandomErasing's box: area in [0.02, value], log-uniform aspect in [0.3, 3.3], drawn again (up to
    10 tries) until it fits strictly inside the image; after 10 misses, an empty box (the image is kept)."""
    draws = aux[:-2].to(torch.float64).view(-1, 2)  # (area, aspect) per attempt, then (top, left)
    for area_draw, ratio_draw in draws:
        area = (0.02 + area_draw * (float(_f32(value)) - 0.02)) * (height * width)
        ratio = torch.exp(math.log(0.3) + ratio_draw * (math.log(3.3) - math.log(0.3)))
        box_h, box_w = int(torch.round(torch.sqrt(area * ratio))), int(torch.round(torch.sqrt(area / ratio)))
        if box_h < height and box_w < width:
            top = int(torch.floor(aux[-2].to(torch.float64) * (height - box_h + 1)))
            left = int(torch.floor(aux[-1].to(torch.float64) * (width - box_w + 1)))
            return top, left, box_h, box_w
    return 0, 0, 0, 0


def _erase(image: Any, box: Callable[..., tuple[int, int, int, int]], value: float, aux: torch.Tensor) -> Any:
    height, width = F.get_size(image)
    top, left, box_h, box_w = box(value, aux, height, width)
    if box_h == 0 or box_w == 0:
        return image
    return F.erase(image, top, left, box_h, box_w, v=torch.tensor(0, dtype=image.dtype))


def _affine(image: Any, *, translate: Sequence[int] = (0, 0), shear: Sequence[float] = (0.0, 0.0),
            center: list[int] | None = None) -> Any:
    return F.affine(image, angle=0.0, translate=list(translate), scale=1.0, shear=list(shear),
                    interpolation=NEAREST, fill=None, center=center)


OPS: dict[str, Callable[[Any, float, torch.Tensor], Any]] = {
    "Identity": lambda image, v, aux: image,
    "ShearX": lambda image, v, aux: _affine(image, shear=[math.degrees(math.atan(v)), 0.0], center=[0, 0]),
    "ShearY": lambda image, v, aux: _affine(image, shear=[0.0, math.degrees(math.atan(v))], center=[0, 0]),
    "TranslateX": lambda image, v, aux: _affine(image, translate=[int(v), 0]),
    "TranslateY": lambda image, v, aux: _affine(image, translate=[0, int(v)]),
    "Rotate": lambda image, v, aux: F.rotate(image, v, interpolation=NEAREST, fill=None),
    "Brightness": lambda image, v, aux: F.adjust_brightness(image, 1.0 + v),
    "Color": lambda image, v, aux: F.adjust_saturation(image, 1.0 + v),
    "Contrast": lambda image, v, aux: F.adjust_contrast(image, 1.0 + v),
    "Sharpness": lambda image, v, aux: F.adjust_sharpness(image, 1.0 + v),
    "Posterize": lambda image, v, aux: F.posterize(image, 8 - min(max(round(v), 0), 8)),
    "Solarize": lambda image, v, aux: F.solarize(image, 255.0 * v),
    "AutoContrast": lambda image, v, aux: F.autocontrast(image),
    "Equalize": lambda image, v, aux: F.equalize(image),
    "Invert": lambda image, v, aux: F.invert(image),
    "HorizontalFlip": lambda image, v, aux: F.horizontal_flip(image),
    "RandomCrop": _crop,
    "Cutout": lambda image, v, aux: _erase(image, cutout_box, v, aux),
    "RandomErasing": lambda image, v, aux: _erase(image, erasing_box, v, aux),
}


def apply_op(image: Any, op: str, value: float, aux: torch.Tensor) -> Any:
    """Apply one op to a uint8 ``[C, H, W]`` tensor with its native value and position draws."""
    if op == "Color" and image.shape[-3] != 3:  # grey images have no saturation
        return image
    return OPS[op](image, value, aux)


def draw_step(op: str, probability: float, magnitude: float, range_set: str, height: int, width: int) -> Step | None:
    """Apply or not, the sign, and the position draws of one op; None when the op is not applied."""
    applied = bool(torch.rand(()) < probability)
    negative = bool(torch.rand(()) < 0.5) and RANGES[range_set][op][3]
    aux = torch.rand(22)  # RandomErasing: (area, aspect) for 10 tries, then (top, left); others use the first 2
    if not applied:
        return None
    value = native_value(op, range_set, magnitude, height, width)
    return op, -value if negative else value, aux


class PlanTransform(v2.Transform):
    """Draws a plan (a list of steps) per image, then applies it; PIL images and uint8 tensors."""

    def sample(self, height: int, width: int) -> list[Step]:
        raise NotImplementedError

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = F.get_size(flat_inputs[0])
        return {"plan": self.sample(height, width)}

    # torchvision < 0.21 calls these private names (0.21 made them public as make_params/transform)
    def _get_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return self.make_params(flat_inputs)

    def _transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self.transform(inpt, params)

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, PIL.Image.Image):
            image = F.pil_to_tensor(inpt if inpt.mode in ("RGB", "L") else inpt.convert("RGB"))
            return F.to_pil_image(self.transform(image, params))
        if isinstance(inpt, tv_tensors.TVTensor) and not isinstance(inpt, tv_tensors.Image):
            return inpt  # boxes and masks: this pipeline augments class labels' images only
        image = inpt.as_subclass(torch.Tensor)
        for op, value, aux in params["plan"]:
            image = apply_op(image, op, value, aux)
        return tv_tensors.wrap(image, like=inpt) if isinstance(inpt, tv_tensors.Image) else image


class Op(PlanTransform):
    """One op with a probability at a fixed magnitude (a ``pre``/``post`` entry of the policy)."""

    def __init__(self, op: str, probability: float = 1.0, magnitude: float = 0.0, ranges: str = "standard") -> None:
        super().__init__()
        self.op, self.probability, self.magnitude, self.ranges = op, probability, magnitude, ranges

    def sample(self, height: int, width: int) -> list[Step]:
        step = draw_step(self.op, self.probability, self.magnitude, self.ranges, height, width)
        return [] if step is None else [step]


class SubPolicies(PlanTransform):
    """AutoAugment form: each image draws one sub-policy, a list of (op, probability, magnitude)."""

    def __init__(self, subpolicies: list[list[tuple[str, float, float]]], ranges: str = "standard") -> None:
        super().__init__()
        self.subpolicies, self.ranges = subpolicies, ranges

    def sample(self, height: int, width: int) -> list[Step]:
        chosen = self.subpolicies[int(torch.randint(len(self.subpolicies), ()))]
        steps = [draw_step(op, p, m, self.ranges, height, width) for op, p, m in chosen]
        return [step for step in steps if step is not None]


class RandomOps(PlanTransform):
    """RandAugment over any op list: ``num_ops`` ops drawn uniformly per image, all at one magnitude."""

    def __init__(self, ops: list[str], num_ops: int, magnitude: float, ranges: str = "standard") -> None:
        super().__init__()
        self.ops, self.num_ops, self.magnitude, self.ranges = ops, num_ops, magnitude, ranges

    def sample(self, height: int, width: int) -> list[Step]:
        picks = [self.ops[int(torch.randint(len(self.ops), ()))] for _ in range(self.num_ops)]
        return [draw_step(op, 1.0, self.magnitude, self.ranges, height, width) for op in picks]


class TrivialOps(PlanTransform):
    """TrivialAugment: one op per image at a magnitude bin drawn uniformly in [magnitude_min, magnitude_max]."""

    def __init__(self, ops: list[str], magnitude_min: float, magnitude_max: float, bins: int,
                 ranges: str = "wide") -> None:
        super().__init__()
        self.ops, self.ranges, self.top = ops, ranges, bins - 1
        self.low_bin = math.ceil(magnitude_min * self.top - 1e-9)
        self.high_bin = max(self.low_bin, math.floor(magnitude_max * self.top + 1e-9))

    def sample(self, height: int, width: int) -> list[Step]:
        op = self.ops[int(torch.randint(len(self.ops), ()))]
        level = int(torch.randint(self.low_bin, self.high_bin + 1, ()))
        return [draw_step(op, 1.0, float(_f32(level) / self.top), self.ranges, height, width)]


class Schedule(v2.Transform):
    """Phases over the fraction of training done; call ``set_progress`` (see the module docstring)."""

    def __init__(self, phases: list[tuple[float, float, v2.Transform]], progress: float = 0.0) -> None:
        super().__init__()
        self.bounds = [(start, end) for start, end, _ in phases]
        self.phases = torch.nn.ModuleList([phase for _, _, phase in phases])
        self.progress = progress

    def current(self) -> v2.Transform:
        index = next((i for i, (_, end) in enumerate(self.bounds) if self.progress < end), len(self.bounds) - 1)
        return self.phases[index]

    def forward(self, *inputs: Any) -> Any:
        return self.current()(*inputs)


class YOCO(v2.Transform):
    """You Only Cut Once: with ``probability``, augment the two halves of an image apart."""

    def __init__(self, inner: v2.Transform, probability: float) -> None:
        super().__init__()
        self.inner, self.probability = inner, probability

    def forward(self, *inputs: Any) -> Any:
        """The image (the first input) cut or whole; anything else (a label) passes through."""
        image = self._cut(inputs[0])
        return (image, *inputs[1:]) if len(inputs) > 1 else image

    def _cut(self, image: Any) -> Any:
        if isinstance(image, PIL.Image.Image):
            return F.to_pil_image(self._cut(F.pil_to_tensor(image.convert("RGB"))))
        dim = -1 if bool(torch.rand(()) < 0.5) else -2
        if not bool(torch.rand(()) < self.probability) or image.shape[dim] % 2:
            return self.inner(image)
        first, second = image.chunk(2, dim=dim)
        return torch.cat([self.inner(first), self.inner(second)], dim=dim)


class LowResolution(torch.nn.Module):
    """Per batch of float images: downscale (bilinear, antialiased) during phases, with a probability."""

    def __init__(self, phases: list[tuple[float, float, float, int]], progress: float = 0.0) -> None:
        super().__init__()
        self.phases, self.progress = phases, progress

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        draw = float(torch.rand(()))
        for start, end, probability, size in self.phases:
            if start <= self.progress < end and draw < probability and size != images.shape[-1]:
                return nnf.interpolate(images, size=(size, size), mode="bilinear", antialias=True)
        return images


def set_progress(module: Any, progress: float) -> None:
    """Set the fraction of training done (0 to 1) on every schedule and resolution phase in ``module``."""
    if isinstance(module, (Schedule, LowResolution)):
        module.progress = progress
    # v2.Compose and v2.RandomApply keep their transforms in a plain list, not as registered submodules
    parts = list(module.children()) if isinstance(module, torch.nn.Module) else []
    for part in parts + [p for p in getattr(module, "transforms", []) if all(p is not q for q in parts)]:
        set_progress(part, progress)
