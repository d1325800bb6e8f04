"""Our shipped AutoAugment, RandAugment and TrivialAugmentWide against torchvision's own machinery, exactly.

Two checks, both with no tolerance, on real CIFAR-10 photos (tests/data/cifar10-mini.npz):
- every (op, bin, sign) a shipped policy can draw: our kernel at our magnitude gives the same uint8 images
  as torchvision's ``_apply_image_or_video_transform`` at the entry of torchvision's own float32 table,
  and the two magnitudes are the same float;
- a sampled batch: our plan says which sub-policy and ops each image drew, whether each was applied and
  with which sign; torchvision re-applies exactly those draws through its table, image by image.

Known, deliberate differences from torchvision's transforms, not covered by the replay:
- ``pre`` (padded RandomCrop + HorizontalFlip) and ``post`` (Cutout) are the papers' CIFAR training
  setup around the policy, not part of torchvision's transforms; torchvision replays after our pre ops,
  and post ops are checked separately against ``F.erase``.
- torchvision applies an op when ``rand <= p``, we when ``rand < p``: equal in distribution.
"""
from __future__ import annotations

import functools

import pytest
import torch
from torchvision.transforms import AutoAugmentPolicy, InterpolationMode
from torchvision.transforms.v2 import AutoAugment, RandAugment, TrivialAugmentWide
from torchvision.transforms.v2 import functional as F

from autoaug.dataset_formats import read_npz
from autoaug.ops import AUX_DRAWS, OPS, cutout_boxes
from autoaug.policy import RandAugment as RandAugmentSection
from autoaug.policy import SubPolicies, TrivialAugment, load_policy
from autoaug.sampling import (AUTOAUGMENT_BINS, OP_NAMES, RANDAUGMENT_BINS, Plan, Slot, apply_slot, native_values,
                              sample_plan, trivial_magnitudes)

AUTOAUGMENT = {"autoaugment-cifar10": AutoAugmentPolicy.CIFAR10, "autoaugment-svhn": AutoAugmentPolicy.SVHN,
               "autoaugment-imagenet": AutoAugmentPolicy.IMAGENET}
SHIPPED = [*AUTOAUGMENT, "randaugment", "trivialaugment-wide"]
SIZES = [(32, 32), (48, 64)]
FILL = {"others": None}  # what torchvision's _setup_fill_arg(None) makes: zero fill for every image type
Draw = tuple[str, int, bool]  # (op, magnitude bin, negative)


pytestmark = pytest.mark.usefixtures("one_thread")  # thousands of per-image torchvision calls


@functools.lru_cache(maxsize=None)
def _cifar_photos() -> torch.Tensor:
    from pathlib import Path
    _, (test_images, _), _ = read_npz(Path(__file__).parent / "data" / "cifar10-mini.npz")
    return torch.from_numpy(test_images).permute(0, 3, 1, 2).contiguous()


@functools.lru_cache(maxsize=None)
def real_batch(height: int, width: int, n: int = 200) -> torch.Tensor:
    """``n - 1`` real CIFAR-10 test photos (resized where the size is not 32x32) and one ramp holding all
    256 levels in every channel, so that every Solarize threshold and Posterize bit is hit."""
    photos = _cifar_photos()[: n - 1]
    if (height, width) != (32, 32):
        photos = F.resize(photos, [height, width], antialias=True)
    ramp = (torch.arange(height * width).view(1, 1, height, width) + torch.tensor([0, 85, 170]).view(1, 3, 1, 1))
    return torch.cat([photos, (ramp % 256).to(torch.uint8)])


def _transform(name: str) -> tuple[AutoAugment | RandAugment | TrivialAugmentWide, int, str]:
    """torchvision's transform for a shipped policy, its number of bins and our range set."""
    if name in AUTOAUGMENT:
        return AutoAugment(AUTOAUGMENT[name]), AUTOAUGMENT_BINS, "standard"
    if name == "randaugment":
        return RandAugment(num_ops=2, magnitude=9), RANDAUGMENT_BINS, "standard"
    return TrivialAugmentWide(), 31, "wide"


