"""The trainer on real images (digits, a CIFAR-10 subset): learning, determinism, every policy section, faults."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

import torch.nn.functional as nnf
from torch import nn

from autoaug.datasets import ArrayData, load_dataset, split_train_val
from autoaug.errors import AutoaugError
from autoaug.mixing import BatchMixer, _cutmix_boxes, soft_targets
from autoaug.policy import Labels, Policy, policy_from_dict
from autoaug.trainer import (STREAMS, EpochMetrics, Normalizer, SeedStreams, TrainConfig, Trainer, TrainResult,
                             auto_batch_size, derive_seed, evaluate, expected_calibration_error, learning_rate_record,
                             low_resolution, lr_factor, resolve_device, scaled_lr, soft_cross_entropy, train)

FAST = dict(model="proxy_tiny", batch_size=128, lr=0.8, device="cpu")  # 0.8 per 512 images: 0.2 at 128


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
    # 10 classes: chance is 0.1; 24 steps of a 76k-parameter net: measured 0.66 to 0.81 over seeds 0-3
    assert result.val_accuracy > 0.5
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
    # no grid["w1_r32"] == val_accuracy: the grid recalibrates batch norm per configuration, while
    # val_accuracy keeps training's statistics, like a plain run (tests/test_widthres.py checks both)


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
    # the top two of 15 bins are kept apart: (|1 - 0.95| + |0 - 0.9|) / 2, not |0.5 - 0.925|
    assert expected_calibration_error(torch.tensor([0.95, 0.9]), torch.tensor([1.0, 0.0])) == pytest.approx(0.475)


def test_lr_is_per_512_images_and_scales_linearly_with_the_batch():
    assert scaled_lr(0.4, 512) == 0.4
    assert scaled_lr(0.4, 64) == pytest.approx(0.05)
    assert scaled_lr(0.8, 1024) == pytest.approx(1.6)
    assert learning_rate_record(TrainConfig(lr=0.4, warmup_fraction=0.1, schedule="onecycle"), 128) == \
        {"lr_per_512_images": 0.4, "batch_size": 128, "peak_lr": 0.1, "warmup_fraction": 0.1, "schedule": "onecycle"}


def test_the_optimizer_runs_at_the_scaled_rate_times_the_schedule():
    """100 images at batch 25: 4 steps an epoch, 8 in all, warm-up 2 steps (a quarter)."""
    config = TrainConfig(model="proxy_tiny", epochs=2, batch_size=25, lr=0.8, warmup_fraction=0.25, device="cpu")
    trainer = Trainer(_policy(), *_tiny(), config)
    rates = []
    original = trainer._run.optimizer.step

    def spy(*args, **kwargs):
        rates.append([group["lr"] for group in trainer._run.optimizer.param_groups])
        return original(*args, **kwargs)

    trainer._run.optimizer.step = spy
    trainer.run_epoch()
    peak = 0.8 * 25 / 512  # 0.0390625
    # warm-up 1/2, 2/2 of the peak, then cosine over the 6 remaining steps: 0.5 * (1 + cos(pi * k / 6))
    expected = [peak * 0.5, peak, peak * 1.0, peak * 0.9330127018922193]
    assert [r[0] for r in rates] == pytest.approx(expected)
    assert all(r[0] == r[1] for r in rates)  # decayed and undecayed parameters share one rate


@pytest.mark.parametrize("lr", [0.0, -0.1, float("nan"), float("inf")])
def test_a_learning_rate_must_be_positive_and_finite(lr):
    with pytest.raises(AutoaugError, match=r"lr must be a positive number \(the rate per 512 images\), got"):
        TrainConfig(lr=lr)


# ---- the training math, each against an independent computation ----------------------------------

def _mixer(**mixing) -> BatchMixer:
    return BatchMixer(_policy(mixing={"probability": 1.0, **mixing}), num_classes=64, seed=0)


def _numbered_batch(n: int = 64, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Image i is filled with the value i + 1 and labelled i, so pixels and targets name their source."""
    values = torch.arange(1, n + 1, dtype=torch.float32)
    return values.view(-1, 1, 1, 1).expand(n, 1, size, size).clone(), torch.arange(n)


