"""Applying a policy to image files: decode, augment in same-shape batches, write PNG copies."""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import PIL.Image
import PIL.ImageOps
import torch
from torchvision.transforms.v2 import functional as tvf

from autoaug.augment import BatchAugment
from autoaug.errors import AutoaugError
from autoaug.grid import save_png
from autoaug.policy import Policy, Schedule

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
_GREY_MODES = frozenset({"1", "L", "LA"})
ProgressCallback = Callable[[int, int], None]
# Pixel values (uint8; kernels hold a few float32 copies) a policy call or the decoded backlog may hold:
# varied photo sizes must not pile up in memory waiting for same-shape partners.
MAX_VALUES_PER_CALL = 2**26


@dataclass(frozen=True)
class ApplyReport:
    """What ``apply_policy_to_path`` wrote, the files it skipped with the reason for each, and where."""

    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)  # one per set written (per phase of a schedule)


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _walk(path: Path, exclude: Path | None = None) -> list[Path]:
    """Every file under ``path`` (sorted), leaving out the folder ``exclude`` (outputs inside inputs)."""
    if not path.exists():
        raise AutoaugError(f"{path}: no such file or directory")
    if path.is_file():
        return [path]
    files = [p for p in path.rglob("*") if p.is_file()]
    if exclude is not None and exclude.resolve().is_relative_to(path.resolve()):
        files = [p for p in files if not p.resolve().is_relative_to(exclude.resolve())]
    return sorted(files)


def find_images(path: str | Path) -> list[Path]:
    """Image files under a folder (sorted, by extension, case-insensitive), or ``[path]`` for a file."""
    path = Path(path)
    return [p for p in _walk(path) if p == path or _is_image_name(p)]


def read_image(path: str | Path) -> torch.Tensor:
    """Decode an image file to uint8 ``[C, H, W]``: grey stays 1 channel, everything else becomes RGB."""
    try:
        with PIL.Image.open(path) as image:
            image = PIL.ImageOps.exif_transpose(image)  # phones store rotation in EXIF, not in pixels
            if image.mode == "P":  # via RGBA: palette transparency would warn when converted straight
                image = image.convert("RGBA")
            image = image.convert("L" if image.mode in _GREY_MODES else "RGB")
    except PIL.UnidentifiedImageError:
        raise AutoaugError(f"{path}: not a readable image (unknown format or corrupt)") from None
    except (OSError, ValueError, SyntaxError, PIL.Image.DecompressionBombError) as error:
        raise AutoaugError(f"{path}: not a readable image ({error})") from None
    return tvf.pil_to_tensor(image)


def load_image_batch(path: str | Path, *, limit: int) -> torch.Tensor:
    """Up to ``limit`` readable images under ``path`` as one uint8 batch ``[N, C, H, W]``.

    Images are resized to the first one's size, and all become RGB if any is, so they stack.
    """
    images = []
    for file in find_images(path):
        try:
            images.append(read_image(file))
        except AutoaugError:
            if Path(path).is_file():
                raise
        if len(images) == limit:
            break
    if not images:
        raise AutoaugError(f"{path}: no readable images")
    channels, (height, width) = max(image.shape[0] for image in images), images[0].shape[1:]
    return torch.stack([tvf.resize(image.expand(channels, -1, -1), [height, width], antialias=True)
                        for image in images])


def output_paths(source: Path, root: Path, output_dir: Path, copies: int) -> list[Path]:
    """``<output_dir>/<relative folder>/<stem>_aug<k>.png`` for k in ``range(copies)``."""
    relative = source.relative_to(root) if source != root else Path(source.name)
    return [output_dir / relative.parent / f"{relative.stem}_aug{k}.png" for k in range(copies)]


