"""A policy as callables: a batched per-image-random transform for any device, and a torchvision one."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Union

import numpy as np
import PIL.Image
import torch
from torch.utils.data import get_worker_info
from torchvision import tv_tensors
from torchvision.transforms import v2

from autoaug.perimage import DRAW_AHEAD, DrawAhead, Image, array_to_pil, pil_to_array
from autoaug.policy import Policy, Schedule
from autoaug.sampling import Plan, apply_plan, sample_plan, visible_fraction

Progress = Union[float, Callable[[], float]]


class SharedProgress:
    """The fraction of training done, set by the training loop and read by DataLoader workers.

    The value lives in shared memory, so workers (persistent ones included) see each ``set`` at once.
    Pass it as ``PolicyTransform(policy, progress=shared)``; calling it returns the current value.
    """

    def __init__(self, value: float = 0.0) -> None:
        self._value = torch.zeros((), dtype=torch.float64).share_memory_()
        self.set(value)

    def set(self, value: float) -> None:
        self._value.fill_(check_progress(value))

    def __call__(self) -> float:
        return float(self._value)


def check_progress(value: float) -> float:
    """``value`` as a float if it is a fraction of training in [0, 1]; a ValueError otherwise."""
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise ValueError(f"progress is the fraction of training done, in [0, 1]; got {value!r}")
    return float(value)


class BatchAugment:
    """Apply a policy's image sections (``pre``, ``augment``, ``post``, and YOCO) to uint8 batches
    ``[B, C, H, W]``: every image draws its own parameters (``autoaug.Regime`` applies the rest).

    Draws come from one ``torch.Generator`` per device, seeded with ``seed``, so the same seed and the
    same batches give the same pixels.  Inside a DataLoader worker the seed is the worker's own plus
    ``seed``, so workers (and epochs) never repeat each other's draws.  ``progress`` (the fraction of training done, in [0, 1])
    selects the phase of a schedule policy.
    """

    def __init__(self, policy: Policy, *, seed: int | None = None) -> None:
        self.policy = policy
        self.seed = seed
        self._generators: dict[tuple[torch.device, int | None], torch.Generator] = {}

    def generator(self, device: torch.device | str) -> torch.Generator:
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        # a DataLoader worker is a forked copy: it must not replay its parent's stream, nor its siblings'
        worker = get_worker_info()
        key = (device, None if worker is None else worker.id)
        if key not in self._generators:
            if worker is not None:  # DataLoader seeds every worker of every epoch differently
                seed = (worker.seed + (self.seed or 0)) % 2**63
            else:
                seed = self.seed if self.seed is not None else int(torch.randint(2**62, ()).item())
            self._generators[key] = torch.Generator(device).manual_seed(seed)
        return self._generators[key]

    def sample(self, n: int, height: int, width: int, *, device: torch.device | str = "cpu",
               progress: float = 0.0) -> Plan:
        return sample_plan(self.policy, n, height, width, self.generator(device), progress=progress)

    def __call__(self, images: torch.Tensor, *, progress: float = 0.0) -> torch.Tensor:
        """Augmented images (``augment`` without the visible fractions, which cost time to compute)."""
        _check_batch(images)
        mixing = self.policy.mixing
        if mixing is not None and mixing.yoco_probability > 0:
            return self._yoco(images, mixing.yoco_probability, progress)[0]
        batch, _, height, width = images.shape
        return apply_plan(images, self.sample(batch, height, width, device=images.device, progress=progress))

    def augment(self, images: torch.Tensor, *, progress: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Augmented images and, per image, the fraction of it left visible (for soft targets)."""
        _check_batch(images)
        mixing = self.policy.mixing
        if mixing is not None and mixing.yoco_probability > 0:
            return self._yoco(images, mixing.yoco_probability, progress)
        return self._whole(images, progress)

    def _whole(self, images: torch.Tensor, progress: float) -> tuple[torch.Tensor, torch.Tensor]:
        batch, _, height, width = images.shape
        plan = self.sample(batch, height, width, device=images.device, progress=progress)
        return apply_plan(images, plan), visible_fraction(plan).to(images.device)

    def _yoco(self, images: torch.Tensor, probability: float,
              progress: float) -> tuple[torch.Tensor, torch.Tensor]:
        """You Only Cut Once: chosen images are cut in two halves, each augmented on its own."""
        gen = self.generator(images.device)
        chosen = (torch.rand(images.shape[0], generator=gen, device=gen.device) < probability).to(images.device)
        dim = 3 if torch.rand((), generator=gen, device=gen.device).item() < 0.5 else 2
        if images.shape[dim] % 2 or not chosen.any():
            return self._whole(images, progress)
        out, visible = images.clone(), torch.ones(images.shape[0], device=images.device)
        if not chosen.all():
            out[~chosen], visible[~chosen] = self._whole(images[~chosen], progress)
        picked = images[chosen]
        halves = torch.cat(picked.chunk(2, dim=dim))
        halves, half_visible = self._whole(halves, progress)
        first, second = halves.chunk(2)
        out[chosen] = torch.cat([first, second], dim=dim)
        visible[chosen] = (half_visible[: len(picked)] + half_visible[len(picked):]) / 2
        return out, visible

    def __getstate__(self) -> dict[str, Any]:  # generators do not pickle; they are re-made from the seed
        return {"policy": self.policy, "seed": self.seed}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["policy"], seed=state["seed"])


