"""Known policies as points of a space: the search starts from what is known, not at random.

``encode(space, policy)`` finds a point whose decoded policy does what ``policy`` does, or None when
the space cannot express it.  "Does what it does" is :func:`canonical` equality: sections that are
switched off (mixing at probability 0, an op at probability 0, TrivialAugment over Identity alone...)
compare equal to sections that are absent, so crop + flip is a point of a space whose TrivialAugment
may keep only Identity and whose Cutout may have probability 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoaug.errors import AutoaugError
from autoaug.policy import Policy, load_policy
from autoaug.search.space import Domain, SearchSpace

_MISSING = object()  # the target policy has nothing here: a neutral value (probability 0) will do
_FAMILIES = ("svhn", "imagenet", "cifar10")  # AutoAugment's published policies, by dataset family
_BASE_SEEDS = ("cropflip", "trivialaugment-wide", "randaugment")
_TOLERANCE = 1e-6  # a point told to Nevergrad comes back through its own transforms


@dataclass(frozen=True)
class Seed:
    """A known policy, its name, and the point of the space that expresses it."""

    name: str
    policy: Policy
    point: dict[str, Any]


def autoaugment_family(dataset: str) -> str:
    """``cifar10``, ``svhn`` or ``imagenet``: whose AutoAugment policy fits ``dataset`` (by its name).

    Small images of natural objects (CIFAR, digits, the usual .npz copies) get the CIFAR-10 policy;
    names saying svhn or imagenet get theirs.
    """
    name = Path(dataset).name.lower()
    return next((family for family in _FAMILIES[:2] if family in name), "cifar10")


def seed_names(dataset: str) -> tuple[str, ...]:
    """The shipped policies a search tries first, best-known first."""
    return (*_BASE_SEEDS, f"autoaugment-{autoaugment_family(dataset)}")


def _ops(calls: list[dict]) -> list[dict]:
    return [call for call in calls if call["probability"] > 0]


def canonical(policy: Policy) -> dict[str, Any]:
    """What the policy does, with switched-off parts removed (names, text and provenance dropped)."""
    data = policy.model_dump(mode="json", exclude={"schema_version", "name", "description", "provenance"})
    data["pre"], data["post"] = _ops(data["pre"]), _ops(data["post"])
    augment = data["augment"]
    if augment["kind"] in ("trivialaugment", "randaugment") and augment["ops"] == ["Identity"]:
        data["augment"] = {"kind": "none"}
    mixing = policy.mixing
    if mixing is not None and not (mixing.probability > 0 and (mixing.mixup_alpha > 0 or mixing.cutmix_alpha > 0)) \
            and mixing.yoco_probability == 0:
        data["mixing"] = None
    labels = policy.labels
    if labels is not None and labels.label_smoothing == 0 and labels.soft_target_strength == 0:
        data["labels"] = None
    if policy.resolution is not None:
        phases = [phase for phase in data["resolution"]["phases"] if phase["probability"] > 0]
        data["resolution"] = {"phases": phases} if phases else None
    return data


def _neutral(name: str, domain: Domain) -> Any:
    """A value for a parameter the target says nothing about: off where it is a probability."""
    if domain.kind == "choice":
        return 0.0 if name.endswith("probability") and 0.0 in domain.choices else domain.choices[0]
    if name.endswith("probability") and domain.low <= 0.0:
        return 0.0
    return int(domain.low) if domain.kind == "int" else domain.low


def _fits(domain: Domain, value: Any) -> bool:
    if domain.kind == "choice":
        return any(value == choice and type(value) is type(choice) or
                   (_number(value) and _number(choice) and value == choice) for choice in domain.choices)
    if not _number(value):
        return False
    if domain.kind == "int" and not float(value).is_integer():
        return False
    return domain.low <= value <= domain.high


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Matcher:
    """Walks a space's expanded template beside a target policy dict, collecting parameter values."""

    def __init__(self, space: SearchSpace) -> None:
        self.domains, self.point = space.domains, {}

    def set(self, name: str, value: Any) -> bool:
        domain = self.domains[name]
        if value is _MISSING:
            self.point.setdefault(name, _neutral(name, domain))
            return True
        if not _fits(domain, value) or self.point.get(name, value) != value:
            return False
        self.point[name] = int(value) if domain.kind == "int" else value
        return True

    def match(self, node: Any, target: Any) -> bool:
        if isinstance(node, list):
            return self._list(node, target)
        if not isinstance(node, dict):
            return target is _MISSING or target == node
        if "$param" in node:
            return self.set(node["$param"], target)
        if "$subset" in node:
            return self._subset(node["$subset"], target)
        if "$oneof" in node:
            return self._oneof(node, target)
        if target is not _MISSING and not isinstance(target, dict):
            return False
        return all(self.match(value, _MISSING if target is _MISSING else target.get(key, _MISSING))
                   for key, value in node.items())

    def _subset(self, flags: list[tuple[str, str]], target: Any) -> bool:
        kept = ["Identity"] if target is _MISSING else target
        if not isinstance(kept, list):
            return False
        names = {name for _, name in flags}
        # [Identity] is also what a subset with every flag off decodes to
        wanted = set() if kept == ["Identity"] and "Identity" not in names else set(kept)
        return wanted <= names and all(self.set(key, name in wanted) for key, name in flags)

    def _oneof(self, node: dict, target: Any) -> bool:
        for option, sub in node["options"].items():
            saved = dict(self.point)
            if self.set(node["$oneof"], option) and self.match(sub, target):
                return True
            self.point = saved
        return False

    def _list(self, node: list, target: Any) -> bool:
        if target is _MISSING:
            return all(self.match(item, _MISSING) for item in node)
        if not isinstance(target, list):
            return False
        if all(isinstance(item, dict) and isinstance(item.get("op"), str) for item in node):
            return self._ops_by_name(node, target)
        if len(target) > len(node):
            return False
        return all(self.match(item, target[i] if i < len(target) else _MISSING) for i, item in enumerate(node))

    def _ops_by_name(self, node: list, target: list) -> bool:
        """Op lists with fixed op names (pre, post) match by name: an absent op is one at probability 0."""
        left = list(target)
        for item in node:
            found = next((call for call in left if isinstance(call, dict) and call.get("op") == item["op"]), _MISSING)
            if found is not _MISSING:
                left.remove(found)
            if not self.match(item, found):
                return False
        return not left


