"""The final choice: the top candidates and the best known policy re-trained head to head.

A search must never hand back something worse than what the user could have picked without it: the
best seed (a shipped policy evaluated as a trial) is re-trained beside the top-k candidates, with the
same seeds, epochs and split, and a candidate is chosen only if its mean beats the baseline's.
"""
from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from autoaug.search.outcome import Candidate, Progress


def _mean_std(scores: tuple[float, ...]) -> tuple[float | None, float | None]:
    finite = [s for s in scores if math.isfinite(s)]
    if not finite:
        return None, None
    return statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else 0.0


def _ranks(values: list[float]) -> list[float]:
    """Average ranks (1 = smallest); ties share the mean of their positions."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(xs: list[float], ys: list[float]) -> float | None:
    """Spearman's rank correlation of paired values; None for fewer than 3 pairs or a constant side."""
    if len(xs) != len(ys) or len(xs) < 3:
        return None
    rx, ry = _ranks(xs), _ranks(ys)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    var = math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))
    return None if var == 0 else cov / var


def contenders(candidates: list[Candidate], top_k: int) -> tuple[list[Candidate], Candidate | None]:
    """The top ``top_k`` candidates the optimizer proposed, and the best seed (None if no seed finished).

    ``candidates`` is ranked best first by search score; seeds are trials whose ``seed_policy`` is set.
    """
    proposed = [c for c in candidates if c.seed_policy is None][:top_k]
    baseline = next((c for c in candidates if c.seed_policy is not None), None)
    return proposed, baseline


def contender_label(candidate: Candidate) -> str:
    """How progress names a contender: ``trial <id>``, or ``baseline <policy>`` for the best seed."""
    return f"baseline {candidate.seed_policy}" if candidate.seed_policy else f"trial {candidate.trial_id}"


def _leader(labels: tuple[str, ...], scores: list[list[float]]) -> tuple[str | None, float | None, int]:
    """The contender with the highest mean over its finished runs: its label, that mean, and how many runs."""
    leader: tuple[str | None, float | None, int] = (None, None, 0)
    for label, row in zip(labels, scores):
        finite = [s for s in row if math.isfinite(s)]
        mean = statistics.fmean(finite) if finite else None
        if mean is not None and (leader[1] is None or mean > leader[1]):
            leader = (label, mean, len(finite))
    return leader


def retrain_progress(labels: tuple[str, ...], scores: list[list[float]], ended: int, concurrency: int,
                     elapsed: float) -> Progress:
    """The re-training's event after ``ended`` runs (NaN in ``scores``: failed, or not ended yet)."""
    total = sum(len(row) for row in scores)
    failed = sum(1 for row in scores for s in row if not math.isfinite(s)) - (total - ended)
    leader, mean, runs = _leader(labels, scores)
    return Progress(ended - failed, min(total - ended, concurrency), failed, total, mean, elapsed,
                    elapsed / ended * (total - ended) if ended else None, phase="retrain", leader=leader,
                    leader_runs=runs)


def collect_retraining(labels: tuple[str, ...], runs_each: int, concurrency: int,
                       finished: Iterable[tuple[int, int, float]],
                       on_progress: Callable[[Progress], None]) -> list[tuple[float, ...]]:
    """Every contender's scores by seed, from runs as they finish (contender, seed, score; NaN: failed).

    An event goes out before the first run ends (0 done, no estimate), so that a display moves on
    from the finished search at once, and one after each run, with the rate so far as the estimate.
    """
    scores = [[math.nan] * runs_each for _ in labels]
    start = time.monotonic()
    on_progress(retrain_progress(labels, scores, 0, concurrency, 0.0))
    for ended, (i, j, score) in enumerate(finished, start=1):
        scores[i][j] = score
        on_progress(retrain_progress(labels, scores, ended, concurrency, time.monotonic() - start))
    return [tuple(row) for row in scores]


