"""The evaluator: trains a backbone with a policy on device-resident uint8 data, and reports per epoch.

The whole dataset lives on the device as uint8 (a quarter of float32's memory and bandwidth); crop,
flip, the policy, occlusion and mixing run batched there with per-image parameters, so the loop
needs no DataLoader workers and no per-image Python.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Literal

import torch
import torch.nn.functional as nnf

from autoaug.datasets import ArrayData
from autoaug.errors import AutoaugError
from autoaug.mixing import soft_cross_entropy
from autoaug.models import MODELS, build_model
from autoaug.policy import Labels, Policy
from autoaug.regime import Regime, low_resolution  # noqa: F401 (low_resolution: re-exported, tests use it)
from autoaug.seeding import derive_seed
from autoaug.widthres import SandwichStep, evaluate_grid

Status = Literal["ok", "nan", "oom", "stopped"]
LR_REFERENCE_BATCH = 512  # TrainConfig.lr is the rate for this many images a step; see scaled_lr
STREAMS = ("init", "order", "augment")


@dataclass(frozen=True)
class SeedStreams:
    """The seeds of a run's independent random streams."""

    init: int
    order: int
    augment: int

    @classmethod
    def of(cls, config: TrainConfig) -> SeedStreams:
        chosen = {"init": config.init_seed, "order": config.order_seed, "augment": config.augment_seed}
        return cls(**{name: derive_seed(config.seed, k) if chosen[name] is None else derive_seed(chosen[name], k)
                      for k, name in enumerate(STREAMS)})

    def augment_part(self, part: int, restart: int = 0) -> int:
        """Seeds below the augmentation stream: 0 the regime's (one per policy change, ``restart``; the
        Regime derives its policy and mixing streams from it), 2 the run's resolution/width draws.

        Part 1 is unused: it was meant for mixing, which is a stream of the regime's seed.
        """
        return derive_seed(self.augment, part, restart)


