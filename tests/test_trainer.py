"""The trainer on real images (digits, a CIFAR-10 subset): learning, determinism, every policy section, faults."""
from __future__ import annotations

import math

import pytest
import torch

from autoaug.datasets import load_dataset, split_train_val
from autoaug.errors import AutoaugError
from autoaug.policy import Policy, policy_from_dict
from autoaug.trainer import (TrainConfig, auto_batch_size, expected_calibration_error, low_resolution, lr_factor,
                             train)

FAST = dict(model="proxy_tiny", batch_size=128, lr=0.2, device="cpu")


@pytest.fixture(scope="module")
def digits():
    train_set, val_set = split_train_val(load_dataset("digits").train, val_size=300, seed=0, train_size=600)
    return train_set, val_set


def _policy(**sections) -> Policy:
    return policy_from_dict({"schema_version": 1, "name": "test", **sections})


CROPFLIP = {"pre": [{"op": "RandomCrop", "magnitude": 0.25}]}


def test_learns_digits(digits):
    result = train(_policy(**CROPFLIP), *digits, TrainConfig(epochs=6, **FAST))
    assert result.status == "ok"
    assert [e.epoch for e in result.epochs] == [1, 2, 3, 4, 5, 6]
    assert result.val_accuracy > 0.75  # 10 classes: chance is 0.1; 24 steps of a 76k-parameter net
    assert result.epochs[-1].train_loss < result.epochs[0].train_loss
    assert all(0 <= e.val_ece <= 1 and e.images_per_second > 0 for e in result.epochs)


def test_learns_real_cifar10_photos(cifar10_mini):
    """1,000 real CIFAR-10 training photos (100 a class), validation carved from them, never the test part."""
    train_set, val_set = split_train_val(load_dataset(str(cifar10_mini)).train, val_size=200, seed=0)
    result = train(_policy(pre=[{"op": "RandomCrop", "magnitude": 0.125}, {"op": "HorizontalFlip", "probability": 0.5}]),
                   train_set, val_set, TrainConfig(epochs=8, model="proxy_tiny", device="cpu"))
    assert result.status == "ok"
    # chance is 0.1; measured 0.32 to 0.39 over seeds 0-3 (8 epochs of 800 images at batch 32: 200 steps, 4 s)
    assert result.val_accuracy > 0.25
    assert result.epochs[-1].train_loss < result.epochs[0].train_loss - 0.2


@pytest.mark.parametrize(("images", "batch"), [(10, 32), (1150, 64), (8000, 256), (8192, 512), (45000, 512), (2048, 128)])
def test_auto_batch_size_gives_an_epoch_at_least_16_steps(images, batch):
    assert auto_batch_size(images) == batch


def test_deterministic_on_cpu(digits):
    policy = load_policy_everything()
    first = train(policy, *digits, TrainConfig(epochs=2, seed=3, **FAST))
    second = train(policy, *digits, TrainConfig(epochs=2, seed=3, **FAST))
    other = train(policy, *digits, TrainConfig(epochs=2, seed=4, **FAST))
    assert [e.train_loss for e in first.epochs] == [e.train_loss for e in second.epochs]
    assert [e.val_accuracy for e in first.epochs] == [e.val_accuracy for e in second.epochs]
    assert [e.train_loss for e in first.epochs] != [e.train_loss for e in other.epochs]


def load_policy_everything() -> Policy:
    """A policy using every section the trainer must honour."""
    return _policy(
        pre=[{"op": "RandomCrop", "magnitude": 0.25}, {"op": "HorizontalFlip", "probability": 0.5}],
        augment={"kind": "trivialaugment"},
        post=[{"op": "Cutout", "magnitude": 0.3}],
        mixing={"mixup_alpha": 0.4, "cutmix_alpha": 1.0, "probability": 0.5, "cutmix_probability": 0.5,
                "yoco_probability": 0.5},
        labels={"label_smoothing": 0.1, "soft_target_strength": 0.5},
        resolution={"phases": [{"start_fraction": 0.0, "end_fraction": 0.5, "probability": 0.5, "resolution": 24}]},
    )