def test_mixup_lambda_is_beta_alpha_alpha_and_blends_pixels_and_targets_alike():
    scipy_stats = pytest.importorskip("scipy.stats")
    mixer, lams = _mixer(mixup_alpha=0.4), []
    images, labels = _numbered_batch()
    rows = torch.arange(len(labels))
    for _ in range(80):
        out, targets = mixer(images, labels)
        lam = targets[rows, rows]
        partner = targets.index_put((rows, rows), torch.zeros(len(rows))).argmax(1)
        assert torch.allclose(targets.sum(1), torch.ones(len(rows)))
        assert torch.allclose(out[:, 0, 0, 0], lam * (rows + 1) + (1 - lam) * (partner + 1), rtol=1e-5)
        lams.append(lam[lam < 1])  # lam is 1 where the partner drawn was the image itself
    lams = torch.cat(lams).double()
    # Beta(0.4, 0.4): mean 1/2, variance 1 / (4 (2 alpha + 1)) = 0.139, and the whole distribution
    assert len(lams) > 4000 and lams.mean().item() == pytest.approx(0.5, abs=0.02)
    assert lams.var().item() == pytest.approx(1 / (4 * 1.8), abs=0.01)
    assert scipy_stats.kstest(lams.numpy(), scipy_stats.beta(0.4, 0.4).cdf).pvalue > 1e-3
    assert scipy_stats.kstest(lams.numpy(), scipy_stats.beta(1.0, 1.0).cdf).pvalue < 1e-6  # the test has power


def test_cutmix_targets_weigh_the_area_actually_pasted():
    mixer = _mixer(cutmix_alpha=1.0)
    images, labels = _numbered_batch()
    clipped = 0
    for _ in range(10):
        out, targets = mixer(images, labels)
        for i in range(len(labels)):
            pasted = out[i] != i + 1
            partner = int(out[i][pasted][0].item()) - 1 if pasted.any() else i
            share = pasted.float().mean().item()
            assert targets[i, i].item() == pytest.approx(1 - share, abs=1e-6)
            if partner != i:
                assert targets[i, partner].item() == pytest.approx(share, abs=1e-6)
                clipped += int(pasted[0, 0].any() or pasted[0, -1].any() or pasted[0, :, 0].any()
                               or pasted[0, :, -1].any())
    assert clipped > 0  # boxes at the border, where the drawn and the pasted area differ, were seen


def test_cutmix_box_hand_worked():
    # lam 0.75 asks for a 4x4 box (a quarter of 8x8); centred at (7, 7) it is clipped to rows and columns 5..7
    boxes = _cutmix_boxes(torch.tensor([0.75, 0.75]), torch.tensor([[0.9, 0.9], [0.5, 0.5]]), 8, 8)
    assert boxes.tolist() == [[5, 5, 8, 8], [2, 2, 6, 6]]
    images, labels = _numbered_batch(2, 8)
    mixer = _mixer(cutmix_alpha=1.0)
    one = torch.ones(2, dtype=torch.bool)
    out, targets = mixer._mix(images, soft_targets(labels, 64), mixed=one, use_cutmix=one,
                              lam_mixup=torch.ones(2), boxes=boxes, partner=torch.tensor([1, 0]))
    assert targets[0, :2].tolist() == pytest.approx([55 / 64, 9 / 64])  # 9 pixels pasted, not 16
    assert targets[1, :2].tolist() == pytest.approx([16 / 64, 48 / 64])
    assert (out[0, 0, 5:, 5:] == 2).all() and (out[0] == 2).sum() == 9


def test_soft_targets_closed_forms():
    labels = torch.tensor([2, 0])
    smoothed = soft_targets(labels, 4, labels_cfg=Labels(label_smoothing=0.1))
    assert torch.allclose(smoothed, 0.9 * torch.eye(4)[labels] + 0.1 / 4)
    # soft augmentation: confidence 1 - 0.5 (1 - 0.5)^2 = 0.875, smoothed to 0.7875; the rest spread uniformly
    soft = soft_targets(labels, 4, labels_cfg=Labels(label_smoothing=0.1, soft_target_strength=0.5,
                                                     soft_target_power=2.0), visible=torch.tensor([0.5, 1.0]))
    assert soft[0].tolist() == pytest.approx([0.053125, 0.053125, 0.840625, 0.053125])
    assert soft[1].tolist() == pytest.approx([0.9 + 0.025, 0.025, 0.025, 0.025])
    assert torch.equal(soft_targets(labels, 4), torch.eye(4)[labels])


