"""Exporting a policy to where people train: a torchvision module, or timm's train.py settings."""
from __future__ import annotations

from dataclasses import dataclass

from autoaug.errors import UnknownNameError
from autoaug.policy import Policy

TARGETS = ("torchvision", "timm")


@dataclass(frozen=True)
class Exported:
    """What an export produced: the text to write or show, a suggested file name, and its caveats."""

    target: str
    text: str
    filename: str
    notes: tuple[str, ...]
    summary: str


def export_policy(policy: Policy, *, to: str, approximate: bool = False) -> Exported:
    """Export ``policy`` for ``to`` (one of ``TARGETS``); timm refuses inexact parts unless ``approximate``."""
    if to == "torchvision":
        from autoaug.export.torchvision import differences, export_torchvision, module_name
        name = module_name(policy)
        return Exported(to, export_torchvision(policy, name=name), f"{name}.py", tuple(differences(policy)),
                        f"module {name}: build_transform(), build_batch_transform(num_classes), "
                        "build_low_resolution(), build_loss()")
    if to == "timm":
        from autoaug.export.timm import export_timm
        result = export_timm(policy, approximate=approximate)
        return Exported(to, result.yaml(), f"{policy.name}-timm.yaml", result.approximations, result.flags())
    raise UnknownNameError("export target", to, TARGETS)
