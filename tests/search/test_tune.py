"""The Ray Tune driver in this process, on real digits: failed trials, GPU shares, PBT schedules."""
from __future__ import annotations

import json
import functools
import logging
import os
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest
import ray
import yaml

from autoaug.policy import Schedule, load_policy
from autoaug.search import tune as search_tune
from autoaug.search.seeds import seed_of
from autoaug.search.options import SearchOptions, retrain_seeds, trial_seed
from autoaug.search.outcome import trial_configs
from autoaug.search.space import Domain, load_space
from autoaug.search.synthetic import EPOCH_SECONDS_ENV, synthetic_scores
from autoaug.trainer import SeedStreams, TrainConfig, TrainResult

FAST = {"dataset": "digits", "model": "proxy_tiny", "train_size": 300, "val_size": 100, "batch_size": 64,
        "top_k": 0, "scheduler": "fifo"}
# widths of 0.3 are not among the model's widths: those trials raise, the others train
HALF_BROKEN = {"name": "half-broken", "template": {"width_resolution": {
    "widths": {"search": "choice", "choices": [[0.25, 1.0], [0.3, 1.0]]}, "resolutions": [32]}}}


@pytest.fixture(scope="module")
def local_ray():
    # Ray's workers take the environment of its start: synthetic epochs of 0.1 s, so that trials overlap
    os.environ[EPOCH_SECONDS_ENV] = "0.1"
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield
    ray.shutdown()
    del os.environ[EPOCH_SECONDS_ENV]


def _rows(out: Path) -> list[dict]:
    return pq.read_table(out / "trials.parquet").to_pylist()


def _in_trial(monkeypatch, name: str) -> None:
    """Run the trainable as Tune's trial ``name`` would."""
    monkeypatch.setattr(search_tune.tune, "get_context", lambda: SimpleNamespace(get_trial_name=lambda: name))


def test_nan_and_oom_become_trial_errors_with_their_reason(monkeypatch):
    failed = TrainResult("nan", "training loss became nan in epoch 1", ())
    monkeypatch.setattr(search_tune, "train", lambda *args, **kwargs: failed)
    _in_trial(monkeypatch, "_trial_abc_n1")
    settings = search_tune._Settings(load_space("randaugment"), TrainConfig(model="proxy_tiny"), 1)
    point = {"augment.num_ops": 1, "augment.magnitude": 0.5, "post.0.probability": 0.0, "post.0.magnitude": 0.5}
    with pytest.raises(search_tune.TrialFailed, match="^nan: training loss became nan in epoch 1$"):
        search_tune._trial(point, (None, None), settings)


def test_each_trial_trains_with_a_seed_of_its_own(monkeypatch):
    used = []
    monkeypatch.setattr(search_tune, "train", lambda policy, train, val, config, **kw: used.append(config) or
                        TrainResult("ok", "", ()))
    search = TrainConfig(model="proxy_tiny", epochs=3, seed=3)
    settings = search_tune._Settings(load_space("randaugment"), search, 1)
    point = {"augment.num_ops": 1, "augment.magnitude": 0.5, "post.0.probability": 0.0, "post.0.magnitude": 0.5}
    for name in ("_trial_abc_n1", "_trial_def_n2", "_trial_abc_n1"):
        _in_trial(monkeypatch, name)
        search_tune._trial(point, (None, None), settings)
    assert [c.seed for c in used] == [trial_seed(3, 1), trial_seed(3, 2), trial_seed(3, 1)]
    assert all(c == TrainConfig(model="proxy_tiny", epochs=3, seed=c.seed) for c in used)  # only the seed differs
    first, second = (SeedStreams.of(c) for c in used[:2])
    assert first.init != second.init and first.order != second.order and first.augment != second.augment
    assert len({trial_seed(3, n) for n in range(100)} | {trial_seed(4, n) for n in range(100)}) == 200
    assert not set(retrain_seeds(3, 5)) & {trial_seed(3, n) for n in range(100)}


def test_a_trials_name_carries_its_proposal_number_and_so_its_seed():
    trial = SimpleNamespace(trainable_name="_trial", trial_id="ab12cd34", experiment_tag="12_augment.magnitude=0.5")
    assert search_tune._trial_name(trial) == "_trial_ab12cd34_n12"  # Ray's name (folders, MLflow runs), numbered
    assert search_tune.seed_for_trial("_trial_ab12cd34_n12", 3) == trial_seed(3, 12)
    perturbed = SimpleNamespace(**{**vars(trial), "experiment_tag": "7@perturbed[augment.magnitude=0.6]"})
    assert search_tune._trial_name(perturbed) == "_trial_ab12cd34_n7"  # PBT keeps the number in front
    # outside Tune (no name) or unnumbered: the search's seed
    assert search_tune.seed_for_trial("_trial_ab12cd34", 3) == search_tune.seed_for_trial(None, 3) == 3


