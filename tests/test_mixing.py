"""Batch mixing (Mixup, CutMix) and soft targets (label smoothing, soft augmentation)."""
from __future__ import annotations

import pickle

import pytest
import torch

from autoaug.grid import digits_images
from autoaug.mixing import BatchMixer, soft_targets
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
