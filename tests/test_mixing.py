"""Batch mixing (Mixup, CutMix) and soft targets (label smoothing, soft augmentation)."""
from __future__ import annotations

import math
import pickle

import pytest
import torch

from autoaug import mixing
from autoaug.grid import digits_images
from autoaug.mixing import BatchMixer, _cutmix_boxes, soft_cross_entropy, soft_targets
from autoaug.policy import Labels, Mixing, Policy

N = 64  # images, and classes: image i has label i, so a target row names its partner


def mixer(seed: int = 0, labels: Labels | None = None, **mixing: float) -> BatchMixer:
    return BatchMixer(Policy(name="mix", mixing=Mixing(**mixing), labels=labels), num_classes=N, seed=seed)


def flat_images() -> torch.Tensor:
    """Image i is filled with grey level 3 * i: every pixel says which image it came from."""
    return (torch.arange(N) * 3).to(torch.uint8).view(N, 1, 1, 1).expand(N, 3, 32, 32).contiguous()


def digits() -> torch.Tensor:
    """Real digit scans, tinted per channel, 32x32 RGB."""
    grey = digits_images(N).float()
    return (grey * torch.tensor([1.0, 0.8, 0.5]).view(1, 3, 1, 1)).round().to(torch.uint8)


def partners(targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's own weight λ and its partner (itself where the row was not mixed or mixed with itself)."""
    own = targets.diagonal()
    other = targets - torch.diag(own)
    partner = torch.where(other.amax(1) > 0, other.argmax(1), torch.arange(N))
    return own, partner


def test_probability_zero_mixes_nothing() -> None:
    images, labels = digits(), torch.arange(N)
    out, targets = mixer(mixup_alpha=1.0, cutmix_alpha=1.0, probability=0.0)(images, labels)
    assert torch.equal(out, images) and torch.equal(targets, torch.eye(N))
    out, targets = mixer(probability=1.0)(images, labels)  # no α: nothing to mix with either
    assert torch.equal(out, images) and torch.equal(targets, torch.eye(N))
    one_image, one_target = mixer(mixup_alpha=1.0, probability=1.0)(images[:1], labels[:1])
    assert torch.equal(one_image, images[:1]) and one_target.sum() == 1


@pytest.mark.parametrize("mixing", [
    {"mixup_alpha": 0.4, "probability": 1.0},
    {"cutmix_alpha": 1.0, "probability": 1.0},
    {"mixup_alpha": 0.2, "cutmix_alpha": 1.0, "probability": 0.7, "cutmix_probability": 0.5},
], ids=["mixup", "cutmix", "both"])
def test_targets_sum_to_one_and_only_two_classes_mix(mixing: dict[str, float]) -> None:
    smoothing = Labels(label_smoothing=0.1)
    for labels_cfg in (None, smoothing):
        _, targets = mixer(labels=labels_cfg, **mixing)(digits(), torch.arange(N))
        assert torch.allclose(targets.sum(1), torch.ones(N), atol=1e-6)
        floor = 0.0 if labels_cfg is None else 0.1 / N
        assert ((targets > floor + 1e-6).sum(1) <= 2).all() and (targets >= floor - 1e-7).all()


def test_cutmix_target_weight_is_the_pasted_area() -> None:
    images = flat_images()
    out, targets = mixer(cutmix_alpha=1.0, probability=1.0)(images, torch.arange(N))
    own, partner = partners(targets)
    kept = (out[:, 0] == images[:, 0]).flatten(1).float().mean(1)
    pasted = (out[:, 0] == images[partner, 0]).flatten(1).float().mean(1)
    mixed = partner != torch.arange(N)
    assert torch.allclose(own[mixed], kept[mixed]) and torch.allclose(1 - own[mixed], pasted[mixed])
    # a pasted region is one rectangle (the partner's pixels in the same place)
    for i in torch.nonzero(mixed & (own < 1)).flatten().tolist():
        rows, cols = torch.nonzero(out[i, 0] != images[i, 0], as_tuple=True)
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert box.item() == len(rows)
    assert len(set(own[mixed].tolist())) > 20  # every image its own λ (and box)


def test_mixup_pixels_are_the_weighted_blend() -> None:
    images = digits()
    out, targets = mixer(mixup_alpha=0.4, probability=1.0)(images, torch.arange(N))
    lam, partner = partners(targets)
    expected = images.float() * lam.view(-1, 1, 1, 1) + images[partner].float() * (1 - lam.view(-1, 1, 1, 1))
    assert (out.float() - expected).abs().max() <= 0.5 + 1e-4  # rounded to the nearest level
    assert len(set(lam.tolist())) > N // 2 and lam.min() < 0.3 and lam.max() > 0.7
    floats = images.float() / 255
    out_float, targets_float = mixer(mixup_alpha=0.4, probability=1.0)(floats, torch.arange(N))
    assert torch.equal(targets_float, targets) and out_float.dtype == torch.float32
    lam4 = lam.view(-1, 1, 1, 1)
    assert torch.allclose(out_float, floats * lam4 + floats[partner] * (1 - lam4), atol=1e-6)  # no rounding


def test_mixing_probability_and_cutmix_share() -> None:
    counts = torch.zeros(3)
    for seed in range(20):
        out, targets = mixer(seed, mixup_alpha=1.0, cutmix_alpha=1.0, probability=0.5,
                             cutmix_probability=0.25)(flat_images(), torch.arange(N))
        own, partner = partners(targets)
        mixed = partner != torch.arange(N)
        by_cutmix = ((out == flat_images()) | (out == flat_images()[partner])).flatten(1).all(1)
        counts += torch.tensor([len(own), mixed.sum(), (mixed & by_cutmix).sum()])
    # 1280 images, a few mixed with themselves by randperm; measured 0.493 mixed, 0.277 of them by CutMix
    assert 0.43 < counts[1] / counts[0] < 0.55
    assert 0.18 < counts[2] / counts[1] < 0.33


def test_soft_labels_are_mixed_not_recomputed() -> None:
    soft = torch.full((N, N), 0.5 / (N - 1)).fill_diagonal_(0.5)
    _, targets = mixer(labels=Labels(label_smoothing=0.3), mixup_alpha=1.0, probability=1.0)(digits(), soft)
    own, _ = partners(targets)
    assert torch.allclose(targets.sum(1), torch.ones(N)) and own.max() <= 0.5 + 1e-6


def test_seeded_mixers_repeat_and_pickle() -> None:
    images, labels = digits(), torch.arange(N)
    a, b = mixer(3, mixup_alpha=1.0, cutmix_alpha=1.0, probability=1.0), mixer(3, mixup_alpha=1.0,
                                                                              cutmix_alpha=1.0, probability=1.0)
    first = a(images, labels)
    assert all(torch.equal(x, y) for x, y in zip(first, b(images, labels)))
    assert not torch.equal(a(images, labels)[1], first[1])  # the generator moves on
    copy = pickle.loads(pickle.dumps(mixer(3, mixup_alpha=1.0, cutmix_alpha=1.0, probability=1.0)))
    assert all(torch.equal(x, y) for x, y in zip(first, copy(images, labels)))


# --------------------------------------------------------------------------- soft targets
def test_label_smoothing_confidences() -> None:
    targets = soft_targets(torch.tensor([3, 0]), 10, labels_cfg=Labels(label_smoothing=0.1))
    assert targets[0, 3].item() == pytest.approx(0.91) and targets[0, 0].item() == pytest.approx(0.01)
    assert torch.allclose(targets.sum(1), torch.ones(2))
    assert torch.equal(soft_targets(torch.tensor([3]), 10), torch.eye(10)[3:4])


def test_soft_augmentation_confidence_follows_visible_fraction() -> None:
    """Soft augmentation: true-class confidence 1 - strength * (1 - visible) ** power, the rest spread evenly."""
    labels_cfg = Labels(soft_target_strength=0.5, soft_target_power=2.0)
    visible = torch.tensor([1.0, 0.75, 0.5, 0.0])
    targets = soft_targets(torch.zeros(4, dtype=torch.long), 10, labels_cfg=labels_cfg, visible=visible)
    confidence = torch.tensor([1.0, 1 - 0.5 * 0.25**2, 1 - 0.5 * 0.5**2, 0.5])
    assert torch.allclose(targets[:, 0], confidence + (1 - confidence) / 10)
    assert torch.allclose(targets[:, 1:], ((1 - confidence) / 10)[:, None].expand(4, 9))
    both = soft_targets(torch.zeros(4, dtype=torch.long), 10, visible=visible,
                        labels_cfg=Labels(label_smoothing=0.1, soft_target_strength=0.5, soft_target_power=2.0))
    assert torch.allclose(both[:, 0], confidence * 0.9 + (1 - confidence * 0.9) / 10)
    assert torch.allclose(both.sum(1), torch.ones(4))
    # strength 0, or no visible fraction given: only smoothing applies
    plain = soft_targets(torch.zeros(4, dtype=torch.long), 10, labels_cfg=Labels(), visible=visible)
    assert torch.equal(plain, torch.eye(10)[[0, 0, 0, 0]])


# --------------------------------------------------------------------------- against hand-worked values
def _reference_box(lam: float, u_y: float, u_x: float, height: int, width: int) -> list[int]:
    """The CutMix paper's rand_bbox (Yun et al., 2019), with the centre given as uniform draws."""
    cut = (1.0 - lam) ** 0.5
    cut_h, cut_w = int(height * cut), int(width * cut)
    cy, cx = int(u_y * height), int(u_x * width)
    clip = lambda v, top: min(max(v, 0), top)  # noqa: E731
    return [clip(cy - cut_h // 2, height), clip(cx - cut_w // 2, width),
            clip(cy + cut_h // 2, height), clip(cx + cut_w // 2, width)]


@pytest.mark.parametrize(("lam", "u_y", "u_x", "height", "width"), [
    (0.75, 0.5, 0.5, 32, 32), (0.5, 0.0, 0.99, 32, 32), (0.1, 0.9, 0.1, 16, 48), (0.99, 0.3, 0.7, 48, 16),
    (0.0, 0.5, 0.5, 20, 30), (1.0, 0.2, 0.2, 32, 32),
    (0.7, 0.5, 0.5, 32, 32), (1.0, 0.0, 0.0, 32, 32)])  # odd cut sides (17), an empty box at the corner
def test_cutmix_boxes_are_the_papers(lam: float, u_y: float, u_x: float, height: int, width: int) -> None:
    box = _cutmix_boxes(torch.tensor([lam]), torch.tensor([[u_y, u_x]]), height, width)
    assert box[0].tolist() == _reference_box(lam, u_y, u_x, height, width)


def test_mix_pastes_exactly_the_box_and_leaves_unmixed_images_alone() -> None:
    images = flat_images()[:4]
    mixer = BatchMixer(Policy(name="m", mixing=Mixing(cutmix_alpha=1.0, probability=1.0)), num_classes=N)
    boxes = torch.tensor([[2, 3, 10, 7], [0, 0, 32, 32], [5, 5, 6, 6], [2, 3, 10, 7]])
    out, targets = mixer._mix(images, torch.eye(N)[:4], mixed=torch.tensor([True, True, True, False]),
                              use_cutmix=torch.tensor([True, False, True, True]), lam_mixup=torch.full((4,), 0.25),
                              boxes=boxes, partner=torch.tensor([1, 2, 3, 0]))
    expected0 = images[0].clone()
    expected0[:, 2:10, 3:7] = images[1, :, 2:10, 3:7]  # rows 2..9, columns 3..6: 8 x 4 = 32 pixels
    assert torch.equal(out[0], expected0) and targets[0, 0] == 1 - 32 / 1024 and targets[0, 1] == 32 / 1024
    blend = (images[1].float() * 0.25 + images[2].float() * 0.75).round().to(torch.uint8)
    assert torch.equal(out[1], blend) and targets[1, 1] == 0.25 and targets[1, 2] == 0.75  # Mixup
    assert (out[2] != images[2]).sum() == 3 and targets[2, 2] == 1 - 1 / 1024  # one pixel, 3 channels
    assert torch.equal(out[3], images[3]) and torch.equal(targets[3], torch.eye(N)[3])  # not mixed


def test_cutmix_area_and_mixup_lambda_follow_their_beta() -> None:
    cut = BatchMixer(Policy(name="m", mixing=Mixing(cutmix_alpha=1.0, probability=1.0)), num_classes=4, seed=0)
    draws = cut._draw(4000, 16, 48)
    boxes = draws["boxes"]
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).float() / (16 * 48)
    assert 0.25 < area.mean() < 0.35  # E[1 - λ] = 0.5 for Beta(1, 1), less the parts clipped off (measured 0.295)
    assert draws["use_cutmix"].all()  # CutMix alone: every mixed image by CutMix
    mix = BatchMixer(Policy(name="m", mixing=Mixing(mixup_alpha=0.4, probability=1.0)), num_classes=4, seed=0)
    lam = mix._draw(4000, 16, 16)["lam_mixup"]
    middle = ((lam > 0.25) & (lam < 0.75)).float().mean()
    assert abs(lam.mean() - 0.5) < 0.03 and 0.24 < middle < 0.33  # Beta(0.4, 0.4): symmetric, U-shaped (0.286)
    assert not mix._draw(4000, 16, 16)["use_cutmix"].any()


def test_two_images_mix_and_seeded_draws_repeat_at_probability_one_half() -> None:
    policy = Policy(name="m", mixing=Mixing(mixup_alpha=1.0, probability=0.5))
    images, labels = digits()[:2], torch.tensor([0, 1])
    assert any(not torch.equal(BatchMixer(policy, num_classes=N, seed=s)(images, labels)[0], images) for s in range(8))
    first = BatchMixer(policy, num_classes=N, seed=5)(digits(), torch.arange(N))
    again = BatchMixer(policy, num_classes=N, seed=5)(digits(), torch.arange(N))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert 0.3 < (first[1].diagonal() < 1).float().mean() < 0.7


def test_visible_fractions_and_integer_labels_reach_the_soft_targets() -> None:
    soft = Policy(name="soft", labels=Labels(soft_target_strength=1.0))
    mixer = BatchMixer(soft, num_classes=4, seed=0)
    visible = torch.tensor([1.0, 0.5, 0.25])
    expected = torch.tensor([1.0, 0.75 + 0.25 / 4, 0.4375 + 0.5625 / 4])  # 1 - (1 - visible) ** 2, rest spread
    for dtype in (torch.uint8, torch.int16, torch.int32, torch.int64):
        _, targets = mixer(torch.zeros(3, 3, 8, 8), torch.tensor([0, 1, 3], dtype=dtype), visible=visible)
        assert torch.allclose(targets[[0, 1, 2], [0, 1, 3]], expected)
    _, plain = mixer(torch.zeros(3, 3, 8, 8), torch.tensor([0, 1, 3]))
    assert torch.equal(plain, torch.eye(4)[[0, 1, 3]])  # no visible fraction: nothing to soften by
    override = BatchMixer(soft, num_classes=4, labels=Labels(label_smoothing=0.2))
    assert torch.allclose(override(torch.zeros(1, 3, 8, 8), torch.tensor([2]), visible=visible[2:])[1],
                          torch.tensor([[0.05, 0.05, 0.85, 0.05]]))  # the given labels replace the policy's
    for bad in (torch.tensor([True, False]), torch.tensor([0.0, 1.0])):
        with pytest.raises(ValueError, match=f"integer class indices .*, got {bad.dtype}"):
            soft_targets(bad, 4)


def test_soft_targets_clamp_visible_fractions_and_need_none_without_strength() -> None:
    strong = Labels(soft_target_strength=0.5, soft_target_power=1.0)
    odd = soft_targets(torch.tensor([0, 0]), 2, labels_cfg=strong, visible=torch.tensor([1.5, -0.5]))
    assert torch.allclose(odd[:, 0], torch.tensor([1.0, 0.75]))  # as visible 1 and 0
    assert torch.allclose(soft_targets(torch.tensor([1]), 2, labels_cfg=strong), torch.tensor([[0.0, 1.0]]))


def test_soft_cross_entropy_is_the_hand_worked_value() -> None:
    logits = torch.tensor([[0.0, math.log(3.0)], [2.0, 2.0]])
    targets = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    # row 1: p = (1/4, 3/4) -> 0.5 * (log 4 + log 4/3); row 2: p = (1/2, 1/2) -> log 2
    expected = (0.5 * (math.log(4.0) + math.log(4.0 / 3.0)) + math.log(2.0)) / 2
    assert soft_cross_entropy(logits, targets).item() == pytest.approx(expected, rel=1e-6)


def test_cutmix_on_non_square_one_channel_batches_through_the_mixer() -> None:
    """Height and width reach the box draws in the right order, and grey images are mixed too."""
    mixer = BatchMixer(Policy(name="m", mixing=Mixing(cutmix_alpha=1.0, probability=1.0)), num_classes=N, seed=0)
    images = flat_images()[:, :1, :16, :].repeat(1, 1, 1, 3)[..., :48].contiguous()  # [N, 1, 16, 48]
    pasted = []
    for _ in range(20):
        out, targets = mixer(images, torch.arange(N))
        own, partner = partners(targets)
        mixed = partner != torch.arange(N)
        kept = (out[:, 0] == images[:, 0]).flatten(1).float().mean(1)
        assert torch.allclose(own[mixed], kept[mixed])
        pasted.append(1 - own[mixed])
    assert 0.25 < torch.cat(pasted).mean() < 0.35  # as the box draws for 16 x 48 (measured 0.295)


def test_one_hot_targets_are_float_without_a_labels_section() -> None:
    targets = soft_targets(torch.tensor([2, 0], dtype=torch.int16), 3)
    assert targets.dtype == torch.float32 and torch.equal(targets, torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]))


def test_mixed_batches_keep_their_dtype() -> None:
    """Mixup of uint8 images stays uint8 (rounded), of float images float."""
    for images in (digits(), digits().float() / 255):
        out, _ = mixer(mixup_alpha=1.0, probability=1.0)(images, torch.arange(N))
        assert out.dtype == images.dtype and not torch.equal(out, images)


def test_a_pickled_mixer_starts_its_stream_again_from_its_seed() -> None:
    """Ray pickles the mixer to each worker: every copy draws from the seed, not from where the driver was."""
    used = mixer(seed=3, mixup_alpha=1.0, probability=1.0)
    first = used._draw(8, 32, 32)["lam_mixup"]
    assert not torch.equal(used._draw(8, 32, 32)["lam_mixup"], first)
    copy = pickle.loads(pickle.dumps(used))
    assert torch.equal(copy._draw(8, 32, 32)["lam_mixup"], first)


def test_unseeded_mixers_draw_different_streams() -> None:
    firsts = [mixer(seed=None, mixup_alpha=1.0, probability=1.0)._draw(4, 8, 8)["lam_mixup"] for _ in range(20)]
    assert len({tuple(f.tolist()) for f in firsts}) == 20


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_alpha_below_one_gives_a_symmetric_u_shaped_lambda(kind: str, monkeypatch) -> None:
    """Beta(0.3, 0.3): mean 1/2 and P(0.25 < λ < 0.75) = 0.234; a floor on either parameter skews or flattens it."""
    seen = []

    def boxes(lam: torch.Tensor, *args: object) -> torch.Tensor:
        seen.append(lam)
        return _cutmix_boxes(lam, *args)

    monkeypatch.setattr(mixing, "_cutmix_boxes", boxes)
    draws = mixer(**{f"{kind}_alpha": 0.3, "probability": 1.0})._draw(4000, 32, 32)
    lam = draws["lam_mixup"] if kind == "mixup" else seen[0]
    middle = ((lam > 0.25) & (lam < 0.75)).float().mean()
    assert abs(lam.mean() - 0.5) < 0.03 and 0.21 < middle < 0.26
