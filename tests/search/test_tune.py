"""The Ray Tune driver in this process, on real digits: failed trials, GPU shares, PBT schedules."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest
import ray
import yaml

from autoaug.errors import AutoaugError
from autoaug.policy import Schedule, load_policy
from autoaug.search import tune as search_tune
from autoaug.search.options import SearchOptions
from autoaug.search.space import load_space
from autoaug.search.synthetic import EPOCH_SECONDS_ENV
from autoaug.trainer import TrainConfig, TrainResult

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


def test_nan_and_oom_become_trial_errors_with_their_reason(monkeypatch):
    failed = TrainResult("nan", "training loss became nan in epoch 1", ())
    monkeypatch.setattr(search_tune, "train", lambda *args, **kwargs: failed)
    settings = search_tune._Settings(load_space("randaugment"), TrainConfig(model="proxy_tiny"), 1)
    point = {"augment.num_ops": 1, "augment.magnitude": 0.5}
    with pytest.raises(search_tune.TrialFailed, match="^nan: training loss became nan in epoch 1$"):
        search_tune._trial(point, (None, None), settings)


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
    """Trials cut at the deadline are in trials.parquet with their final status (issue 13, item 4)."""
    options = SearchOptions(dataset="digits", model="synthetic", budget="8s", epochs=2, scheduler="fifo", top_k=0,
                            out=str(tmp_path / "run"))
    try:
        outcome = search_tune.run_search(options)
    except AutoaugError as error:  # a loaded machine may start no trial's actor before the deadline
        assert "no trial finished all 2 epochs" in str(error)
        outcome = None
    status = {r["trial_id"]: r["status"] for r in _rows(tmp_path / "run")}
    assert status and "running" not in status.values()
    assert not (tmp_path / "run" / "trials.log.jsonl").exists(), "the record is compacted at the end"
    if outcome is not None:
        assert outcome.trials == len(status)
        counted = {"completed": outcome.completed, "stopped_early": outcome.stopped_early, "failed": outcome.failed}
        assert counted == {s: sum(v == s for v in status.values()) for s in counted}
