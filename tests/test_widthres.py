"""Width x resolution training and evaluation: the sandwich step, BN recalibration, the grid."""
from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch
import torch.nn.functional as nnf
from torch import nn

from autoaug.datasets import load_dataset, split_train_val
from autoaug.errors import AutoaugError
from autoaug.models import build_model
from autoaug.policy import WidthResolution, policy_from_dict
from autoaug.trainer import Normalizer, TrainConfig, Trainer, calibration_batches, evaluate
from autoaug.widthres import SandwichStep, check_slimmable, evaluate_grid, recalibrate_batch_norm


pytestmark = pytest.mark.usefixtures("one_thread")  # small batches: a second thread costs more than it gives


def _slim(widths=(0.25, 0.5, 1.0)) -> nn.Module:
    torch.manual_seed(0)
    model = build_model("proxy_tiny", num_classes=4, slimmable=True)
    model.width_multipliers = widths
    return model


def test_recalibration_gives_the_exact_statistics_of_the_batches():
    norm = nn.BatchNorm1d(3)
    norm.running_mean.fill_(5.0)
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randn(8, 3, generator=gen) * 2 + 1 for _ in range(3)]
    norm.eval()
    recalibrate_batch_norm(norm, batches)
    # a cumulative average of the per-batch mean and unbiased variance: equal-sized batches, equal weights
    assert torch.allclose(norm.running_mean, torch.stack([b.mean(0) for b in batches]).mean(0), atol=1e-6)
    assert torch.allclose(norm.running_var, torch.stack([b.var(0) for b in batches]).mean(0), atol=1e-5)
    assert norm.momentum == 0.1 and not norm.training  # settings and mode are given back


def test_check_slimmable_names_what_is_wrong():
    config = WidthResolution(widths=[0.5, 1.0], resolutions=[16])
    with pytest.raises(AutoaugError, match="needs a slimmable model"):
        check_slimmable(build_model("proxy_tiny", num_classes=4), config)  # built plain
    with pytest.raises(AutoaugError, match=r"widths \[0\.3\] are not among the model's widths \[0\.25, 0\.5"):
        check_slimmable(_slim(), WidthResolution(widths=[0.3, 1.0], resolutions=[16]))
    check_slimmable(_slim(), config)