@dataclass(frozen=True)
class Comparison:
    """Re-trained candidates (best mean first) and the re-trained baseline."""

    candidates: tuple[Candidate, ...]
    baseline: Candidate | None
    seeds: tuple[int, ...] = ()
    epochs: int | None = None

    @property
    def best_candidate(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None

    @property
    def margin(self) -> float | None:
        """Best candidate's mean minus the baseline's (re-trained where both were)."""
        if self.best_candidate is None or self.baseline is None:
            return None
        return self.best_candidate.score - self.baseline.score

    @property
    def beats_baseline(self) -> bool:
        """True where a candidate's mean is above the baseline's, or there is no baseline to beat."""
        if self.best_candidate is None:
            return False
        return self.baseline is None or self.margin > 0

    @property
    def winner(self) -> Candidate:
        if self.beats_baseline:
            return self.best_candidate
        return self.baseline

    @property
    def rank_correlation(self) -> float | None:
        """Spearman's rho between search-fidelity score and re-trained mean over everything re-trained."""
        both = [c for c in (*self.candidates, *([self.baseline] if self.baseline else [])) if c.retrained]
        return spearman([c.search_score for c in both], [c.score for c in both])

    def record(self) -> dict[str, Any]:
        """What ``run.json`` keeps: every contender's scores, the margin, the verdict, the correlation."""
        return {"seeds": list(self.seeds), "epochs": self.epochs,
                "candidates": [_entry(c) for c in self.candidates],
                "baseline": _entry(self.baseline) if self.baseline else None,
                "margin": self.margin, "beats_baseline": self.beats_baseline,
                "chosen": "candidate" if self.beats_baseline else "baseline",
                "rank_correlation": self.rank_correlation}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Comparison:
        """The comparison a ``record()`` (as read back from ``run.json``) was written from, less the configs.

        Raises KeyError, TypeError or ValueError for a record not of that shape.
        """
        baseline = record.get("baseline")
        return cls(tuple(_candidate(entry) for entry in record["candidates"]),
                   _candidate(baseline) if baseline is not None else None,
                   tuple(int(s) for s in record.get("seeds") or ()), record.get("epochs"))

    def verdict(self) -> str:
        """One plain sentence for the summary and the policy's provenance."""
        if self.baseline is None:
            return "no shipped policy was a point of this space (or none finished): no baseline to compare with"
        base = f"baseline {self.baseline.seed_policy} {_pm(self.baseline)}"
        if self.best_candidate is None:
            return f"no candidate finished; the result is the {base}"
        best = f"best candidate {_pm(self.best_candidate)}"
        if self.beats_baseline:
            return f"{best} beats the {base} by {100 * self.margin:+.2f} points"
        return (f"no candidate beat the baseline ({best} vs {base}, margin {100 * self.margin:+.2f} points); "
                f"the result is the baseline {self.baseline.seed_policy}")


def _entry(candidate: Candidate) -> dict[str, Any]:
    mean, std = _mean_std(candidate.retrain_scores)
    return {"trial_id": candidate.trial_id, "seed_policy": candidate.seed_policy,
            "search_score": candidate.search_score,
            "retrain_scores": [s if math.isfinite(s) else None for s in candidate.retrain_scores],
            "mean": mean, "std": std}


def _candidate(entry: dict[str, Any]) -> Candidate:
    scores = tuple(math.nan if s is None else float(s) for s in entry["retrain_scores"])
    return Candidate(str(entry["trial_id"]), {}, float(entry["search_score"]), scores, entry.get("seed_policy"))


def _pm(candidate: Candidate) -> str:
    mean, std = _mean_std(candidate.retrain_scores)
    if mean is None:
        return f"{100 * candidate.search_score:.2f}% (search score; not re-trained)"
    return f"{100 * mean:.2f} ± {100 * std:.2f}%"


def rank_retrained(candidates: list[Candidate]) -> tuple[Candidate, ...]:
    """Re-trained candidates by mean (search score breaks ties); failed re-trainings last."""
    return tuple(sorted(candidates, key=lambda c: (not c.retrained, -c.score, -c.search_score, c.trial_id)))


def final_ranking(candidates: list[Candidate], comparison: Comparison | None) -> list[Candidate]:
    """The chosen contender first, then the other re-trained ones by mean, then the rest by search score."""
    if comparison is None:
        return candidates
    retrained = [*comparison.candidates, *([comparison.baseline] if comparison.baseline else [])]
    winner = comparison.winner
    ids = {c.trial_id for c in retrained}
    others = [c for c in rank_retrained(retrained) if c.trial_id != winner.trial_id]
    return [winner, *others, *(c for c in candidates if c.trial_id not in ids)]