def test_soft_cross_entropy_is_torch_cross_entropy_with_label_smoothing():
    gen = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(6, 5, generator=gen), torch.tensor([0, 1, 2, 3, 4, 0])
    targets = soft_targets(labels, 5, labels_cfg=Labels(label_smoothing=0.2))
    expected = nnf.cross_entropy(logits, labels, label_smoothing=0.2)
    assert soft_cross_entropy(logits, targets).item() == pytest.approx(expected.item(), rel=1e-6)


def test_weight_decay_falls_on_conv_and_linear_weights_only():
    """Batch-norm scales and shifts and biases are not decayed (decaying them hurts small nets)."""
    trainer = Trainer(_policy(), *_tiny(), TrainConfig(model="resnet18", weight_decay=5e-4, device="cpu"))
    model = trainer._run.model
    weights = {id(m.weight) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    decayed = [group for group in trainer._run.optimizer.param_groups if group["weight_decay"] > 0]
    assert [group["weight_decay"] for group in decayed] == [5e-4]
    assert {id(p) for p in decayed[0]["params"]} == weights
    rest = [p for group in trainer._run.optimizer.param_groups if group["weight_decay"] == 0 for p in group["params"]]
    norms = [p for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in (m.weight, m.bias)]
    assert {id(p) for p in rest} == {id(p) for p in norms} | {id(model.fc.bias)}
    assert len(rest) + len(decayed[0]["params"]) == len(list(model.parameters()))
    assert all(g["momentum"] == 0.9 and g["nesterov"] for g in trainer._run.optimizer.param_groups)


class _FixedLogits(nn.Module):
    """Returns stored logits in order, batch after batch, whatever the images."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits, self.position, self.sizes = logits, 0, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(x.shape[-1])
        out = self.logits[self.position:self.position + len(x)]
        self.position += len(x)
        return out


def test_evaluate_scores_accuracy_loss_and_calibration_by_hand():
    gen = torch.Generator().manual_seed(1)
    logits, labels = 3 * torch.randn(7, 3, generator=gen), torch.tensor([0, 1, 2, 0, 1, 2, 0])
    data = ArrayData(torch.randint(0, 256, (7, 3, 8, 8), dtype=torch.uint8, generator=gen), labels, ("a", "b", "c"))
    model = _FixedLogits(logits)
    accuracy, loss, ece = evaluate(model, data, Normalizer(data.images), batch_size=3, device=torch.device("cpu"),
                                   resolution=4)
    probs = logits.softmax(1)
    correct = (probs.argmax(1) == labels).float()
    assert accuracy == pytest.approx(correct.mean().item())
    assert loss == pytest.approx(nnf.cross_entropy(logits, labels).item(), rel=1e-5)
    confidence, gaps = probs.max(1).values, 0.0
    for b in range(15):
        inside = (confidence > b / 15) & (confidence <= (b + 1) / 15)
        if inside.any():
            gaps += inside.sum().item() * abs(correct[inside].mean().item() - confidence[inside].mean().item())
    assert ece == pytest.approx(gaps / 7, abs=1e-6)
    assert model.sizes == [4, 4, 4] and not model.training  # three batches, downscaled, in eval mode


def test_normalizer_uses_the_training_set_channel_statistics():
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (10, 3, 4, 4), dtype=torch.uint8, generator=gen)
    images[:, 2] = 7  # a constant channel: its std is clamped to 1, not divided by zero
    out = Normalizer(images)(images)
    floats = images.float()
    assert torch.allclose(out[:, 0], (floats[:, 0] - floats[:, 0].mean()) / floats[:, 0].std(), atol=1e-5)
    assert torch.equal(out[:, 2], torch.zeros(10, 4, 4))


# ---- independent seed streams ---------------------------------------------------------------------

def _streams(**config) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Initial weights, first epoch's order, one augmented batch and one mixing draw of a fresh run."""
    policy = load_policy_everything()
    run = Trainer(policy, *_tiny(), TrainConfig(model="proxy_tiny", device="cpu", **config))._run
    weights = torch.cat([p.detach().flatten() for p in run.model.parameters()])
    order = torch.randperm(len(run.images), generator=run.shuffle)
    augmented, _ = run.regime.augment.augment(run.images[:16], progress=0.0)
    return weights, order, augmented, run.regime.mixer._draw(16, 32, 32)["partner"]


def _same(a: tuple, b: tuple) -> list[bool]:
    return [torch.equal(x, y) for x, y in zip(a, b)]


def test_each_seed_stream_changes_alone():
    base = _streams(seed=0)
    assert _same(base, _streams(seed=0)) == [True] * 4
    assert _same(base, _streams(seed=0, augment_seed=5)) == [True, True, False, False]
    assert _same(base, _streams(seed=0, order_seed=5)) == [True, False, True, True]
    assert _same(base, _streams(seed=0, init_seed=5)) == [False, True, True, True]
    assert _same(base, _streams(seed=1)) == [False] * 4


def test_seed_streams_do_not_overlap_across_seeds():
    # with seed + k offsets, seed 1's initialisation was seed 0's augmentation stream
    seeds = [getattr(SeedStreams.of(TrainConfig(seed=s)), name) for s in range(50) for name in STREAMS]
    assert len(set(seeds)) == len(seeds) and all(0 <= s < 2**63 for s in seeds)
    explicit = SeedStreams.of(TrainConfig(seed=3, augment_seed=9))
    assert explicit.init == SeedStreams.of(TrainConfig(seed=3)).init
    assert explicit.augment == SeedStreams.of(TrainConfig(seed=9)).augment
    assert derive_seed(0, 1) != derive_seed(1, 0) and derive_seed(4, 2) == derive_seed(4, 2)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("epochs", 0, "epochs and batch_size must be >= 1, got 0"), ("batch_size", 0, "got 10 and 0"),
    ("calibration_images", 0, "calibration_images must be >= 1, got 0"),
    ("schedule", "linear", "schedule must be 'cosine' or 'onecycle', got 'linear'")])
