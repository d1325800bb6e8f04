"""The search's pure parts: progress, trial rows, choosing the policy, and the files a search leaves."""
from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any


from autoaug.errors import AutoaugError
from autoaug.policy import Policy, Provenance, Schedule, SchedulePhase, load_policy
from autoaug import results
from autoaug.results import read_trials, write_json, write_parquet  # read_trials: re-exported
from autoaug.search.options import SearchOptions, parse_budget, read_run
from autoaug.search.seeds import seed_of
from autoaug.search.space import SearchSpace

if TYPE_CHECKING:
    from autoaug.search.compare import Comparison


class SearchInterrupted(AutoaugError):
    """The search stopped before its budget was spent (Ctrl-C); ``--resume`` continues it."""


@dataclass(frozen=True)
class Progress:
    """What a live display shows; sent to ``on_progress`` whenever a trial reports or ends.

    ``phase`` names the stage it counts: ``search`` counts trials; ``retrain`` counts the runs that
    re-train the top candidates (an event as it starts, with 0 done, and one per finished run).
    ``done`` and ``failed`` count apart: ``done + failed`` have ended.  ``elapsed`` and ``remaining``
    are seconds of that phase; ``remaining`` is None where there is no estimate yet.  In the search,
    ``best`` is the best validation accuracy so far, from ``best_trial`` at ``best_epoch`` where those
    are known; in the re-training it is the mean of ``leader``, the contender whose mean is highest
    so far (``trial <id>`` or ``baseline <policy>``), over its ``leader_runs`` finished runs.
    """

    done: int
    running: int = 0
    failed: int = 0
    total: int | None = None
    best: float | None = None
    elapsed: float = 0.0
    remaining: float | None = None
    phase: str = "search"  # "search" while trials run, "retrain" while the head-to-head runs
    best_trial: str | None = None
    best_epoch: int | None = None
    leader: str | None = None
    leader_runs: int = 0


@dataclass(frozen=True)
class Candidate:
    """A trial that trained all its epochs; re-training adds ``retrain_scores`` (NaN for a failed run)."""

    trial_id: str
    config: dict[str, Any]
    search_score: float
    retrain_scores: tuple[float, ...] = ()
    seed_policy: str | None = None  # the shipped policy this trial evaluated, for a seed trial

    @property
    def retrained(self) -> bool:
        return any(math.isfinite(s) for s in self.retrain_scores)

    @property
    def score(self) -> float:
        """Mean validation accuracy of the re-training runs where there are any, else the trial's."""
        if not self.retrained:
            return self.search_score
        return statistics.fmean(s for s in self.retrain_scores if math.isfinite(s))


@dataclass(frozen=True)
class SearchOutcome:
    """The chosen policy, its validation score, what happened to the trials, and where it all is."""

    policy: Policy
    score: float
    chosen_trial: str
    trials: int
    completed: int
    stopped_early: int
    failed: int
    out: Path
    policy_path: Path
    trials_path: Path
    run_path: Path
    top_paths: tuple[Path, ...] = field(default_factory=tuple)
    head_to_head: Comparison | None = None  # the re-trained candidates and baseline; None where none ran


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def config_columns(config: dict[str, Any]) -> dict[str, Any]:
    """Flattened ``config.<name>`` columns; lists become JSON text so every column has one type."""
    return {f"config.{k}": json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in sorted(config.items())}


def trial_configs(rows: list[dict[str, Any]], space: SearchSpace) -> dict[str, dict[str, Any]]:
    """Each trial's config over ``space``'s parameters (``autoaug.results.trial_configs`` of its rows), for
    the trials whose rows carry every one of them."""
    return {trial: {key: config[key] for key in space.domains}
            for trial, config in results.trial_configs(rows).items() if all(key in config for key in space.domains)}


def full_length_scores(rows: list[dict[str, Any]], epochs: int) -> dict[str, float]:
    """Trial id -> validation accuracy at epoch ``epochs``, for trials that trained that long."""
    return {r["trial_id"]: r["val_accuracy"] for r in rows if r.get("epoch") == epochs
            and r.get("status") != "failed" and r.get("val_accuracy") is not None
            and math.isfinite(r["val_accuracy"])}


def rank_candidates(rows: list[dict[str, Any]], configs: dict[str, dict], epochs: int,
                    seeds: tuple[Any, ...] = ()) -> list[Candidate]:
    """Trials that trained all ``epochs``, best final validation accuracy first (ties: trial id).

    Trials stopped early by ASHA are not candidates: their scores come from fewer epochs.  A trial
    whose config is one of ``seeds`` (see autoaug.search.seeds) is marked with the seed's name.
    """
    final = full_length_scores(rows, epochs)
    ranked = sorted(final.items(), key=lambda item: (-item[1], item[0]))
    return [Candidate(trial, configs[trial], score, seed_policy=seed_of(configs[trial], list(seeds)))
            for trial, score in ranked if trial in configs]


def choose(candidates: list[Candidate]) -> list[Candidate]:
    """Final ranking: re-trained candidates by mean re-trained accuracy, then the rest by trial score.

    A single short trial is noisy, so where the top k were re-trained their means decide; the search
    score only breaks ties, and ranks candidates that were not (or could not be) re-trained.
    """
    retrained = sorted((c for c in candidates if c.retrained), key=lambda c: (-c.score, -c.search_score, c.trial_id))
    rest = [c for c in candidates if not c.retrained]
    return retrained + rest


