"""The README's own training loop, run with a policy that has every section: each section must act."""
from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.io import decode_jpeg

import autoaug
import autoaug.regime as regime_module
from autoaug.models import build_model
from autoaug.policy import policy_from_dict
from autoaug.regime import RegimeSeeds
from autoaug.seeding import derive_seed

README = Path(__file__).parent.parent / "README.md"
SMOOTHING, STRENGTH, CLASSES = 0.1, 0.8, 10
EVERYTHING = policy_from_dict({
    "schema_version": 1, "name": "every-section",
    "pre": [{"op": "HorizontalFlip", "probability": 1.0}],
    "augment": {"kind": "schedule", "phases": [
        {"start_fraction": 0.0, "end_fraction": 0.5, "augment": {"kind": "none"}},
        {"start_fraction": 0.5, "end_fraction": 1.0,
         "augment": {"kind": "subpolicies", "subpolicies": [[{"op": "Invert", "probability": 1.0}]]}}]},
    "post": [{"op": "Cutout", "probability": 1.0, "magnitude": 0.25}],
    "mixing": {"cutmix_alpha": 1.0, "probability": 0.5},
    "labels": {"label_smoothing": SMOOTHING, "soft_target_strength": STRENGTH, "soft_target_power": 1.0},
    "resolution": {"phases": [{"start_fraction": 0.25, "end_fraction": 0.5, "probability": 1.0, "resolution": 16}]},
    "width_resolution": {"widths": [0.5, 1.0], "resolutions": [16, 24], "num_random_subnets": 1},
})


def readme_loop() -> str:
    """The README's python block that builds a ``Regime``."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    return next(block for block in blocks if "autoaug.Regime(" in block)


def photos(count: int, cifar10_mini: Path) -> torch.Tensor:
    """Real CIFAR-10 photos with no pure-black or pure-white pixel: every black pixel of an output (inverted
    or not) is Cutout's."""
    pack = np.load(cifar10_mini)
    blob, offsets = pack["train_jpeg"], pack["train_offsets"]
    images = (decode_jpeg(torch.from_numpy(blob[offsets[i]:offsets[i + 1]].copy())) for i in range(len(offsets) - 1))
    return torch.stack(list(itertools.islice((image for image in images if (image.amax(0) > 0).all() and (image.amin(0) < 255).all()), count)))


