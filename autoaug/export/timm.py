"""Export a policy as timm ``train.py`` settings: flags, and the same as a ``-c`` YAML fragment.

Each part of a policy is said exactly in timm's grammar, or only approximately, with a note saying how.
Without ``approximate`` any approximation is an error that names every part timm cannot say exactly.
The grammar is timm's (``timm/data/auto_augment.py``, ``train.py``): ``rand-m<int>-n<int>-p<float>-inc1``
with ``mstd101`` for magnitudes uniform in [0, M]; ``--smoothing`` defaults to 0.1 and ``--hflip`` to 0.5
there, so both are always written.  A part that can never act (probability 0) is absent, so it costs no
approximation.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from autoaug.errors import AutoaugError
from autoaug.policy import (RANDAUGMENT_OPS, NoAugment, OpCall, Policy, RandAugment, Schedule, SubPolicies,
                            TrivialAugment)

# timm/data/mixup.py, Mixup._mix_elem: partner j = batch_size - i - 1, and mixup_target mixes with target.flip(0)
_TIMM_PARTNER = ("Mixup/CutMix partner: timm's --mixup-mode elem (per-image λ and mix-or-not, as autoaug) mixes "
                 "image i with image B-1-i of its batch (the batch reversed: pairs fixed by position, each the other's "
                 "partner, and an even batch size required) where autoaug pairs each image with a random permutation "
                 "of the batch")
_TIMM_RAND_OPS = "timm's rand op set (Invert and SolarizeAdd where autoaug has Identity; PosterizeIncreasing keeps " \
                 "4 down to 0 bits where autoaug keeps 8 down to 4; translations to 0.45 of the side, not 0.453)"


class TimmInexpressible(AutoaugError):
    """The policy has parts timm's train.py cannot say exactly, and no approximation was asked for."""


@dataclass
class _Draft:
    args: dict[str, Any] = field(default_factory=dict)
    approximations: list[str] = field(default_factory=list)

    def approximate(self, note: str) -> None:
        self.approximations.append(note)


@dataclass(frozen=True)
class TimmExport:
    """train.py arguments by their config names (``mixup_prob``), and the approximations made."""

    args: dict[str, Any]
    approximations: tuple[str, ...]

    def flags(self) -> str:
        parts = []
        for key, value in self.args.items():
            shown = " ".join(_number(v) for v in value) if isinstance(value, (list, tuple)) else _number(value)
            parts.append(f"--{key.replace('_', '-')} {shown}")
        return " ".join(parts)

    def yaml(self) -> str:
        notes = "".join(f"#   - {note}\n" for note in self.approximations)
        head = "# approximations:\n" + notes if notes else "# exact: every part of the policy\n"
        return head + yaml.safe_dump(self.args, sort_keys=False)


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _level(magnitude: float, draft: _Draft, what: str) -> int:
    """timm's integer magnitude M of 10 for autoaug's magnitude in [0, 1]."""
    level = round(10 * magnitude)
    if abs(10 * magnitude - level) > 1e-9:
        draft.approximate(f"{what}: magnitude {magnitude:g} rounded to timm's integer M{level} of 10")
    return level


def _op_set(ops: list[str], ranges: str, draft: _Draft, what: str) -> None:
    draft.approximate(f"{what}: {_TIMM_RAND_OPS}")
    if set(ops) != set(RANDAUGMENT_OPS):
        draft.approximate(f"{what}: its op subset ({', '.join(ops)}) cannot be chosen from the command line")
    if ranges == "wide":
        draft.approximate(f"{what}: timm has no wide ranges; M10 is the standard range's strongest")


def _randaugment(section: RandAugment, draft: _Draft) -> str:
    _op_set(section.ops, section.ranges, draft, "RandAugment")
    return f"rand-m{_level(section.magnitude, draft, 'RandAugment')}-n{section.num_ops}-p1.0-inc1"


def _trivial(section: TrivialAugment, draft: _Draft) -> str:
    _op_set(section.ops, section.ranges, draft, "TrivialAugment")
    draft.approximate(f"TrivialAugment: magnitudes uniform in [0, M] (mstd101), not {section.magnitude_bins} "
                      f"bins from {section.magnitude_min:g} to {section.magnitude_max:g}")
    return f"rand-m{_level(section.magnitude_max, draft, 'TrivialAugment')}-n1-mstd101-p1.0-inc1"


def _subpolicies(section: SubPolicies, draft: _Draft) -> str:
    calls = [c for sub in section.subpolicies for c in sub]
    magnitude = sum(c.magnitude for c in calls) / len(calls)
    probability = sum(c.probability for c in calls) / len(calls)
    layers = max(len(sub) for sub in section.subpolicies)
    draft.approximate(f"custom sub-policy list ({len(section.subpolicies)} sub-policies) replaced by RandAugment "
                      f"at their mean magnitude {magnitude:.2f} and mean probability {probability:.2f}, {layers} layers")
    _op_set(list(RANDAUGMENT_OPS), section.ranges, draft, "sub-policies")
    return f"rand-m{round(10 * magnitude)}-n{layers}-p{probability:.2f}-inc1"


