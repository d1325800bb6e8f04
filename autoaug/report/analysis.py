"""Why a policy was chosen: which ops the best trials used, and which searched parameters mattered."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from autoaug.errors import AutoaugError
from autoaug.policy import Policy, RandAugment, Schedule, SubPolicies, TrivialAugment
from autoaug.report.run_data import Trial

FOREST_TREES = 200
IMPORTANCE_METHOD = (f"permutation importance of a random forest (scikit-learn RandomForestRegressor, {FOREST_TREES} "
                     "trees, fitted to the searched parameters -> validation accuracy): the drop in its R² when one "
                     "parameter is shuffled, mean and spread over 20 shuffles")


@dataclass(frozen=True)
class OpUse:
    """How often an op is in the trials' policies, and at what mean magnitude, in the top trials and in all."""

    op: str
    share_top: float
    share_all: float
    magnitude_top: float | None
    magnitude_all: float | None


def _point(config: dict[str, Any]) -> dict[str, Any]:
    """Config columns back to values: lists and dicts were stored as JSON text."""
    point = {}
    for key, value in config.items():
        if isinstance(value, str) and value[:1] in "[{":
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        point[key] = value
    return point


def trial_policies(trials: list[Trial], space_name: str | None) -> dict[str, Policy]:
    """Each trial's policy, decoded from its config with the run's search space; {} if it cannot be."""
    if not space_name:
        return {}
    from autoaug.search.space import load_space
    try:
        space = load_space(space_name)
    except (AutoaugError, OSError):
        return {}
    policies = {}
    for trial in trials:
        try:
            policies[trial.trial_id] = space.decode(_point(trial.config))
        except (AutoaugError, KeyError, TypeError, ValueError):
            continue
    return policies


def _section_ops(section: Any) -> list[tuple[str, float]]:
    if isinstance(section, SubPolicies):
        return [(c.op, c.magnitude) for sub in section.subpolicies for c in sub]
    if isinstance(section, RandAugment):
        return [(op, section.magnitude) for op in section.ops]
    if isinstance(section, TrivialAugment):  # the strongest magnitude it may draw
        return [(op, section.magnitude_max) for op in section.ops]
    if isinstance(section, Schedule):
        return [pair for phase in section.phases for pair in _section_ops(phase.augment)]
    return []  # NoAugment


def policy_ops(policy: Policy) -> dict[str, float]:
    """Op -> its largest magnitude in the policy (fixed ops count where their probability is above 0)."""
    fixed = [(c.op, c.magnitude) for c in [*policy.pre, *policy.post] if c.probability > 0]
    ops: dict[str, float] = {}
    for op, magnitude in fixed + _section_ops(policy.augment):
        if op != "Identity":
            ops[op] = max(magnitude, ops.get(op, 0.0))
    return ops


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def op_usage(policies: dict[str, Policy], top: list[str]) -> list[OpUse]:
    """Per op: share of top trials and of all trials whose policy has it, and its mean magnitude there."""
    used = {trial: policy_ops(policy) for trial, policy in policies.items()}
    top = [t for t in top if t in used]
    names = sorted({op for ops in used.values() for op in ops})
    rows = []
    for op in names:
        in_all = [ops[op] for ops in used.values() if op in ops]
        in_top = [used[t][op] for t in top if op in used[t]]
        rows.append(OpUse(op, len(in_top) / max(1, len(top)), len(in_all) / max(1, len(used)), _mean(in_top),
                          _mean(in_all)))
    return sorted(rows, key=lambda r: (-r.share_top, -r.share_all, r.op))


def _features(trials: list[Trial]) -> tuple[list[str], list[list[float]]]:
    """Numeric columns from configs: booleans 0/1, numbers as they are, other values as category codes."""
    keys = sorted({k for t in trials for k in t.config})
    columns: dict[str, list[float]] = {}
    for key in keys:
        values = [t.config.get(key) for t in trials]
        if all(isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)) for v in values):
            column = [float(v) for v in values]
        else:
            codes = {text: i for i, text in enumerate(sorted({json.dumps(v, default=str) for v in values}))}
            column = [float(codes[json.dumps(v, default=str)]) for v in values]
        if len(set(column)) > 1:  # a parameter that never varied cannot have mattered here
            columns[key] = column
    names = list(columns)
    return names, [[columns[n][i] for n in names] for i in range(len(trials))]


def parameter_importance(trials: list[Trial], epoch: int, *, seed: int = 0,
                         repeats: int = 20) -> list[tuple[str, float, float]]:
    """(parameter, mean importance, std) by permutation importance, highest first; [] with under 5 trials.

    Importance is the drop in the forest's R² when one parameter's column is shuffled (Breiman), over
    ``repeats`` shuffles; every shuffled copy is predicted in one call (scikit-learn's helper predicts
    them one by one, minutes for a few hundred trials).
    """
    names, rows = _features(trials)
    if len(trials) < 5 or not names:
        return []
    import numpy as np
    from sklearn.ensemble import RandomForestRegressor

    x, y = np.asarray(rows, dtype=np.float64), np.asarray([t.scores[epoch] for t in trials])
    forest = RandomForestRegressor(n_estimators=FOREST_TREES, random_state=seed, min_samples_leaf=2).fit(x, y)
    rng = np.random.default_rng(seed)
    copies = np.repeat(x[None, None], len(names), axis=0).repeat(repeats, axis=1)  # [feature, repeat, n, f]
    for f in range(len(names)):
        for r in range(repeats):
            copies[f, r, :, f] = x[rng.permutation(len(x)), f]
    predicted = forest.predict(copies.reshape(-1, x.shape[1])).reshape(len(names), repeats, len(x))
    baseline = _r2(y, forest.predict(x))
    drops = baseline - np.array([[_r2(y, predicted[f, r]) for r in range(repeats)] for f in range(len(names))])
    ranked = sorted(zip(names, drops.mean(1), drops.std(1)), key=lambda r: -r[1])
    return [(name, float(mean), float(std)) for name, mean, std in ranked]


def _r2(y: Any, predicted: Any) -> float:
    total = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - predicted) ** 2).sum()) / total if total > 0 else 0.0