@dataclass(frozen=True)
class TrainConfig:
    """How a backbone is trained; the policy says how the data is augmented."""

    model: str = "proxy"
    epochs: int = 10
    batch_size: int | None = None  # None: auto_batch_size of the training set
    lr: float = 0.4  # per LR_REFERENCE_BATCH images: a batch of 64 trains at 0.4 * 64 / 512 = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    warmup_fraction: float = 0.05
    schedule: Literal["cosine", "onecycle"] = "cosine"
    label_smoothing: float = 0.0
    seed: int = 0
    # each stream is derived from ``seed`` unless set: change one alone and the others stay as they were
    init_seed: int | None = None  # the model's initial weights
    order_seed: int | None = None  # the order batches are drawn in
    augment_seed: int | None = None  # the policy's, mixing's and resolution/width draws
    device: str = "auto"
    eval_batch_size: int = 1024
    calibration_images: int = 2048  # training images that re-estimate BN statistics per width x resolution

    def __post_init__(self) -> None:
        if self.epochs < 1 or (self.batch_size is not None and self.batch_size < 1):
            raise AutoaugError(f"epochs and batch_size must be >= 1, got {self.epochs} and {self.batch_size}")
        if self.calibration_images < 1:
            raise AutoaugError(f"calibration_images must be >= 1, got {self.calibration_images}")
        if self.schedule not in ("cosine", "onecycle"):
            raise AutoaugError(f"schedule must be 'cosine' or 'onecycle', got {self.schedule!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise AutoaugError(f"lr must be a positive number (the rate per {LR_REFERENCE_BATCH} images), got {self.lr}")
        MODELS[self.model]  # an unknown model is an UnknownNameError listing the known ones


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int
    train_loss: float
    val_accuracy: float
    val_loss: float
    val_ece: float
    images_per_second: float
    seconds: float
    grid_accuracy: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainResult:
    status: Status
    message: str
    epochs: tuple[EpochMetrics, ...]

    @property
    def final(self) -> EpochMetrics | None:
        return self.epochs[-1] if self.epochs else None

    @property
    def val_accuracy(self) -> float:
        return self.epochs[-1].val_accuracy if self.epochs else float("nan")

    def to_dict(self) -> dict:
        return {"status": self.status, "message": self.message, "epochs": [asdict(e) for e in self.epochs]}


def auto_batch_size(num_images: int, *, least: int = 32, most: int = 512) -> int:
    """The largest power of two that gives an epoch at least 16 steps, within [least, most].

    A fixed 512 would give a 1,000-image training set two steps an epoch: too few to learn anything
    in the few epochs a search trial trains.
    """
    size = 1 << max(0, (num_images // 16).bit_length() - 1)
    return max(least, min(most, size))


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA where there is one; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise AutoaugError("--device cuda was asked for, but no CUDA device is available (use auto or cpu)")
    if name != "cpu" and not name.startswith("cuda"):
        raise AutoaugError(f"device must be auto, cpu or cuda[:N], got {name!r}")
    return torch.device(name)


def scaled_lr(lr: float, batch_size: int) -> float:
    """The peak rate for ``batch_size`` from ``lr``, the rate per 512 images: the linear scaling rule.

    A fixed rate tuned for batch 512 diverges at small batches (0.4 at batch 64 left preact_resnet18 at
    49% on digits); scaling it with the batch keeps the step size per image constant (Goyal et al.
    2017, with the warm-up of ``lr_factor``).
    """
    return lr * batch_size / LR_REFERENCE_BATCH


def learning_rate_record(config: TrainConfig, batch_size: int) -> dict[str, float | int | str]:
    """What run.json and evaluation.json record about the learning rate actually used."""
    return {"lr_per_512_images": config.lr, "batch_size": batch_size, "peak_lr": scaled_lr(config.lr, batch_size),
            "warmup_fraction": config.warmup_fraction, "schedule": config.schedule}


def lr_factor(step: int, total: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay or a one-cycle linear decay, to zero at the last step."""
    warmup = max(1, int(config.warmup_fraction * total))
    if step < warmup:
        return (step + 1) / warmup
    frac = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * frac)) if config.schedule == "cosine" else 1.0 - frac


def _optimizer(model: torch.nn.Module, config: TrainConfig, lr: float) -> torch.optim.SGD:
    # weight decay on weights only: decaying norm scales and biases hurts small nets
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=lr, momentum=config.momentum, nesterov=config.nesterov)


class Normalizer(torch.nn.Module):
    """uint8 -> float normalised with the training set's per-channel mean and std."""

    def __init__(self, images: torch.Tensor) -> None:
        super().__init__()
        flat = images.transpose(0, 1).flatten(1).to(torch.float32)
        self.register_buffer("mean", flat.mean(1).view(1, -1, 1, 1))
        self.register_buffer("std", flat.std(1).clamp(min=1.0).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images.to(torch.float32) - self.mean) / self.std


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: ArrayData, normalize: Normalizer, *, batch_size: int,
             device: torch.device, resolution: int | None = None) -> tuple[float, float, float]:
    """Accuracy, mean loss and expected calibration error (15 bins) on ``data``."""
    model.eval()
    probs, labels = [], data.labels.to(device)
    for start in range(0, len(data), batch_size):
        x = normalize(data.images[start:start + batch_size].to(device, non_blocking=True))
        if resolution is not None and resolution != x.shape[-1]:
            x = nnf.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True)
        with _autocast(device):
            probs.append(model(_layout(x, device)).float().softmax(1))
    p = torch.cat(probs)
    confidence, predicted = p.max(1)
    correct = (predicted == labels).float()
    loss = -torch.log(p.gather(1, labels[:, None]).clamp_min(1e-12)).mean()
    return correct.mean().item(), loss.item(), expected_calibration_error(confidence, correct)


def expected_calibration_error(confidence: torch.Tensor, correct: torch.Tensor, bins: int = 15) -> float:
    """Σ_b |B_b|/n · |accuracy(B_b) − confidence(B_b)| over equal-width confidence bins."""
    index = (confidence * bins).long().clamp(max=bins - 1)
    count = torch.bincount(index, minlength=bins).float()
    gap = torch.bincount(index, weights=correct - confidence, minlength=bins)
    return (gap.abs().sum() / count.sum()).item()


def _autocast(device: torch.device) -> torch.autocast:
    # bf16 on GPU (no loss scaling needed); fp32 on CPU, where bf16 autocast is slow and changes results
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def _layout(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else x


class _Run:
    """One training run's state: model, optimiser, augmentation and the device-resident data."""

    def __init__(self, policy: Policy, train_data: ArrayData, config: TrainConfig, device: torch.device) -> None:
        self.policy, self.config, self.device = policy, config, device
        self.seeds = SeedStreams.of(config)
        torch.manual_seed(self.seeds.init)
        self.images = train_data.images.to(device)
        self.labels = train_data.labels.to(device)
        self.num_classes = train_data.num_classes
        self.normalize = Normalizer(self.images).to(device)
        channels, height, _ = train_data.image_shape
        self.model = build_model(config.model, num_classes=self.num_classes, in_channels=channels, image_size=height,
                                 slimmable=policy.width_resolution is not None
                                 ).to(device, memory_format=_memory_format(device))
        self.shuffle = torch.Generator(device).manual_seed(self.seeds.order)
        self.draws = torch.Generator().manual_seed(self.seeds.augment_part(2))
        self.regime = self.make_regime(policy, self.seeds.augment_part(0))
        self.batch_size = config.batch_size or auto_batch_size(len(self.images))
        self.peak_lr = scaled_lr(config.lr, self.batch_size)
        self.optimizer = _optimizer(self.model, config, self.peak_lr)
        self.steps_per_epoch = max(1, len(self.images) // self.batch_size)
        self.total_steps = self.steps_per_epoch * config.epochs
        self.sandwich = SandwichStep(self.model, policy.width_resolution, self.draws) \
            if policy.width_resolution else None

    def make_regime(self, policy: Policy, seed: int) -> Regime:
        """A regime whose policy and mixing streams derive from ``seed``; resolution draws from ``draws``,
        which outlive a policy change."""
        return Regime(policy, num_classes=self.num_classes, seed=seed, normalize=self.normalize,
                      labels=_labels(policy, self.config), draws=self.draws)

    def batch(self, idx: torch.Tensor, progress: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment, normalise, soften targets, mix and maybe downscale one batch, all on the device."""
        batch = self.regime(self.images[idx], self.labels[idx], progress=progress)
        return _layout(batch.images, self.device), batch.targets

    def step(self, step: int, idx: torch.Tensor) -> torch.Tensor:
        for group in self.optimizer.param_groups:
            group["lr"] = self.peak_lr * lr_factor(step, self.total_steps, self.config)
        x, targets = self.batch(idx, step / self.total_steps)
        self.optimizer.zero_grad(set_to_none=True)
        if self.sandwich is not None:
            loss = self.sandwich(x, targets, soft_cross_entropy, lambda: _autocast(self.device))
        else:
            with _autocast(self.device):
                loss = soft_cross_entropy(self.model(x), targets)
            loss.backward()
        self.optimizer.step()
        return loss.detach()

    def epoch(self, epoch: int) -> tuple[float, int]:
        """Train one epoch; returns the mean loss (synchronised once, at the end) and images seen."""
        self.model.train()
        order = torch.randperm(len(self.images), generator=self.shuffle, device=self.device)
        total = torch.zeros((), device=self.device)
        size = self.batch_size
        for k in range(self.steps_per_epoch):
            total += self.step(epoch * self.steps_per_epoch + k, order[k * size:(k + 1) * size])
        return (total / self.steps_per_epoch).item(), self.steps_per_epoch * min(size, len(self.images))


def _memory_format(device: torch.device) -> torch.memory_format:
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


def _labels(policy: Policy, config: TrainConfig) -> Labels | None:
    """The policy's label settings; the trainer's label smoothing applies where the policy sets none."""
    if config.label_smoothing > 0 and (policy.labels is None or policy.labels.label_smoothing == 0):
        return (policy.labels or Labels()).model_copy(update={"label_smoothing": config.label_smoothing})
    return policy.labels


class Trainer:
    """A training run that can be stepped epoch by epoch, checkpointed, and given a new policy mid-run
    (population-based training evolves the policy this way).  ``train`` runs one to the end."""

    def __init__(self, policy: Policy, train_data: ArrayData, eval_data: ArrayData,
                 config: TrainConfig = TrainConfig()) -> None:
        if train_data.image_shape[0] != eval_data.image_shape[0]:
            raise AutoaugError("training and evaluation images differ in channel count")
        self.device = resolve_device(config.device)
        self.eval_data = eval_data
        self.epochs_done = 0
        self._run = _Run(policy, train_data, config, self.device)

    @property
    def policy(self) -> Policy:
        return self._run.policy

    def set_policy(self, policy: Policy) -> None:
        """Augment with ``policy`` from the next epoch on (its width/resolution section must not change)."""
        if policy.width_resolution != self._run.policy.width_resolution:
            raise AutoaugError("the width_resolution section cannot change during a run")
        run = self._run
        run.policy = policy
        run.regime = run.make_regime(policy, run.seeds.augment_part(0, self.epochs_done))

    def run_epoch(self) -> EpochMetrics:
        """Train one epoch and evaluate; raises ``FloatingPointError`` if the loss is not finite."""
        start = time.perf_counter()
        loss, seen = self._run.epoch(self.epochs_done)
        seconds = time.perf_counter() - start
        if not math.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss} in epoch {self.epochs_done + 1}")
        self.epochs_done += 1
        acc, val_loss, ece, grid = _evaluate_run(self._run, self.eval_data)
        return EpochMetrics(self.epochs_done, loss, acc, val_loss, ece, seen / seconds, seconds, grid)

    def state_dict(self) -> dict:
        return {"model": self._run.model.state_dict(), "optimizer": self._run.optimizer.state_dict(),
                "epochs_done": self.epochs_done, "shuffle": self._run.shuffle.get_state(),
                "policy": self._run.policy.to_dict()}

    def load_state_dict(self, state: dict) -> None:
        self._run.model.load_state_dict(state["model"])
        self._run.optimizer.load_state_dict(state["optimizer"])
        self._run.shuffle.set_state(state["shuffle"])
        self.epochs_done = state["epochs_done"]


def _evaluate_run(run: _Run, eval_data: ArrayData) -> tuple[float, float, float, dict[str, float]]:
    kwargs = {"batch_size": run.config.eval_batch_size, "device": run.device}
    if run.sandwich is None:
        return (*evaluate(run.model, eval_data, run.normalize, **kwargs), {})
    grid = evaluate_grid(run.model, run.policy.width_resolution, eval_data.images.shape[-1],
                         lambda resolution: evaluate(run.model, eval_data, run.normalize, resolution=resolution,
                                                     **kwargs),
                         calibration=lambda resolution: calibration_batches(run, resolution))
    full = grid["full"]
    return full[0], full[1], full[2], {key: value[0] for key, value in grid.items() if key != "full"}


def calibration_batches(run: _Run, resolution: int) -> Iterator[torch.Tensor]:
    """``calibration_images`` training images, un-augmented and normalised, at ``resolution``.

    A seeded random pick, the same at every call: files often list images class by class.
    """
    pick = torch.Generator().manual_seed(derive_seed(run.seeds.order, 1))
    images = run.images[torch.randperm(len(run.images), generator=pick)[:run.config.calibration_images].to(run.device)]
    for start in range(0, len(images), run.config.eval_batch_size):
        x = run.normalize(images[start:start + run.config.eval_batch_size])
        if resolution != x.shape[-1]:
            x = nnf.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True)
        yield _layout(x, run.device)


def train(policy: Policy, train_data: ArrayData, eval_data: ArrayData, config: TrainConfig = TrainConfig(), *,
          on_epoch: Callable[[EpochMetrics], bool | None] | None = None) -> TrainResult:
    """Train ``config.model`` on ``train_data`` with ``policy``; evaluate on ``eval_data`` after each epoch.

    ``on_epoch`` may return False to stop early (status ``stopped``).  A NaN loss or running out of
    device memory ends the run with status ``nan`` / ``oom`` and keeps the epochs done so far.
    """
    epochs: list[EpochMetrics] = []
    try:
        trainer = Trainer(policy, train_data, eval_data, config)
        while trainer.epochs_done < config.epochs:
            epochs.append(trainer.run_epoch())
            if on_epoch is not None and on_epoch(epochs[-1]) is False:
                return TrainResult("stopped", f"stopped after epoch {trainer.epochs_done}", tuple(epochs))
    except FloatingPointError as error:
        return TrainResult("nan", str(error), tuple(epochs))
    except torch.OutOfMemoryError as error:
        return TrainResult("oom", f"out of device memory: {str(error).splitlines()[0]}", tuple(epochs))
    return TrainResult("ok", "", tuple(epochs))
