"""The per-image path of ``PolicyTransform``: parameters drawn ahead for many images, applied one by one.

On a 32x32 image the work of an op is a few microseconds; what costs is setting it up.  So parameters
are drawn for ``DRAW_AHEAD`` images at once (the same draws ``BatchAugment`` makes for a batch of that
many), the affine matrices of the geometric ops are computed for all of them at once, and each image
then runs only its own kernels.  PIL images are converted with one copy each way.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import PIL.Image
import torch

import torch.nn.functional as nnf

from autoaug.ops import OPS, _inverse_affine, _shear_degrees
from autoaug.sampling import IDENTITY, OP_NAMES, Plan

DRAW_AHEAD = 64
_Params = Callable[[torch.Tensor], dict[str, torch.Tensor]]
# value -> affine parameters, as each geometric kernel of autoaug.ops forms them (tests check they agree)
_GEOMETRY: dict[str, tuple[_Params, bool]] = {
    "ShearX": (lambda v: {"shear_x": _shear_degrees(v)}, True),
    "ShearY": (lambda v: {"shear_y": _shear_degrees(v)}, True),
    "TranslateX": (lambda v: {"tx": torch.trunc(v)}, False),
    "TranslateY": (lambda v: {"ty": torch.trunc(v)}, False),
    "Rotate": (lambda v: {"angle": -v}, False),
}
_AFFINE_ARGS = ("angle", "tx", "ty", "shear_x", "shear_y")


def affine_matrices(name: str, value: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``[B, 2, 3]`` inverse affine matrices of geometric op ``name`` at per-image ``value``."""
    params, top_left = _GEOMETRY[name]
    given = params(value)
    zero = torch.zeros(value.shape[0], dtype=torch.float64, device=value.device)
    parts = [given[key].to(torch.float64) if key in given else zero for key in _AFFINE_ARGS]
    cx, cy = (-0.5 * width, -0.5 * height) if top_left else (0.0, 0.0)
    return _inverse_affine(*parts, cx=cx, cy=cy)


@lru_cache(maxsize=32)
def _base_grid(height: int, width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``autoaug.ops._warp``'s pixel-centre grid ``[1, H*W, 3]`` and scale, built once per size."""
    xs = torch.linspace((1.0 - width) * 0.5, (width - 1.0) * 0.5, width, device=device)
    ys = torch.linspace((1.0 - height) * 0.5, (height - 1.0) * 0.5, height, device=device)
    base = torch.stack(torch.broadcast_tensors(xs[None, :], ys[:, None], torch.ones(1, device=device)), -1)
    return base.view(1, height * width, 3), torch.tensor([0.5 * width, 0.5 * height], device=device)


def _warp_one(image: torch.Tensor, grid_matrix: torch.Tensor) -> torch.Tensor:
    """``autoaug.ops._warp`` of a batch of one, given its ``theta.T / scale`` (the same float32 steps)."""
    _, _, height, width = image.shape
    base, _ = _base_grid(height, width, image.device)
    grid = base.bmm(grid_matrix)
    out = nnf.grid_sample(image.to(torch.float32), grid.view(1, height, width, 2), mode="nearest",
                          padding_mode="zeros", align_corners=False)
    return out.round_().to(image.dtype)


class DrawAhead:
    """A plan for many images, handed out one row at a time, in order."""

    def __init__(self, key: tuple[Any, ...], plan: Plan) -> None:
        self.key, self.next, self.size = key, 0, plan.size
        self.slots = [(slot.op.tolist(), slot.value, slot.aux, self._matrices(slot.op, slot.value, plan))
                      for slot in plan.slots]

    @staticmethod
    def _matrices(op: torch.Tensor, value: torch.Tensor, plan: Plan) -> dict[int, torch.Tensor]:
        """Row -> ``[1, 2, 3]`` matrix for every row whose op is geometric, computed per op for all rows."""
        matrices: dict[int, torch.Tensor] = {}
        for name in _GEOMETRY:
            rows = torch.nonzero(op == OP_NAMES.index(name)).flatten()
            if len(rows):
                theta = affine_matrices(name, value[rows], plan.height, plan.width).to(torch.float32)
                _, scale = _base_grid(plan.height, plan.width, theta.device)
                grid_matrix = theta.transpose(1, 2) / scale
                matrices.update({row: grid_matrix[k:k + 1] for k, row in enumerate(rows.tolist())})
        return matrices

    @property
    def empty(self) -> bool:
        return self.next >= self.size

    def apply_next(self, images: torch.Tensor) -> torch.Tensor:
        """The next row's ops on a batch of one ``[1, C, H, W]``."""
        row, self.next = self.next, self.next + 1
        for ops, value, aux, matrices in self.slots:
            op = ops[row]
            if op == IDENTITY:
                continue
            if row in matrices:
                images = _warp_one(images, matrices[row].to(images.device))
            else:
                kernel = OPS[OP_NAMES[op]].kernel
                images = kernel(images, value[row:row + 1].to(images.device), aux[row:row + 1].to(images.device))
        return images


def pil_to_uint8(image: PIL.Image.Image) -> torch.Tensor:
    """uint8 ``[C, H, W]`` of an RGB or L image, in one copy (torchvision's ``pil_to_tensor`` makes two)."""
    pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return pixels.view(image.height, image.width, -1).permute(2, 0, 1).contiguous()


def uint8_to_pil(image: torch.Tensor) -> PIL.Image.Image:
    """The PIL image (RGB or L) of a uint8 ``[C, H, W]`` tensor."""
    mode = "RGB" if image.shape[0] == 3 else "L"
    data = image.permute(1, 2, 0).contiguous().numpy().tobytes()
    return PIL.Image.frombytes(mode, (image.shape[2], image.shape[1]), data)