def _check_trial_seeds(out: Path, search_seed: int, numbers: range) -> dict[str, int]:
    """Every trial's recorded seed is its proposal number's, and its scores are those of that seed."""
    rows = _rows(out)
    seeds = {r["trial_id"]: r["seed"] for r in rows}
    assert sorted(seeds.values()) == sorted(trial_seed(search_seed, n) for n in numbers)
    space = load_space("default")
    configs = trial_configs(rows, space)
    for row in rows:
        scores = dict(synthetic_scores(space.parameters(), configs[row["trial_id"]], epochs=2, seed=row["seed"]))
        assert row["val_accuracy"] == pytest.approx(scores[row["epoch"]])  # the trial trained with that seed
    return seeds


def test_trial_seeds_are_recorded_and_the_same_on_a_rerun(local_ray, tmp_path):
    # one trial at a time (2 CPUs each): the searcher hears results in the same order on both runs
    base = dict(dataset="digits", model="synthetic", budget="4", epochs=2, scheduler="fifo", top_k=0, seed=7,
                cpus_per_trial=2)  # no re-training: the e2e test checks the head to head's derived seeds
    runs = [search_tune.run_search(SearchOptions(**base, out=str(tmp_path / name))) for name in ("a", "b")]
    first, again = (_check_trial_seeds(run.out, 7, range(1, 5)) for run in runs)

    def by_seed(out: Path) -> dict[int, dict]:
        configs = trial_configs(_rows(out), load_space("default"))
        return {r["seed"]: configs[r["trial_id"]] for r in _rows(out)}
    assert by_seed(runs[0].out) == by_seed(runs[1].out)  # the same trials with the same seeds
    assert set(first) != set(again)  # though Ray named them afresh


def test_the_failure_reason_is_the_tracebacks_last_line(tmp_path):
    (tmp_path / "error.txt").write_text("Traceback (most recent call last):\n  File ...\n"
                                        "autoaug.search.tune.TrialFailed: oom: out of device memory\n\n")
    assert search_tune._error_reason(SimpleNamespace(error_file=str(tmp_path / "error.txt"))) == \
        "TrialFailed: oom: out of device memory"
    assert search_tune._error_reason(SimpleNamespace(error_file=None)) == "the trial raised an error"


def test_failed_trials_are_recorded_and_the_search_goes_on(local_ray, tmp_path):
    space = tmp_path / "half-broken.yaml"
    space.write_text(yaml.safe_dump(HALF_BROKEN))
    # a whole GPU per trial is asked for on a machine without one: it must become 0, not pend forever
    options = SearchOptions(**FAST, space=str(space), algo="random", budget="4", epochs=1, gpus_per_trial=1.0,
                            out=str(tmp_path / "run"))
    outcome = search_tune.run_search(options)
    rows = _rows(outcome.out)
    failed = {r["trial_id"]: r for r in rows if r["status"] == "failed"}
    completed = {r["trial_id"] for r in rows if r["status"] == "completed"}
    assert failed and completed and len(failed) + len(completed) == 4
    assert all("widths [0.3] are not among the model's widths" in r["error"] for r in failed.values())
    assert all(r["config.width_resolution.widths"] == "[0.3, 1.0]" for r in failed.values())
    assert (outcome.failed, outcome.completed, outcome.trials) == (len(failed), len(completed), 4)
    assert load_policy(outcome.policy_path).width_resolution.widths == [0.25, 1.0]
    assert json.loads(outcome.run_path.read_text())["resources"]["gpus"] == 0.0


