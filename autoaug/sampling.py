"""Drawing per-image augmentation parameters from a policy, and applying them to a batch.

All randomness of an augmentation is drawn here, from one explicit ``torch.Generator``, into a
``Plan``; ``apply_plan`` is then deterministic, so a plan can be replayed or inspected.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from autoaug.ops import OPS, crop_offset, crop_padding, cutout_boxes, erasing_boxes
from autoaug.policy import NoAugment, OpCall, Policy, RandAugment, Schedule, SubPolicies, TrivialAugment

OP_NAMES: tuple[str, ...] = tuple(OPS)
_INDEX = {name: i for i, name in enumerate(OP_NAMES)}
IDENTITY = _INDEX["Identity"]
AUX_DRAWS = 4


@dataclass(frozen=True)
class Slot:
    """One op position for every image of a batch: which op, its native value, and its position draws.

    ``op`` already folds in the apply decision (an op not applied is Identity); ``chosen`` keeps the op
    that was drawn, and ``applied``/``negative``/``magnitude`` the raw draws, for replay and tests.
    """

    op: torch.Tensor
    value: torch.Tensor
    aux: torch.Tensor
    chosen: torch.Tensor
    applied: torch.Tensor
    negative: torch.Tensor
    magnitude: torch.Tensor


@dataclass(frozen=True)
class Plan:
    """Per-image parameters for a batch of images of size ``height`` x ``width``."""

    slots: tuple[Slot, ...]
    size: int
    height: int
    width: int
    choice: torch.Tensor | None = None  # the sub-policy each image drew, where the policy has them


class _RangeTable:
    """Per-op native ranges of one range set, as tensors indexed by op position."""

    def __init__(self, range_set: str, height: int, width: int, device: torch.device) -> None:
        ranges = [OPS[name].native_range(range_set) for name in OP_NAMES]
        scale = [r.scale(height, width) for r in ranges]
        self.low = torch.tensor([r.low * s for r, s in zip(ranges, scale)], dtype=torch.float64, device=device)
        self.high = torch.tensor([r.high * s for r, s in zip(ranges, scale)], dtype=torch.float64, device=device)
        self.signed = torch.tensor([OPS[name].signed for name in OP_NAMES], device=device)


def op_indices(names: list[str] | tuple[str, ...], device: torch.device | None = None) -> torch.Tensor:
    return torch.tensor([_INDEX[name] for name in names], dtype=torch.long, device=device)


def _rand(n: int, gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(n, *shape, generator=gen, device=gen.device)


def _slot(table: _RangeTable, chosen: torch.Tensor, probability: torch.Tensor, magnitude: torch.Tensor,
          gen: torch.Generator) -> Slot:
    """Draw apply, sign and position for each image, and turn magnitudes into native values."""
    n = chosen.shape[0]
    applied = _rand(n, gen) < probability
    negative = (_rand(n, gen) < 0.5) & table.signed[chosen]
    aux = _rand(n, gen, AUX_DRAWS)
    native = table.low[chosen] + (table.high[chosen] - table.low[chosen]) * magnitude.to(torch.float64)
    value = torch.where(negative, -native, native).to(torch.float32)
    op = torch.where(applied, chosen, torch.full_like(chosen, IDENTITY))
    return Slot(op, value, aux, chosen, applied, negative, magnitude.to(torch.float32))


def _fixed_slot(call: OpCall, n: int, table: _RangeTable, gen: torch.Generator) -> Slot:
    chosen = torch.full((n,), _INDEX[call.op], dtype=torch.long, device=gen.device)
    full = torch.full((n,), 1.0, device=gen.device)
    return _slot(table, chosen, full * call.probability, full * call.magnitude, gen)


def _subpolicy_slots(section: SubPolicies, n: int, table: _RangeTable,
                     gen: torch.Generator) -> tuple[list[Slot], torch.Tensor]:
    longest = max(len(sub) for sub in section.subpolicies)
    padded = [sub + [OpCall(op="Identity")] * (longest - len(sub)) for sub in section.subpolicies]
    ops = torch.stack([op_indices([c.op for c in sub], gen.device) for sub in padded])
    prob = torch.tensor([[c.probability for c in sub] for sub in padded], device=gen.device)
    mag = torch.tensor([[c.magnitude for c in sub] for sub in padded], device=gen.device)
    choice = torch.randint(len(padded), (n,), generator=gen, device=gen.device)
    slots = [_slot(table, ops[choice, k], prob[choice, k], mag[choice, k], gen) for k in range(longest)]
    return slots, choice


def _randaugment_slots(section: RandAugment, n: int, table: _RangeTable, gen: torch.Generator) -> list[Slot]:
    ops = op_indices(section.ops, gen.device)
    full = torch.ones(n, device=gen.device)
    picks = [ops[torch.randint(len(ops), (n,), generator=gen, device=gen.device)] for _ in range(section.num_ops)]
    return [_slot(table, pick, full, full * section.magnitude, gen) for pick in picks]


def _trivial_slots(section: TrivialAugment, n: int, table: _RangeTable, gen: torch.Generator) -> list[Slot]:
    ops = op_indices(section.ops, gen.device)
    top = section.magnitude_bins - 1
    low_bin = math.ceil(section.magnitude_min * top - 1e-9)
    high_bin = max(low_bin, math.floor(section.magnitude_max * top + 1e-9))
    pick = ops[torch.randint(len(ops), (n,), generator=gen, device=gen.device)]
    bins = torch.randint(low_bin, high_bin + 1, (n,), generator=gen, device=gen.device)
    return [_slot(table, pick, torch.ones(n, device=gen.device), bins / top, gen)]


def augment_slots(section: NoAugment | SubPolicies | RandAugment | TrivialAugment, n: int, height: int,
                  width: int, gen: torch.Generator) -> tuple[list[Slot], torch.Tensor | None]:
    if isinstance(section, NoAugment):
        return [], None
    table = _RangeTable(section.ranges, height, width, gen.device)
    if isinstance(section, SubPolicies):
        return _subpolicy_slots(section, n, table, gen)
    if isinstance(section, RandAugment):
        return _randaugment_slots(section, n, table, gen), None
    return _trivial_slots(section, n, table, gen), None


def sample_plan(policy: Policy, n: int, height: int, width: int, gen: torch.Generator, *,
                progress: float = 0.0) -> Plan:
    """Draw a plan for ``n`` images; ``progress`` in [0, 1] selects the phase of a schedule policy."""
    standard = _RangeTable("standard", height, width, gen.device)
    pre = [_fixed_slot(call, n, standard, gen) for call in policy.pre]
    section = policy.augment.at(progress) if isinstance(policy.augment, Schedule) else policy.augment
    middle, choice = augment_slots(section, n, height, width, gen)
    post = [_fixed_slot(call, n, standard, gen) for call in policy.post]
    return Plan(tuple(pre + middle + post), n, height, width, choice)


def apply_slot(images: torch.Tensor, slot: Slot) -> torch.Tensor:
    """Apply one slot: images are grouped by op (one host sync), each group runs its kernel once."""
    op = slot.op.to(images.device)
    counts = torch.bincount(op, minlength=len(OP_NAMES)).tolist()
    if counts[IDENTITY] == len(op):
        return images
    order = torch.argsort(op, stable=True)
    value, aux = slot.value.to(images.device)[order], slot.aux.to(images.device)[order]
    pieces, start = [], 0
    batch = images[order]
    for index, count in enumerate(counts):
        if count:
            part = slice(start, start + count)
            pieces.append(OPS[OP_NAMES[index]].kernel(batch[part], value[part], aux[part]))
            start += count
    out = torch.empty_like(images)
    out[order] = torch.cat(pieces)
    return out


def apply_plan(images: torch.Tensor, plan: Plan) -> torch.Tensor:
    """Apply every slot of ``plan`` in order to a uint8 batch ``[B, C, H, W]``."""
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"expected a uint8 batch [B, C, H, W], got {images.dtype} of shape {tuple(images.shape)}")
    for slot in plan.slots:
        images = apply_slot(images, slot)
    return images


def visible_fraction(plan: Plan) -> torch.Tensor:
    """Per image, the fraction of the original image still visible after crops and occlusions.

    Soft augmentation lowers a target's confidence as this fraction falls.
    """
    height, width = plan.height, plan.width
    visible = torch.ones(plan.size)
    crop, cut, erase = (_INDEX[n] for n in ("RandomCrop", "Cutout", "RandomErasing"))
    for slot in plan.slots:
        part = torch.ones_like(slot.value)
        pad_y, pad_x = crop_padding(slot.value, height, width)
        dy, dx = crop_offset(slot.aux[:, 0], pad_y).abs(), crop_offset(slot.aux[:, 1], pad_x).abs()
        part = torch.where(slot.op == crop, (height - dy).clamp(min=0) * (width - dx).clamp(min=0) / (height * width), part)
        for index, boxes in ((cut, cutout_boxes), (erase, erasing_boxes)):
            box = boxes(slot.value, slot.aux, height, width)
            part = torch.where(slot.op == index, 1.0 - box[:, 2] * box[:, 3] / (height * width), part)
        visible = visible.to(part.device) * part
    return visible
