"""Export a policy as a self-contained Python module building a torchvision.transforms.v2 pipeline.

The module is ``torchvision_runtime.py`` (torch and torchvision only) with the op ranges filled in and
``build_transform()`` / ``build_batch_transform()`` / ``build_low_resolution()`` / ``build_loss()``
written out as plain code.  Where a section is exactly one of torchvision's own transforms
(RandAugment with its op set on a bin grid, TrivialAugmentWide) that transform is used.
"""
from __future__ import annotations

import re
from pathlib import Path

from autoaug.ops import OPS
from autoaug.policy import (RANDAUGMENT_OPS, Mixing, NoAugment, OpCall, Policy, RandAugment, Schedule, SubPolicies,
                            TrivialAugment)

RUNTIME = Path(__file__).with_name("torchvision_runtime.py")
_RANGES_LINE = "RANGES: dict[str, dict[str, tuple[str, float, float, bool]]] = {}"
_INDENT = " " * 8
Phase = NoAugment | SubPolicies | RandAugment | TrivialAugment


def module_name(policy: Policy) -> str:
    """A valid Python module name for the policy's export, e.g. ``randaugment_torchvision``."""
    stem = re.sub(r"\W", "_", policy.name).strip("_") or "policy"
    return f"{'p_' if stem[0].isdigit() else ''}{stem}_torchvision"


def magnitude_bin(magnitude: float, *, preferred: int = 31, most: int = 1001) -> tuple[int, int] | None:
    """(bins, bin) with ``bin / (bins - 1) == magnitude``, torchvision's integer magnitude; None if off-grid."""
    for bins in (preferred, *range(2, most + 1)):
        level = magnitude * (bins - 1)
        if abs(level - round(level)) < 1e-9:
            return bins, round(level)
    return None


def _ranges_literal() -> str:
    lines = [_RANGES_LINE[:-2] + "{"]
    for range_set in ("standard", "wide"):
        lines.append(f"    {range_set!r}: {{")
        for op, spec in OPS.items():
            r = spec.native_range(range_set)
            lines.append(f"        {op!r}: ({r.unit!r}, {r.low!r}, {r.high!r}, {spec.signed!r}),")
        lines.append("    },")
    return "\n".join(lines + ["}"])


def _torchvision_ops(ops: list[str]) -> bool:
    return len(ops) == len(RANDAUGMENT_OPS) and set(ops) == set(RANDAUGMENT_OPS)


def _randaugment(section: RandAugment) -> str:
    grid = magnitude_bin(section.magnitude)
    if section.ranges == "standard" and _torchvision_ops(section.ops) and grid is not None:
        return (f"v2.RandAugment(num_ops={section.num_ops}, magnitude={grid[1]}, num_magnitude_bins={grid[0]}, "
                "interpolation=NEAREST)")
    return (f"RandomOps({section.ops!r}, num_ops={section.num_ops}, magnitude={section.magnitude!r}, "
            f"ranges={section.ranges!r})")


def _trivial(section: TrivialAugment) -> str:
    if (section.ranges == "wide" and _torchvision_ops(section.ops) and section.magnitude_min == 0.0
            and section.magnitude_max == 1.0):
        return f"v2.TrivialAugmentWide(num_magnitude_bins={section.magnitude_bins}, interpolation=NEAREST)"
    return (f"TrivialOps({section.ops!r}, magnitude_min={section.magnitude_min!r}, "
            f"magnitude_max={section.magnitude_max!r}, bins={section.magnitude_bins}, ranges={section.ranges!r})")


def _subpolicies(section: SubPolicies, indent: str) -> str:
    calls = [", ".join(repr((c.op, c.probability, c.magnitude)) for c in sub) for sub in section.subpolicies]
    rows = [f"{indent}    [{sub}]," for sub in calls]
    return "SubPolicies([\n" + "\n".join(rows) + f"\n{indent}], ranges={section.ranges!r})"


def _phase(section: Phase, indent: str) -> str | None:
    if isinstance(section, NoAugment):
        return None
    if isinstance(section, SubPolicies):
        return _subpolicies(section, indent)
    return _randaugment(section) if isinstance(section, RandAugment) else _trivial(section)


def _augment(policy: Policy, indent: str) -> str | None:
    if not isinstance(policy.augment, Schedule):
        return _phase(policy.augment, indent)
    phases = [(p.start_fraction, p.end_fraction, _phase(p.augment, indent + "    ") or "v2.Identity()")
              for p in policy.augment.phases]
    rows = [f"{indent}    ({start!r}, {end!r}, {code})," for start, end, code in phases]
    return "Schedule([\n" + "\n".join(rows) + f"\n{indent}])"


def _op(call: OpCall) -> str:
    return f"Op({call.op!r}, probability={call.probability!r}, magnitude={call.magnitude!r})"


def _build_transform(policy: Policy) -> str:
    parts = [_op(c) for c in policy.pre] + [p for p in [_augment(policy, _INDENT)] if p] + [_op(c) for c in policy.post]
    body = "v2.Compose([\n" + "".join(f"{_INDENT}{part},\n" for part in parts) + "    ])"
    yoco = policy.mixing.yoco_probability if policy.mixing else 0.0
    if yoco > 0:
        body = f"YOCO({body}, probability={yoco!r})"
    return (
        "def build_transform(progress: float = 0.0) -> v2.Transform:\n"
        "    \"\"\"The per-image pipeline: PIL images or uint8 [C, H, W] tensors in, the same type out.\"\"\"\n"
        f"    transform = {body}\n"
        "    set_progress(transform, progress)\n"
        "    return transform\n")