def reachable_draws(name: str) -> set[Draw]:
    """Every (op, bin, sign) the augment section of shipped policy ``name`` can draw, from our file."""
    section = load_policy(name).augment
    _, bins, _ = _transform(name)
    if isinstance(section, SubPolicies):
        pairs = {(c.op, round(c.magnitude * (bins - 1))) for sub in section.subpolicies for c in sub}
    elif isinstance(section, RandAugmentSection):
        pairs = {(op, round(section.magnitude * (bins - 1))) for op in section.ops}
    else:
        assert isinstance(section, TrivialAugment)
        top = section.magnitude_bins - 1
        pairs = {(op, b) for op in section.ops
                 for b in range(round(section.magnitude_min * top), round(section.magnitude_max * top) + 1)}
    return {(op, b, negative) for op, b in pairs for negative in ((False, True) if OPS[op].signed else (False,))}


def torchvision_magnitude(transform: AutoAugment | RandAugment | TrivialAugmentWide, draw: Draw, bins: int,
                          height: int, width: int) -> float:
    """torchvision's signed magnitude for one draw, from its own table, as its ``forward`` computes it."""
    name, magnitude_bin, negative = draw
    magnitudes_fn, signed = transform._AUGMENTATION_SPACE[name]
    assert signed or not negative, f"{name} has no sign, yet a negative value was drawn"
    magnitudes = magnitudes_fn(bins, height, width)
    magnitude = 0.0 if magnitudes is None else float(magnitudes[magnitude_bin])
    return -magnitude if negative else magnitude


def _torchvision(transform: AutoAugment | RandAugment | TrivialAugmentWide, images: torch.Tensor, name: str,
                 magnitude: float) -> torch.Tensor:
    return transform._apply_image_or_video_transform(images, name, magnitude,
                                                     interpolation=InterpolationMode.NEAREST, fill=FILL)


def our_value(draw: Draw, bins: int, range_set: str, height: int, width: int) -> float:
    name, magnitude_bin, negative = draw
    value = float(native_values([name], magnitude_bin / (bins - 1), range_set=range_set, bins=bins,
                                height=height, width=width)[0])
    return -value if negative else value


@pytest.mark.parametrize("height, width", SIZES, ids=["32x32", "48x64"])
@pytest.mark.parametrize("name", SHIPPED)
def test_every_draw_equals_torchvision_exactly(name: str, height: int, width: int) -> None:
    """For every (op, bin, sign) the policy can draw: the same magnitude bit for bit, the same pixels."""
    transform, bins, range_set = _transform(name)
    images = real_batch(height, width, 100 if (height, width) == (32, 32) else 40)  # ~700 draws for TA
    aux = torch.zeros(len(images), AUX_DRAWS)
    draws = reachable_draws(name)
    for draw in sorted(draws):
        theirs = torchvision_magnitude(transform, draw, bins, height, width)
        ours = our_value(draw, bins, range_set, height, width)
        # torchvision's Posterize table holds bits kept, ours bits removed
        assert (8 - ours if draw[0] == "Posterize" else ours) == theirs, (draw, ours, theirs)
        expected = _torchvision(transform, images, draw[0], theirs)
        got = OPS[draw[0]].kernel(images, torch.full((len(images),), ours), aux)
        assert torch.equal(got, expected), (draw, int((got != expected).sum()))
    # the whole table is covered: torchvision's op set, all 31 bins for TrivialAugmentWide
    assert {d[0] for d in draws} <= set(transform._AUGMENTATION_SPACE)
    if name == "trivialaugment-wide":
        assert len(draws) == sum(31 * (2 if signed else 1) for _, signed in transform._AUGMENTATION_SPACE.values())


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


def _draw(slot: Slot, i: int, num_bins: int) -> tuple[str, bool, bool, int]:
    return (OP_NAMES[int(slot.chosen[i])], bool(slot.applied[i]), bool(slot.negative[i]),
            round(float(slot.magnitude[i]) * (num_bins - 1)))