def test_train_config_rejects_bad_values(field, value, message):
    with pytest.raises(AutoaugError, match=message):
        TrainConfig(**{field: value})


def test_results_and_devices():
    empty = TrainResult("nan", "x", ())
    assert empty.final is None and math.isnan(empty.val_accuracy)
    metrics = EpochMetrics(1, 2.0, 0.5, 1.5, 0.1, 100.0, 3.0, {"w0.5_r16": 0.4})
    full = TrainResult("ok", "", (metrics,))
    assert full.final is metrics and full.val_accuracy == 0.5
    assert full.to_dict() == {"status": "ok", "message": "", "epochs": [
        {"epoch": 1, "train_loss": 2.0, "val_accuracy": 0.5, "val_loss": 1.5, "val_ece": 0.1,
         "images_per_second": 100.0, "seconds": 3.0, "grid_accuracy": {"w0.5_r16": 0.4}}]}
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(AutoaugError, match="device must be auto, cpu or cuda\\[:N\\], got 'tpu'"):
        resolve_device("tpu")


def test_trainer_label_smoothing_fills_in_where_the_policy_sets_none():
    data = _tiny()
    config = TrainConfig(model="proxy_tiny", device="cpu", label_smoothing=0.1)
    assert Trainer(_policy(), *data, config)._run.regime.mixer.labels_cfg == Labels(label_smoothing=0.1)
    soft = _policy(labels={"soft_target_strength": 0.5})
    assert Trainer(soft, *data, config)._run.regime.mixer.labels_cfg == Labels(label_smoothing=0.1, soft_target_strength=0.5)
    own = _policy(labels={"label_smoothing": 0.2})
    assert Trainer(own, *data, config)._run.regime.mixer.labels_cfg == Labels(label_smoothing=0.2)
    assert Trainer(_policy(), *data, TrainConfig(model="proxy_tiny", device="cpu"))._run.regime.mixer.labels_cfg is None