def test_resolution_schedule_downscales_in_its_phase(digits, monkeypatch):
    sizes: list[tuple[int, float]] = []
    import autoaug.regime as regime_module  # the trainer's batches go through autoaug.regime.Regime
    original = regime_module.low_resolution

    def spy(resolution, progress, draw):
        size = original(resolution, progress, draw)
        sizes.append((size, progress))
        return size

    monkeypatch.setattr(regime_module, "low_resolution", spy)
    policy = _policy(resolution={"phases": [
        {"start_fraction": 0.0, "end_fraction": 0.5, "probability": 1.0, "resolution": 16}]})
    assert train(policy, *digits, TrainConfig(epochs=2, **FAST)).status == "ok"
    assert all((size == 16) == (progress < 0.5) for size, progress in sizes)
    assert {size for size, _ in sizes} == {16, None}


def test_low_resolution_rule():
    policy = _policy(resolution={"phases": [
        {"start_fraction": 0.2, "end_fraction": 0.6, "probability": 0.3, "resolution": 20}]})
    assert low_resolution(policy.resolution, 0.1, 0.0) is None
    assert low_resolution(policy.resolution, 0.3, 0.29) == 20
    assert low_resolution(policy.resolution, 0.3, 0.31) is None
    assert low_resolution(None, 0.3, 0.0) is None


def test_width_resolution_reports_every_width_and_resolution(digits):
    policy = _policy(**CROPFLIP, width_resolution={"widths": [0.25, 0.5, 1.0], "resolutions": [24, 32],
                                                   "num_random_subnets": 1})
    result = train(policy, *digits, TrainConfig(epochs=2, **FAST))
    assert result.status == "ok"
    grid = result.epochs[-1].grid_accuracy
    assert set(grid) == {f"w{w:g}_r{r}" for w in (0.25, 0.5, 1.0) for r in (24, 32)}
    assert all(0.0 <= acc <= 1.0 for acc in grid.values())
    assert grid["w1_r32"] == pytest.approx(result.val_accuracy)


def test_width_resolution_needs_a_slimmable_model(digits):
    policy = _policy(width_resolution={"widths": [0.5, 1.0], "resolutions": [24]})
    with pytest.raises(AutoaugError, match="slimmable"):
        train(policy, *digits, TrainConfig(epochs=1, **{**FAST, "model": "preact_resnet18"}))


def test_nan_loss_ends_with_status(digits):
    result = train(_policy(), *digits, TrainConfig(epochs=3, **{**FAST, "lr": 1e30}))
    assert result.status == "nan"
    assert "loss" in result.message
    assert len(result.epochs) < 3


def test_on_epoch_can_stop(digits):
    result = train(_policy(), *digits, TrainConfig(epochs=5, **FAST), on_epoch=lambda m: m.epoch < 2)
    assert result.status == "stopped"
    assert len(result.epochs) == 2


def test_unknown_model_and_device():
    with pytest.raises(AutoaugError, match="did you mean"):
        TrainConfig(model="resnet19")
    if not torch.cuda.is_available():
        with pytest.raises(AutoaugError, match="no CUDA"):
            train(_policy(), *_tiny(), TrainConfig(device="cuda", **{k: v for k, v in FAST.items() if k != "device"}))


def _tiny():
    data = split_train_val(load_dataset("digits").train, val_size=50, seed=0, train_size=100)
    return data


def test_lr_schedule_warms_up_and_decays():
    config = TrainConfig(warmup_fraction=0.1)
    factors = [lr_factor(step, 100, config) for step in range(100)]
    assert factors[0] == pytest.approx(0.1)
    assert factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:]))
    assert factors[-1] < 0.01
    onecycle = TrainConfig(schedule="onecycle", warmup_fraction=0.3)
    assert lr_factor(30, 100, onecycle) == pytest.approx(1.0)
    assert lr_factor(65, 100, onecycle) == pytest.approx(0.5)


def test_expected_calibration_error_on_known_values():
    confidence = torch.tensor([0.95, 0.95, 0.55, 0.55])
    correct = torch.tensor([1.0, 1.0, 1.0, 0.0])
    # bin of 0.95: accuracy 1 vs confidence 0.95; bin of 0.55: accuracy 0.5 vs 0.55 -> (0.1 + 0.1) / 4
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.05)
    assert math.isclose(expected_calibration_error(torch.ones(3), torch.ones(3)), 0.0, abs_tol=1e-7)
