"""Per-image sampling: every image draws its own ops, signs and magnitudes, with the right statistics."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import TrivialAugmentWide
from torchvision.transforms.v2 import functional as F

from autoaug.augment import BatchAugment
from autoaug.ops import OPS
from autoaug.policy import OpCall, Policy, SubPolicies, TrivialAugment, load_policy
from autoaug.ops import AUX_DRAWS
from autoaug.sampling import IDENTITY, OP_NAMES, Plan, Slot, apply_plan, sample_plan, visible_fraction

GOLDEN = Path(__file__).parent / "golden"
INDEX = {name: i for i, name in enumerate(OP_NAMES)}
SIGNED = torch.tensor([OPS[name].signed for name in OP_NAMES])
# chi-square critical values at p = 0.001: a correct sampler fails one seed in a thousand, and the seeds are fixed
CHI2_999 = {13: 34.53, 24: 51.18, 30: 59.70}
MIN_DISTINCT_MIDDLE = {"trivialaugment-wide": 140, "randaugment": 150, "autoaugment-cifar10": 50}


@functools.lru_cache(maxsize=None)
def _sample_images() -> tuple[torch.Tensor, ...]:
    from sklearn.datasets import load_sample_images
    return tuple(torch.from_numpy(np.array(p)).permute(2, 0, 1) for p in load_sample_images().images)


def photo_batch(n: int, height: int = 32, width: int = 32) -> torch.Tensor:
    """``n`` different real photo crops (scikit-learn's china and flower), downscaled."""
    sources = _sample_images()
    crops = [sources[i % 2][:, (5 * i) % 200: (5 * i) % 200 + 200, (9 * i) % 300: (9 * i) % 300 + 260]
             for i in range(n)]
    return torch.stack([F.resize(c, [height, width], antialias=True) for c in crops])


def plan_for(policy: Policy, n: int, seed: int = 0, height: int = 32, width: int = 32, **kwargs: float) -> Plan:
    return sample_plan(policy, n, height, width, torch.Generator().manual_seed(seed), **kwargs)


def chi_square(counts: torch.Tensor) -> float:
    expected = counts.sum().item() / len(counts)
    return float(((counts.double() - expected) ** 2 / expected).sum())


def without_pre_post(name: str) -> Policy:
    return load_policy(name).model_copy(update={"pre": [], "post": []})


@pytest.mark.parametrize("name", ["trivialaugment-wide", "randaugment", "autoaugment-cifar10"])
def test_copies_of_one_image_are_augmented_differently(name: str) -> None:
    one = photo_batch(1).expand(256, -1, -1, -1).contiguous()
    policy = load_policy(name)
    out = BatchAugment(policy, seed=0)(one)
    assert out.shape == one.shape and out.dtype == torch.uint8
    # measured over seeds 0-2: 255-256 of 256 distinct for all three (crop offsets and Cutout positions)
    assert len({bytes(image.numpy()) for image in out}) >= 250
    # the policy section alone, without crop, flip and Cutout: measured TA 162-164, RA 172-180, AA 62-71
    # (AutoAugment's 25 sub-policies of 2 ops, often not applied, have few distinct outcomes)
    middle = BatchAugment(without_pre_post(name), seed=0)(one)
    assert len({bytes(image.numpy()) for image in middle}) >= MIN_DISTINCT_MIDDLE[name]

    plan = BatchAugment(policy, seed=0).sample(256, 32, 32)
    chosen = torch.cat([s.chosen for s in plan.slots])
    applied = torch.cat([s.applied for s in plan.slots])
    negative = torch.cat([s.negative for s in plan.slots])
    assert len(set(chosen.tolist())) > 10
    assert applied.any() and not applied.all()  # the 50% flip at least
    assert negative.any() and (~negative & SIGNED[chosen]).any()
    magnitudes = torch.cat([s.magnitude for s in plan.slots[len(policy.pre): len(plan.slots) - len(policy.post)]])
    assert len(set(magnitudes.tolist())) >= (1 if name == "randaugment" else 8)


@pytest.mark.parametrize("name", ["trivialaugment-wide", "autoaugment-cifar10"])
def test_same_seed_same_pixels_and_different_seed_different(name: str) -> None:
    images = photo_batch(64)
    policy = load_policy(name)
    first, again = BatchAugment(policy, seed=7), BatchAugment(policy, seed=7)
    a = first(images)
    assert torch.equal(a, again(images))
    assert not torch.equal(a, BatchAugment(policy, seed=8)(images))
    assert not torch.equal(first(images), a)  # the generator moves on: the next batch draws anew
    assert torch.equal(apply_plan(images, plan_for(policy, 64, seed=3)), apply_plan(images, plan_for(policy, 64, seed=3)))


NARROW = Policy(name="narrow", augment=TrivialAugment(magnitude_min=0.41, magnitude_max=0.42))  # between bins 0.40, 0.43


@pytest.mark.parametrize("name", ["trivialaugment-wide", "autoaugment-cifar10", "randaugment", "narrow"])
def test_a_seeded_plan_draws_nothing_from_the_global_generator(name: str) -> None:
    """The same seed gives the same plan whatever torch's global generator holds (every draw is seeded)."""
    policy = NARROW if name == "narrow" else load_policy(name)
    plans = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        plans.append(plan_for(policy, 256, seed=4))
    for first, again in zip(plans[0].slots, plans[1].slots):
        assert torch.equal(first.op, again.op) and torch.equal(first.value, again.value)
        assert torch.equal(first.aux, again.aux) and torch.equal(first.magnitude, again.magnitude)


def test_apply_plan_equals_image_by_image_replay() -> None:
    """Grouping images by op (one kernel call per op) must put every image back in its own place."""
    images = photo_batch(96, 24, 40)
    plan = plan_for(load_policy("autoaugment-cifar10"), 96, height=24, width=40)
    out = apply_plan(images, plan)
    for i in range(len(images)):
        image = images[i: i + 1]
        for slot in plan.slots:
            image = OPS[OP_NAMES[int(slot.op[i])]].kernel(image, slot.value[i: i + 1], slot.aux[i: i + 1])
        assert torch.equal(out[i], image[0]), i


def test_apply_plan_refuses_other_dtypes_and_shapes() -> None:
    plan = plan_for(load_policy("cropflip"), 4)
    with pytest.raises(ValueError, match="uint8"):
        apply_plan(torch.zeros(4, 3, 32, 32), plan)
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        apply_plan(torch.zeros(3, 32, 32, dtype=torch.uint8), plan)


def test_subpolicy_choice_is_uniform() -> None:
    plan = plan_for(load_policy("autoaugment-cifar10"), 20000)
    counts = torch.bincount(plan.choice, minlength=25)
    assert len(counts) == 25 and chi_square(counts) < CHI2_999[24]


def test_probability_is_the_apply_rate() -> None:
    policy = Policy(name="p", pre=[OpCall(op="Rotate", probability=0.3, magnitude=0.5)])
    slot = plan_for(policy, 20000).slots[0]
    assert abs(slot.applied.float().mean().item() - 0.3) < 0.015  # 4.6 standard deviations
    assert torch.equal(slot.op, torch.where(slot.applied, INDEX["Rotate"], IDENTITY))
    for probability, expected in ((0.0, False), (1.0, True)):
        never = Policy(name="p", pre=[OpCall(op="Rotate", probability=probability)])
        assert (plan_for(never, 1000).slots[0].applied == expected).all()


def test_signs_and_native_values() -> None:
    """Signed ops are negative half the time, unsigned never; values are torchvision's table entries."""
    slot = plan_for(without_pre_post("trivialaugment-wide"), 20000, height=48, width=64).slots[0]
    signed = SIGNED[slot.chosen]
    assert abs(slot.negative[signed].float().mean().item() - 0.5) < 0.02
    assert not slot.negative[~signed].any()
    table = {name: spec for name, (spec, _) in TrivialAugmentWide._AUGMENTATION_SPACE.items()}
    for i in range(0, 20000, 97):
        name = OP_NAMES[int(slot.chosen[i])]
        entries = table[name](31, 48, 64)
        native = 0.0 if entries is None else float(entries[round(float(slot.magnitude[i]) * 30)])
        native = 8 - native if name == "Posterize" else native  # bits kept in torchvision's table, ours removed
        assert float(slot.value[i]) == (-native if slot.negative[i] else native)


def test_trivialaugment_bins_are_uniform() -> None:
    slot = plan_for(without_pre_post("trivialaugment-wide"), 20000).slots[0]
    bins = slot.magnitude * 30
    assert torch.allclose(bins, bins.round(), atol=1e-5)  # m = bin / 30, nothing in between
    assert chi_square(torch.bincount(bins.round().long(), minlength=31)) < CHI2_999[30]
    assert chi_square(torch.bincount(slot.chosen, minlength=len(OP_NAMES))[slot.chosen.unique()]) < CHI2_999[13]
    assert len(slot.chosen.unique()) == 14 and slot.applied.all()


def test_trivialaugment_magnitude_window() -> None:
    policy = Policy(name="ta", augment=TrivialAugment(magnitude_min=0.2, magnitude_max=0.5))
    bins = (plan_for(policy, 5000).slots[0].magnitude * 30).round().long()
    assert set(bins.tolist()) == set(range(6, 16))
    fixed = Policy(name="ta", augment=TrivialAugment(magnitude_min=0.4, magnitude_max=0.4, magnitude_bins=11))
    assert torch.allclose(plan_for(fixed, 100).slots[0].magnitude, torch.tensor(0.4))
    # a window holding exactly one bin (0.4 of 11) draws that bin, never a value beside it
    one_bin = Policy(name="ta", augment=TrivialAugment(magnitude_min=0.39, magnitude_max=0.41, magnitude_bins=11))
    drawn = plan_for(one_bin, 100).slots[0].magnitude
    assert len(set(drawn.tolist())) == 1 and drawn[0].item() == pytest.approx(0.4, abs=1e-7)


def test_randaugment_magnitude_is_fixed_and_ops_uniform() -> None:
    plan = plan_for(without_pre_post("randaugment"), 20000, height=48, width=64)
    assert len(plan.slots) == 2
    for slot in plan.slots:
        assert (slot.magnitude == torch.tensor(0.3)).all() and slot.applied.all()
        counts = torch.bincount(slot.chosen, minlength=len(OP_NAMES))[slot.chosen.unique()]
        assert len(counts) == 14 and chi_square(counts) < CHI2_999[13]
        # fraction_of_width/height scale by the image: 48 high, 64 wide
        for name, size in (("TranslateX", 64), ("TranslateY", 48)):
            values = slot.value[slot.chosen == INDEX[name]].abs()
            assert torch.allclose(values, torch.tensor(150 / 331 * size * 0.3))
    assert not (plan.slots[0].chosen == plan.slots[1].chosen).all()  # two independent draws per image


def test_schedule_switches_phase_with_progress() -> None:
    policy = load_policy(GOLDEN / "policy_v1_schedule.json")  # none for [0, 0.5), RandAugment(Rotate, Color) after
    assert plan_for(policy, 100, progress=0.0).slots == () and plan_for(policy, 100, progress=0.49).slots == ()
    for progress in (0.5, 0.9, 1.0):
        plan = plan_for(policy, 1000, progress=progress)
        assert len(plan.slots) == 2
        assert {OP_NAMES[i] for i in torch.cat([s.chosen for s in plan.slots]).tolist()} == {"Rotate", "Color"}
    images = photo_batch(32)
    augment = BatchAugment(policy, seed=0)
    assert torch.equal(augment(images, progress=0.25), images)
    assert (augment(images, progress=0.75) != images).flatten(1).any(1).all()


def test_subpolicies_of_different_lengths_are_padded_with_identity() -> None:
    policy = Policy(name="p", augment=SubPolicies(subpolicies=[
        [OpCall(op="Invert", probability=1.0)],
        [OpCall(op="Invert", probability=1.0), OpCall(op="HorizontalFlip", probability=1.0)]]))
    plan = plan_for(policy, 2000)
    short = plan.choice == 0
    assert len(plan.slots) == 2 and short.any() and (~short).any()
    assert (plan.slots[1].op[short] == IDENTITY).all() and (plan.slots[1].op[~short] == INDEX["HorizontalFlip"]).all()


# --------------------------------------------------------------------------- visible fraction
def _white(n: int, height: int, width: int) -> torch.Tensor:
    return torch.full((n, 3, height, width), 255, dtype=torch.uint8)


def _measured_visible(plan: Plan) -> torch.Tensor:
    """The real share of a white image still white after the plan: zero pixels are padding or holes."""
    out = apply_plan(_white(plan.size, plan.height, plan.width), plan)
    return (out[:, 0] != 0).flatten(1).float().mean(1)


def test_visible_fraction_is_one_without_occlusion() -> None:
    for policy in (without_pre_post("trivialaugment-wide"), without_pre_post("autoaugment-cifar10"),
                   Policy(name="flip", pre=[OpCall(op="HorizontalFlip", probability=0.5)])):
        assert torch.equal(visible_fraction(plan_for(policy, 500)), torch.ones(500))


@pytest.mark.parametrize("height, width", [(32, 32), (48, 64)])
@pytest.mark.parametrize("op, magnitude", [("Cutout", 0.5), ("Cutout", 0.3), ("RandomErasing", 0.4),
                                           ("RandomCrop", 0.5), ("RandomCrop", 0.25)])
def test_visible_fraction_is_the_real_visible_area(op: str, magnitude: float, height: int, width: int) -> None:
    policy = Policy(name="occlude", post=[OpCall(op=op, probability=0.8, magnitude=magnitude)])
    plan = plan_for(policy, 400, height=height, width=width)
    visible = visible_fraction(plan)
    assert torch.allclose(visible, _measured_visible(plan), atol=1e-6)
    applied = plan.slots[0].applied
    assert (visible[~applied] == 1).all() and (visible[applied] < 1).float().mean() > 0.7
    if op == "Cutout":  # a box clipped by the border hides less; the largest hole is the whole box
        side_y, side_x = round(magnitude * height), round(magnitude * width)
        assert visible[applied].min().item() == pytest.approx(1 - side_y * side_x / (height * width))


@pytest.mark.parametrize("height, width", [(32, 32), (48, 64)])
def test_visible_fraction_of_crop_flip_and_holes_is_the_area_counted_in_pixels(height: int, width: int) -> None:
    """Padding and holes that overlap count once: the fraction is the white area left, counted pixel by pixel
    on the real output, not a product of per-op fractions (off by up to 6% when a hole meets the padding)."""
    policy = Policy(name="all", pre=[OpCall(op="RandomCrop", probability=1.0, magnitude=0.5),
                                     OpCall(op="HorizontalFlip", probability=0.5)],
                    post=[OpCall(op="Cutout", probability=1.0, magnitude=0.5),
                          OpCall(op="RandomErasing", probability=0.7, magnitude=1.0)])
    plan = plan_for(policy, 600, height=height, width=width)
    visible = visible_fraction(plan)
    assert torch.equal(visible, _measured_visible(plan))
    product = torch.ones(600)
    for k in range(len(plan.slots)):
        product *= visible_fraction(Plan(plan.slots[k: k + 1], plan.size, plan.height, plan.width))
    assert (product - visible).abs().max() > 0.01  # overlaps happen, and are not double counted


def test_visible_fraction_of_a_hand_built_plan() -> None:
    """Crop shifted by (+2, -3) pixels on 8x8, then Cutout 4x4 centred on the corner that the shift padded."""
    crop, cut = (OP_NAMES.index(n) for n in ("RandomCrop", "Cutout"))
    aux = torch.zeros(1, AUX_DRAWS)
    # pad 2 (value 0.25 of 8): offset floor(u * 5) - 2; u = 0.9 -> +2 (down), u = 0.1 -> -2 (right)
    crop_aux = aux.clone()
    crop_aux[0, :2] = torch.tensor([0.9, 0.1])
    cut_aux = aux.clone()
    cut_aux[0, :2] = torch.tensor([7.5 / 8, 0.5 / 8])  # centre pixel (7, 0): the box rows 5..7, columns 0..1

    def slot(op: int, value: float, aux: torch.Tensor) -> Slot:
        one = torch.ones(1, dtype=torch.bool)
        return Slot(torch.tensor([op]), torch.tensor([value]), aux, torch.tensor([op]), one, ~one, torch.zeros(1))

    plan = Plan((slot(crop, 0.25, crop_aux), slot(cut, 0.5, cut_aux)), 1, 8, 8)
    # after the crop the original shows in rows 0..5 and columns 2..7 (6 x 6 = 36 pixels); the hole covers
    # rows 5..7 x columns 0..1 (padding only) -> 36 of 64 stay visible
    assert visible_fraction(plan).item() == 36 / 64
    assert torch.equal(visible_fraction(plan), _measured_visible(plan))


@pytest.mark.parametrize("name", ["autoaugment-cifar10", "autoaugment-svhn", "autoaugment-imagenet"])
def test_subpolicy_ops_apply_at_their_declared_probability(name: str) -> None:
    """Per sub-policy and position: the drawn op and magnitude are the declared ones, and the apply rate is
    the declared p within 4.5 standard deviations (about 0.035 with ~4,000 images a sub-policy: a p off by
    0.1, two positions swapped or a sub-policy's p used for another fail; a correct sampler passes the seed)."""
    section = load_policy(name).augment
    plan = plan_for(without_pre_post(name), 100_000)
    for k, sub in enumerate(section.subpolicies):
        mine = plan.choice == k
        n = int(mine.sum())
        for slot, call in zip(plan.slots, sub):
            assert (slot.chosen[mine] == INDEX[call.op]).all()
            assert torch.equal(slot.magnitude[mine], torch.full((n,), call.magnitude, dtype=torch.float32))
            rate = slot.applied[mine].double().mean().item()
            bound = 4.5 * (call.probability * (1 - call.probability) / n) ** 0.5
            assert abs(rate - call.probability) <= bound, (k, call.op, rate, call.probability)
            assert torch.equal(slot.op[mine], torch.where(slot.applied[mine], INDEX[call.op], IDENTITY))


def test_visible_fraction_follows_only_the_occluding_rows_of_a_mixed_slot() -> None:
    """One TrivialAugment slot over every op: rows that drew a colour or warp op stay fully visible
    (the fraction follows the pixels, not Rotate's or Invert's effect on a mask), rows that drew Cutout,
    RandomErasing or RandomCrop lose what the pixels lose."""
    policy = Policy(name="mixed", augment=TrivialAugment(ops=list(OPS), ranges="wide"))
    plan = plan_for(policy, 600)
    slot, visible = plan.slots[0], visible_fraction(plan)
    occluding = torch.isin(slot.op, torch.tensor([INDEX[n] for n in ("Cutout", "RandomErasing", "RandomCrop")]))
    assert occluding.any() and (~occluding).any()
    assert torch.equal(visible[~occluding], torch.ones(int((~occluding).sum())))
    assert (visible[occluding] < 1).float().mean() > 0.5  # holes and padding were made


def test_a_schedule_plan_without_progress_is_the_first_phase() -> None:
    first = Policy(name="ta", augment=TrivialAugment(ops=["Invert"]))
    later = Policy(name="ta", augment=TrivialAugment(ops=["Equalize"]))
    schedule = Policy.model_validate({"name": "s", "augment": {"kind": "schedule", "phases": [
        {"start_fraction": 0.0, "end_fraction": 0.5, "augment": first.augment.model_dump()},
        {"start_fraction": 0.5, "end_fraction": 1.0, "augment": later.augment.model_dump()}]}})
    chosen = sample_plan(schedule, 50, 32, 32, torch.Generator().manual_seed(0)).slots[0].chosen
    assert set(chosen.tolist()) == {INDEX["Invert"]}


def test_off_bin_native_values_run_from_each_ranges_low_to_its_high() -> None:
    """Hand-worked: Solarize's threshold falls from 1 to 0 (0.75 at magnitude 0.25); RandomErasing's area
    runs from 0.02 to 0.4 (0.21 at 0.5); Rotate 0 to 30 degrees (7.5 at 0.25), between bins."""
    from autoaug.sampling import native_values

    assert native_values(["Solarize", "Rotate"], 0.25, range_set="standard", bins=None, height=32,
                         width=32).tolist() == pytest.approx([0.75, 7.5])
    assert native_values(["RandomErasing"], 0.5, range_set="standard", bins=None, height=32,
                         width=32).tolist() == pytest.approx([0.21])
    assert native_values(["Solarize"], 0.2501, range_set="standard", bins=31, height=32,
                         width=32).tolist() == pytest.approx([0.7499], abs=1e-6)


def test_pre_and_post_ops_take_the_standard_ranges() -> None:
    """A Rotate in ``post`` at magnitude 0.5 turns 15 degrees (standard: 0-30), not 67.5 (wide: 0-135)."""
    policy = Policy(name="post-rotate", post=[OpCall(op="Rotate", probability=1.0, magnitude=0.5)])
    value = plan_for(policy, 64).slots[0].value.abs()
    assert torch.allclose(value, torch.full((64,), 15.0))
