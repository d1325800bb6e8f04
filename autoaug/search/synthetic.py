"""The ``synthetic`` model: a score computed from the policy's parameters in microseconds, to load the search.

A search of thousands of trials measures the orchestration itself (the searcher, the scheduler, Ray,
the trial record) only if a trial costs next to nothing.  A synthetic trial reports an accuracy per
epoch like a real one, so ASHA stops it the same way, and its score is a smooth function of the point
with one optimum, plus seeded noise: the same point and seed always give the same scores.
"""
from __future__ import annotations

import json
import math
import os
import random
import time
import zlib
from collections.abc import Iterator
from typing import Any

from autoaug.search.space import Domain

SYNTHETIC = "synthetic"
# seconds each synthetic epoch waits, for tests that need trials to overlap (default: none)
EPOCH_SECONDS_ENV = "AUTOAUG_SYNTHETIC_EPOCH_SECONDS"
NOISE = 0.01


def _unit(domain: Domain, value: Any) -> float:
    """The value as a position in [0, 1] of its domain."""
    if domain.kind == "choice":
        index = next((i for i, c in enumerate(domain.choices) if c == value), 0)
        return index / max(1, len(domain.choices) - 1)
    low, high, value = float(domain.low), float(domain.high), float(value)
    if domain.kind == "loguniform":
        low, high, value = math.log(low), math.log(high), math.log(value)
    return 0.0 if high == low else min(1.0, max(0.0, (value - low) / (high - low)))


def _target(key: str) -> float:
    """Each parameter's best position, fixed by its name: the optimum is the same in every run."""
    return (zlib.crc32(key.encode()) % 1000) / 999


def quality(domains: dict[str, Domain], config: dict[str, Any]) -> float:
    """1 at the optimum, falling with the squared distance to it; in [0, 1]."""
    if not domains:
        return 0.5
    distance = sum((_unit(d, config[k]) - _target(k)) ** 2 for k, d in domains.items())
    return 1.0 - distance / len(domains)


def synthetic_scores(domains: dict[str, Domain], config: dict[str, Any], *, epochs: int,
                     seed: int) -> Iterator[tuple[int, float]]:
    """``(epoch, validation accuracy)`` for epochs 1..``epochs``: a learning curve towards 0.1 + 0.85 x quality."""
    top = 0.1 + 0.85 * quality(domains, config)
    point = zlib.crc32(json.dumps(config, sort_keys=True, default=str).encode())
    rng = random.Random(seed * 1_000_003 + point)
    wait = float(os.environ.get(EPOCH_SECONDS_ENV, "0") or 0)
    for epoch in range(1, epochs + 1):
        if wait > 0:
            time.sleep(wait)
        curve = 1 - math.exp(-3 * epoch / epochs)
        yield epoch, min(1.0, max(0.0, 0.1 + (top - 0.1) * curve + rng.gauss(0, NOISE)))