def _augment(policy: Policy, draft: _Draft) -> str | None:
    section = policy.augment
    if isinstance(section, Schedule):
        longest = max(section.phases, key=lambda p: p.end_fraction - p.start_fraction)
        draft.approximate(f"schedule of {len(section.phases)} phases replaced by its longest phase "
                          f"({longest.start_fraction:g} to {longest.end_fraction:g} of training) for all of training")
        section = longest.augment
    if isinstance(section, NoAugment):
        return None
    if isinstance(section, SubPolicies):
        return _subpolicies(section, draft)
    return _randaugment(section, draft) if isinstance(section, RandAugment) else _trivial(section, draft)


def _crop(call: OpCall, draft: _Draft) -> None:
    pad = 0.25 * call.magnitude
    smallest = round((1 - pad) ** 2, 2)
    draft.args.update(scale=[smallest, 1.0], ratio=[1.0, 1.0])
    draft.approximate(f"RandomCrop (zero padding up to {pad:.3g} of the side, crop at full size) as timm's "
                      f"RandomResizedCrop --scale {smallest:g} 1 --ratio 1 1: crops inside the image and resizes")


def _erasing(call: OpCall, draft: _Draft) -> None:
    if "reprob" in draft.args:
        draft.approximate(f"{call.op} dropped: timm's train.py has one random-erasing setting")
        return
    draft.args.update(reprob=call.probability, remode="const", recount=1)
    shape = f"a square of side {call.magnitude:g}" if call.op == "Cutout" else \
        f"a rectangle of 2% to {0.02 + 0.38 * call.magnitude:.0%} of the area"
    draft.approximate(f"{call.op} ({shape}, black) as timm's random erasing: 2% to 33% of the area, aspect 0.3 "
                      "to 3.3, filled with 0 after normalisation (the mean colour)")


def _fixed_ops(policy: Policy, draft: _Draft) -> None:
    draft.args.update(scale=[1.0, 1.0], ratio=[1.0, 1.0], hflip=0.0)  # no crop, no flip: say so, timm's defaults differ
    for call in [c for c in (*policy.pre, *policy.post) if c.probability > 0]:  # probability 0: never acts
        if call.op == "HorizontalFlip":
            draft.args["hflip"] = call.probability
        elif call.op == "RandomCrop":
            _crop(call, draft)
        elif call.op in ("Cutout", "RandomErasing"):
            _erasing(call, draft)
        else:
            draft.approximate(f"{call.op} (probability {call.probability:g}) dropped: train.py has no flag for it")


def _mixing_and_labels(policy: Policy, draft: _Draft) -> None:
    mixing, labels = policy.mixing, policy.labels
    active = mixing is not None and mixing.probability > 0 and (mixing.mixup_alpha > 0 or mixing.cutmix_alpha > 0)
    if active:
        draft.args.update(mixup=mixing.mixup_alpha, cutmix=mixing.cutmix_alpha, mixup_prob=mixing.probability,
                          mixup_switch_prob=mixing.cutmix_probability, mixup_mode="elem")
        draft.approximate(_TIMM_PARTNER)
    else:
        draft.args.update(mixup=0.0, cutmix=0.0)
    if mixing is not None and mixing.yoco_probability > 0:
        draft.approximate(f"YOCO (probability {mixing.yoco_probability:g}) dropped: timm has no cut-then-augment")
    draft.args["smoothing"] = labels.label_smoothing if labels else 0.0
    if labels is not None and labels.soft_target_strength > 0:
        draft.approximate(f"soft targets (strength {labels.soft_target_strength:g}) dropped: timm's targets do not "
                          "depend on how much of the image an op hid")


def _training_loop(policy: Policy, draft: _Draft) -> None:
    acting = [p for p in policy.resolution.phases if p.probability > 0] if policy.resolution is not None else []
    if acting:
        draft.approximate(f"low-resolution phases dropped ({len(acting)} with probability > 0): train.py trains "
                          "at one --input-size")
    if policy.width_resolution is not None:
        draft.approximate("width_resolution dropped: MutualNet sandwich training is not in timm's train.py")


def export_timm(policy: Policy, *, approximate: bool = False) -> TimmExport:
    """timm train.py settings for ``policy``; raises TimmInexpressible unless exact or ``approximate``."""
    draft = _Draft()
    aa = _augment(policy, draft)
    if aa is not None:
        draft.args["aa"] = aa
    _fixed_ops(policy, draft)
    draft.args["color_jitter"] = 0.0  # train.py jitters colour by default when no --aa is given
    _mixing_and_labels(policy, draft)
    _training_loop(policy, draft)
    if draft.approximations and not approximate:
        raise TimmInexpressible(f"policy {policy.name!r} cannot be said exactly in timm's train.py: "
                                f"{'; '.join(draft.approximations)}. Pass --approximate to export it with these "
                                "approximations listed")
    return TimmExport(dict(draft.args), tuple(draft.approximations))