def _replay_slots(transform: AutoAugment | RandAugment | TrivialAugmentWide, images: torch.Tensor,
                  slots: tuple[Slot, ...], num_bins: int) -> None:
    """Each slot applied by us and, image by image, by torchvision at its own table's magnitude, to the
    same input (our previous output): the values and the pixels must be identical."""
    height, width = images.shape[-2:]
    for slot in slots:
        ours = apply_slot(images, slot)
        for i in range(len(images)):
            name, applied, negative, magnitude_bin = _draw(slot, i, num_bins)
            if not applied:
                assert torch.equal(ours[i], images[i])
                continue
            magnitude = torchvision_magnitude(transform, (name, magnitude_bin, negative), num_bins, height, width)
            value = float(slot.value[i])
            assert (8 - value if name == "Posterize" else value) == magnitude, (name, value, magnitude)
            assert torch.equal(ours[i], _torchvision(transform, images[i], name, magnitude)), (name, magnitude)
        images = ours


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
    _replay_slots(AutoAugment(AUTOAUGMENT[name]), images, middle, 10)
    applied = {OP_NAMES[int(s.chosen[i])] for s in middle for i in range(len(images)) if s.applied[i]}
    in_policy = {c.op for sub in load_policy(name).augment.subpolicies for c in sub}
    assert len(applied) >= len(in_policy) - 1  # the replay covered (nearly) all of the policy's ops


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
    _replay_slots(RandAugment(num_ops=2, magnitude=9), images, middle, 31)


@pytest.mark.parametrize("height, width", SIZES, ids=["32x32", "48x64"])
def test_trivialaugment_replayed_by_torchvision(height: int, width: int) -> None:
    plan, images, n_pre = _plan("trivialaugment-wide", height, width, seed=2)
    middle = plan.slots[n_pre: n_pre + 1]
    assert len({_draw(middle[0], i, 31)[3] for i in range(len(images))}) == 31  # every bin is replayed
    _replay_slots(TrivialAugmentWide(), images, middle, 31)


@pytest.mark.parametrize("table, bins, range_set", [
    (AutoAugment._AUGMENTATION_SPACE, 10, "standard"),
    (RandAugment._AUGMENTATION_SPACE, 31, "standard"),
    (TrivialAugmentWide._AUGMENTATION_SPACE, 31, "wide"),
], ids=["autoaugment", "randaugment", "trivialaugment-wide"])
def test_native_ranges_equal_torchvision_tables(table: dict, bins: int, range_set: str) -> None:
    """At every bin and size, our native value is torchvision's table entry, the same float."""
    for height, width in [*SIZES, (17, 333)]:
        for name, (magnitudes_fn, signed) in table.items():
            assert OPS[name].signed == signed, name
            magnitudes = magnitudes_fn(bins, height, width)
            ours = native_values([name] * bins, torch.arange(bins, dtype=torch.float64) / (bins - 1),
                                 range_set=range_set, bins=bins, height=height, width=width)
            if magnitudes is None:
                assert not ours.any(), name
            elif name == "Posterize":  # torchvision's table holds bits kept; ours bits removed
                assert torch.equal(8 - ours, magnitudes.to(torch.float32)), name
            else:
                assert torch.equal(ours, magnitudes), name


def test_a_magnitude_between_bins_maps_linearly() -> None:
    """Off the bins (a searched magnitude), the value is the exact linear map, rounded once to float32."""
    value = native_values(["Rotate", "TranslateX"], 0.123, range_set="standard", bins=10, height=32, width=64)
    assert value.tolist() == [torch.tensor(30.0 * 0.123).item(), torch.tensor(150 / 331 * 64 * 0.123).item()]


def test_narrow_trivialaugment_window_never_leaves_the_window() -> None:
    """A window narrower than one bin holds no bin: magnitudes stay inside it, never on a bin outside."""
    gen = torch.Generator().manual_seed(0)
    for low, high, bins in ((0.41, 0.42, 31), (0.5, 0.5, 4), (0.01, 0.02, 11), (0.2, 0.2, 31)):
        section = TrivialAugment(magnitude_min=low, magnitude_max=high, magnitude_bins=bins)
        drawn = trivial_magnitudes(section, 4000, gen)
        assert drawn.min() >= low and drawn.max() <= high, (low, high, bins)
        assert drawn.max() - drawn.min() <= high - low
    inside = trivial_magnitudes(TrivialAugment(magnitude_min=0.2, magnitude_max=0.5), 4000, gen)
    assert set((inside * 30).round().long().tolist()) == set(range(6, 16))
