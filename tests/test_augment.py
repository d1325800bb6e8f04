"""BatchAugment (incl. YOCO) and PolicyTransform, the torchvision-v2 transform, on real images."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from autoaug.augment import DRAW_AHEAD, BatchAugment, PolicyTransform, SharedProgress
from autoaug.grid import digits_images
from autoaug.ops import OPS
from autoaug.policy import Mixing, OpCall, Policy, TrivialAugment, load_policy
from autoaug.sampling import OP_NAMES, Plan, apply_plan

FLIP = Policy(name="flip", pre=[OpCall(op="HorizontalFlip", probability=1.0)])


@functools.lru_cache(maxsize=None)
def _sample_images() -> tuple[torch.Tensor, ...]:
    from sklearn.datasets import load_sample_images
    return tuple(torch.from_numpy(np.array(p)).permute(2, 0, 1) for p in load_sample_images().images)


def photos(n: int, height: int = 32, width: int = 32) -> torch.Tensor:
    """``n`` real photo crops (scikit-learn's china and flower), downscaled."""
    sources = _sample_images()
    crops = [sources[i % 2][:, (6 * i) % 200: (6 * i) % 200 + 180, (8 * i) % 300: (8 * i) % 300 + 240]
             for i in range(n)]
    return torch.stack([F.resize(c, [height, width], antialias=True) for c in crops])


def pil_photo(height: int = 30, width: int = 40, mode: str = "RGB") -> PIL.Image.Image:
    return PIL.Image.fromarray(photos(1, height, width)[0].permute(1, 2, 0).numpy()).convert(mode)


def _rows(plan: Plan, count: int) -> Plan:
    """The first ``count`` images' parameters of ``plan``."""
    slots = tuple(type(slot)(*(getattr(slot, f)[:count] for f in slot.__dataclass_fields__)) for slot in plan.slots)
    return Plan(slots, count, plan.height, plan.width, None if plan.choice is None else plan.choice[:count])


def yoco(policy: Policy, probability: float = 1.0) -> Policy:
    return policy.model_copy(update={"mixing": Mixing(yoco_probability=probability)})


# --------------------------------------------------------------------------- PolicyTransform
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_policy_transform_in_a_v2_compose_on_pil_images(mode: str) -> None:
    pipeline = v2.Compose([v2.RandomCrop((30, 40), padding=2), PolicyTransform(load_policy("trivialaugment-wide"), seed=0),
                           v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
    out = pipeline(pil_photo(mode=mode))
    assert isinstance(out, tv_tensors.Image) and out.dtype == torch.float32
    assert out.shape == (3 if mode == "RGB" else 1, 30, 40) and 0.0 <= out.min() and out.max() <= 1.0


def test_policy_transform_returns_the_type_it_was_given() -> None:
    transform = PolicyTransform(load_policy("autoaugment-cifar10"), seed=1)
    image = pil_photo()
    out = transform(image)
    assert isinstance(out, PIL.Image.Image) and out.size == image.size and out.mode == "RGB"
    assert pil_photo(mode="L").size == transform(pil_photo(mode="L")).size
    assert transform(pil_photo(mode="L")).mode == "L"
    assert transform(pil_photo(mode="RGBA")).mode == "RGB"  # alpha is dropped, as the policy has no use for it
    tensor = photos(1, 30, 40)[0]
    plain = transform(tensor)
    assert type(plain) is torch.Tensor and plain.shape == tensor.shape and plain.dtype == torch.uint8
    wrapped = transform(tv_tensors.Image(tensor))
    assert isinstance(wrapped, tv_tensors.Image) and wrapped.shape == tensor.shape


def test_policy_transform_draws_as_batch_augment_does() -> None:
    """The n-th image through the transform gets row n of the batch path's plans: same seed, same pixels."""
    policy = load_policy("trivialaugment-wide")
    transform, batch = PolicyTransform(policy, seed=3), BatchAugment(policy, seed=3)
    images = photos(DRAW_AHEAD + 8)  # past the first block of draws into the second
    out = torch.stack([transform(image) for image in images])
    first = apply_plan(images[:DRAW_AHEAD], batch.sample(DRAW_AHEAD, 32, 32))
    second = apply_plan(images[DRAW_AHEAD:], _rows(batch.sample(DRAW_AHEAD, 32, 32), 8))
    assert torch.equal(out, torch.cat([first, second]))
    assert not torch.equal(out[:8], images[:8])
    image = pil_photo()
    from_pil = torch.from_numpy(np.array(PolicyTransform(policy, seed=4)(image))).permute(2, 0, 1)
    assert torch.equal(from_pil, PolicyTransform(policy, seed=4)(F.pil_to_tensor(image)))


def test_policy_transform_passes_labels_and_refuses_other_tv_tensors() -> None:
    transform = PolicyTransform(FLIP)
    image = photos(1)[0]
    out, label = transform(image, 3)
    assert torch.equal(out, image.flip(-1)) and label == 3
    sample = transform({"image": tv_tensors.Image(image), "label": torch.tensor(3)})
    assert torch.equal(sample["image"], image.flip(-1)) and sample["label"].item() == 3
    boxes = tv_tensors.BoundingBoxes([[0, 0, 5, 5]], format="XYXY", canvas_size=(32, 32))
    with pytest.raises(TypeError, match="transforms images only, got BoundingBoxes"):
        transform(tv_tensors.Image(image), boxes)


def test_policy_transform_refuses_float_tensors() -> None:
    transform = PolicyTransform(FLIP)
    with pytest.raises(TypeError, match=r"expected a uint8 image \[C, H, W\], got torch.float32"):
        transform(torch.rand(3, 32, 32))
    with pytest.raises(TypeError, match="uint8"):
        transform(tv_tensors.Image(torch.rand(3, 32, 32)))


class _Copies(Dataset):
    """One image, eight times: any two outputs that agree drew the same parameters."""

    def __init__(self, transform: PolicyTransform) -> None:
        self.image, self.transform = photos(1)[0], transform

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(self.image)


@pytest.mark.parametrize("seed", [None, 5])
def test_dataloader_workers_draw_their_own_parameters(seed: int | None) -> None:
    """Workers are forked copies; a transform used (or seeded) before the fork must not repeat across them."""
    transform = PolicyTransform(load_policy("trivialaugment-wide"), seed=seed)
    transform(photos(1)[0])  # e.g. a preview in the parent process
    torch.manual_seed(0)
    out = torch.cat(list(DataLoader(_Copies(transform), batch_size=1, num_workers=2)))
    assert len({bytes(image.numpy()) for image in out}) == 8  # was 4: worker 1 replayed worker 0
    torch.manual_seed(0)
    again = torch.cat(list(DataLoader(_Copies(transform), batch_size=1, num_workers=2)))
    assert torch.equal(out, again)  # reproducible under torch.manual_seed, as DataLoader's own seeds are


# --------------------------------------------------------------------------- BatchAugment
def test_batch_augment_refuses_non_uint8_and_non_batches() -> None:
    augment = BatchAugment(FLIP, seed=0)
    with pytest.raises(ValueError, match="expected a uint8 batch"):
        augment(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        augment(photos(1)[0])
    assert torch.equal(augment(photos(4)), photos(4).flip(-1))


def test_batch_augment_visible_fraction_comes_with_the_images() -> None:
    policy = Policy(name="cut", post=[OpCall(op="Cutout", probability=0.5, magnitude=0.5)])
    white = torch.full((200, 3, 32, 32), 255, dtype=torch.uint8)
    out, visible = BatchAugment(policy, seed=0).augment(white)
    assert torch.allclose(visible, (out[:, 0] != 0).flatten(1).float().mean(1))
    assert (visible == 1).any() and (visible == 0.75).any()


def _half_flags(out: torch.Tensor, image: torch.Tensor, dim: int) -> tuple[bool, ...] | None:
    """Per half of one image along ``dim``: inverted or not; None if a half is neither."""
    flags = []
    for half_out, half_in in zip(out.chunk(2, dim=dim), image.chunk(2, dim=dim)):
        if not (torch.equal(half_out, half_in) or torch.equal(half_out, 255 - half_in)):
            return None
        flags.append(torch.equal(half_out, 255 - half_in))
    return tuple(flags)


def test_yoco_augments_the_two_halves_independently() -> None:
    """Invert each half with p = 0.5: an image with exactly one half inverted cannot come from one draw."""
    policy = yoco(Policy(name="invert", pre=[OpCall(op="Invert", probability=0.5)]))
    images = photos(200)
    for seed in range(2):  # the cut (across height or width) is drawn per batch
        out = BatchAugment(policy, seed=seed)(images)
        for dim in (1, 2):
            patterns = [_half_flags(o, i, dim) for o, i in zip(out, images)]
            if None not in patterns:
                break
        else:
            pytest.fail("some image is neither whole halves inverted nor kept")
        assert set(patterns) == {(False, False), (False, True), (True, False), (True, True)}


def test_yoco_flips_each_half_in_place() -> None:
    """A flip of each half keeps the halves where they were (left stays left): a whole-image flip swaps them."""
    images = photos(16)
    seen = set()
    for seed in range(12):
        out = BatchAugment(yoco(FLIP), seed=seed)(images)
        left, right = images.chunk(2, dim=3)
        by_width = torch.cat([left.flip(-1), right.flip(-1)], dim=3)
        by_height = images.flip(-1)  # halves cut across the height, flipped: the same as one flip
        assert torch.equal(out, by_width) or torch.equal(out, by_height)
        seen.add("width" if torch.equal(out, by_width) else "height")
    assert seen == {"width", "height"}  # both cuts occur
    odd = photos(4, 31, 31)  # no even cut: the whole image is augmented
    assert torch.equal(BatchAugment(yoco(FLIP), seed=0)(odd), odd.flip(-1))


def test_yoco_probability_picks_images_and_averages_visible_fraction() -> None:
    images = photos(64)
    for seed in range(6):
        out = BatchAugment(yoco(FLIP, probability=0.5), seed=seed)(images)
        left, right = images.chunk(2, dim=3)
        halves = (out == torch.cat([left.flip(-1), right.flip(-1)], dim=3)).flatten(1).all(1)
        whole = (out == images.flip(-1)).flatten(1).all(1)
        assert (halves | whole).all()
        if not whole.all():  # this batch was cut across the width: both kinds of image are in it
            assert 10 < halves.sum() < 54
            break
    else:
        pytest.fail("no batch was cut across the width")
    cut = yoco(Policy(name="cut", post=[OpCall(op="Cutout", probability=1.0, magnitude=0.5)]))
    white = torch.full((100, 3, 32, 32), 255, dtype=torch.uint8)
    out, visible = BatchAugment(cut, seed=0).augment(white)
    # each half lost a quarter of itself at most, and the reported fraction is the real one
    assert torch.allclose(visible, (out[:, 0] != 0).flatten(1).float().mean(1))
    assert visible.min() >= 0.75 - 1e-6


def test_batch_augment_on_digits_and_non_square_batches() -> None:
    policy = load_policy("autoaugment-svhn")
    grey = F.resize(digits_images(32), [48, 64], antialias=True)
    out = BatchAugment(policy, seed=0)(grey)
    assert out.shape == grey.shape and out.dtype == torch.uint8
    plan = BatchAugment(policy, seed=0).sample(32, 48, 64)
    assert torch.equal(apply_plan(grey, plan), out)


# --------------------------------------------------------------------------- schedules
SCHEDULE = load_policy(Path(__file__).parent / "golden" / "policy_v1_schedule.json")


def phase_alone(policy: Policy, k: int) -> Policy:
    """The k-th phase of a schedule policy as a policy of its own."""
    return policy.model_copy(update={"augment": policy.augment.phases[k].augment})


@pytest.mark.parametrize("progress", [0.0, 0.3, 0.5, 0.8, 1.0])
def test_each_phase_of_a_schedule_is_that_phase_alone(progress: float) -> None:
    """At any progress the per-image and batch paths give exactly what the phase's own policy gives."""
    phase = 0 if progress < 0.5 else 1
    images = photos(12)
    alone = phase_alone(SCHEDULE, phase)
    batch = BatchAugment(SCHEDULE, seed=2)(images, progress=progress)
    assert torch.equal(batch, BatchAugment(alone, seed=2)(images))
    transform = PolicyTransform(SCHEDULE, seed=2, progress=progress)
    per_image = torch.stack([transform(image) for image in images])
    alone_transform = PolicyTransform(alone, seed=2)
    assert torch.equal(per_image, torch.stack([alone_transform(image) for image in images]))
    assert torch.equal(per_image, images) == (phase == 0)  # the golden schedule augments nothing at first


def test_policy_transform_follows_progress_set_between_epochs() -> None:
    images = photos(8)
    transform = PolicyTransform(SCHEDULE, seed=0)
    assert torch.equal(torch.stack([transform(image) for image in images]), images)
    transform.progress = 0.75
    late = torch.stack([transform(image) for image in images])
    assert not torch.equal(late, images)
    shared = SharedProgress()
    transform = PolicyTransform(SCHEDULE, seed=0, progress=shared)
    assert torch.equal(transform(images[0]), images[0])
    shared.set(0.75)
    assert shared() == 0.75 and not torch.equal(transform(images[1]), images[1])
    with pytest.raises(ValueError, match=r"in \[0, 1\]; got 1.5"):
        shared.set(1.5)
    with pytest.raises(ValueError, match=r"in \[0, 1\]; got nan"):
        PolicyTransform(SCHEDULE, progress=float("nan"))(images[0])


class _Same(Dataset):
    def __init__(self, transform: PolicyTransform) -> None:
        self.image, self.transform = photos(1)[0], transform

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(self.image)


def test_shared_progress_reaches_persistent_dataloader_workers() -> None:
    """Persistent workers keep their copy of the transform: only shared memory tells them the phase."""
    progress = SharedProgress()
    dataset = _Same(PolicyTransform(SCHEDULE, seed=1, progress=progress))
    loader = DataLoader(dataset, batch_size=4, num_workers=2, persistent_workers=True)
    early = next(iter(loader))
    assert all(torch.equal(image, dataset.image) for image in early)
    progress.set(0.9)
    late = next(iter(loader))
    assert sum(torch.equal(image, dataset.image) for image in late) == 0


@pytest.mark.parametrize("ranges", ["standard", "wide"])
def test_per_image_path_gives_the_batch_pixels_for_every_op(ranges: str) -> None:
    """Every registered op, at bins across its range and both signs, through the per-image path (which
    forms the geometric ops' matrices for a whole block at once) equals the batch kernels, pixel for pixel."""
    policy = Policy(name="every-op", augment=TrivialAugment(ops=list(OPS), ranges=ranges))
    transform, batch = PolicyTransform(policy, seed=11), BatchAugment(policy, seed=11)
    images = photos(2 * DRAW_AHEAD, 24, 40)
    out = torch.stack([transform(image) for image in images])
    plans = [batch.sample(DRAW_AHEAD, 24, 40) for _ in range(2)]
    assert torch.equal(out, torch.cat([apply_plan(images[k * DRAW_AHEAD:(k + 1) * DRAW_AHEAD], plan)
                                       for k, plan in enumerate(plans)]))
    drawn = {OP_NAMES[i] for plan in plans for i in plan.slots[0].op.tolist()}
    assert drawn == set(OPS)  # 128 draws of 19 ops: every op was drawn
