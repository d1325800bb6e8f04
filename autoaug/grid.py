"""A picture of what a policy does: originals next to augmented copies, as one uint8 image."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import PIL.Image
import torch
from torchvision.transforms.v2 import functional as tvf

from autoaug.augment import BatchAugment
from autoaug.errors import AutoaugError
from autoaug.policy import Policy, Schedule

GUTTER = 2


def augmentation_grid(policy: Policy, images: torch.Tensor, *, copies: int, seed: int | None = 0,
                      scale: int = 4, progress: float | Sequence[float] = 0.0) -> torch.Tensor:
    """uint8 ``[C, H', W']``: one row per image, the original first, then ``copies`` augmented copies.

    ``progress`` (the fraction of training done) picks the phase of a schedule policy; given several,
    the grid has one block of rows per value (e.g. ``phase_starts(policy)``: a block per phase), each
    drawn with the same seed.  Cells are nearest-upscaled by ``scale`` (small images are unreadable
    otherwise) and separated by ``GUTTER``-pixel white lines, also around the border.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"expected a uint8 batch [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
    if copies < 0 or scale < 1:
        raise AutoaugError(f"copies must be >= 0 and scale >= 1, got {copies} and {scale}")
    points = [progress] if isinstance(progress, (int, float)) else list(progress)
    # column 0 holds the originals, column k the k-th copy of every image; a block of rows per point
    blocks = [_columns(policy, images, copies, seed, point) for point in points]
    columns = torch.cat(blocks, dim=1)
    cells = columns.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
    count, channels, height, width = columns.shape[1:]
    cell_h, cell_w = height * scale, width * scale
    grid = torch.full((channels, count * (cell_h + GUTTER) + GUTTER, (copies + 1) * (cell_w + GUTTER) + GUTTER),
                      255, dtype=torch.uint8)
    for col in range(copies + 1):
        for row in range(count):
            top, left = GUTTER + row * (cell_h + GUTTER), GUTTER + col * (cell_w + GUTTER)
            grid[:, top:top + cell_h, left:left + cell_w] = cells[col, row]
    return grid


def _columns(policy: Policy, images: torch.Tensor, copies: int, seed: int | None, progress: float) -> torch.Tensor:
    """``[copies + 1, N, C, H, W]``: the originals, then each copy of every image."""
    augment = BatchAugment(policy, seed=seed)
    augmented = augment(images.repeat(copies, 1, 1, 1), progress=progress) if copies else images[:0]
    return torch.cat([images, augmented]).view(copies + 1, *images.shape)


def phase_starts(policy: Policy) -> list[float]:
    """Where each phase of a schedule policy starts (``[0.0]`` for a policy without phases)."""
    if isinstance(policy.augment, Schedule):
        return [phase.start_fraction for phase in policy.augment.phases]
    return [0.0]


def cell_origin(row: int, col: int, height: int, width: int, scale: int) -> tuple[int, int]:
    """Top-left pixel of the cell at ``(row, col)`` of a grid of ``height`` x ``width`` images."""
    return GUTTER + row * (height * scale + GUTTER), GUTTER + col * (width * scale + GUTTER)


def fit_scale(height: int, width: int, *, target: int = 128, most: int = 4) -> int:
    """An upscale factor that brings the longer side near ``target`` pixels, between 1 and ``most``."""
    return max(1, min(most, target // max(height, width)))


def digits_images(count: int, *, size: int = 32) -> torch.Tensor:
    """``count`` scikit-learn digits (real 8x8 scans) as uint8 ``[N, 1, size, size]``, for previews."""
    from sklearn.datasets import load_digits  # slow import; only previews need it

    digits = load_digits().images[:count]  # values 0..16
    pixels = torch.from_numpy(digits * (255.0 / 16.0)).round().to(torch.uint8).unsqueeze(1)
    return tvf.resize(pixels, [size, size], antialias=True)


def save_png(image: torch.Tensor, path: str | Path) -> Path:
    """Write a uint8 ``[C, H, W]`` tensor (1 or 3 channels) as a PNG, creating parent folders."""
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"expected a uint8 image [1 or 3, H, W], got {image.dtype} {tuple(image.shape)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = image.permute(1, 2, 0).contiguous().numpy()
    PIL.Image.fromarray(pixels[..., 0] if image.shape[0] == 1 else pixels).save(path, format="PNG")
    return path