def test_trainer_checks_channels_and_policy_changes():
    train_set, val_set = _tiny()
    grey = ArrayData(val_set.images[:, :1], val_set.labels, val_set.classes)
    with pytest.raises(AutoaugError, match="differ in channel count"):
        Trainer(_policy(), train_set, grey, TrainConfig(model="proxy_tiny", device="cpu"))
    trainer = Trainer(_policy(), train_set, val_set, TrainConfig(model="proxy_tiny", device="cpu"))
    new = _policy(**CROPFLIP)
    trainer.set_policy(new)
    assert trainer.policy is new and trainer._run.regime.augment.policy is new and trainer._run.regime.mixer.labels_cfg is None
    with pytest.raises(AutoaugError, match="^the width_resolution section cannot change during a run$"):
        trainer.set_policy(_policy(width_resolution={"widths": [0.5, 1.0], "resolutions": [16]}))


def test_state_dict_round_trip():
    train_set, val_set = _tiny()
    config = TrainConfig(model="proxy_tiny", device="cpu", batch_size=32, lr=0.1)
    first = Trainer(_policy(), train_set, val_set, config)
    metrics = first.run_epoch()
    assert metrics.images_per_second * metrics.seconds == pytest.approx(96)  # 3 full batches of 32 from 100
    state = first.state_dict()
    second = Trainer(_policy(), train_set, val_set, replace(config, seed=7))
    second.load_state_dict(state)
    assert second.epochs_done == 1 and state["policy"] == _policy().to_dict()
    assert all(torch.equal(a, b) for a, b in zip(first._run.model.state_dict().values(),
                                                 second._run.model.state_dict().values()))
    assert torch.equal(first._run.shuffle.get_state(), second._run.shuffle.get_state())
    assert second._run.optimizer.state_dict()["state"].keys() == first._run.optimizer.state_dict()["state"].keys()


def test_out_of_memory_ends_with_status(monkeypatch):
    def oom(self):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB\nmore detail")

    monkeypatch.setattr(Trainer, "run_epoch", oom)
    result = train(_policy(), *_tiny(), TrainConfig(model="proxy_tiny", device="cpu"))
    assert (result.status, result.message, result.epochs) == (
        "oom", "out of device memory: CUDA out of memory. Tried to allocate 2 GiB", ())


def test_occlusion_softens_the_targets_of_a_batch():
    policy = _policy(post=[{"op": "Cutout", "magnitude": 1.0}], labels={"soft_target_strength": 1.0})
    run = Trainer(policy, *_tiny(), TrainConfig(model="proxy_tiny", device="cpu"))._run
    _, targets = run.batch(torch.arange(16), 0.0)
    assert torch.allclose(targets.sum(1), torch.ones(16))
    assert (targets.max(1).values < 0.99).all()  # every image lost part of itself to the cutout
    plain = Trainer(_policy(labels={"soft_target_strength": 1.0}), *_tiny(), TrainConfig(model="proxy_tiny",
                                                                                          device="cpu"))._run
    assert torch.equal(plain.batch(torch.arange(16), 0.0)[1], torch.eye(10)[plain.labels[:16]])


