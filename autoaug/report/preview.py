"""Preview grids of a policy on a few of the run's own images (digits where those cannot be read)."""
from __future__ import annotations

import io

import PIL.Image
import torch

from autoaug.grid import augmentation_grid, digits_images, fit_scale
from autoaug.policy import Policy, Schedule

ROWS, COPIES = 4, 8


def sample_images(dataset: str | None, data_dir: str | None, count: int = ROWS) -> torch.Tensor:
    """The first ``count`` training images of the run's dataset, or digits if it cannot be loaded here."""
    if dataset:
        try:
            from autoaug.datasets import load_dataset
            return load_dataset(dataset, data_dir=data_dir).train.images[:count].clone()
        except Exception:  # moved, not downloaded, or another machine's path: digits still show the ops
            pass
    return digits_images(count)


def _png(image: torch.Tensor) -> bytes:
    pixels = image.permute(1, 2, 0).contiguous().numpy()
    buffer = io.BytesIO()
    PIL.Image.fromarray(pixels[..., 0] if image.shape[0] == 1 else pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def preview_grids(policy: Policy, dataset: str | None, data_dir: str | None, *, seed: int = 0) -> list[tuple[str, bytes]]:
    """(label, PNG) per grid: one for the policy, or one per phase of a schedule."""
    images = sample_images(dataset, data_dir)
    scale = fit_scale(*images.shape[-2:])
    if not isinstance(policy.augment, Schedule):
        return [(policy.name, _png(augmentation_grid(policy, images, copies=COPIES, seed=seed, scale=scale)))]
    grids = []
    for phase in policy.augment.phases:
        phased = policy.model_copy(update={"augment": phase.augment})
        label = f"phase {phase.start_fraction:g} to {phase.end_fraction:g} of training ({phase.augment.kind})"
        grids.append((label, _png(augmentation_grid(phased, images, copies=COPIES, seed=seed, scale=scale))))
    return grids
