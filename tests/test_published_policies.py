"""Our shipped AutoAugment, RandAugment and TrivialAugmentWide replayed by torchvision's own machinery.

For a batch, our plan says which sub-policy and ops each image drew, whether each was applied and with
which sign.  torchvision's AutoAugment/RandAugment/TrivialAugmentWide then re-apply exactly those draws
through their own magnitude tables and ``_apply_image_or_video_transform``, image by image; the pixels
must agree.  This pins both our ranges (magnitude -> native value) and our kernels to torchvision's.

Known, deliberate differences from torchvision's transforms, not covered by the replay:
- ``pre`` (padded RandomCrop + HorizontalFlip) and ``post`` (Cutout) are the papers' CIFAR training
  setup around the policy, not part of torchvision's transforms; torchvision replays after our pre ops,
  and post ops are checked separately against ``F.erase``.
- torchvision applies an op when ``rand <= p``, we when ``rand < p``: equal in distribution.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torchvision.transforms import AutoAugmentPolicy, InterpolationMode
from torchvision.transforms.v2 import AutoAugment, RandAugment, TrivialAugmentWide
from torchvision.transforms.v2 import functional as F

from autoaug.grid import digits_images
from autoaug.ops import OPS, cutout_boxes
from autoaug.policy import load_policy
from autoaug.sampling import OP_NAMES, Plan, Slot, apply_slot, sample_plan

AUTOAUGMENT = {"autoaugment-cifar10": AutoAugmentPolicy.CIFAR10, "autoaugment-svhn": AutoAugmentPolicy.SVHN,
               "autoaugment-imagenet": AutoAugmentPolicy.IMAGENET}
SIZES = [(32, 32), (48, 64)]
FILL = {"others": None}  # what torchvision's _setup_fill_arg(None) makes: zero fill for every image type
# Share of pixels that differ (by one level) from torchvision replaying with its own float32 table;
# measured over 4 seeds at 32x32 and 48x64: AutoAugment <= 0.13%, RandAugment <= 0.061%, TrivialAugmentWide
# <= 0.75% (there including the images its last-bit table moves a pixel or a Solarize threshold).
LAST_BIT_SHARE = 0.003
TRIVIAL_LAST_BIT_SHARE = 0.015
EDGE_OPS = {"Solarize", "TranslateX", "TranslateY", "ShearX", "ShearY"}  # where a last bit can cross an edge


pytestmark = pytest.mark.usefixtures("one_thread")  # thousands of per-image torchvision calls


@functools.lru_cache(maxsize=None)
def real_batch(height: int, width: int, n: int = 256) -> torch.Tensor:
    """Photo crops, tinted digits and one ramp holding all 256 levels (so every threshold is hit)."""
    from sklearn.datasets import load_sample_images
    sources = [torch.from_numpy(np.array(p)).permute(2, 0, 1) for p in load_sample_images().images]
    crops = [sources[i % 2][:, (7 * i) % 220: (7 * i) % 220 + 200, (11 * i) % 360: (11 * i) % 360 + 260]
             for i in range(n // 2)]
    photos = torch.stack([F.resize(c, [height, width], antialias=True) for c in crops])
    digits = F.resize(digits_images(n - n // 2 - 1), [height, width], antialias=True)
    digits = (digits.float() * torch.tensor([1.0, 0.7, 0.4]).view(1, 3, 1, 1) + 30).clamp(0, 255).to(torch.uint8)
    ramp = (torch.arange(height * width).view(1, 1, height, width) + torch.tensor([0, 85, 170]).view(1, 3, 1, 1))
    return torch.cat([photos, digits, (ramp % 256).to(torch.uint8)])


def _plan(policy_name: str, height: int, width: int, seed: int = 0) -> tuple[Plan, torch.Tensor, int]:
    """Our plan for the batch, the batch after our pre ops, and the number of pre slots."""
    policy = load_policy(policy_name)
    images = real_batch(height, width)
    plan = sample_plan(policy, len(images), height, width, torch.Generator().manual_seed(seed))
    for slot in plan.slots[: len(policy.pre)]:
        images = apply_slot(images, slot)
    return plan, images, len(policy.pre)


def _ours(images: torch.Tensor, slots: tuple[Slot, ...]) -> torch.Tensor:
    for slot in slots:
        images = apply_slot(images, slot)
    return images


def _magnitude(transform: AutoAugment | RandAugment | TrivialAugmentWide, draw: tuple[str, bool, bool, int],
               num_bins: int, height: int, width: int) -> float:
    """torchvision's signed magnitude for one ``(op, applied, negative, bin)`` draw, from its own table."""
    name, _, negative, magnitude_bin = draw
    magnitudes_fn, signed = transform._AUGMENTATION_SPACE[name]
    assert signed or not negative, f"{name} has no sign, yet our plan drew a negative value"
    magnitudes = magnitudes_fn(num_bins, height, width)
    magnitude = 0.0 if magnitudes is None else float(magnitudes[magnitude_bin])
    return -magnitude if negative else magnitude


