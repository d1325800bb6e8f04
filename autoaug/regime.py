"""A policy's whole training regime, one step at a time: the per-step object a training loop calls.

A policy is more than its image ops: ``mixing`` (Mixup, CutMix, YOCO), ``labels`` (label smoothing,
soft augmentation), ``resolution`` (low-resolution phases), ``width_resolution`` (MutualNet sandwich
training) and the phases of a ``schedule`` all change what a model is trained on.  ``Regime`` applies
every section exactly as the search's trainer does (the trainer uses this very object), so a loop of
your own trains the regime the search validated.
"""
from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as nnf

from autoaug.augment import BatchAugment, check_progress
from autoaug.mixing import BatchMixer, soft_cross_entropy
from autoaug.policy import Labels, Policy, Resolution
from autoaug.seeding import derive_seed
from autoaug.widthres import LossFn, SandwichStep

Normalize = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class RegimeBatch:
    """One step's batch: what to feed the model, and what to train it towards."""

    images: torch.Tensor  # float [B, C, S, S]: augmented, normalised, mixed, at ``resolution``
    targets: torch.Tensor  # float [B, classes]: soft targets, rows summing to 1
    resolution: int | None  # the side the batch was downscaled to this step; None: full size


def low_resolution(resolution: Resolution | None, progress: float, draw: float) -> int | None:
    """The resolution to downscale this batch to, or None, for a fraction of training done."""
    if resolution is None:
        return None
    for phase in resolution.phases:
        if phase.start_fraction <= progress < phase.end_fraction and draw < phase.probability:
            return phase.resolution
    return None


@dataclass(frozen=True)
class RegimeSeeds:
    """The seeds of a regime's streams, each derived from its one ``seed`` (None: unseeded, fresh draws).

    Derived, not ``seed + k``: with offsets, seed 0's mixing stream was seed 1's policy stream.
    """

    policy: int | None
    mixing: int | None
    draws: int | None

    @classmethod
    def of(cls, seed: int | None) -> RegimeSeeds:
        if seed is None:
            return cls(None, None, None)
        return cls(*(derive_seed(seed, k) for k in range(3)))


def unit_scale(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 in [0, 1], the default normalisation (pass your own, e.g. mean/std)."""
    return images.to(torch.float32) / 255.0


class Regime:
    """Every section of a policy, applied to one training batch per call, on the batch's device.

    ``regime(images, labels, progress=...)`` takes uint8 images ``[B, C, H, W]``, class indices (any
    integer dtype) and the fraction of training done, and returns a ``RegimeBatch``: the augmented,
    normalised (``normalize``, default ``unit_scale``), mixed and possibly downscaled images, their soft
    targets, and the resolution used.  ``regime.backward(model, batch)`` then runs forward and backward:
    once, or the width/resolution sandwich when the policy has a ``width_resolution`` section.
    ``labels`` replaces the policy's ``labels`` section; ``draws`` is the generator for the resolution
    and sandwich draws (default: one seeded from ``seed``).  The policy, mixing and draws streams are
    independent streams derived from ``seed`` (see ``RegimeSeeds``).
    """

    def __init__(self, policy: Policy, *, num_classes: int, seed: int | None = None,
                 normalize: Normalize = unit_scale, labels: Labels | None = None,
                 draws: torch.Generator | None = None) -> None:
        self.policy, self.normalize = policy, normalize
        self.seeds = RegimeSeeds.of(seed)
        self.augment = BatchAugment(policy, seed=self.seeds.policy)
        self.mixer = BatchMixer(policy, num_classes=num_classes, seed=self.seeds.mixing, labels=labels)
        if draws is None:
            draws = torch.Generator()
            if seed is None:
                draws.seed()
            else:
                draws.manual_seed(self.seeds.draws)
        self.draws = draws
        self._sandwich: SandwichStep | None = None

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, *, progress: float) -> RegimeBatch:
        progress = check_progress(progress)
        images, visible = self.augment.augment(images, progress=progress)
        x, targets = self.mixer(self.normalize(images), labels.to(images.device), visible=visible)
        size = low_resolution(self.policy.resolution, progress, torch.rand((), generator=self.draws).item())
        if size is not None and size != x.shape[-1]:
            x = nnf.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
        return RegimeBatch(x, targets, size)

    def backward(self, model: torch.nn.Module, batch: RegimeBatch, *, loss_fn: LossFn = soft_cross_entropy,
                 autocast: Callable[[], AbstractContextManager] = nullcontext) -> torch.Tensor:
        """Forward and backward passes for one batch; returns the (detached) loss of the full model.

        With a ``width_resolution`` section the model must be slimmable (see ``autoaug list models``):
        the widest net learns from the targets, the narrowest and random widths at random resolutions
        distil from it (MutualNet).  The caller zeroes gradients before and steps the optimiser after.
        """
        config = self.policy.width_resolution
        if config is None:
            with autocast():
                loss = loss_fn(model(batch.images), batch.targets)
            loss.backward()
            return loss.detach()
        if self._sandwich is None or self._sandwich.model is not model:
            self._sandwich = SandwichStep(model, config, self.draws)
        return self._sandwich(batch.images, batch.targets, loss_fn, autocast)