def _forms(policy: Policy) -> list[dict[str, Any]]:
    """The policy's dict, and where it augments nothing, the same as TrivialAugment/RandAugment over Identity."""
    data = policy.model_dump(mode="json", exclude_none=True)
    if data["augment"]["kind"] != "none":
        return [data]
    return [data, *({**data, "augment": {"kind": kind, "ops": ["Identity"]}} for kind in ("trivialaugment",
                                                                                           "randaugment"))]


def encode(space: SearchSpace, policy: Policy) -> dict[str, Any] | None:
    """A point of ``space`` whose policy does what ``policy`` does, or None where the space cannot say it."""
    want = canonical(policy)
    for form in _forms(policy):
        matcher = _Matcher(space)
        if not matcher.match(space.template, form):
            continue
        point = {key: matcher.point.get(key, _neutral(key, domain)) for key, domain in space.domains.items()}
        try:
            if canonical(space.decode(point)) == want:
                return point
        except AutoaugError:
            continue
    return None


def seeds_for(space: SearchSpace, dataset: str) -> list[Seed]:
    """The shipped policies ``space`` can express (see :func:`seed_names`), as points."""
    seeds = []
    for name in seed_names(dataset):
        policy = load_policy(name)
        point = encode(space, policy)
        if point is not None:
            seeds.append(Seed(name, policy, point))
    return seeds


def same_point(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal points, numbers within the round-off an optimizer's transforms add."""
    if a.keys() != b.keys():
        return False
    return all(math.isclose(a[k], b[k], rel_tol=_TOLERANCE, abs_tol=_TOLERANCE)
               if _number(a[k]) and _number(b[k]) else a[k] == b[k] for k in a)


def seed_of(config: dict[str, Any], seeds: list[Seed]) -> str | None:
    """The name of the seed a trial's config is, or None for a point the optimizer proposed."""
    return next((seed.name for seed in seeds if same_point(seed.point, config)), None)