def _torchvision(transform: AutoAugment | RandAugment | TrivialAugmentWide, image: torch.Tensor, name: str,
                 magnitude: float) -> torch.Tensor:
    return transform._apply_image_or_video_transform(image, name, magnitude,
                                                     interpolation=InterpolationMode.NEAREST, fill=FILL)


def _draw(slot: Slot, i: int, num_bins: int) -> tuple[str, bool, bool, int]:
    return (OP_NAMES[int(slot.chosen[i])], bool(slot.applied[i]), bool(slot.negative[i]),
            round(float(slot.magnitude[i]) * (num_bins - 1)))


def _replay_slots(transform: AutoAugment | RandAugment | TrivialAugmentWide, images: torch.Tensor,
                  slots: tuple[Slot, ...], num_bins: int) -> tuple[float, set[str]]:
    """Each slot applied by us and by torchvision to the same input (our previous output).

    With our native value, torchvision's kernel must give exactly our pixels, and our value must equal
    torchvision's table entry to 1e-6.  With the table entry itself, pixels may still differ, because
    the table is ``torch.linspace`` in float32, whose entries can sit an ulp off the exact
    ``low + (high - low) * bin / (bins - 1)`` that we use: a product on an integer truncates one level
    apart, TrivialAugmentWide's TranslateX bin 15 is 15.999999 (``int`` makes it 15 pixels, ours 16),
    its Solarize bin 18 is 0.40000004 (threshold 102.00001: 102 is kept, ours inverts it), and a
    nearest-neighbour shear samples the other side of a pixel edge.  Returns the share of pixels that
    differ from the table replay, and the ops where an image differs by more than one level.
    Slot by slot, so a one-level difference is not spread to two by a following Sharpness.
    """
    height, width = images.shape[-2:]
    differing, coarse = 0, set()
    for slot in slots:
        ours = apply_slot(images, slot)
        for i in range(len(images)):
            name, applied, _, _ = draw = _draw(slot, i, num_bins)
            if not applied:
                assert torch.equal(ours[i], images[i])
                continue
            value, magnitude = float(slot.value[i]), _magnitude(transform, draw, num_bins, height, width)
            if name == "Posterize":  # torchvision's table holds bits kept, ours bits removed
                value = 8 - round(value)
            assert abs(value - magnitude) <= 1e-6 * max(1.0, abs(value)), (name, value, magnitude)
            assert torch.equal(ours[i], _torchvision(transform, images[i], name, value)), (name, value)
            if value != magnitude:
                theirs = _torchvision(transform, images[i], name, magnitude)
                differing += (ours[i] != theirs).sum().item()
                if (ours[i].int() - theirs.int()).abs().max().item() > 1:
                    coarse.add(name)
        images = ours
    return differing / (images.numel() * len(slots)), coarse


@pytest.mark.parametrize("name", list(AUTOAUGMENT))
def test_autoaugment_json_equals_torchvision_table(name: str) -> None:
    theirs = AutoAugment()._get_policies(AUTOAUGMENT[name])
    ours = load_policy(name).augment.subpolicies
    assert [[(c.op, c.probability, round(c.magnitude * 9)) for c in sub] for sub in ours] == \
        [[(op, p, 0 if b is None else b) for op, p, b in sub] for sub in theirs]
    # magnitudes are exactly the paper's bins / 9, and ops without a magnitude are stored at 0
    assert all(c.magnitude == (b or 0) / 9 for sub, tsub in zip(ours, theirs) for c, (_, _, b) in zip(sub, tsub))


@pytest.mark.parametrize("height, width", SIZES, ids=["32x32", "48x64"])
@pytest.mark.parametrize("name", list(AUTOAUGMENT))
def test_autoaugment_replayed_by_torchvision(name: str, height: int, width: int) -> None:
    plan, images, n_pre = _plan(name, height, width)
    middle = plan.slots[n_pre: n_pre + 2]
    table = AutoAugment()._get_policies(AUTOAUGMENT[name])
    for i in range(len(images)):  # each image's ops and bins are its drawn sub-policy's, in order
        assert [_draw(s, i, 10)[::3] for s in middle] == [(op, b or 0) for op, _, b in table[int(plan.choice[i])]]
    share, coarse = _replay_slots(AutoAugment(AUTOAUGMENT[name]), images, middle, 10)
    assert share <= LAST_BIT_SHARE and not coarse
    applied = {OP_NAMES[int(s.chosen[i])] for s in middle for i in range(len(images)) if s.applied[i]}
    assert len(applied) >= 10  # the replay covered most of the policy's ops, not just a few