class Recorder(torch.nn.Module):
    """A slimmable model that notes the width and input size of every forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.net = build_model("proxy_tiny", num_classes=CLASSES, in_channels=3, image_size=32, slimmable=True)
        self.width_multipliers, self.width, self.seen = self.net.width_multipliers, 1.0, []

    def set_width(self, width: float) -> None:
        self.width = width
        self.net.set_width(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((self.width, x.shape[-1]))
        return self.net(x)


@pytest.fixture(scope="module")
def loop(cifar10_mini: Path) -> dict:
    """Run the README block (4 batches of 10 photos, 2 epochs) and record every step of the regime.

    Each batch holds one image of each class, so a target with one class is an image left unmixed."""
    images = photos(40, cifar10_mini)
    labels = torch.arange(40, dtype=torch.int32) % CLASSES  # int32: any integer dtype is accepted
    steps: list[tuple[float, torch.Tensor, torch.Tensor, autoaug.RegimeBatch]] = []
    original = regime_module.Regime.__call__

    def recording(self, images, labels, *, progress):
        batch = original(self, images, labels, progress=progress)
        steps.append((progress, images, labels, batch))
        return batch

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(regime_module.Regime, "__call__", recording)
        patch.setattr(autoaug, "load_policy", lambda path: EVERYTHING)
        model = Recorder()
        names = {"epochs": 2, "device": "cpu", "model": model,
                 "loader": [(images[k:k + 10], labels[k:k + 10]) for k in range(0, 40, 10)],
                 "optimizer": torch.optim.SGD(model.parameters(), lr=0.01)}
        before = [p.detach().clone() for p in model.parameters()]
        exec(compile(readme_loop(), str(README), "exec"), names)
    names.update(steps=steps, before=before)
    return names


def test_the_loop_steps_through_training_in_order(loop: dict) -> None:
    assert [progress for progress, *_ in loop["steps"]] == [k / 8 for k in range(8)]
    changed = [not torch.equal(a, b) for a, b in zip(loop["before"], loop["model"].parameters())]
    assert any(changed)  # backward and the optimiser step ran


def _expected(images: torch.Tensor, progress: float) -> torch.Tensor:
    flipped = images.flip(-1)  # pre: always flip; augment: the schedule inverts from half-way
    return 255 - flipped if progress >= 0.5 else flipped


def _unmixed(targets: torch.Tensor) -> torch.Tensor:
    floor = targets.amin(1, keepdim=True)
    return (targets > floor + 1e-6).sum(1) == 1


def test_image_sections_and_the_schedule_act(loop: dict) -> None:
    for progress, images, _, batch in loop["steps"]:
        if batch.resolution is not None:
            continue
        rows = _unmixed(batch.targets)
        pixels = (batch.images[rows] * 255).round().to(torch.uint8)
        expected = _expected(images[rows], progress)
        cut = (pixels == 0).all(1)  # Cutout's box (the photos have no black pixel of their own)
        assert torch.equal(torch.where(cut[:, None], 0, expected), pixels), progress
        assert (cut.flatten(1).sum(1) > 0).all()  # post: Cutout in every image
    phases = {progress >= 0.5 for progress, *_ in loop["steps"]}
    assert phases == {False, True}


def test_soft_targets_follow_label_smoothing_and_the_visible_share(loop: dict) -> None:
    checked = 0
    for progress, images, labels, batch in loop["steps"]:
        if batch.resolution is not None:
            continue
        rows = _unmixed(batch.targets)
        visible = 1 - (batch.images[rows] == 0).all(1).flatten(1).float().mean(1)
        confidence = (1 - STRENGTH * (1 - visible)) * (1 - SMOOTHING)
        true = batch.targets[rows].gather(1, labels[rows].long()[:, None])[:, 0]
        assert torch.allclose(true, confidence + (1 - confidence) / CLASSES, atol=1e-5)
        assert torch.allclose(batch.targets.sum(1), torch.ones(len(batch.targets)), atol=1e-5)
        checked += int(rows.sum())
    assert checked > 15


def test_mixing_acts_on_about_half_the_images(loop: dict) -> None:
    targets = torch.cat([batch.targets for *_, batch in loop["steps"]])
    mixed = ~_unmixed(targets)
    assert 0.3 < mixed.float().mean() < 0.7  # probability 0.5 (CutMix pairs an image with itself now and then)
    assert ((targets[mixed] > targets[mixed].amin(1, keepdim=True) + 1e-6).sum(1) == 2).all()


def test_resolution_phase_and_sandwich_act(loop: dict) -> None:
    for progress, _, _, batch in loop["steps"]:
        low = 0.25 <= progress < 0.5
        assert batch.resolution == (16 if low else None)
        assert batch.images.shape[-1] == (16 if low else 32)
    # a step: the widest net on the batch, then the narrowest and one random width at random resolutions
    seen, sizes = loop["model"].seen, [batch.images.shape[-1] for *_, batch in loop["steps"]]
    assert len(seen) == 8 * 3 and seen[::3] == [(1.0, size) for size in sizes]
    assert {width for width, _ in seen[1::3]} == {0.5} and {size for _, size in seen[1::3]} == {16, 24}


def test_regime_refuses_progress_outside_training() -> None:
    regime = autoaug.Regime(EVERYTHING, num_classes=CLASSES, seed=0)
    with pytest.raises(ValueError, match=r"in \[0, 1\]; got 1.5"):
        regime(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), torch.tensor([0, 1]), progress=1.5)


def test_regime_streams_are_derived_from_the_seed_not_offset_from_it() -> None:
    regimes = [autoaug.Regime(EVERYTHING, num_classes=CLASSES, seed=s) for s in range(40)]
    for s, regime in enumerate(regimes):
        assert (regime.augment.seed, regime.mixer.seed, regime.draws.initial_seed()) == \
            tuple(derive_seed(s, k) for k in range(3))
    streams = [seed for r in regimes for seed in (r.augment.seed, r.mixer.seed, r.draws.initial_seed())]
    assert len(set(streams)) == len(streams)
    # with seed + 1 for mixing, seed s mixed with the very draws that seed s + 1 augmented with
    first_draws = [torch.rand(16, generator=regime.augment.generator("cpu")) for regime in regimes]
    for s, regime in enumerate(regimes[:-1]):
        assert not torch.equal(torch.rand(16, generator=regime.mixer._generator()), first_draws[s + 1])


def test_an_unseeded_regime_draws_afresh() -> None:
    one, other = (autoaug.Regime(EVERYTHING, num_classes=CLASSES) for _ in range(2))
    assert one.seeds == RegimeSeeds(None, None, None)
    assert not torch.equal(torch.rand(16, generator=one.draws), torch.rand(16, generator=other.draws))


PLAIN = policy_from_dict({"schema_version": 1, "name": "plain", "augment": {"kind": "none"}})


def test_a_plain_regime_passes_bytes_over_255_and_one_hot_targets() -> None:
    images = (torch.arange(2 * 3 * 8 * 8) % 256).to(torch.uint8).reshape(2, 3, 8, 8)
    batch = autoaug.Regime(PLAIN, num_classes=3, seed=0)(images, torch.tensor([2, 0]), progress=0.3)
    # float64 division rounded once to float32 is the correctly rounded byte / 255
    assert torch.equal(batch.images, (images.double() / 255).float())
    assert torch.equal(batch.targets, torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]))
    assert batch.resolution is None
    assert torch.equal(regime_module.unit_scale(torch.tensor([0, 51, 255], dtype=torch.uint8)),
                       torch.tensor([0.0, 0.2, 1.0]))


def test_backward_without_width_resolution_is_soft_cross_entropy_once() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 3))
    twin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 3))
    twin.load_state_dict(model.state_dict())
    images = torch.randint(0, 256, (5, 3, 4, 4), dtype=torch.uint8)
    regime = autoaug.Regime(PLAIN, num_classes=3, seed=0)
    batch = regime(images, torch.tensor([0, 1, 2, 1, 0]), progress=0.0)
    loss = regime.backward(model, batch)
    # by hand: mean over images of -log softmax at the true class (one-hot targets)
    logits = twin(images.double().div(255).float())
    expected = -logits.log_softmax(1)[torch.arange(5), torch.tensor([0, 1, 2, 1, 0])].mean()
    expected.backward()
    assert not loss.requires_grad
    assert torch.allclose(loss, expected.detach(), atol=1e-6)
    for mine, theirs in zip(model.parameters(), twin.parameters()):
        assert torch.allclose(mine.grad, theirs.grad, atol=1e-6)


def _sandwich_record(seed: int, global_seed: int, steps: int = 6) -> list[tuple[float, int]]:
    torch.manual_seed(0)
    model = Recorder()
    regime = autoaug.Regime(EVERYTHING, num_classes=CLASSES, seed=seed)
    images = torch.randint(1, 255, (4, 3, 32, 32), dtype=torch.uint8)
    torch.manual_seed(global_seed)  # the sandwich must draw from the regime's own stream, not the global one
    for step in range(steps):
        regime.backward(model, regime(images, torch.tensor([0, 1, 2, 3]), progress=0.6 + step / 100))
    return model.seen


def test_the_sandwich_draws_from_the_regimes_stream_and_follows_the_model() -> None:
    first = _sandwich_record(seed=3, global_seed=1)
    assert first == _sandwich_record(seed=3, global_seed=2)
    assert len({size for _, size in first[1::3] + first[2::3]}) == 2  # both resolutions drawn
    # a second model gets its own sandwich: its forward passes, not the first model's
    regime = autoaug.Regime(EVERYTHING, num_classes=CLASSES, seed=0)
    images = torch.randint(1, 255, (4, 3, 32, 32), dtype=torch.uint8)
    one, other = Recorder(), Recorder()
    for model in (one, other):
        regime.backward(model, regime(images, torch.tensor([0, 1, 2, 3]), progress=0.6))
    assert len(one.seen) == 3 and len(other.seen) == 3
    assert any(p.grad is not None for p in other.parameters())


def _low_res_policy(probability: float, resolution: int) -> autoaug.Policy:
    phase = {"start_fraction": 0.0, "end_fraction": 1.0, "probability": probability, "resolution": resolution}
    return policy_from_dict({"schema_version": 1, "name": "low", "augment": {"kind": "none"},
                             "resolution": {"phases": [phase]}})


def test_low_resolution_needs_the_draw_strictly_below_the_probability() -> None:
    section = _low_res_policy(0.3, 16).resolution
    assert regime_module.low_resolution(section, 0.5, 0.3) is None
    assert regime_module.low_resolution(section, 0.5, 0.2999) == 16


def test_resolution_draws_come_from_the_draws_stream_one_a_batch() -> None:
    regime = autoaug.Regime(_low_res_policy(0.5, 8), num_classes=3, seed=7)
    torch.manual_seed(1)  # the global stream must play no part
    sizes = [regime(torch.zeros(1, 3, 16, 16, dtype=torch.uint8), torch.tensor([0]), progress=0.5).resolution
             for _ in range(24)]
    replay = torch.Generator().manual_seed(derive_seed(7, 2))
    assert sizes == [8 if torch.rand((), generator=replay).item() < 0.5 else None for _ in range(24)]
    assert set(sizes) == {8, None}


def test_downscaling_is_antialiased_bilinear_worked_by_hand() -> None:
    # one bright column (7) of a 16-wide image, halved: output column i is centred on input 2i + 1 and the
    # antialiased (triangle) filter spans inputs 2i-1 .. 2i+2 with weights 1/8, 3/8, 3/8, 1/8, so column 7
    # gives output 3 3/8 and output 4 1/8 (plain bilinear would average inputs 6-7 into output 3 alone: 1/2)
    images = torch.zeros(1, 3, 16, 16, dtype=torch.uint8)
    images[..., 7] = 255
    batch = autoaug.Regime(_low_res_policy(1.0, 8), num_classes=3, seed=0)(images, torch.tensor([1]), progress=0.0)
    assert batch.resolution == 8 and batch.images.shape == (1, 3, 8, 8)
    row = torch.tensor([0.0, 0.0, 0.0, 0.375, 0.125, 0.0, 0.0, 0.0])
    assert torch.allclose(batch.images, row.expand(1, 3, 8, 8), atol=1e-6)
