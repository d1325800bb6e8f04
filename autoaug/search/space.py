"""Search spaces as data: a policy template whose values may be search domains.

A space file (YAML or JSON) holds ``name``, ``description`` and ``template``: a policy dict in which
any value may instead be a domain, a mapping with a ``search`` key:

- ``{search: uniform, low: 0.0, high: 1.0}``: a float range
- ``{search: loguniform, low: 0.01, high: 1.0}``: a float range searched on a log scale
- ``{search: int, low: 1, high: 3}``: an integer range, both ends included
- ``{search: choice, choices: [16, 24]}``: one of the listed values (numbers, names, lists)
- ``{search: subset, choices: [ShearX, Rotate]}``: a list keeping the choices whose include flag is on
  (one boolean parameter per choice; no flag on means ``[Identity]``)
- ``{search: repeat, count: 5, item: ...}``: a list of ``count`` copies of ``item``, each searched apart
- ``{search: oneof, options: {early: ..., progressive: ...}}``: one of several named sub-templates,
  each with its own domains (a conditional space: the unchosen options' parameters are ignored)

Every domain gets a flat name from its path (``augment.subpolicies.0.1.op``; a ``oneof`` adds the
option's name: ``resolution.early.phases.0.probability``); a point maps those names to values and
decodes into a validated Policy.  No expressions, lambdas or class paths, ever.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from autoaug.errors import AutoaugError, UnknownNameError
from autoaug.policy import Policy, policy_from_dict
from autoaug.resources import shipped_spaces

# the keys each kind of domain takes; anything else in a domain is a typo worth reporting
_KEYS = {"uniform": ("low", "high"), "loguniform": ("low", "high"), "int": ("low", "high"),
         "choice": ("choices",), "subset": ("choices",), "repeat": ("count", "item"), "oneof": ("options",)}
KINDS = tuple(_KEYS)
_SPACE_KEYS = ("name", "description", "template")
_RANDOM_CHECKS = 8


@dataclass(frozen=True)
class Domain:
    """One searched value: a range (``uniform``, ``loguniform``, ``int``) or a ``choice``."""

    kind: str
    low: float = 0.0
    high: float = 1.0
    choices: tuple[Any, ...] = ()

    def sample(self, rng: random.Random) -> Any:
        if self.kind == "uniform":
            return rng.uniform(self.low, self.high)
        if self.kind == "loguniform":
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        if self.kind == "int":
            return rng.randint(int(self.low), int(self.high))
        return rng.choice(self.choices)

    def clip(self, value: Any) -> Any:
        """``value`` moved into the range (an int range also rounds); a choice is returned as it is."""
        if self.kind == "choice":
            return value
        if self.kind == "int":
            return min(max(round(value), int(self.low)), int(self.high))
        return min(max(float(value), self.low), self.high)

    def extremes(self) -> tuple[Any, ...]:
        """The values a load-time check tries: both ends of a range, every choice."""
        if self.kind == "choice":
            return self.choices
        return (int(self.low), int(self.high)) if self.kind == "int" else (self.low, self.high)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_keys(node: dict, kind: str, where: str) -> None:
    extra = sorted(set(node) - {"search", *_KEYS[kind]})
    if extra:
        raise AutoaugError(f"{where}: unknown key {extra[0]!r} in a {kind} domain "
                           f"(allowed: search, {', '.join(_KEYS[kind])})")


def _range(node: dict, kind: str, where: str) -> Domain:
    low, high = node.get("low"), node.get("high")
    if not (_number(low) and _number(high)) or low > high:
        raise AutoaugError(f"{where}: {kind} needs numbers low <= high, got low={low!r} high={high!r}")
    if kind == "loguniform" and low <= 0:
        raise AutoaugError(f"{where}: loguniform needs low > 0, got low={low!r}")
    if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
        raise AutoaugError(f"{where}: int needs whole numbers low and high, got low={low!r} high={high!r}")
    return Domain(kind, float(low), float(high))


def _choices(node: dict, kind: str, where: str) -> list:
    choices = node.get("choices")
    if not isinstance(choices, list) or not choices:
        raise AutoaugError(f"{where}: {kind} needs a non-empty list 'choices', got {choices!r}")
    if kind == "subset" and not all(isinstance(c, str) for c in choices):
        raise AutoaugError(f"{where}: subset choices must be op names, got {choices!r}")
    return choices


def _expand(node: Any, path: str, domains: dict[str, Domain]) -> Any:
    """Unroll ``repeat``/``subset``/``oneof`` and collect domains; returns the template with placeholders."""
    if isinstance(node, list):
        return [_expand(item, _join(path, i), domains) for i, item in enumerate(node)]
    if not isinstance(node, dict):
        return node
    if "search" not in node:
        return {key: _expand(value, _join(path, key), domains) for key, value in node.items()}
    where, kind = path or "template", node["search"]
    if kind not in _KEYS:
        raise AutoaugError(f"{where}: search must be one of {', '.join(KINDS)}, got {kind!r}")
    _check_keys(node, kind, where)
    if kind == "repeat":
        count = node.get("count")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1 or "item" not in node:
            raise AutoaugError(f"{where}: repeat needs a positive integer 'count' and an 'item', got count={count!r}")
        return [_expand(node["item"], _join(path, i), domains) for i in range(count)]
    if kind == "subset":
        names = _choices(node, kind, where)
        for name in names:
            domains[_join(path, name)] = Domain("choice", choices=(True, False))
        return {"$subset": [(_join(path, name), name) for name in names]}
    if kind == "oneof":
        options = node.get("options")
        if not isinstance(options, dict) or not options or not all(isinstance(k, str) for k in options):
            raise AutoaugError(f"{where}: oneof needs a mapping 'options' of named sub-templates")
        domains[path] = Domain("choice", choices=tuple(options))
        return {"$oneof": path, "options": {key: _expand(value, _join(path, key), domains)
                                            for key, value in options.items()}}
    domains[path] = Domain("choice", choices=tuple(_choices(node, kind, where))) if kind == "choice" \
        else _range(node, kind, where)
    return {"$param": path}


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _fill(node: Any, point: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_fill(item, point) for item in node]
    if not isinstance(node, dict):
        return node
    if "$param" in node:
        return point[node["$param"]]
    if "$subset" in node:
        kept = [name for key, name in node["$subset"] if point[key]]
        return kept or ["Identity"]  # no op switched on means: no op
    if "$oneof" in node:
        return _fill(node["options"][point[node["$oneof"]]], point)
    return {key: _fill(value, point) for key, value in node.items()}


@dataclass(frozen=True)
class SearchSpace:
    """A loaded, validated space: ``parameters()`` to search, ``decode`` a point into a Policy."""

    name: str
    description: str
    template: Any
    domains: dict[str, Domain]

    def parameters(self) -> dict[str, Domain]:
        """Flat parameter name -> domain, in file order."""
        return dict(self.domains)

    def decode(self, point: dict[str, Any], *, name: str | None = None) -> Policy:
        """The policy at ``point`` (a value for every parameter); AutoaugError if it is not valid."""
        missing = [key for key in self.domains if key not in point]
        if missing:
            raise AutoaugError(f"space {self.name}: the point lacks parameters {', '.join(missing[:5])}")
        policy = _fill(self.template, point)
        if not isinstance(policy, dict):
            raise AutoaugError(f"space {self.name}: the template must be a mapping (a policy)")
        policy = {"name": f"{self.name}-candidate", **policy}
        if name is not None:
            policy["name"] = name
        return policy_from_dict({"schema_version": 1, **policy}, origin=f"space {self.name}")

    def sample(self, rng: random.Random) -> dict[str, Any]:
        """A uniformly random point (log-uniform for ``loguniform`` ranges)."""
        return {key: domain.sample(rng) for key, domain in self.domains.items()}


def _check_points(space: SearchSpace, origin: str) -> None:
    """Decode corners, random points and every choice, so a broken space fails at load, not in a trial."""
    rng = random.Random(0)
    lows = {key: d.extremes()[0] for key, d in space.domains.items()}
    highs = {key: d.extremes()[-1] for key, d in space.domains.items()}
    for point in (lows, highs, *(space.sample(rng) for _ in range(_RANDOM_CHECKS))):
        _try(space, point, origin, "")
    base = space.sample(rng)
    for key, domain in space.domains.items():
        for value in domain.extremes():
            _try(space, {**base, key: value}, origin, f" at {key}={value!r}")


def _try(space: SearchSpace, point: dict[str, Any], origin: str, where: str) -> None:
    try:
        space.decode(point)
    except AutoaugError as error:
        message = str(error).removeprefix(f"space {space.name}: ")
        raise AutoaugError(f"{origin}: a point of the space is not a valid policy{where}: {message}") from None


def space_from_dict(data: Any, *, origin: str) -> SearchSpace:
    """Validate a parsed space file; every parameter's ends and choices are decoded once."""
    if not isinstance(data, dict) or "template" not in data:
        raise AutoaugError(f"{origin}: a search space is a mapping with keys {', '.join(_SPACE_KEYS)} "
                           "(template is required)")
    extra = sorted(set(data) - set(_SPACE_KEYS))
    if extra:
        raise AutoaugError(f"{origin}: unknown key {extra[0]!r} (allowed: {', '.join(_SPACE_KEYS)})")
    if not isinstance(data["template"], dict):
        raise AutoaugError(f"{origin}: template must be a mapping (a policy whose values may be domains)")
    domains: dict[str, Domain] = {}
    try:
        template = _expand(data["template"], "", domains)
    except AutoaugError as error:
        raise AutoaugError(f"{origin}: {error}") from None
    space = SearchSpace(str(data.get("name") or Path(origin).stem), str(data.get("description", "")), template,
                        domains)
    _check_points(space, origin)
    return space


def load_space(name_or_path: str | Path) -> SearchSpace:
    """A shipped space by name, or a YAML/JSON file by path."""
    path = Path(name_or_path)
    if not path.is_file():
        shipped = shipped_spaces()
        if str(name_or_path) not in shipped:
            if path.suffix in (".yaml", ".yml", ".json"):
                raise AutoaugError(f"{path}: no such search-space file")
            raise AutoaugError(f"{UnknownNameError('search space', str(name_or_path), shipped)}; "
                               "or give a path to a .yaml file")
        path = shipped[str(name_or_path)]
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise AutoaugError(f"{path}: not valid YAML: {' '.join(str(error).split())}") from None
    except OSError as error:
        raise AutoaugError(f"{path}: cannot read: {error.strerror}") from None
    return space_from_dict(data, origin=str(path))
