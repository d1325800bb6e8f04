"""The per-image path of ``PolicyTransform``: parameters drawn ahead for many images, applied one by one.

On a 32x32 image an op's arithmetic takes microseconds; what costs is each call into torch.  So the
parameters are drawn for ``DRAW_AHEAD`` images at once (the very draws ``BatchAugment`` makes for a
batch of that many), and every op has a per-image form that numpy applies to one image in a few calls,
with what it needs made for the whole block by the op's own batch kernel, so the pixels cannot differ:

- a *point* op (the same function of each pixel value) becomes its table of 256 output levels: the
  kernel applied to the 256 levels;
- a *geometric* op (nearest-neighbour warp) becomes, per output pixel, the number of the input pixel it
  takes (0 for the zero fill): the kernel applied to an image of pixel numbers;
- Color and Sharpness become a 256x256 table of (pixel, luma) or (pixel, smoothing), made by the
  kernels' own blend steps; Contrast keeps the part of its blend that the image's mean does not change;
- crops, flips and erasing boxes become slices.

The image-wide quantities (luma, the 3x3 smoothing, AutoContrast's ranges, Equalize's histogram) are
computed again in numpy with the kernels' own steps; tests compare them over every case that can arise.
Images on a GPU run each op's batch kernel on a batch of one.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import PIL.Image
import torch

from autoaug.ops import (OPS, blend, blend_terms, crop_offset, crop_padding, cutout_boxes, erasing_boxes, finish_blend,
                         sharpen)
from autoaug.sampling import IDENTITY, OP_NAMES, Plan, Slot

DRAW_AHEAD = 64
Image = np.ndarray  # uint8 [C, H, W], possibly a read-only view
# (op's kernel, its block's values [n], aux [n, k], height, width) -> one parameter per row
Prepare = Callable[[Callable[..., torch.Tensor], torch.Tensor, torch.Tensor, int, int], list[Any]]
Apply = Callable[[Image, Any], Image]


@dataclass(frozen=True)
class PerImageOp:
    """How an op runs on one numpy image: block-wise preparation, then a cheap step per image.

    ``by_value``: the parameter depends on the op's value and the image size only (not on the position
    draws), so it is kept and reused whenever that value comes again (bins repeat).
    """

    prepare: Prepare
    apply: Apply
    by_value: bool = False


def _levels_table(kernel: Callable[..., torch.Tensor], value: torch.Tensor, aux: torch.Tensor,
                  height: int, width: int) -> list[np.ndarray]:
    """A point op's output for each of the 256 levels, per row: the kernel applied to the levels."""
    levels = torch.arange(256, dtype=torch.uint8).expand(len(value), 1, 1, 256)
    return list(kernel(levels, value, aux).reshape(len(value), 256).numpy())


def _look_up(image: Image, table: np.ndarray) -> Image:
    return table.take(image)


def _source_pixels(kernel: Callable[..., torch.Tensor], value: torch.Tensor, aux: torch.Tensor,
                   height: int, width: int) -> list[np.ndarray]:
    """Per row, the 1-based number of the input pixel each output pixel takes (0: the zero fill).

    The warp is nearest-neighbour, so where a pixel comes from does not depend on the pixel values:
    warping an image of pixel numbers (exact in float32) with the op's own kernel gives the map.
    """
    numbers = torch.arange(1, height * width + 1, dtype=torch.float32).view(1, 1, height, width)
    moved = kernel(numbers.expand(len(value), 1, height, width), value, aux)
    return list(moved.reshape(len(value), height * width).to(torch.int64).numpy())


def _gather(image: Image, source: np.ndarray) -> Image:
    channels = image.shape[0]
    padded = np.zeros((channels, source.size + 1), dtype=np.uint8)
    padded[:, 1:] = image.reshape(channels, -1)
    return padded.take(source, axis=1).reshape(image.shape)


def _flip(image: Image, _: Any) -> Image:
    return image[:, :, ::-1]


def _no_parameter(kernel: Callable[..., torch.Tensor], value: torch.Tensor, aux: torch.Tensor,
                  height: int, width: int) -> list[None]:
    return [None] * len(value)


def _crop_offsets(kernel: Callable[..., torch.Tensor], value: torch.Tensor, aux: torch.Tensor,
                  height: int, width: int) -> list[tuple[int, int]]:
    """Per row, where the crop window starts relative to the image (as ``autoaug.ops.random_crop``)."""
    pad_y, pad_x = crop_padding(value, height, width)
    return list(zip(crop_offset(aux[:, 0], pad_y).tolist(), crop_offset(aux[:, 1], pad_x).tolist()))