def _mixers(mixing: Mixing) -> list[tuple[str, float]]:
    """(transform code, share of mixed batches), as autoaug picks CutMix or Mixup for a mixed image."""
    mixers = []
    if mixing.cutmix_alpha > 0:
        share = mixing.cutmix_probability if mixing.mixup_alpha > 0 else 1.0
        mixers.append((f"v2.CutMix(alpha={mixing.cutmix_alpha!r}, num_classes=num_classes)", share))
    if mixing.mixup_alpha > 0:
        share = 1.0 - mixing.cutmix_probability if mixing.cutmix_alpha > 0 else 1.0
        mixers.append((f"v2.MixUp(alpha={mixing.mixup_alpha!r}, num_classes=num_classes)", share))
    return [(code, share) for code, share in mixers if share > 0]


def _build_batch(policy: Policy) -> str:
    head = ("def build_batch_transform(num_classes: int) -> v2.Transform | None:\n"
            "    \"\"\"MixUp/CutMix on (images, labels) batches after the DataLoader; None without mixing.\n\n"
            "    Drawn once per batch (see the module docstring); labels come back one-hot when a batch is mixed.\n"
            "    \"\"\"\n")
    mixing = policy.mixing
    mixers = _mixers(mixing) if mixing is not None and mixing.probability > 0 else []
    if not mixers:
        return head + "    return None\n"
    choice = mixers[0][0] if len(mixers) == 1 else \
        f"v2.RandomChoice([{mixers[0][0]}, {mixers[1][0]}], p=[{mixers[0][1]!r}, {mixers[1][1]!r}])"
    return head + f"    return v2.RandomApply([{choice}], p={mixing.probability!r})\n"


def _build_low_resolution(policy: Policy) -> str:
    phases = [(p.start_fraction, p.end_fraction, p.probability, p.resolution)
              for p in (policy.resolution.phases if policy.resolution else [])]
    body = f"LowResolution({phases!r}, progress)" if phases else "None"
    return ("def build_low_resolution(progress: float = 0.0) -> LowResolution | None:\n"
            "    \"\"\"Per batch of normalised float images, before the model; None without resolution phases.\"\"\"\n"
            f"    return {body}\n")


def _build_loss(policy: Policy) -> str:
    smoothing = policy.labels.label_smoothing if policy.labels else 0.0
    return ("def build_loss() -> torch.nn.Module:\n"
            "    \"\"\"Cross-entropy with the policy's label smoothing; class indices or mixed one-hot targets.\"\"\"\n"
            f"    return torch.nn.CrossEntropyLoss(label_smoothing={smoothing!r})\n")


def differences(policy: Policy) -> list[str]:
    """What the torchvision pipeline leaves out or does per batch where autoaug does it per image."""
    notes = []
    if policy.mixing is not None and policy.mixing.probability > 0 and (policy.mixing.mixup_alpha > 0 or
                                                                        policy.mixing.cutmix_alpha > 0):
        notes.append("mixing: v2.MixUp/v2.CutMix draw one lambda, one partner order and one choice per batch, "
                     "and mix a whole batch or none of it; autoaug draws them per image")
    if policy.labels is not None and policy.labels.soft_target_strength > 0:
        notes.append(f"soft targets (strength {policy.labels.soft_target_strength:g}): torchvision transforms "
                     "cannot lower a target's confidence by how much of the image an op hid")
    if policy.width_resolution is not None:
        notes.append("width_resolution: MutualNet sandwich training belongs to the training loop, not a transform")
    if policy.mixing is not None and policy.mixing.yoco_probability > 0:
        notes.append("YOCO: the cut direction is drawn per image here; autoaug draws it per batch")
    return notes


def _docstring(policy: Policy, name: str, notes: list[str]) -> str:
    from autoaug import __version__
    caveats = "".join(f"- {note}\n" for note in notes) or "- none\n"
    return f'''"""Augmentation policy {policy.name!r} as a torchvision.transforms.v2 pipeline.

Exported by autoaug {__version__}; needs torch and torchvision only.  {policy.description}

    import torch
    from torchvision.transforms import v2
    import {name}

    train_transform = v2.Compose([{name}.build_transform(), v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
    mix = {name}.build_batch_transform(num_classes=10)      # None when the policy does not mix
    low_resolution = {name}.build_low_resolution()          # None without resolution phases
    loss_fn = {name}.build_loss()
    for images, labels in loader:                            # DataLoader(num_workers>0) is fine
        if mix is not None:
            images, labels = mix(images, labels)
        ...

Schedules and resolution phases follow the fraction of training done: call
``set_progress(train_transform, epoch / epochs)`` (and on ``low_resolution``) at each epoch; with
DataLoader workers keep ``persistent_workers=False`` so that each epoch's new workers see it.

Where this differs from autoaug's own training loop:
{caveats}"""
'''


def export_torchvision(policy: Policy, *, name: str | None = None) -> str:
    """The text of a Python module reproducing ``policy`` with torchvision.transforms.v2."""
    name = name or module_name(policy)
    runtime = RUNTIME.read_text()
    body = runtime[runtime.index("from __future__"):].replace(_RANGES_LINE, _ranges_literal(), 1)
    generated = "\n\n".join([f"POLICY_NAME = {policy.name!r}\nDIFFERENCES = {tuple(differences(policy))!r}\n",
                             _build_transform(policy), _build_batch(policy), _build_low_resolution(policy),
                             _build_loss(policy)])
    return _docstring(policy, name, differences(policy)) + body + "\n\n" + generated