def _check_batch(images: torch.Tensor) -> None:
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"expected a uint8 batch [B, C, H, W], got {images.dtype} {tuple(images.shape)}")


class PolicyTransform(v2.Transform):
    """Per-image transform for ordinary DataLoader pipelines; composes with ``torchvision.transforms.v2``.

    Takes PIL images or uint8 ``[C, H, W]`` tensors and returns the same type.  In DataLoader workers
    it draws from the seed DataLoader gives each worker (plus ``seed``), so workers differ.

    ``progress`` says where training stands (the fraction done, in [0, 1]) and picks the phase of a
    schedule policy: a number (set ``transform.progress`` each epoch; DataLoader workers that are not
    persistent copy it at the start of each epoch) or a callable such as ``SharedProgress``, which
    persistent workers read too.

    It applies the ``pre``, ``augment`` and ``post`` sections; ``mixing``, ``labels``, ``resolution`` and
    ``width_resolution`` act on whole batches and targets: ``autoaug.Regime`` applies every section.

    Parameters are drawn ``DRAW_AHEAD`` images at a time (per image size and schedule phase), exactly as
    ``BatchAugment`` draws them for a batch of that many: the n-th image gets the n-th row's parameters.
    """

    _transformed_types = (torch.Tensor, PIL.Image.Image)

    def __init__(self, policy: Policy, *, seed: int | None = None, progress: Progress = 0.0) -> None:
        super().__init__()
        self.policy = policy
        self.progress = progress
        self._batch = BatchAugment(policy, seed=seed)
        self._ahead: DrawAhead | None = None

    def current_progress(self) -> float:
        return check_progress(self.progress() if callable(self.progress) else self.progress)

    def forward(self, *inputs: Any) -> Any:
        # one bare image, the usual call in a Dataset, skips v2's walk over nested inputs (a third of the time)
        if len(inputs) == 1 and (isinstance(inputs[0], PIL.Image.Image) or type(inputs[0]) is torch.Tensor):
            return self.transform(inputs[0], {})
        return super().forward(*inputs)

    def _transform(self, inpt: Any, params: dict[str, Any]) -> Any:  # the name torchvision < 0.21 calls
        return self.transform(inpt, params)

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, PIL.Image.Image):
            return array_to_pil(self._apply(pil_to_array(inpt if inpt.mode in ("RGB", "L") else inpt.convert("RGB"))))
        if isinstance(inpt, tv_tensors.TVTensor) and not isinstance(inpt, tv_tensors.Image):
            raise TypeError(f"PolicyTransform transforms images only, got {type(inpt).__name__}")
        image = inpt.as_subclass(torch.Tensor)
        if image.dtype != torch.uint8 or image.ndim != 3:
            raise TypeError(f"expected a uint8 image [C, H, W], got {image.dtype} {tuple(image.shape)}")
        if image.device.type == "cpu":  # numpy is the fast path on one small image (autoaug.perimage)
            out = torch.from_numpy(np.ascontiguousarray(self._apply(np.ascontiguousarray(image.numpy()))))
        else:
            out = self._apply(image)
        return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.Image) else out

    def _apply(self, image: Image | torch.Tensor) -> Image | torch.Tensor:
        """One ``[C, H, W]`` image, a numpy array or a tensor on any device, through the next row of draws."""
        progress = self.current_progress()
        mixing = self.policy.mixing
        if mixing is not None and mixing.yoco_probability > 0:  # YOCO draws per batch: no rows to hand out
            if isinstance(image, np.ndarray):
                return self._batch(torch.from_numpy(np.array(image))[None], progress=progress)[0].numpy()
            return self._batch(image.unsqueeze(0), progress=progress)[0]
        device = image.device if isinstance(image, torch.Tensor) else torch.device("cpu")
        # a forked DataLoader worker must not hand out the rows its parent drew: the key names the worker
        worker = get_worker_info()
        key = (image.shape[-2], image.shape[-1], device, phase_index(self.policy, progress),
               None if worker is None else worker.id)
        if self._ahead is None or self._ahead.key != key or self._ahead.empty:
            plan = self._batch.sample(DRAW_AHEAD, key[0], key[1], device=device, progress=progress)
            self._ahead = DrawAhead(key, plan)
        return self._ahead.apply_next(image)

    def __getstate__(self) -> dict[str, Any]:  # rows drawn ahead are not shipped: a copy draws its own
        return {**super().__getstate__(), "_ahead": None}

    def extra_repr(self) -> str:
        return f"policy={self.policy.name!r}"


def phase_index(policy: Policy, progress: float) -> int:
    """Which phase of a schedule policy applies at ``progress`` (0 for a policy without phases)."""
    if not isinstance(policy.augment, Schedule):
        return 0
    phases = policy.augment.phases
    return next((k for k, phase in enumerate(phases) if progress < phase.end_fraction), len(phases) - 1)
