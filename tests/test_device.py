"""On the device named by --device (e.g. `pytest tests/test_device.py --device cuda`): the same pixels as the CPU."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from autoaug.augment import BatchAugment
from autoaug.datasets import load_dataset
from autoaug.policy import load_policy
from autoaug.resources import policies_dir
from autoaug.sampling import Plan, apply_plan, visible_fraction

SHIPPED = sorted(policies_dir().glob("*.json"))


def _moved(plan: Plan, device: torch.device) -> Plan:
    slots = tuple(dataclasses.replace(slot, **{f.name: getattr(slot, f.name).to(device)
                                               for f in dataclasses.fields(slot)}) for slot in plan.slots)
    return dataclasses.replace(plan, slots=slots, choice=None if plan.choice is None else plan.choice.to(device))


@pytest.fixture(scope="module")
def photos(cifar10_mini: Path) -> torch.Tensor:
    return load_dataset(str(cifar10_mini)).train.images


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_a_plan_applied_on_the_device_gives_the_cpu_pixels(path: Path, photos: torch.Tensor,
                                                          device: torch.device) -> None:
    if device.type == "cpu":
        pytest.skip("compares a device with the CPU: run with --device cuda")
    plan = BatchAugment(load_policy(path), seed=0).sample(len(photos), 32, 32, device="cpu")
    on_cpu = apply_plan(photos, plan)
    on_device = apply_plan(photos.to(device), _moved(plan, device)).cpu()
    assert torch.equal(on_device, on_cpu)
    assert torch.equal(visible_fraction(_moved(plan, device)).cpu(), visible_fraction(plan))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_draws_on_the_device_follow_the_policy(path: Path, photos: torch.Tensor, device: torch.device) -> None:
    """Draws made on the device (its own generator): uint8 out, same shape, images changed where the policy
    changes them (every shipped policy crops or flips, so most images move)."""
    out = BatchAugment(load_policy(path), seed=0)(photos.to(device))
    assert out.device.type == device.type and out.dtype == torch.uint8 and out.shape == photos.shape
    changed = (out.cpu() != photos).flatten(1).any(1).float().mean().item()
    assert changed > 0.5
