"""Per-sample batched augmentation kernels on uint8 images, registered against the op table.

Every kernel is a pure function ``kernel(images, value, aux) -> images`` where ``images`` is a uint8
batch ``[B, C, H, W]``, ``value`` is a float tensor ``[B]`` holding each image's own native (signed)
parameter in the unit the op documents, and ``aux`` is ``[B, AUX_DRAWS]`` of uniform draws in [0, 1) for
ops that also need a position or a size.  Nothing here draws random numbers: sampling lives in ``autoaug.sampling``,
so an augmentation can be replayed with the same parameters.

Kernels reproduce ``torchvision.transforms.v2.functional`` on uint8 images (see tests/test_ops.py).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as nnf
from torchvision.transforms.v2 import functional as tvf

from autoaug.errors import Registry
from autoaug.op_specs import OPS, RANGE_SETS, NativeRange, OpSpec, op_names  # noqa: F401  (re-exported)

Kernel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
ERASING_ATTEMPTS = 10  # torchvision's RandomErasing tries 10 boxes, then leaves the image as it is
AUX_DRAWS = 2 * ERASING_ATTEMPTS + 2  # (area, aspect) per attempt, then (top, left) of the kept box
# one kernel per name of the op table (autoaug.op_specs: names, ranges, signs), which needs no torch
KERNELS: Registry = Registry("op")
Table = Callable[[NativeRange, int, float], torch.Tensor]


def linspace_table(native: NativeRange, bins: int, scale: float) -> torch.Tensor:
    """The native value of each of ``bins`` magnitude bins, exactly as torchvision's float32 tables."""
    return torch.linspace(native.low * scale, native.high * scale, bins)


def _posterize_table(native: NativeRange, bins: int, scale: float) -> torch.Tensor:
    """Bits removed per bin: 8 minus torchvision's rounded table of bits kept (its ranges start at 0)."""
    kept = (8 - (torch.arange(bins) / ((bins - 1) / native.high))).round()
    return 8.0 - kept


# ops whose bins torchvision does not take from a plain linspace table
TABLES: dict[str, Table] = {"Posterize": _posterize_table}


def bin_values(spec: OpSpec, range_set: str, bins: int, height: int, width: int) -> torch.Tensor:
    """float32 ``[bins]``: the native value at magnitude ``k / (bins - 1)``, bit for bit torchvision's."""
    native = spec.native_range(range_set)
    return TABLES.get(spec.name, linspace_table)(native, bins, native.scale(height, width))


def register(name: str) -> Callable[[Kernel], Kernel]:
    """Register the kernel of the table's op ``name`` (an unknown or duplicate name is an error)."""

    def wrap(kernel: Kernel) -> Kernel:
        OPS[name]  # UnknownNameError: declare the op in autoaug.op_specs first
        KERNELS.add(name, kernel)
        return kernel

    return wrap


# --------------------------------------------------------------------------- geometry
def _inverse_affine(angle: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor, shear_x: torch.Tensor,
                    shear_y: torch.Tensor, cx: float, cy: float) -> torch.Tensor:
    """Batched torchvision ``_get_inverse_affine_matrix`` (scale 1), angles in degrees -> [B, 2, 3]."""
    rot, sx, sy = torch.deg2rad(angle), torch.deg2rad(shear_x), torch.deg2rad(shear_y)
    a = torch.cos(rot - sy) / torch.cos(sy)
    b = -torch.cos(rot - sy) * torch.tan(sx) / torch.cos(sy) - torch.sin(rot)
    c = torch.sin(rot - sy) / torch.cos(sy)
    d = -torch.sin(rot - sy) * torch.tan(sx) / torch.cos(sy) + torch.cos(rot)
    m0, m1, m3, m4 = d, -b, -c, a
    m2 = m0 * (-cx - tx) + m1 * (-cy - ty) + cx
    m5 = m3 * (-cx - tx) + m4 * (-cy - ty) + cy
    return torch.stack([m0, m1, m2, m3, m4, m5], dim=1).view(-1, 2, 3)