@pytest.mark.parametrize("name", ["autoaugment-cifar10", "autoaugment-svhn", "randaugment", "trivialaugment-wide"])
def test_post_cutout_is_the_papers_cifar_setup(name: str) -> None:
    """The one post op: Cutout of half the side (16 pixels at 32x32), zero fill, as F.erase."""
    policy = load_policy(name)
    assert [(c.op, c.probability, c.magnitude) for c in policy.post] == [("Cutout", 1.0, 0.5)]
    plan, images, n_pre = _plan(name, 32, 32)
    before = _ours(images, plan.slots[n_pre:-1])
    after = _ours(before, plan.slots[-1:])
    cut = plan.slots[-1]
    boxes = cutout_boxes(cut.value, cut.aux, 32, 32)
    assert int(boxes[:, 2].max()) == int(boxes[:, 3].max()) == 16
    expected = torch.stack([F.erase(before[i], *map(int, boxes[i]), v=torch.tensor(0, dtype=torch.uint8))
                            for i in range(len(before))])
    assert torch.equal(after, expected)


def test_randaugment_json_is_torchvision_default() -> None:
    section = load_policy("randaugment").augment
    assert section.kind == "randaugment" and section.ranges == "standard"
    assert section.ops == list(RandAugment._AUGMENTATION_SPACE)
    assert section.num_ops == RandAugment().num_ops == 2
    assert round(section.magnitude * 30) == RandAugment().magnitude == 9 and section.magnitude == 9 / 30


def test_trivialaugment_json_is_torchvision_default() -> None:
    section = load_policy("trivialaugment-wide").augment
    assert section.kind == "trivialaugment" and section.ranges == "wide"
    assert section.ops == list(TrivialAugmentWide._AUGMENTATION_SPACE)
    assert section.magnitude_bins == TrivialAugmentWide().num_magnitude_bins == 31
    assert (section.magnitude_min, section.magnitude_max) == (0.0, 1.0)


@pytest.mark.parametrize("height, width", SIZES, ids=["32x32", "48x64"])
def test_randaugment_replayed_by_torchvision(height: int, width: int) -> None:
    plan, images, n_pre = _plan("randaugment", height, width, seed=1)
    middle = plan.slots[n_pre: n_pre + 2]
    draws = [_draw(s, i, 31) for s in middle for i in range(len(images))]
    assert all(applied and magnitude_bin == 9 for _, applied, _, magnitude_bin in draws)  # all at M=9 of 31
    assert {d[0] for d in draws} == set(RandAugment._AUGMENTATION_SPACE)
    share, coarse = _replay_slots(RandAugment(num_ops=2, magnitude=9), images, middle, 31)
    assert share <= LAST_BIT_SHARE and not coarse


@pytest.mark.parametrize("height, width", SIZES, ids=["32x32", "48x64"])
def test_trivialaugment_replayed_by_torchvision(height: int, width: int) -> None:
    plan, images, n_pre = _plan("trivialaugment-wide", height, width, seed=2)
    middle = plan.slots[n_pre: n_pre + 1]
    assert len({_draw(middle[0], i, 31)[3] for i in range(len(images))}) == 31  # every bin is replayed
    share, coarse = _replay_slots(TrivialAugmentWide(), images, middle, 31)
    assert share <= TRIVIAL_LAST_BIT_SHARE and coarse <= EDGE_OPS


@pytest.mark.parametrize("table, bins, range_set", [
    (AutoAugment._AUGMENTATION_SPACE, 10, "standard"),
    (RandAugment._AUGMENTATION_SPACE, 31, "standard"),
    (TrivialAugmentWide._AUGMENTATION_SPACE, 31, "wide"),
], ids=["autoaugment", "randaugment", "trivialaugment-wide"])
def test_native_ranges_equal_torchvision_tables(table: dict, bins: int, range_set: str) -> None:
    """At every bin and size, our magnitude -> native value equals torchvision's table entry."""
    for height, width in SIZES:
        for name, (magnitudes_fn, signed) in table.items():
            spec = OPS[name]
            assert spec.signed == signed, name
            magnitudes = magnitudes_fn(bins, height, width)
            r = spec.native_range(range_set)
            ours = torch.tensor([(r.low + (r.high - r.low) * b / (bins - 1)) * r.scale(height, width)
                                 for b in range(bins)], dtype=torch.float64)
            if magnitudes is None:
                assert r.low == r.high == 0.0, name
            elif name == "Posterize":  # torchvision's table holds bits kept; ours bits removed
                assert torch.equal(8 - ours.round().int(), magnitudes.int()), name
            else:
                torch.testing.assert_close(ours, magnitudes.to(torch.float64), rtol=1e-6, atol=1e-6, msg=name)