def candidate_table(candidates: list[Candidate]) -> list[dict[str, Any]]:
    """What ``run.json`` records about each ranked candidate."""
    return [{"rank": rank, "trial_id": c.trial_id, "seed_policy": c.seed_policy, "search_score": c.search_score,
             "retrain_scores": [s if math.isfinite(s) else None for s in c.retrain_scores], "score": c.score}
            for rank, c in enumerate(candidates, start=1)]


def write_top(out: Path, policies: list[Policy]) -> tuple[Path, ...]:
    """``top/rank-<k>.json`` for each policy, best first, and ``policy.json`` (the best); atomic writes."""
    top = out / "top"
    paths = tuple(policy.save(top / f"rank-{rank}.json") for rank, policy in enumerate(policies, start=1))
    for stale in top.glob("rank-*.json"):  # from an earlier finish with a larger k
        if stale not in paths:
            stale.unlink()
    policies[0].save(out / "policy.json")
    return paths


def update_run(out: Path, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into ``run.json`` and replace it atomically; ``updated`` is always refreshed."""
    record = {**read_run(out), **fields, "updated": now()}
    write_json(record, out / "run.json")
    return record


def started_trials(out: Path) -> int:
    """Trials of the search in ``out`` that trained at least an epoch or failed (from trials.parquet)."""
    return len({row["trial_id"] for row in read_trials(out)})


def check_extension(out: Path, options: SearchOptions, previous: dict[str, Any]) -> None:
    """A resumed search may be given a larger trial budget (extend it), never one below what it spent."""
    saved, given = parse_budget(previous["options"]["budget"]), parse_budget(options.budget)
    if saved == given:
        return
    if saved.trials is None or given.trials is None:
        raise AutoaugError(f"--resume can change a budget of trials only; this search's budget is {saved} "
                           f"and --budget {options.budget} was given")
    if options.algo != "nevergrad":
        raise AutoaugError(f"--resume --budget extends searches with --algo nevergrad; this one is {options.algo} "
                           f"(its budget stays {saved})")
    spent = started_trials(out)
    if given.trials < spent:
        raise AutoaugError(f"--budget {given.trials} is less than the {spent} trials this search already ran; "
                           f"give at least {spent} (or leave --budget out to finish its {saved})")


def write_rows(out: Path, rows: list[dict[str, Any]]) -> None:
    if rows:
        write_parquet(rows, out / "trials.parquet")


def _algorithm(options: SearchOptions, retrained: bool) -> str:
    if options.algo == "pbt":
        return "pbt (population-based training; the best trial's policy history as a schedule)"
    name = {"nevergrad": "nevergrad NGOpt", "random": "random"}[options.algo]
    text = f"{name} + {options.scheduler.upper()}, {options.epochs} epochs per trial"
    if retrained:
        text += f"; top {options.top_k} re-trained {options.retrain_epochs} epochs x {options.top_k_seeds} seeds"
    return text


def policy_for(options: SearchOptions, space: SearchSpace, candidate: Candidate, rows: list[dict], *,
               rank: int, versions: dict[str, str], verdict: str | None = None) -> Policy:
    """The candidate's policy, with its provenance; PBT's is its trial's history as a schedule.

    A seed trial's policy is the shipped policy itself (the space's point of it does the same, less
    readably); ``verdict`` (the head-to-head's sentence) goes into the provenance's algorithm.
    """
    name = f"{space.name}-{Path(options.dataset).stem}-rank{rank}"
    if candidate.seed_policy is not None:
        policy = load_policy(candidate.seed_policy).model_copy(update={"name": name})
        description = (f"The shipped policy {candidate.seed_policy}, chosen by autoaug search on {options.dataset} "
                       f"(trial {candidate.trial_id}).")
    else:
        policy = space.decode(candidate.config, name=name)
        description = f"Found by autoaug search on {options.dataset} (trial {candidate.trial_id})."
    if options.algo == "pbt":
        policy = schedule_policy(space, candidate, rows, options.epochs, policy)
    algorithm = _algorithm(options, candidate.retrained) + (f"; head to head: {verdict}" if verdict else "")
    provenance = Provenance(source="autoaug search", dataset=options.dataset, model=options.model,
                            search_space=space.name, algorithm=algorithm,
                            budget=str(parse_budget(options.budget)), seed=options.seed,
                            validation_score=candidate.score, versions=versions, created=now())
    return policy.model_copy(update={"provenance": provenance, "description": description})


def schedule_policy(space: SearchSpace, candidate: Candidate, rows: list[dict], epochs: int, last: Policy) -> Policy:
    """The best PBT trial's policy history as a schedule over fractions of training (as PBA)."""
    history = next((json.loads(r["history"]) for r in reversed(rows)
                    if r["trial_id"] == candidate.trial_id and r.get("history")), None) or [(0, candidate.config)]
    phases: list[SchedulePhase] = []
    for i, (start, config) in enumerate(history):
        end = history[i + 1][0] if i + 1 < len(history) else epochs
        if end <= start:
            continue
        augment = space.decode(config).augment
        if phases and phases[-1].augment == augment:  # merge repeats: a schedule lists changes only
            phases[-1] = phases[-1].model_copy(update={"end_fraction": end / epochs})
        else:
            phases.append(SchedulePhase(start_fraction=start / epochs, end_fraction=end / epochs, augment=augment))
    if isinstance(last.augment, Schedule) or not phases:
        return last
    return last.model_copy(update={"augment": Schedule(phases=phases)})