def test_pbt_writes_the_best_trials_policy_history_as_a_schedule(local_ray, tmp_path):
    options = SearchOptions(**{**FAST, "top_k": 1}, space="randaugment", algo="pbt", budget="3", epochs=2,
                            out=str(tmp_path / "run"))
    outcome = search_tune.run_search(options)
    rows = _rows(outcome.out)
    assert sorted((r["trial_id"], r["epoch"]) for r in rows) == \
        sorted((t, e) for t in {r["trial_id"] for r in rows} for e in (1, 2))
    best = min((r for r in rows if r["epoch"] == 2), key=lambda r: (-r["val_accuracy"], r["trial_id"]))
    assert outcome.chosen_trial == best["trial_id"] and outcome.score == pytest.approx(best["val_accuracy"])
    history = json.loads(best["history"])
    assert [epoch for epoch, _ in history] == [0, 1]
    policy = load_policy(outcome.policy_path)
    assert isinstance(policy.augment, Schedule) and policy.provenance.algorithm.startswith("pbt")
    space = load_space("randaugment")
    used = [space.decode(config).augment for _, config in history]
    assert [phase.augment for phase in policy.augment.phases] == [a for i, a in enumerate(used) if a not in used[:i]]
    assert list((outcome.out / "tune").rglob("state.pt")), "PBT trials checkpoint every epoch"


def test_a_time_budget_records_every_trial_its_summary_counts(local_ray, tmp_path):
    """Trials cut at the deadline are in trials.parquet with their final status (issue 13, item 4).

    The budget is timed from the first trial's start, so 3 s run trials however long the trial actors
    take to start on a loaded machine: the search must not fail for want of time.
    """
    options = SearchOptions(dataset="digits", model="synthetic", budget="3s", epochs=2, scheduler="fifo", top_k=0,
                            out=str(tmp_path / "run"))
    outcome = search_tune.run_search(options)
    status = {r["trial_id"]: r["status"] for r in _rows(tmp_path / "run")}
    assert not (tmp_path / "run" / "trials.log.jsonl").exists(), "the record is compacted at the end"
    counted = {"completed": outcome.completed, "stopped_early": outcome.stopped_early, "failed": outcome.failed}
    assert outcome.trials == len(status) == sum(counted.values()) and outcome.completed >= 1
    assert counted == {s: sum(v == s for v in status.values()) for s in counted}  # so none is left "running"
    run = json.loads(outcome.run_path.read_text())
    assert {k: run[k] for k in counted} == counted and run["trials"] == outcome.trials


def test_the_retraining_reports_its_start_before_any_run_ends(local_ray, monkeypatch):
    space = load_space("randaugment")
    settings = search_tune._Settings(space, TrainConfig(model="proxy_tiny"), 1, synthetic=True)
    points = [{**{k: d.low for k, d in space.parameters().items()}},
              {**{k: d.high for k, d in space.parameters().items()}}]
    events = []
    monkeypatch.setitem(search_tune._LIVE, "hook", events.append)
    scores = search_tune._retrain_all([(None, point) for point in points], ("trial t_00001", "baseline cropflip"),
                                      (7, 8), 2, (None, None), settings, search_tune._Resources(1, 0.0, 2))
    assert [(e.phase, e.done, e.failed, e.total) for e in events] == [("retrain", n, 0, 4) for n in range(5)]
    assert (events[0].running, events[0].best, events[0].leader, events[0].remaining) == (2, None, None, None)
    means = {label: sum(row) / 2 for label, row in zip(("trial t_00001", "baseline cropflip"), scores)}
    leader = max(means, key=means.get)
    assert (events[-1].leader, events[-1].leader_runs, events[-1].remaining) == (leader, 2, 0.0)
    assert events[-1].best == pytest.approx(means[leader])


def test_nevergrad_is_told_only_full_length_results():
    space = load_space("randaugment")
    options = SearchOptions(**FAST, space="randaugment", epochs=4)
    seeds = search_tune.seeds_for(space, "digits")
    searcher = search_tune._nevergrad(space, options, search_tune.parse_budget("6"), 2, seeds).searcher
    searcher.set_search_properties(search_tune.METRIC, "max", {})
    first, second = searcher.suggest("t1"), searcher.suggest("t2")
    assert seed_of(first, seeds) == "randaugment"  # the seed is the first proposal
    assert seed_of(second, seeds) is None
    optimizer = searcher._nevergrad_opt
    searcher.on_trial_complete("t1", {search_tune.METRIC: 0.9, "epoch": 2})  # stopped early by ASHA
    assert optimizer.num_tell == 0
    searcher.on_trial_complete("t2", {search_tune.METRIC: 0.5, "epoch": 4})
    assert optimizer.num_tell == 1


def test_asha_grace_period_is_half_a_trial():
    assert [search_tune.grace_period(e) for e in (1, 2, 5, 15, 40)] == [1, 1, 3, 8, 20]