def test_sandwich_step_runs_the_largest_then_the_smallest_and_random_widths():
    model = _slim((0.25, 0.5, 0.75, 1.0))
    config = WidthResolution(widths=[0.25, 0.5, 0.75, 1.0], resolutions=[8, 16], num_random_subnets=2)
    seen: list[tuple[float, int]] = []
    model.register_forward_pre_hook(lambda m, args: seen.append((m.head.width, args[0].shape[-1])))
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def loss_fn(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        calls.append((logits.detach(), targets))
        return -(targets * nnf.log_softmax(logits, 1)).sum(1).mean()

    x, targets = torch.randn(4, 3, 32, 32), torch.eye(4)
    loss = SandwichStep(model, config, torch.Generator().manual_seed(0))(x, targets, loss_fn, nullcontext)
    assert seen[0] == (1.0, 32) and seen[1][0] == 0.25 and len(seen) == 4
    assert all(width in (0.5, 0.75) for width, _ in seen[2:]) and all(size in (8, 16) for _, size in seen[1:])
    assert torch.equal(calls[0][1], targets)  # only the largest learns from the labels
    teacher = calls[0][0].softmax(1)
    assert all(torch.allclose(target, teacher) for _, target in calls[1:])  # the rest distil from it
    assert loss.item() == pytest.approx(loss_fn(calls[0][0], targets).item())
    assert model.head.width == 1.0
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_sandwich_with_a_single_width_trains_only_it():
    model = _slim()
    config = WidthResolution(widths=[1.0], resolutions=[16], num_random_subnets=2)
    seen: list[float] = []
    model.register_forward_pre_hook(lambda m, args: seen.append(m.head.width))
    SandwichStep(model, config, torch.Generator().manual_seed(0))(
        torch.randn(2, 3, 32, 32), torch.eye(4)[:2], lambda a, b: a.sum() * 0 + b.sum(), nullcontext)
    assert seen == [1.0]


@pytest.fixture(scope="module")
def trained():
    """A slimmable proxy_tiny after a little MutualNet training on digits (widths 0.25-1, resolutions 16-32)."""
    train_set, val_set = split_train_val(load_dataset("digits").train, val_size=300, seed=0, train_size=300)
    policy = policy_from_dict({"schema_version": 1, "name": "slim", "width_resolution": {
        "widths": [0.25, 0.5, 1.0], "resolutions": [16, 24, 32], "num_random_subnets": 1}})
    trainer = Trainer(policy, train_set, val_set, TrainConfig(model="proxy_tiny", epochs=3, batch_size=64, lr=0.2,
                                                              device="cpu"))
    for _ in range(3):
        trainer.run_epoch()
    return trainer, val_set


def test_recalibration_raises_the_half_width_score(trained):
    """MutualNet's point: scored with statistics of its own configuration, a sub-network does better.

    Measured (seeds 0-2): w0.5_r16 0.10 -> 0.18-0.23 and w0.5_r24 0.10 -> 0.19-0.22 of 300 digits.
    """
    trainer, val_set = trained
    run = trainer._run
    config = run.policy.width_resolution

    def score(resolution):
        return evaluate(run.model, val_set, run.normalize, batch_size=512, device=run.device, resolution=resolution)

    before = [b.clone() for b in run.model.buffers()]
    plain = evaluate_grid(run.model, config, 32, score)
    recalibrated = evaluate_grid(run.model, config, 32, score, calibration=lambda r: calibration_batches(run, r))
    assert all(torch.equal(a, b) for a, b in zip(before, run.model.buffers()))  # the model is left as it was
    assert recalibrated["full"] == plain["full"]
    assert recalibrated["w0.5_r16"][0] > plain["w0.5_r16"][0]
    assert recalibrated["w0.5_r24"][1] < plain["w0.5_r24"][1]  # the loss too
    # the grid scores the configuration it names: at full width and resolution with the same statistics as full
    assert plain["w1_r32"] == plain["full"]


def test_calibration_batches_are_a_fixed_pick_of_normalised_training_images():
    train_set, val_set = split_train_val(load_dataset("digits").train, val_size=50, seed=0, train_size=300)
    policy = policy_from_dict({"schema_version": 1, "name": "slim", "width_resolution": {
        "widths": [0.5, 1.0], "resolutions": [16]}})
    run = Trainer(policy, train_set, val_set, TrainConfig(model="proxy_tiny", device="cpu", eval_batch_size=128,
                                                          calibration_images=250))._run
    first, again = list(calibration_batches(run, 16)), list(calibration_batches(run, 16))
    assert [b.shape for b in first] == [(128, 3, 16, 16), (122, 3, 16, 16)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    labels = {int(run.labels[i]) for i in range(len(run.labels))}
    assert len(labels) == 10  # a seeded pick across the set, not the first 250 as stored
    full = torch.cat(list(calibration_batches(run, 32)))
    normalized = Normalizer(run.images)(run.images)
    # every calibration image is a (normalised) training image, none twice: matched by their row means
    signature, reference = full.mean(-1).flatten(1), normalized.mean(-1).flatten(1)
    matches = (signature[:, None] - reference[None]).abs().amax(-1) < 1e-4
    assert (matches.sum(1) == 1).all() and matches.any(0).sum() == len(full) == 250
    picked = matches.float().argmax(1)
    assert picked.max() >= 250  # not simply the first 250 images


def test_grid_scores_every_configuration_after_its_own_calibration():
    """Mechanics on an untrained net: one score per width x resolution (calibrated at that resolution,
    in that width's norms), then full width and resolution with the statistics it came with."""
    model = _slim()
    model.eval()
    config = WidthResolution(widths=[1.0, 0.25, 0.5, 0.25], resolutions=[16, 8], num_random_subnets=0)
    log: list[tuple[str, float, int | None]] = []
    gen = torch.Generator().manual_seed(0)

    def calibration(size: int):
        log.append(("calibrate", model.head.width, size))
        return [torch.randn(4, 3, size, size, generator=gen) * 3 + 2]

    def score(size):
        moved = [m.running_mean.abs().sum().item() for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        log.append(("score", model.head.width, size))
        return float(len(log)), sum(moved), -1.0

    before = [b.clone() for b in model.buffers()]
    grid = evaluate_grid(model, config, 32, score, calibration=calibration)
    assert list(grid) == ["w0.25_r8", "w0.25_r16", "w0.5_r8", "w0.5_r16", "w1_r8", "w1_r16", "full"]
    expected = [(kind, w, r) for w in (0.25, 0.5, 1.0) for r in (8, 16) for kind in ("calibrate", "score")]
    assert log == expected + [("score", 1.0, 32)]
    assert all(grid[key][1] > 0 for key in grid if key != "full")  # calibrated: statistics moved off zero
    assert grid["full"][1] == 0.0  # full: the untouched initial statistics
    assert all(torch.equal(a, b) for a, b in zip(before, model.buffers())) and model.head.width == 1.0
    assert not model.training


def test_grid_without_calibration_leaves_statistics_alone():
    model = _slim()
    config = WidthResolution(widths=[0.5, 1.0], resolutions=[8], num_random_subnets=0)
    sums = evaluate_grid(model, config, 32, lambda size: (sum(b.float().sum().item() for b in model.buffers()), 0, 0))
    assert len({value[0] for value in sums.values()}) == 1 and set(sums) == {"w0.5_r8", "w1_r8", "full"}


def test_check_slimmable_refuses_any_other_module_by_name():
    with pytest.raises(AutoaugError, match="Linear is not"):
        check_slimmable(nn.Linear(2, 2), WidthResolution(widths=[0.5, 1.0], resolutions=[16]))


def _sandwich_inputs(model: nn.Module, config: WidthResolution, seed: int, steps: int = 4) -> list:
    seen: list[tuple[float, torch.Tensor]] = []
    handle = model.register_forward_pre_hook(lambda m, args: seen.append((m.head.width, args[0])))
    step = SandwichStep(model, config, torch.Generator().manual_seed(seed))
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    for _ in range(steps):
        step(x, torch.eye(4)[:2], lambda logits, t: -(t * nnf.log_softmax(logits, 1)).sum(1).mean(), nullcontext)
    handle.remove()
    return seen


def test_sandwich_draws_from_its_own_generator_and_downscales_with_antialiasing():
    model = _slim((0.25, 0.5, 0.75, 1.0))
    config = WidthResolution(widths=[0.25, 0.5, 0.75, 1.0], resolutions=[8, 16, 32], num_random_subnets=2)
    torch.manual_seed(1)
    first = _sandwich_inputs(model, config, seed=0)
    torch.manual_seed(2)  # the global generator must not matter
    second = _sandwich_inputs(model, config, seed=0)
    assert [(w, x.shape) for w, x in first] == [(w, x.shape) for w, x in second]
    x = first[0][1]
    for width, small in first:
        size = small.shape[-1]
        expected = x if size == 32 else nnf.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
        assert torch.allclose(small, expected, atol=1e-6)
    assert {x.shape[-1] for _, x in first[1:]} == {8, 16, 32}


def test_sandwich_with_two_widths_trains_both():
    model = _slim((0.5, 1.0))
    config = WidthResolution(widths=[0.5, 1.0], resolutions=[16], num_random_subnets=1)
    seen = _sandwich_inputs(model, config, seed=0, steps=1)
    # no middle widths: the random sub-networks come from all widths
    assert [w for w, _ in seen][:2] == [1.0, 0.5] and len(seen) == 3
