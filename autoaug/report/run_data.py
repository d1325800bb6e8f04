"""What a search folder holds, read defensively: a finished, interrupted or still-running run."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from autoaug.errors import AutoaugError
from autoaug.policy import Policy, load_policy

METRIC = "val_accuracy"
# run.json keys this report shows in their own sections; any other list or table is shown as found
KNOWN_RUN_KEYS = ("state", "options", "versions", "resources", "started", "resumed", "updated", "finished",
                  "chosen_trial", "completed", "stopped_early", "candidates", "trials", "failed", "finished_trials",
                  "head_to_head", "rank_correlation", "chosen_seed_policy")


@dataclass(frozen=True)
class Trial:
    """One trial's rows, by epoch; ``status`` is its last row's."""

    trial_id: str
    status: str
    scores: dict[int, float]
    config: dict[str, Any]
    ended_at: float | None
    compute_seconds: float
    error: str | None = None

    @property
    def last_epoch(self) -> int:
        return max(self.scores, default=0)

    @property
    def last_score(self) -> float | None:
        return self.scores.get(self.last_epoch)


@dataclass(frozen=True)
class RunData:
    """A search folder's files, each None (or empty) where it is missing."""

    folder: Path
    run: dict[str, Any]
    trials: list[Trial]
    policy: Policy | None
    notes: list[str] = field(default_factory=list)

    @property
    def state(self) -> str:
        return str(self.run.get("state", "unknown"))

    @property
    def options(self) -> dict[str, Any]:
        return self.run.get("options") or {}

    def extra_records(self) -> dict[str, Any]:
        """run.json entries the report has no section for (e.g. a head-to-head against a baseline)."""
        return {k: v for k, v in self.run.items() if k not in KNOWN_RUN_KEYS and isinstance(v, (list, dict))}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _timestamp(row: dict[str, Any]) -> float | None:
    value = row.get("reported_at")
    if _finite(value):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            return None
    return None


def trials_from_rows(rows: list[dict[str, Any]]) -> list[Trial]:
    """Group trials.parquet rows by trial, in the order trials ended (trials with no time last)."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("trial_id") is not None:
            grouped.setdefault(str(row["trial_id"]), []).append(row)
    trials = []
    for trial_id, group in grouped.items():
        group = sorted(group, key=lambda r: r.get("epoch") or 0)
        scores = {int(r["epoch"]): float(r[METRIC]) for r in group if _finite(r.get("epoch")) and _finite(r.get(METRIC))}
        times = [t for t in (_timestamp(r) for r in group) if t is not None]
        config = {k.removeprefix("config."): v for k, v in group[-1].items() if k.startswith("config.")}
        seconds = sum(float(r["epoch_seconds"]) for r in group if _finite(r.get("epoch_seconds")))
        trials.append(Trial(trial_id, str(group[-1].get("status") or "unknown"), scores, config,
                            max(times, default=None), seconds, group[-1].get("error")))
    return sorted(trials, key=lambda t: (t.ended_at is None, t.ended_at or 0.0, t.trial_id))


def _read_rows(path: Path, notes: list[str]) -> list[dict[str, Any]]:
    if not path.is_file():
        notes.append("trials.parquet: not there yet (no trial has reported)")
        return []
    try:
        return pq.read_table(path).to_pylist()
    except Exception as error:  # a torn or foreign file must not stop the rest of the report
        notes.append(f"trials.parquet: unreadable ({type(error).__name__}: {error})")
        return []


def _read_run(path: Path, notes: list[str]) -> dict[str, Any]:
    if not path.is_file():
        notes.append("run.json: not there (not a search folder, or the search has not started)")
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        notes.append(f"run.json: unreadable ({error})")
        return {}
    return data if isinstance(data, dict) else {}


def _read_policy(path: Path, notes: list[str]) -> Policy | None:
    if not path.is_file():
        notes.append("policy.json: not there yet (the search has not finished)")
        return None
    try:
        return load_policy(path)
    except AutoaugError as error:
        notes.append(f"policy.json: {error}")
        return None


def load_run(folder: str | Path) -> RunData:
    """Read ``run.json``, ``trials.parquet`` and ``policy.json`` from a search folder; missing ones are noted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AutoaugError(f"{folder}: no such folder (give the --out folder of an autoaug search)")
    notes: list[str] = []
    run = _read_run(folder / "run.json", notes)
    rows = _read_rows(folder / "trials.parquet", notes)
    if not run and not rows:
        raise AutoaugError(f"{folder}: holds neither run.json nor trials.parquet; is it an autoaug search folder?")
    return RunData(folder, run, trials_from_rows(rows), _read_policy(folder / "policy.json", notes), notes)


def best_so_far(trials: list[Trial]) -> list[tuple[int, float | None, float]]:
    """(trials ended, seconds since the first ended, best last score so far) for each trial with a time."""
    timed = [t for t in trials if t.ended_at is not None and t.last_score is not None]
    if not timed:
        return []
    start, best, points = timed[0].ended_at, -math.inf, []
    for count, trial in enumerate(timed, start=1):
        best = max(best, trial.last_score)
        points.append((count, trial.ended_at - start, best))
    return points


def rung_scores(trials: list[Trial]) -> dict[int, list[float]]:
    """Scores at each epoch reached; ASHA promotes trials at its rungs, so later epochs have fewer."""
    epochs: dict[int, list[float]] = {}
    for trial in trials:
        for epoch, score in trial.scores.items():
            epochs.setdefault(epoch, []).append(score)
    return dict(sorted(epochs.items()))


def comparable_scores(trials: list[Trial], *, least: int = 5) -> tuple[int, list[Trial]]:
    """The latest epoch that at least ``least`` trials (or all, if fewer) reached, and those trials.

    Trials stopped early have no later scores, so importance and op statistics compare trials at one epoch.
    """
    scored = [t for t in trials if t.scores]
    if not scored:
        return 0, []
    need = min(least, len(scored))
    epoch = max(e for e in {e for t in scored for e in t.scores} if sum(e in t.scores for t in scored) >= need)
    return epoch, [t for t in scored if epoch in t.scores]


def resources_used(data: RunData) -> dict[str, Any]:
    """Trials by status, trial compute in CPU- and GPU-hours, wall time and nodes."""
    resources = data.run.get("resources") or {}
    seconds = sum(t.compute_seconds for t in data.trials)
    statuses: dict[str, int] = {}
    for trial in data.trials:
        statuses[trial.status] = statuses.get(trial.status, 0) + 1
    wall = None
    started, ended = data.run.get("started"), data.run.get("finished") or data.run.get("updated")
    if isinstance(started, str) and isinstance(ended, str):
        try:
            wall = (datetime.fromisoformat(ended) - datetime.fromisoformat(started)).total_seconds()
        except ValueError:
            wall = None
    return {"trials": len(data.trials), "by status": statuses, "concurrent trials": resources.get("concurrency"),
            "CPUs per trial": resources.get("cpus"), "GPUs per trial": resources.get("gpus"),
            "trial CPU-hours": seconds * float(resources.get("cpus") or 1) / 3600,
            "trial GPU-hours": seconds * float(resources.get("gpus") or 0) / 3600,
            "wall-clock hours": None if wall is None else wall / 3600}
