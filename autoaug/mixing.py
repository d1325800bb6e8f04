"""Batch mixing (Mixup, CutMix) and soft targets (label smoothing, soft augmentation), per image."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from autoaug.policy import Labels, Mixing, Policy


def soft_targets(labels: torch.Tensor, num_classes: int, *, labels_cfg: Labels | None = None,
                 visible: torch.Tensor | None = None) -> torch.Tensor:
    """One-hot targets, softened by label smoothing and, given ``visible``, by soft augmentation.

    Soft augmentation (Liu et al., 2022) sets the true class's confidence to
    ``1 - strength * (1 - visible) ** power``, spreading the rest uniformly over all classes.
    """
    targets = torch.nn.functional.one_hot(_class_indices(labels), num_classes).to(torch.float32)
    if labels_cfg is None:
        return targets
    confidence = torch.ones(labels.shape[0], device=labels.device)
    if visible is not None and labels_cfg.soft_target_strength > 0:
        occluded = (1.0 - visible.to(labels.device).clamp(0, 1)) ** labels_cfg.soft_target_power
        confidence = 1.0 - labels_cfg.soft_target_strength * occluded
    confidence = confidence * (1.0 - labels_cfg.label_smoothing)
    return targets * confidence[:, None] + (1.0 - confidence[:, None]) / num_classes


def _class_indices(labels: torch.Tensor) -> torch.Tensor:
    """Integer class labels of any integer dtype as int64 (what ``one_hot`` takes)."""
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer class indices (any integer dtype) or float soft targets "
                         f"[B, classes], got {labels.dtype}")
    return labels.long()


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against soft targets ``[B, classes]`` (rows summing to 1), averaged over the batch."""
    return -(targets * torch.nn.functional.log_softmax(logits.float(), dim=1)).sum(1).mean()


class BatchMixer:
    """``(images, labels) -> (images, soft targets)``: each image is mixed with a random partner.

    With the policy's mixing ``probability`` an image is mixed; then with ``cutmix_probability`` by
    CutMix (a box pasted from the partner, the target weighted by the box's real area) and otherwise by
    Mixup. Every image draws its own λ ~ Beta(α, α).  ``labels`` may be class indices (any integer
    dtype) or soft targets; class indices are first softened by the policy's ``labels`` section (or
    ``labels``, which replaces it), using ``visible`` (per image, the fraction left visible by the
    augmentation: ``BatchAugment.augment`` returns it) for soft augmentation.
    """

    def __init__(self, policy: Policy, *, num_classes: int, seed: int | None = None,
                 labels: Labels | None = None) -> None:
        self.mixing = policy.mixing or Mixing()
        self.labels_cfg = labels if labels is not None else policy.labels
        self.num_classes = num_classes
        self.seed = seed
        self._gen: torch.Generator | None = None

    @property
    def active(self) -> bool:
        m = self.mixing
        return m.probability > 0 and (m.mixup_alpha > 0 or m.cutmix_alpha > 0)

    def _generator(self) -> torch.Generator:
        if self._gen is None:
            seed = self.seed if self.seed is not None else int(torch.randint(2**62, ()).item())
            self._gen = torch.Generator().manual_seed(seed)
        return self._gen

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, *,
                 visible: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        targets = labels if labels.is_floating_point() else soft_targets(labels, self.num_classes,
                                                                         labels_cfg=self.labels_cfg, visible=visible)
        if not self.active or images.shape[0] < 2:
            return images, targets
        draws = self._draw(images.shape[0], images.shape[-2], images.shape[-1])
        draws = {k: v.to(images.device) for k, v in draws.items()}
        return self._mix(images, targets.to(images.device), **draws)

    def _draw(self, n: int, height: int, width: int) -> dict[str, torch.Tensor]:
        gen, m = self._generator(), self.mixing
        mixed = torch.rand(n, generator=gen) < m.probability
        use_cutmix = torch.rand(n, generator=gen) < (m.cutmix_probability if m.mixup_alpha > 0 else 1.0)
        if m.cutmix_alpha <= 0:
            use_cutmix = torch.zeros(n, dtype=torch.bool)
        rng = np.random.default_rng(int(torch.randint(2**62, (), generator=gen)))
        lam_mixup = torch.from_numpy(rng.beta(max(m.mixup_alpha, 1e-3), max(m.mixup_alpha, 1e-3), n)).float()
        lam_cut = torch.from_numpy(rng.beta(max(m.cutmix_alpha, 1e-3), max(m.cutmix_alpha, 1e-3), n)).float()
        boxes = _cutmix_boxes(lam_cut, torch.rand(n, 2, generator=gen), height, width)
        partner = torch.randperm(n, generator=gen)
        return {"mixed": mixed, "use_cutmix": use_cutmix, "lam_mixup": lam_mixup, "boxes": boxes,
                "partner": partner}

    def _mix(self, images: torch.Tensor, targets: torch.Tensor, *, mixed: torch.Tensor, use_cutmix: torch.Tensor,
             lam_mixup: torch.Tensor, boxes: torch.Tensor, partner: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = images.shape[-2:]
        other = images[partner]
        ys = torch.arange(height, device=images.device)[None, :, None]
        xs = torch.arange(width, device=images.device)[None, None, :]
        top, left, bottom, right = (boxes[:, k, None, None] for k in range(4))
        inside = (ys >= top) & (ys < bottom) & (xs >= left) & (xs < right)
        inside = inside & (mixed & use_cutmix)[:, None, None]
        lam_cut = 1.0 - inside.flatten(1).float().mean(1)
        blend = (mixed & ~use_cutmix)
        lam = torch.where(blend, lam_mixup, torch.where(mixed & use_cutmix, lam_cut, torch.ones_like(lam_mixup)))
        out = torch.where(inside[:, None], other, images)
        weight = lam.view(-1, 1, 1, 1)
        blended = images.to(torch.float32) * weight + other.to(torch.float32) * (1 - weight)
        if not images.is_floating_point():
            blended = blended.round_().clamp_(0, 255)
        out = torch.where(blend.view(-1, 1, 1, 1), blended.to(images.dtype), out)
        return out, targets * lam[:, None] + targets[partner] * (1 - lam[:, None])

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_gen": None}


def _cutmix_boxes(lam: torch.Tensor, centre: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Boxes (top, left, bottom, right) covering a ``1 - lam`` share of the image, clipped to it."""
    ratio = torch.sqrt(1.0 - lam)
    cut_h, cut_w = (ratio * height).long(), (ratio * width).long()
    cy, cx = (centre[:, 0] * height).long(), (centre[:, 1] * width).long()
    top, bottom = (cy - cut_h // 2).clamp(0, height), (cy + cut_h // 2).clamp(0, height)
    left, right = (cx - cut_w // 2).clamp(0, width), (cx + cut_w // 2).clamp(0, width)
    return torch.stack([top, left, bottom, right], dim=1)
