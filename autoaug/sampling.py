"""Drawing per-image augmentation parameters from a policy, and applying them to a batch.

All randomness of an augmentation is drawn here, from one explicit ``torch.Generator``, into a
``Plan``; ``apply_plan`` is then deterministic, so a plan can be replayed or inspected.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import torch

from autoaug.ops import AUX_DRAWS, OPS
from autoaug.policy import NoAugment, OpCall, Policy, RandAugment, Schedule, SubPolicies, TrivialAugment

OP_NAMES: tuple[str, ...] = tuple(OPS)
_INDEX = {name: i for i, name in enumerate(OP_NAMES)}
IDENTITY = _INDEX["Identity"]
# torchvision's magnitude tables: AutoAugment has 10 bins, RandAugment 31; a magnitude on one of the
# section's bins takes that bin's float32 table entry, so the pixels equal torchvision's bit for bit
AUTOAUGMENT_BINS = 10
RANDAUGMENT_BINS = 31
_ON_BIN = 1e-9  # how close magnitude * (bins - 1) must be to a whole number to count as that bin
# the ops that move or hide the original pixels, followed through a mask by visible_fraction
_OCCLUDING = ("RandomCrop", "HorizontalFlip", "Cutout", "RandomErasing")


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
    """Per-op native ranges of one range set, as tensors indexed by op position.

    With ``bins``, ``table[op, k]`` is the op's native value at magnitude ``k / (bins - 1)`` as
    torchvision's float32 table holds it; other magnitudes map linearly from ``low`` to ``high``.
    """

    def __init__(self, range_set: str, bins: int | None, height: int, width: int, device: torch.device) -> None:
        ranges = [OPS[name].native_range(range_set) for name in OP_NAMES]
        scale = [r.scale(height, width) for r in ranges]
        self.low = torch.tensor([r.low * s for r, s in zip(ranges, scale)], dtype=torch.float64, device=device)
        self.high = torch.tensor([r.high * s for r, s in zip(ranges, scale)], dtype=torch.float64, device=device)
        self.signed = torch.tensor([OPS[name].signed for name in OP_NAMES], device=device)
        self.bins = bins
        self.table = None if bins is None else torch.stack(
            [OPS[name].bin_values(range_set, bins, height, width) for name in OP_NAMES]).to(device)

    def native(self, chosen: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
        """float32 native values of ops ``chosen`` at float64 ``magnitude``."""
        low, high = self.low[chosen], self.high[chosen]
        value = (low + (high - low) * magnitude).to(torch.float32)
        if self.table is None:
            return value
        index = magnitude * (self.bins - 1)
        on_bin = (index - index.round()).abs() <= _ON_BIN
        entry = self.table[chosen, index.round().long()]  # magnitudes lie in [0, 1]: a valid bin
        return torch.where(on_bin, entry, value)


@functools.lru_cache(maxsize=64)
def range_table(range_set: str, bins: int | None, height: int, width: int, device: torch.device) -> _RangeTable:
    """The (cached) table of one range set and bin count at one image size."""
    return _RangeTable(range_set, bins, height, width, device)


def native_values(names: list[str] | tuple[str, ...], magnitude: float | torch.Tensor, *, range_set: str,
                  bins: int | None, height: int, width: int) -> torch.Tensor:
    """The unsigned native value of each op in ``names`` at ``magnitude``, as the sampler computes it."""
    chosen = op_indices(names)
    magnitude = torch.as_tensor(magnitude, dtype=torch.float64).expand(len(chosen))
    return range_table(range_set, bins, height, width, torch.device("cpu")).native(chosen, magnitude)


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
    native = table.native(chosen, magnitude.to(torch.float64))
    value = torch.where(negative, -native, native)
    op = torch.where(applied, chosen, torch.full_like(chosen, IDENTITY))
    return Slot(op, value, aux, chosen, applied, negative, magnitude.to(torch.float32))


def _fixed_slot(call: OpCall, n: int, table: _RangeTable, gen: torch.Generator) -> Slot:
    chosen = torch.full((n,), _INDEX[call.op], dtype=torch.long, device=gen.device)
    full = torch.ones(n, dtype=torch.float64, device=gen.device)
    return _slot(table, chosen, full * call.probability, full * call.magnitude, gen)


def _subpolicy_slots(section: SubPolicies, n: int, table: _RangeTable,
                     gen: torch.Generator) -> tuple[list[Slot], torch.Tensor]:
    longest = max(len(sub) for sub in section.subpolicies)
    padded = [sub + [OpCall(op="Identity")] * (longest - len(sub)) for sub in section.subpolicies]
    ops = torch.stack([op_indices([c.op for c in sub], gen.device) for sub in padded])
    prob = torch.tensor([[c.probability for c in sub] for sub in padded], dtype=torch.float64, device=gen.device)
    mag = torch.tensor([[c.magnitude for c in sub] for sub in padded], dtype=torch.float64, device=gen.device)
    choice = torch.randint(len(padded), (n,), generator=gen, device=gen.device)
    slots = [_slot(table, ops[choice, k], prob[choice, k], mag[choice, k], gen) for k in range(longest)]
    return slots, choice


def _randaugment_slots(section: RandAugment, n: int, table: _RangeTable, gen: torch.Generator) -> list[Slot]:
    ops = op_indices(section.ops, gen.device)
    full = torch.ones(n, dtype=torch.float64, device=gen.device)
    picks = [ops[torch.randint(len(ops), (n,), generator=gen, device=gen.device)] for _ in range(section.num_ops)]
    return [_slot(table, pick, full, full * section.magnitude, gen) for pick in picks]


def _trivial_slots(section: TrivialAugment, n: int, table: _RangeTable, gen: torch.Generator) -> list[Slot]:
    ops = op_indices(section.ops, gen.device)
    pick = ops[torch.randint(len(ops), (n,), generator=gen, device=gen.device)]
    return [_slot(table, pick, torch.ones(n, dtype=torch.float64, device=gen.device),
                  trivial_magnitudes(section, n, gen), gen)]


def trivial_magnitudes(section: TrivialAugment, n: int, gen: torch.Generator) -> torch.Tensor:
    """float64 magnitudes: a uniform bin among those inside the window, or, when the window is narrower
    than a bin and holds none, a uniform value inside the window (never a bin outside it)."""
    top = section.magnitude_bins - 1
    low_bin = math.ceil(section.magnitude_min * top - _ON_BIN)
    high_bin = math.floor(section.magnitude_max * top + _ON_BIN)
    if low_bin > high_bin:
        span = section.magnitude_max - section.magnitude_min
        return section.magnitude_min + span * torch.rand(n, generator=gen, device=gen.device, dtype=torch.float64)
    bins = torch.randint(low_bin, high_bin + 1, (n,), generator=gen, device=gen.device)
    return bins.to(torch.float64) / top


def augment_slots(section: NoAugment | SubPolicies | RandAugment | TrivialAugment, n: int, height: int,
                  width: int, gen: torch.Generator) -> tuple[list[Slot], torch.Tensor | None]:
    if isinstance(section, NoAugment):
        return [], None
    bins = {SubPolicies: AUTOAUGMENT_BINS, RandAugment: RANDAUGMENT_BINS}.get(type(section))
    bins = section.magnitude_bins if isinstance(section, TrivialAugment) else bins
    table = range_table(section.ranges, bins, height, width, gen.device)
    if isinstance(section, SubPolicies):
        return _subpolicy_slots(section, n, table, gen)
    if isinstance(section, RandAugment):
        return _randaugment_slots(section, n, table, gen), None
    return _trivial_slots(section, n, table, gen), None


def sample_plan(policy: Policy, n: int, height: int, width: int, gen: torch.Generator, *,
                progress: float = 0.0) -> Plan:
    """Draw a plan for ``n`` images; ``progress`` in [0, 1] selects the phase of a schedule policy."""
    standard = range_table("standard", None, height, width, gen.device)  # pre/post: no bins, exact values
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
    """Per image, the fraction of the original image's pixels still visible after crops and occlusions.

    A mask of the original pixels goes through the plan's crops, flips, Cutouts and RandomErasings, so
    overlapping holes and padding count once. Soft augmentation lowers a target's confidence as it falls.
    """
    mask = torch.ones(plan.size, 1, plan.height, plan.width, dtype=torch.uint8)
    occluding = op_indices(_OCCLUDING)
    for slot in plan.slots:
        moves = torch.isin(slot.op.cpu(), occluding)
        if moves.any():
            op = torch.where(moves, slot.op.cpu(), IDENTITY)
            mask = apply_slot(mask, dataclasses.replace(slot, op=op, value=slot.value.cpu(), aux=slot.aux.cpu()))
    return mask.flatten(1).sum(1).to(torch.float32) / (plan.height * plan.width)