def test_an_epoch_steps_through_a_permutation_one_batch_at_a_time(monkeypatch):
    import autoaug.regime as regime_module

    # image k carries its number k in its first pixel, so each batch's images can be named
    images = torch.zeros(40, 3, 16, 16, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(40, dtype=torch.uint8)
    data = ArrayData(images, torch.arange(40) % 4, ("a", "b", "c", "d"))
    batches = []
    original = regime_module.Regime.__call__

    def recording(self, images, labels, *, progress):
        batches.append((progress, images[:, 0, 0, 0].tolist()))
        return original(self, images, labels, progress=progress)

    monkeypatch.setattr(regime_module.Regime, "__call__", recording)
    trainer = Trainer(_policy(), data, data, TrainConfig(model="proxy_tiny", batch_size=8, epochs=2, device="cpu"))
    trainer._run.epoch(0)
    assert [progress for progress, _ in batches] == [k / 10 for k in range(5)]  # 5 steps of 10 in the run
    assert [len(ids) for _, ids in batches] == [8] * 5
    assert sorted(sum((ids for _, ids in batches), [])) == list(range(40))  # every image once an epoch


def test_a_new_policy_gets_the_regime_seed_of_its_restart():
    train_set, val_set = _tiny()
    trainer = Trainer(_policy(), train_set, val_set, TrainConfig(model="proxy_tiny", device="cpu", seed=5))
    trainer.epochs_done = 3  # as if three epochs had run
    trainer.set_policy(_policy(**CROPFLIP))
    # the run's augment stream is stream 2 of seed 5; the regime of restart 3 is its part (0, 3)
    regime_seed = derive_seed(derive_seed(5, 2), 0, 3)
    assert trainer._run.regime.seeds.policy == derive_seed(regime_seed, 0)
    assert trainer._run.regime.seeds.mixing == derive_seed(regime_seed, 1)


def test_a_batch_of_one_image_is_allowed():
    assert TrainConfig(batch_size=1, epochs=1).batch_size == 1


def test_training_batches_use_the_training_set_statistics_and_the_runs_draws():
    # two channels of known statistics over all 4 x 256 pixels: channel 0 is 0, 2, 4, 6 a picture (mean 3,
    # squared deviations 256 x (9 + 1 + 1 + 9), std by the n - 1 rule), channel 1 is constant 5 (std 0, clamped to 1)
    images = torch.zeros(4, 2, 16, 16, dtype=torch.uint8)
    images[:, 0] = torch.tensor([0, 2, 4, 6], dtype=torch.uint8)[:, None, None]
    images[:, 1] = 5
    data = ArrayData(images, torch.tensor([0, 1, 0, 1]), ("a", "b"))
    trainer = Trainer(_policy(), data, data, TrainConfig(model="proxy_tiny", batch_size=4, device="cpu", seed=9))
    x, _ = trainer._run.batch(torch.tensor([3, 0]), 0.0)
    std = math.sqrt(256 * 20 / 1023)
    assert torch.allclose(x[:, 0], torch.tensor([3 / std, -3 / std])[:, None, None].expand(2, 16, 16))
    assert torch.equal(x[:, 1], torch.zeros(2, 16, 16))  # (5 - 5) / 1
    # resolution and width draws: part 2 of the run's augment stream, kept across a policy change
    draws = trainer._run.regime.draws
    assert draws.initial_seed() == derive_seed(derive_seed(9, 2), 2, 0)
    trainer.set_policy(_policy(**CROPFLIP))
    assert trainer._run.regime.draws is draws


def test_the_model_is_built_for_the_training_image_size():
    images = torch.zeros(4, 3, 72, 72, dtype=torch.uint8)
    data = ArrayData(images, torch.tensor([0, 1, 0, 1]), ("a", "b"))
    trainer = Trainer(_policy(), data, data, TrainConfig(model="proxy_tiny", batch_size=4, device="cpu"))
    # 72 pixels is above the CIFAR-style stem's limit of 64: the downsampling stem
    from autoaug.models import build_model
    assert str(trainer._run.model) == str(build_model("proxy_tiny", num_classes=2, image_size=72))
    assert str(trainer._run.model) != str(build_model("proxy_tiny", num_classes=2, image_size=64))


def test_with_cuda_present_auto_and_cuda_n_resolve_to_cuda(monkeypatch):
    # a torch.device is only a name: these run on a CPU-only machine with CUDA reported present
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.filterwarnings("ignore:CUDA is not available:UserWarning")
def test_cuda_runs_in_bfloat16_autocast_and_channels_last():
    from autoaug.trainer import _autocast, _layout

    assert _autocast(torch.device("cuda")).fast_dtype == torch.bfloat16
    assert not _autocast(torch.device("cpu"))._enabled
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    on_cuda, on_cpu = _layout(x, torch.device("cuda")), _layout(x, torch.device("cpu"))
    assert on_cuda.is_contiguous(memory_format=torch.channels_last) and torch.equal(on_cuda, x)
    assert on_cpu is x