class _Run:
    """One apply run: decoded images wait in per-shape buckets until a policy call's worth is there."""

    def __init__(self, policy: Policy, targets: dict[Path, list[Path]], *, copies: int, seed: int | None,
                 batch_size: int, progress: float, on_progress: ProgressCallback | None) -> None:
        self.augment, self.progress = BatchAugment(policy, seed=seed), progress
        self.targets, self.copies = targets, copies
        self.per_call = max(1, batch_size // copies)
        self.on_progress = on_progress
        self.buckets: dict[tuple[int, ...], list[tuple[Path, torch.Tensor]]] = {}
        self.written: list[Path] = []
        self.skipped: list[tuple[Path, str]] = []
        self.pending = 0  # decoded pixel values waiting in buckets

    def add(self, path: Path) -> None:
        try:
            image = read_image(path)
        except AutoaugError as error:
            self.skipped.append((path, str(error).removeprefix(f"{path}: ")))
            self._progress()
            return
        bucket = self.buckets.setdefault(tuple(image.shape), [])
        bucket.append((path, image))
        self.pending += image.numel()
        if len(bucket) >= self.per_call or len(bucket) * image.numel() * self.copies >= MAX_VALUES_PER_CALL:
            self.flush(bucket)
        elif self.pending >= MAX_VALUES_PER_CALL:
            self.finish()

    def flush(self, bucket: list[tuple[Path, torch.Tensor]]) -> None:
        """One policy call for every copy of every image; copy k of image i is row ``k * len + i``."""
        if not bucket:
            return
        batch = torch.stack([image for _, image in bucket])
        out = self.augment(batch.repeat(self.copies, 1, 1, 1), progress=self.progress)
        for k in range(self.copies):
            for i, (path, _) in enumerate(bucket):
                self.written.append(save_png(out[k * len(bucket) + i], self.targets[path][k]))
        self.pending -= batch.numel()
        bucket.clear()
        self._progress()

    def finish(self) -> None:
        for bucket in self.buckets.values():
            self.flush(bucket)

    def _progress(self) -> None:
        if self.on_progress is not None:
            self.on_progress(len(self.written) // self.copies + len(self.skipped), len(self.targets))


def apply_policy_to_path(policy: Policy, input_path: str | Path, output_dir: str | Path, *, copies: int = 1,
                         seed: int | None = 0, batch_size: int = 256, progress: float | None = None,
                         overwrite: bool = False, on_progress: ProgressCallback | None = None) -> ApplyReport:
    """Write ``copies`` augmented PNGs of every image under ``input_path`` to the same relative paths.

    Images of one shape are augmented together, up to ``batch_size`` augmented images per policy call
    (fewer for large images), so the result is deterministic for a given seed, input and batch size.
    ``progress`` (the fraction of training done) picks the phase of a schedule policy; left None, a
    schedule policy writes one set per phase, each in its own ``phase<k>_<start>-<end>`` subfolder and
    drawn with the same seed.  An output folder that holds files is refused unless ``overwrite``.
    Unreadable files and files that are not images are skipped and reported;
    ``on_progress(done, total)`` counts input images (once per set).
    """
    if copies < 1 or batch_size < 1:
        raise AutoaugError(f"copies and batch size must be at least 1, got {copies} and {batch_size}")
    if progress is not None:
        _check_fraction(progress)
    root, output_dir = Path(input_path), Path(output_dir)
    if output_dir.resolve() == root.resolve():
        raise AutoaugError(f"{output_dir}: the output folder must not be the input folder")
    files = _walk(root, exclude=output_dir)
    _check_output(output_dir, overwrite)
    images = [p for p in files if p == root or _is_image_name(p)]
    sets = output_sets(policy, output_dir, progress)
    written: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for k, (point, folder) in enumerate(sets):
        step = None if on_progress is None else _offset(on_progress, k * len(images), len(sets) * len(images))
        run = _Run(policy, _unique_targets(images, root, folder, copies), copies=copies, seed=seed,
                   batch_size=batch_size, progress=point, on_progress=step)
        for path in images:
            run.add(path)
        run.finish()
        written += run.written
        skipped = run.skipped  # the same files fail in every set: report them once
    chosen = set(images)
    others = [(p, "not an image file (by its extension)") for p in files if p not in chosen]
    return ApplyReport(written=written, skipped=sorted(others + skipped), folders=[folder for _, folder in sets])


def output_sets(policy: Policy, output_dir: Path, progress: float | None) -> list[tuple[float, Path]]:
    """(progress, folder) for each set to write: one per phase of a schedule when ``progress`` is None."""
    if progress is not None or not isinstance(policy.augment, Schedule):
        return [(progress or 0.0, output_dir)]
    return [(phase.start_fraction, output_dir / f"phase{k + 1}_{phase.start_fraction:.2f}-{phase.end_fraction:.2f}")
            for k, phase in enumerate(policy.augment.phases)]


def _check_fraction(progress: float) -> None:
    if not 0.0 <= progress <= 1.0:
        raise AutoaugError(f"progress is the fraction of training done, in [0, 1]; got {progress}")


def _check_output(output_dir: Path, overwrite: bool) -> None:
    if output_dir.is_file():
        raise AutoaugError(f"{output_dir}: the output must be a folder, and this is a file")
    if not overwrite and output_dir.is_dir() and any(output_dir.iterdir()):
        raise AutoaugError(f"{output_dir}: the output folder is not empty (--overwrite / overwrite=True writes into it anyway)")


def _offset(on_progress: ProgressCallback, before: int, total: int) -> ProgressCallback:
    return lambda done, _: on_progress(before + done, total)


def _unique_targets(images: list[Path], root: Path, output_dir: Path, copies: int) -> dict[Path, list[Path]]:
    """Output paths per input; ``a.png`` and ``a.jpg`` in one folder get ``a_png_aug0.png``, ``a_jpg_aug0.png``."""
    targets = {path: output_paths(path, root, output_dir, copies) for path in images}
    uses = Counter(outs[0] for outs in targets.values())
    for path, outs in targets.items():
        if uses[outs[0]] > 1:
            renamed = path.with_name(f"{path.stem}_{path.suffix.lstrip('.').lower()}{path.suffix}")
            targets[path] = output_paths(renamed, root, output_dir, copies)
    return targets
