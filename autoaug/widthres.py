"""MutualNet-style width/resolution sandwich training and its width x resolution evaluation."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager

import torch
import torch.nn.functional as nnf
from torch import nn

from autoaug.errors import AutoaugError
from autoaug.policy import WidthResolution

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def check_slimmable(model: torch.nn.Module, config: WidthResolution) -> None:
    allowed = getattr(model, "width_multipliers", None)
    if allowed is None or not hasattr(model, "set_width"):
        raise AutoaugError(f"width_resolution training needs a slimmable model built with slimmable=True; "
                           f"{type(model).__name__} is not (slimmable models: see `autoaug list models`)")
    odd = sorted(set(config.widths) - set(allowed))
    if odd:
        raise AutoaugError(f"width_resolution.widths {odd} are not among the model's widths {list(allowed)}")


class SandwichStep:
    """One sandwich step: the largest width at full resolution learns from the targets; the smallest and
    ``num_random_subnets`` random widths, each at a random resolution, distil from the largest's output."""

    def __init__(self, model: torch.nn.Module, config: WidthResolution, gen: torch.Generator) -> None:
        check_slimmable(model, config)
        self.model, self.config, self.gen = model, config, gen
        self.widths = sorted(set(config.widths))

    def _pick(self, options: list) -> object:
        return options[int(torch.randint(len(options), (), generator=self.gen))]

    def __call__(self, x: torch.Tensor, targets: torch.Tensor, loss_fn: LossFn,
                 autocast: Callable[[], AbstractContextManager]) -> torch.Tensor:
        largest, smallest = self.widths[-1], self.widths[0]
        self.model.set_width(largest)
        with autocast():
            logits = self.model(x)
            loss = loss_fn(logits, targets)
        loss.backward()
        teacher = logits.detach().float().softmax(1)
        middle = self.widths[1:-1] or self.widths
        subnets = [smallest] + [self._pick(middle) for _ in range(self.config.num_random_subnets)]
        for width in subnets if len(self.widths) > 1 else []:
            self.model.set_width(width)
            size = self._pick(self.config.resolutions)
            small = nnf.interpolate(x, size=(size, size), mode="bilinear", antialias=True) \
                if size != x.shape[-1] else x
            with autocast():
                distil = loss_fn(self.model(small), teacher)
            distil.backward()
        self.model.set_width(largest)
        return loss.detach()


def recalibrate_batch_norm(model: torch.nn.Module, batches: Iterable[torch.Tensor]) -> None:
    """Replace the running statistics of every batch norm with exact averages over ``batches``.

    A sub-network's statistics are a moving average over training steps at random resolutions, so
    they fit no single (width, resolution) configuration; MutualNet and US-Nets recompute them per
    configuration on training images before scoring it.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [norm.momentum for norm in norms]
    was_training = model.training
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # None: a cumulative average, every batch weighs alike
    model.train()
    with torch.no_grad():
        for x in batches:
            model(x)
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.train(was_training)


def evaluate_grid(model: torch.nn.Module, config: WidthResolution, full_resolution: int,
                  evaluate: Callable[[int | None], tuple[float, float, float]],
                  calibration: Callable[[int], Iterable[torch.Tensor]] | None = None
                  ) -> dict[str, tuple[float, float, float]]:
    """``evaluate`` at every width x resolution (keys ``w0.5_r24``) and at full width/resolution (``full``).

    Given ``calibration`` (the training batches to use at a resolution), each grid configuration is
    scored after recalibrating its batch-norm statistics; ``full`` keeps the statistics training left,
    like a plain run's score, and the model leaves with the buffers it came with.
    """
    saved = [buffer.clone() for buffer in model.buffers()]
    results = {}
    try:
        for width in sorted(set(config.widths)):
            model.set_width(width)
            for size in sorted(set(config.resolutions)):
                if calibration is not None:
                    recalibrate_batch_norm(model, calibration(size))
                results[f"w{width:g}_r{size}"] = evaluate(size)
    finally:
        for buffer, value in zip(model.buffers(), saved):
            buffer.copy_(value)
        model.set_width(max(config.widths))
    results["full"] = evaluate(full_resolution)
    return results