def _warp(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour warp with zero fill, the grid built exactly as torchvision builds it."""
    batch, _, height, width = images.shape
    theta = theta.to(torch.float32)
    xs = torch.linspace((1.0 - width) * 0.5, (width - 1.0) * 0.5, width, device=images.device)
    ys = torch.linspace((1.0 - height) * 0.5, (height - 1.0) * 0.5, height, device=images.device)
    base = torch.stack(torch.broadcast_tensors(xs[None, :], ys[:, None], torch.ones(1, device=images.device)), -1)
    scale = torch.tensor([0.5 * width, 0.5 * height], device=images.device)
    grid = base.view(1, height * width, 3).expand(batch, -1, -1).bmm(theta.transpose(1, 2) / scale)
    out = nnf.grid_sample(images.to(torch.float32), grid.view(batch, height, width, 2), mode="nearest",
                          padding_mode="zeros", align_corners=False)
    return out.round_().to(images.dtype)


def _affine(images: torch.Tensor, *, angle: torch.Tensor | None = None, tx: torch.Tensor | None = None,
            ty: torch.Tensor | None = None, shear_x: torch.Tensor | None = None,
            shear_y: torch.Tensor | None = None, top_left_center: bool = False) -> torch.Tensor:
    batch, _, height, width = images.shape
    zero = torch.zeros(batch, dtype=torch.float64, device=images.device)
    parts = [zero if p is None else p.to(torch.float64) for p in (angle, tx, ty, shear_x, shear_y)]
    cx, cy = (-0.5 * width, -0.5 * height) if top_left_center else (0.0, 0.0)
    return _warp(images, _inverse_affine(*parts, cx=cx, cy=cy))


def _shear_degrees(factor: torch.Tensor) -> torch.Tensor:
    # float64 as torchvision's math.atan: float32 atan moves the matrix an ulp and flips nearest pixels
    return torch.rad2deg(torch.atan(factor.to(torch.float64)))


@register("Identity")
def identity(images: torch.Tensor, value: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
    return images


@register("ShearX")
def shear_x(images: torch.Tensor, value: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
    """Shear along x by ``value`` = tan(angle), about the top-left corner (as torchvision's AutoAugment)."""
    return _affine(images, shear_x=_shear_degrees(value), top_left_center=True)


@register("ShearY")
def shear_y(images: torch.Tensor, value: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
    return _affine(images, shear_y=_shear_degrees(value), top_left_center=True)


@register("TranslateX")
def translate_x(images: torch.Tensor, value: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
    """Shift by ``value`` pixels, truncated toward zero as torchvision's ``int(magnitude)``."""
    return _affine(images, tx=torch.trunc(value))


@register("TranslateY")
def translate_y(images: torch.Tensor, value: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
    return _affine(images, ty=torch.trunc(value))


@register("Rotate")
def rotate(images: torch.Tensor, value: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
    """Rotate counter-clockwise by ``value`` degrees about the centre (torchvision passes -angle)."""
    return _affine(images, angle=-value)


# --------------------------------------------------------------------------- colour
def _per_sample(value: torch.Tensor) -> torch.Tensor:
    return value.to(torch.float32).view(-1, 1, 1, 1)


def blend(images: torch.Tensor, other: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """``images * (1 + value) + other * -value``, rounded exactly as torchvision's ``_blend``."""
    return finish_blend(*blend_terms(images, value), other)


def blend_terms(images: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The part of ``blend`` that does not depend on ``other``: ``images * (1 + value)`` and ``-value``."""
    # torchvision's factor and 1 - factor are Python floats: form both in float64 from value, so the
    # rest is exactly -value, not 1 minus a float32-rounded factor
    factor = 1.0 + value.to(torch.float64)
    return images.to(torch.float32) * _per_sample(factor), _per_sample(1.0 - factor)


def finish_blend(scaled: torch.Tensor, rest: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    # torchvision's add_(other, alpha=rest) is one fused multiply-add; addcmul fuses the same way
    return torch.addcmul(scaled, other, rest).clamp_(0, 255).to(torch.uint8)


def _grayscale(images: torch.Tensor) -> torch.Tensor:
    """Luma as torchvision computes it, floored for integer images; grey images pass through."""
    if images.shape[1] != 3:
        return images.to(torch.float32)
    r, g, b = images.to(torch.float32).unbind(1)
    # the same fused multiply-adds as torchvision: separate products floor 21 of the 2**24 colours differently
    return r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114).floor_().unsqueeze(1)


@register("Brightness")
def brightness(images: torch.Tensor, value: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
    """Multiply by ``1 + value``."""
    return (images.to(torch.float32) * _per_sample(1.0 + value)).clamp_(0, 255).to(torch.uint8)


@register("Color")
def color(images: torch.Tensor, value: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
    """Saturation factor ``1 + value``; grey images have no saturation and pass through."""
    if images.shape[1] != 3:
        return images
    return blend(images, _grayscale(images), value)


@register("Contrast")
def contrast(images: torch.Tensor, value: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
    """Contrast factor ``1 + value`` around each image's mean luma."""
    mean = _grayscale(images).mean(dim=(1, 2, 3), keepdim=True)
    return blend(images, mean, value)


@register("Sharpness")
def sharpness(images: torch.Tensor, value: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
    """Sharpness factor ``1 + value``: blend with a 3x3 smoothing of the interior (borders untouched)."""
    channels, height, width = images.shape[1:]
    if height <= 2 or width <= 2:
        return images
    kernel = torch.full((3, 3), 1.0 / 13.0, device=images.device)
    kernel[1, 1] = 5.0 / 13.0
    out = images.to(torch.float32)
    blurred = nnf.conv2d(out, kernel.expand(channels, 1, 3, 3), groups=channels).round_()
    sharpen(out[..., 1:-1, 1:-1], blurred, value)
    return out.clamp_(0, 255).to(torch.uint8)


def sharpen(inner: torch.Tensor, blurred: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Move float32 ``inner`` (in place) from ``blurred`` by sharpness factor ``1 + value``, as torchvision."""
    # torchvision's add_(blurred - inner, alpha=1 - factor): one fused multiply-add, alpha exactly -value
    return inner.addcmul_(blurred - inner, _per_sample(1.0 - (1.0 + value.to(torch.float64))))


@register("Posterize")
def posterize(images: torch.Tensor, value: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
    """Keep ``8 - round(value)`` bits per channel."""
    removed = torch.round(value).clamp(0, 8).to(torch.int32)
    mask = ((255 << removed) & 255).to(torch.uint8)
    return images & mask.view(-1, 1, 1, 1)


@register("Solarize")
def solarize(images: torch.Tensor, value: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
    """Invert pixels at or above ``255 * value``."""
    # torchvision forms 255 * value as a Python float, but `uint8 >= float` compares in float32: so
    # round the float64 product to float32 (238.000001 becomes 238.0, and a pixel of 238 is inverted)
    threshold = (value.to(torch.float64).view(-1, 1, 1, 1) * 255.0).to(torch.float32)
    return torch.where(images >= threshold, 255 - images, images)


@register("AutoContrast")
def autocontrast(images: torch.Tensor, value: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
    """Stretch each channel of each image to the full [0, 255] range."""
    pixels = images.to(torch.float32)
    low = pixels.amin(dim=(-2, -1), keepdim=True)
    high = pixels.amax(dim=(-2, -1), keepdim=True)
    flat = high == low
    scale = torch.where(flat, 1.0, (high - low) * (1.0 / 255.0))  # torchvision's rounding
    low = torch.where(flat, 0.0, low)
    return ((pixels - low) / scale).clamp_(0, 255).to(torch.uint8)


@register("Equalize")
def equalize(images: torch.Tensor, value: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
    """Histogram equalisation per channel; torchvision's kernel is already per-image and batched."""
    return tvf.equalize(images)


@register("Invert")
def invert(images: torch.Tensor, value: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
    return 255 - images


# --------------------------------------------------------------------------- crop, flip, occlusion
@register("HorizontalFlip")
def horizontal_flip(images: torch.Tensor, value: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
    return images.flip(-1)


@register("RandomCrop")
def random_crop(images: torch.Tensor, value: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
    """Zero-pad by ``round(value * size)`` pixels and crop back at a per-image offset (aux[:, :2])."""
    _, _, height, width = images.shape
    pad_y, pad_x = crop_padding(value, height, width)
    most_y, most_x = int(pad_y.max()), int(pad_x.max())
    padded = nnf.pad(images, (most_x, most_x, most_y, most_y))
    top = most_y + crop_offset(aux[:, 0], pad_y)
    left = most_x + crop_offset(aux[:, 1], pad_x)
    rows = (top[:, None] + torch.arange(height, device=images.device))[:, None, :, None]
    cols = (left[:, None] + torch.arange(width, device=images.device))[:, None, None, :]
    batch = torch.arange(images.shape[0], device=images.device)[:, None, None, None]
    chans = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
    return padded[batch, chans, rows, cols]


def crop_padding(value: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Padding in pixels along y and x for a ``padding_fraction`` value."""
    return torch.round(value * height).long(), torch.round(value * width).long()


def crop_offset(u: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
    """An integer offset uniform in [-pad, pad] from a uniform draw ``u``."""
    return torch.floor(u * (2 * pad + 1)).long().clamp_(max=2 * pad) - pad


@register("Cutout")
def cutout(images: torch.Tensor, value: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
    """Zero a square of side ``value * size`` centred at a uniform point (aux[:, :2]), clipped to the image."""
    return _erase(images, cutout_boxes(value, aux, images.shape[-2], images.shape[-1]))


@register("RandomErasing")
def random_erasing(images: torch.Tensor, value: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
    """Zero a rectangle of area in [0.02, value] of the image, aspect ratio in [0.3, 3.3] (log-uniform).

    As torchvision's ``RandomErasing``: a box that does not fit strictly inside the image is drawn
    again, up to 10 times; after 10 misses the image is left as it is.
    """
    return _erase(images, erasing_boxes(value, aux, images.shape[-2], images.shape[-1]))


def cutout_boxes(value: torch.Tensor, aux: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Boxes ``[B, 4]`` as (top, left, box height, box width) in pixels."""
    side_y, side_x = torch.round(value * height).long(), torch.round(value * width).long()
    cy = torch.floor(aux[:, 0] * height).long()
    cx = torch.floor(aux[:, 1] * width).long()
    top, left = (cy - side_y // 2).clamp(0, height), (cx - side_x // 2).clamp(0, width)
    bottom, right = (cy - side_y // 2 + side_y).clamp(0, height), (cx - side_x // 2 + side_x).clamp(0, width)
    return torch.stack([top, left, bottom - top, right - left], dim=1)


def erasing_boxes(value: torch.Tensor, aux: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Boxes ``[B, 4]`` as torchvision's ``RandomErasing.make_params``; an image with no fitting box gets
    an empty box (height and width 0) and stays as it is."""
    draws = aux[:, : 2 * ERASING_ATTEMPTS].to(torch.float64).view(-1, ERASING_ATTEMPTS, 2)
    low = 0.02
    area = (low + draws[..., 0] * (value.to(torch.float64)[:, None] - low)) * (height * width)
    ratio = torch.exp(math.log(0.3) + draws[..., 1] * (math.log(3.3) - math.log(0.3)))
    box_h, box_w = torch.round(torch.sqrt(area * ratio)).long(), torch.round(torch.sqrt(area / ratio)).long()
    fits = (box_h < height) & (box_w < width)
    first = fits.long().argmax(dim=1, keepdim=True)  # the first attempt that fits
    found = fits.any(dim=1)
    box_h = torch.where(found, box_h.gather(1, first)[:, 0], 0)
    box_w = torch.where(found, box_w.gather(1, first)[:, 0], 0)
    top = torch.floor(aux[:, -2].to(torch.float64) * (height - box_h + 1)).long()
    left = torch.floor(aux[:, -1].to(torch.float64) * (width - box_w + 1)).long()
    return torch.stack([top, left, box_h, box_w], dim=1)


def _erase(images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    height, width = images.shape[-2:]
    ys = torch.arange(height, device=images.device)[None, :, None]
    xs = torch.arange(width, device=images.device)[None, None, :]
    top, left, box_h, box_w = (boxes[:, k, None, None] for k in range(4))
    inside = (ys >= top) & (ys < top + box_h) & (xs >= left) & (xs < left + box_w)
    return images.masked_fill(inside[:, None], 0)


_missing = [name for name in OPS if name not in KERNELS]
if _missing:  # a table entry without a kernel would fail only when a policy first draws it
    raise ImportError(f"ops declared in autoaug.op_specs without a kernel: {', '.join(_missing)}")