def _crop(image: Image, offset: tuple[int, int]) -> Image:
    """The window at ``offset`` of the image zero-padded on every side: pixels outside it are 0."""
    (dy, dx), (_, height, width) = offset, image.shape
    out = np.zeros_like(image)
    rows, cols = slice(max(0, dy), min(height, height + dy)), slice(max(0, dx), min(width, width + dx))
    out[:, rows.start - dy:rows.stop - dy, cols.start - dx:cols.stop - dx] = image[:, rows, cols]
    return out


def _boxes(find: Callable[[torch.Tensor, torch.Tensor, int, int], torch.Tensor],
           kernel: Callable[..., torch.Tensor], value: torch.Tensor, aux: torch.Tensor,
           height: int, width: int) -> list[tuple[int, int, int, int]]:
    """Per row, the (top, left, height, width) box that ``find`` (``autoaug.ops``' own box maker) gives."""
    return [tuple(box) for box in find(value, aux, height, width).tolist()]


def _erase(image: Image, box: tuple[int, int, int, int]) -> Image:
    top, left, box_height, box_width = box
    out = image.copy()
    out[:, top:top + box_height, left:left + box_width] = 0
    return out


def stretch_tables(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``[k, 256]``: AutoContrast of a channel spanning [low, high], for each pair, in the kernel's float32 steps.

    ``autoaug.ops.autocontrast`` in numpy; a test compares every one of the 32,896 pairs with the kernel.
    """
    low, high = low.astype(np.float32)[:, None], high.astype(np.float32)[:, None]
    flat = high == low
    scale = np.where(flat, np.float32(1.0), (high - low) * np.float32(1.0 / 255.0))
    low = np.where(flat, np.float32(0.0), low)
    return np.clip((np.arange(256, dtype=np.float32) - low) / scale, 0, 255).astype(np.uint8)


_STRETCH: dict[tuple[int, int], np.ndarray] = {}  # at most 32,896 tables of 256 bytes


def _autocontrast(image: Image, _: Any) -> Image:
    """Each channel through the table of its own range (kept: photos' ranges repeat)."""
    pairs = list(zip(image.min(axis=(1, 2)).tolist(), image.max(axis=(1, 2)).tolist()))
    missing = [pair for pair in pairs if pair not in _STRETCH]
    if missing:
        _STRETCH.update(zip(missing, stretch_tables(*np.array(missing).T)))
    return _per_channel(np.stack([_STRETCH[pair] for pair in pairs]), image)


_OFFSETS = np.arange(3).reshape(3, 1, 1) * 256  # channel c's table starts at 256 * c


def _per_channel(tables: np.ndarray, image: Image) -> Image:
    """Channel ``c`` of ``image`` through ``tables[c]`` (``take`` on flat indices: a third of fancy indexing's time)."""
    offsets = _OFFSETS[: len(tables)] if len(tables) <= 3 else np.arange(len(tables)).reshape(-1, 1, 1) * 256
    return tables.ravel().take(image + offsets)


def _equalize(image: Image, _: Any) -> Image:
    """torchvision's ``equalize`` (PIL's scheme) in numpy: integer steps only, so exactly equal."""
    channels = image.shape[0]
    flat = image.reshape(channels, -1)
    offsets = np.arange(channels)[:, None] * 256  # one bincount for all channels
    histogram = np.bincount((flat + offsets).ravel(), minlength=256 * channels).reshape(channels, 256)
    cumulative = histogram.cumsum(axis=1)
    # pixels not of the channel's largest value, in steps of 255; a step of 0 leaves the channel as it is
    largest = histogram[np.arange(channels), cumulative.argmax(axis=1)]
    step = ((flat.shape[1] - largest) // 255)[:, None]
    tables = np.zeros((channels, 256), dtype=np.uint8)
    tables[:, 1:] = np.minimum((cumulative[:, :-1] + step // 2) // np.maximum(step, 1), 255)  # never below 0
    tables[step[:, 0] == 0] = np.arange(256, dtype=np.uint8)
    return _per_channel(tables, image)


_GREEN, _BLUE = np.float64(np.float32(0.587)), np.float64(np.float32(0.114))


def luma(image: Image) -> np.ndarray:
    """``autoaug.ops._grayscale`` of an RGB image, float32 ``[H, W]``, exactly (a test checks all colours).

    torchvision adds the green and blue terms with fused multiply-adds: a float64 sum of the float32
    terms is exact at these magnitudes, so rounding it once to float32 is the fused result.
    """
    red, green, blue = image
    luma = red.astype(np.float32) * np.float32(0.2989)
    luma = (luma + green * _GREEN).astype(np.float32)
    return np.floor((luma + blue * _BLUE).astype(np.float32))


def _grid_table(step: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
                kernel: Callable[..., torch.Tensor], value: torch.Tensor, aux: torch.Tensor,
                height: int, width: int) -> list[np.ndarray]:
    """Per row, ``[256, 256]`` uint8: ``step(pixel, other, value)`` for every pair of levels (pixel, other)."""
    pixel = torch.arange(256, dtype=torch.uint8).view(1, 1, 256, 1).expand(len(value), 1, 256, 256)
    other = torch.arange(256, dtype=torch.float32).view(1, 1, 1, 256).expand(len(value), 1, 256, 256)
    return list(step(pixel, other, value).reshape(len(value), 256, 256).numpy())


def _color_step(pixel: torch.Tensor, grey: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    return blend(pixel, grey, value)


def _color(image: Image, table: np.ndarray) -> Image:
    """Each pixel blended with its luma: ``table[pixel, luma]`` (grey images have no colour to change)."""
    if image.shape[0] != 3:
        return image
    # table[pixel, luma] through flat indices, as _per_channel
    return table.ravel().take((image.astype(np.intp) << 8) | luma(image).astype(np.intp))


def _sharpen_step(inner: torch.Tensor, blurred: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    return sharpen(inner.to(torch.float32), blurred, value).clamp_(0, 255).to(torch.uint8)


def smoothed(image: Image) -> np.ndarray:
    """The kernel's rounded 3x3 smoothing of the interior, ``round((sum of 9 + 4 * centre) / 13)``, in integers.

    The kernel's float32 convolution is within 1e-4 of the true quotient, and a quotient by 13 is never
    within 1/26 of a half, so rounding either gives the same integer (a test checks every case).
    """
    pixels = image.astype(np.int32)
    rows = pixels[:, :-2] + pixels[:, 1:-1] + pixels[:, 2:]
    total = rows[:, :, :-2] + rows[:, :, 1:-1] + rows[:, :, 2:]
    return (total + 4 * pixels[:, 1:-1, 1:-1] + 6) // 13


def _sharpness(image: Image, table: np.ndarray) -> Image:
    """Interior pixels move from their smoothing: ``table[pixel, smoothed]``; the border stays."""
    if image.shape[1] <= 2 or image.shape[2] <= 2:
        return image
    out = image.copy()
    out[:, 1:-1, 1:-1] = table.ravel().take((image[:, 1:-1, 1:-1].astype(np.intp) << 8) | smoothed(image))
    return out


def _contrast_terms(kernel: Callable[..., torch.Tensor], value: torch.Tensor, aux: torch.Tensor,
                    height: int, width: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per row, the part of the blend of the 256 levels that the image's mean does not change."""
    scaled, rest = blend_terms(torch.arange(256, dtype=torch.uint8).expand(len(value), 1, 1, 256), value)
    return list(zip(scaled.view(-1, 256), rest.view(-1, 1)))


def _contrast(image: Image, terms: tuple[torch.Tensor, torch.Tensor]) -> Image:
    """Blend with the mean luma: an exact integer sum, then the kernel's own last blend step on the levels."""
    grey = luma(image) if image.shape[0] == 3 else image[0]
    mean = np.float32(grey.sum(dtype=np.float64)) / np.float32(grey.size)
    table = finish_blend(*terms, torch.from_numpy(mean.reshape(1))).numpy()
    return table.take(image)


# op name -> its per-image form; ops not named here run their batch kernel on a batch of one
PER_IMAGE: dict[str, PerImageOp] = {
    **{name: PerImageOp(_levels_table, _look_up, by_value=True)
       for name in ("Brightness", "Posterize", "Solarize", "Invert")},
    **{name: PerImageOp(_source_pixels, _gather, by_value=True)
       for name in ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")},
    "Color": PerImageOp(partial(_grid_table, _color_step), _color, by_value=True),
    "Sharpness": PerImageOp(partial(_grid_table, _sharpen_step), _sharpness, by_value=True),
    "Contrast": PerImageOp(_contrast_terms, _contrast, by_value=True),
    "AutoContrast": PerImageOp(_no_parameter, _autocontrast),
    "Equalize": PerImageOp(_no_parameter, _equalize),
    "HorizontalFlip": PerImageOp(_no_parameter, _flip),
    "RandomCrop": PerImageOp(_crop_offsets, _crop),
    "Cutout": PerImageOp(partial(_boxes, cutout_boxes), _erase),
    "RandomErasing": PerImageOp(partial(_boxes, erasing_boxes), _erase),
}


_missing = [name for name in OPS if name not in PER_IMAGE and name != "Identity"]
if _missing:  # an op without a per-image form would fail only when a policy first draws it
    raise ImportError(f"ops without a per-image form in autoaug.perimage: {', '.join(_missing)}")


class DrawAhead:
    """A plan for many images, handed out one row at a time, in order."""

    def __init__(self, key: tuple[Any, ...], plan: Plan) -> None:
        self.key, self.next, self.size = key, 0, plan.size
        self.slots = [(slot.op.tolist(), slot.value, slot.aux, _steps(slot, plan)) for slot in plan.slots]

    @property
    def empty(self) -> bool:
        return self.next >= self.size

    def apply_next(self, image: torch.Tensor | Image) -> torch.Tensor | Image:
        """The next row's ops on one image: a numpy ``[C, H, W]`` (the CPU path) or a tensor on any device."""
        row, self.next = self.next, self.next + 1
        for ops, value, aux, steps in self.slots:
            if isinstance(image, np.ndarray):
                step = steps[row]
                image = image if step is None else step[0](image, step[1])
            elif ops[row] != IDENTITY:
                image = _kernel_on_one(image, ops[row], value[row:row + 1], aux[row:row + 1])
        return image


def _steps(slot: Slot, plan: Plan) -> list[tuple[Apply, Any] | None]:
    """Per row, the numpy step and its parameter (None for Identity), made one kernel call per op.

    Only a plan drawn on the CPU has them: images on a GPU run the batch kernels instead.
    """
    steps: list[tuple[Apply, Any] | None] = [None] * plan.size
    if slot.op.device.type != "cpu":
        return steps
    for index in torch.unique(slot.op).tolist():
        if index == IDENTITY:
            continue
        name = OP_NAMES[index]
        form, rows = PER_IMAGE[name], torch.nonzero(slot.op == index).flatten()
        make = _kept if form.by_value else _made
        for row, parameter in zip(rows.tolist(), make(name, form, slot.value[rows], slot.aux[rows], plan)):
            steps[row] = (form.apply, parameter)
    return steps


def _made(name: str, form: PerImageOp, value: torch.Tensor, aux: torch.Tensor, plan: Plan) -> list[Any]:
    return form.prepare(OPS[name].kernel, value, aux, plan.height, plan.width)


def _kept(name: str, form: PerImageOp, value: torch.Tensor, aux: torch.Tensor, plan: Plan) -> list[Any]:
    """``_made``, but each distinct value's parameter is made once and kept for the blocks that follow."""
    keys = [(name, v, plan.height, plan.width) for v in value.tolist()]
    first = {}
    for position, key in enumerate(keys):
        first.setdefault(key, position)
    known = {key: _KEPT[key] for key in first if key in _KEPT}
    missing = [key for key in first if key not in known]
    if missing:
        rows = torch.tensor([first[key] for key in missing])
        fresh = dict(zip(missing, _made(name, form, value[rows], aux[rows], plan)))
        _keep(fresh)
        known.update(fresh)
    return [known[key] for key in keys]


# (op, value, height, width) -> parameter of the ops whose parameter depends on nothing else
_KEPT: dict[tuple[str, float, int, int], Any] = {}
_KEPT_MOST = 8192


def _keep(entries: Any) -> None:
    if len(_KEPT) > _KEPT_MOST:  # continuous magnitudes never repeat: start again rather than grow
        _KEPT.clear()
    _KEPT.update(entries)


def _kernel_on_one(image: torch.Tensor, op: int, value: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
    """The op's batch kernel on a batch of one (images on a GPU, where numpy cannot reach)."""
    return OPS[OP_NAMES[op]].kernel(image[None], value.to(image.device), aux.to(image.device))[0]


def pil_to_array(image: PIL.Image.Image) -> Image:
    """The uint8 ``[C, H, W]`` array of an RGB or L image (contiguous: numpy reduces along rows fastest)."""
    pixels = np.frombuffer(image.tobytes(), dtype=np.uint8).reshape(image.height, image.width, -1)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def array_to_pil(image: Image) -> PIL.Image.Image:
    """The PIL image (RGB or L) of a uint8 ``[C, H, W]`` array."""
    mode = "RGB" if image.shape[0] == 3 else "L"
    return PIL.Image.frombytes(mode, (image.shape[2], image.shape[1]), image.transpose(1, 2, 0).tobytes())