def test_resume_with_a_larger_budget_extends_a_finished_search(local_ray, tmp_path):
    out = tmp_path / "run"
    base = {**FAST, "space": "randaugment", "epochs": 1, "out": str(out)}
    first = search_tune.run_search(SearchOptions(**base, budget="2"))
    before = {(r["trial_id"], r["epoch"]): r["time_total_s"] for r in _rows(out)}
    assert first.trials == 2 and len(before) == 2
    with pytest.raises(search_tune.AutoaugError, match="^--budget 1 is less than the 2 trials this search already"):
        search_tune.run_search(SearchOptions(**base, budget="1", resume=True))
    extended = search_tune.run_search(SearchOptions(**base, budget="4", resume=True))
    rows = _rows(out)
    assert extended.trials == 4 and len({r["trial_id"] for r in rows}) == 4
    assert all(r["status"] == "completed" for r in rows)
    after = {(r["trial_id"], r["epoch"]): r["time_total_s"] for r in rows}
    assert all(after[key] == seconds for key, seconds in before.items())  # the first two were not re-run
    run = json.loads((out / "run.json").read_text())
    assert run["options"]["budget"] == "4" and run["state"] == "finished" and len(run["resumed"]) == 1


def test_a_repeated_point_is_told_its_known_score_and_not_run_again(monkeypatch):
    space = load_space("randaugment")
    options = SearchOptions(**FAST, space="randaugment", epochs=5)
    searcher = search_tune._nevergrad(space, options, search_tune.parse_budget("6"), 1, []).searcher
    a = {"augment.num_ops": 2, "augment.magnitude": 0.5, "post.0.probability": 1.0, "post.0.magnitude": 0.5}
    b = {**a, "augment.magnitude": 0.25}
    queue = [a, dict(a), b]  # the optimizer proposes a twice (a mutation that changed nothing)

    def propose(self, trial_id):
        self._live_trial_mapping[trial_id] = f"candidate-{len(queue)}"
        return queue.pop(0)

    told = []
    monkeypatch.setattr(search_tune.NevergradSearch, "suggest", propose)
    monkeypatch.setattr(searcher._nevergrad_opt, "tell", lambda candidate, value: told.append((candidate, value)))
    assert searcher.suggest("t1") == a
    searcher.on_trial_complete("t1", {search_tune.METRIC: 0.7, "epoch": 5})
    assert searcher.suggest("t2") == b
    assert told == [("candidate-3", -0.7), ("candidate-2", -0.7)]


def test_pbt_perturbations_stay_inside_the_space():
    """PBT scales a value by 1.2: a probability of 0.95 must come back as 1.0, not 1.14 (which fails decoding)."""
    from ray.tune.schedulers.pbt import _explore

    domains = {"p": Domain("uniform", 0.0, 1.0), "n": Domain("int", 1, 3), "op": Domain("choice", choices=("a", "b"))}
    config = {"p": 0.95, "n": 3, "op": "b"}
    explore = functools.partial(search_tune._clip_to, domains)
    new, _ = _explore(config, search_tune._pbt_mutations(domains), 0.0, (1.2,), explore)
    assert new == {"p": 1.0, "n": 3, "op": new["op"]} and new["op"] in ("a", "b")
    new, _ = _explore({"p": 0.01, "n": 1, "op": "a"}, search_tune._pbt_mutations(domains), 0.0, (0.8,), explore)
    assert new["p"] == pytest.approx(0.008) and new["n"] == 1
    space = load_space("randaugment")
    point = {**{k: d.high for k, d in space.parameters().items()}}
    scaled, _ = _explore(point, search_tune._pbt_mutations(space.parameters()), 0.0, (1.2,),
                         functools.partial(search_tune._clip_to, space.parameters()))
    space.decode(scaled)  # every value at its top, scaled up, still decodes


def test_tune_may_ask_for_as_many_actors_as_trials_run_at_once(monkeypatch):
    """Ray before 2.57 kept one trial pending for our searchers: the setting that lifts it, the user's kept."""
    from autoaug.search.tune import _let_trials_start_together

    monkeypatch.delenv("TUNE_MAX_PENDING_TRIALS_PG", raising=False)
    _let_trials_start_together(4)
    assert os.environ["TUNE_MAX_PENDING_TRIALS_PG"] == "4"
    monkeypatch.setenv("TUNE_MAX_PENDING_TRIALS_PG", "9")
    _let_trials_start_together(2)
    assert os.environ["TUNE_MAX_PENDING_TRIALS_PG"] == "9"
