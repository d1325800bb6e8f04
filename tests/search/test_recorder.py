"""The trial record: append-only, O(1) per event, and never changing a finished trial's rows."""
from __future__ import annotations

import json
import os
import pickle
import stat
import time
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest
from ray.tune.experiment import Trial

from autoaug.errors import AutoaugError
from autoaug.results import TRIALS_FILE, TRIALS_LOG, TrialRecord, read_trials, trial_configs
from autoaug.search import tune as search_tune
from autoaug.search.options import Budget, SearchOptions
from autoaug.search.space import load_space
from autoaug.search.synthetic import quality, synthetic_scores
from autoaug.trainer import TrainConfig


@pytest.fixture(autouse=True)
def no_refresh(monkeypatch):
    """No table rewrites mid-way unless a test asks: each test says when the table is written."""
    monkeypatch.setattr(TrialRecord, "REFRESH_MIN_SECONDS", 1e9)


def _row(trial: str, epoch: int, score: float) -> dict:
    return {"trial_id": trial, "epoch": epoch, "val_accuracy": score, "config.augment.magnitude": 0.5,
            "config.augment.ops": "[\"rotate\", \"shear_x\"]"}


def _trial(trial_id: str, status: str = Trial.RUNNING, checkpoint: object = None) -> SimpleNamespace:
    return SimpleNamespace(trial_id=trial_id, status=status, checkpoint=checkpoint, last_result={},
                           config={"augment.magnitude": 0.5}, error_file=None)


def _scores(out: Path) -> dict[tuple[str, int | None], tuple[str, float | None]]:
    return {(r["trial_id"], r["epoch"]): (r["status"], r.get("val_accuracy")) for r in read_trials(out)}


def test_events_append_a_line_each_and_compaction_writes_the_table(tmp_path):
    record = TrialRecord(tmp_path)
    record.report(_row("a", 1, 0.5))
    record.report(_row("a", 2, 0.6))
    record.finish("a", "completed")
    assert len((tmp_path / TRIALS_LOG).read_bytes().splitlines()) == 3
    assert not (tmp_path / TRIALS_FILE).exists()
    assert _scores(tmp_path) == {("a", 1): ("completed", 0.5), ("a", 2): ("completed", 0.6)}
    record.compact()
    assert not (tmp_path / TRIALS_LOG).exists()
    rows = pq.read_table(tmp_path / TRIALS_FILE).to_pylist()
    assert [(r["trial_id"], r["epoch"], r["status"], r["val_accuracy"]) for r in rows] == \
        [("a", 1, "completed", 0.5), ("a", 2, "completed", 0.6)]
    assert trial_configs(rows) == {"a": {"augment.magnitude": 0.5, "augment.ops": ["rotate", "shear_x"]}}


def test_the_log_and_the_table_are_readable_by_others_under_umask_077(tmp_path):
    old = os.umask(0o077)
    try:
        record = TrialRecord(tmp_path)
        record.report(_row("a", 1, 0.5))
        assert stat.S_IMODE((tmp_path / TRIALS_LOG).stat().st_mode) == 0o644  # read_trials reads it mid-search
        record.compact()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / TRIALS_FILE).stat().st_mode) == 0o644


def test_the_table_is_refreshed_during_a_search_at_most_a_small_share_of_the_time(tmp_path, monkeypatch):
    monkeypatch.setattr(TrialRecord, "REFRESH_MIN_SECONDS", 0.0)
    monkeypatch.setattr(TrialRecord, "REFRESH_RATIO", 1e6)  # (50 in use; this keeps a loaded machine in step)
    record = TrialRecord(tmp_path)
    record.report(_row("a", 1, 0.5))  # the first event: the table is due at once
    assert [r["epoch"] for r in pq.read_table(tmp_path / TRIALS_FILE).to_pylist()] == [1]
    assert record._next_refresh > time.monotonic(), "the next rewrite waits REFRESH_RATIO x this one's"
    record.report(_row("a", 2, 0.6))
    assert [r["epoch"] for r in pq.read_table(tmp_path / TRIALS_FILE).to_pylist()] == [1]
    assert [(r["epoch"], r["status"]) for r in read_trials(tmp_path)] == [(1, "running"), (2, "running")]


def test_a_finished_trial_never_changes(tmp_path):
    record = TrialRecord(tmp_path)
    record.report(_row("a", 1, 0.5))
    record.finish("a", "stopped_early")
    record.report(_row("a", 1, 0.1))  # a resumed search runs it again from an older snapshot
    record.report(_row("a", 2, 0.2))
    record.restart("a", 0)
    record.finish("a", "completed")
    record.finish("b", "failed", error="TrialFailed: nan", base={"trial_id": "b", "config.augment.magnitude": 1.0})
    record.finish("b", "completed")
    assert _scores(tmp_path) == {("a", 1): ("stopped_early", 0.5), ("b", None): ("failed", None)}
    assert read_trials(tmp_path)[-1]["error"] == "TrialFailed: nan"
    assert len((tmp_path / TRIALS_LOG).read_bytes().splitlines()) == 3, "ignored events are not even written"


def test_a_line_cut_by_a_kill_and_a_kill_during_compaction_lose_nothing(tmp_path):
    record = TrialRecord(tmp_path)
    record.report(_row("a", 1, 0.5))
    record.finish("a", "completed")
    record.report(_row("b", 1, 0.4))
    record.compact()
    saved_log = [json.dumps({"seq": 1, "kind": "row", "row": _row("a", 1, 0.5)}),
                 json.dumps({"seq": 4, "kind": "restart", "trial_id": "b", "keep": 0})]
    # killed after the table was replaced and before the log went: the table's events are not applied twice
    (tmp_path / TRIALS_LOG).write_text("\n".join(saved_log) + '\n{"seq": 5, "kind": "ro')
    assert _scores(tmp_path) == {("a", 1): ("completed", 0.5)}
    reopened = TrialRecord(tmp_path)
    assert reopened.seq == 4 and reopened.counts == {"completed": 1, "stopped_early": 0, "failed": 0, "running": 1}


def test_a_restore_keeps_what_the_record_finished_though_tunes_snapshot_lags(tmp_path):
    """The bug of issue 12: Tune's snapshot showed a finished trial as running and lacked another."""
    first = search_tune.Recorder(tmp_path, 2, Budget(trials=4), seed=5)
    for trial, score in (("a", 0.7), ("b", 0.6)):
        first.on_trial_result(0, [], _trial(trial), {"epoch": 1, "val_accuracy": score - 0.1})
        first.on_trial_result(0, [], _trial(trial), {"epoch": 2, "val_accuracy": score})
        first.on_trial_complete(0, [], _trial(trial))
    first.on_trial_result(0, [], _trial("c"), {"epoch": 1, "val_accuracy": 0.3})  # killed here
    before = _scores(tmp_path)
    restored = pickle.loads(pickle.dumps(first))  # Tune unpickles its callback
    assert (restored.seed, restored.epochs, restored.budget) == (5, 2, Budget(trials=4))
    snapshot = [_trial("a", Trial.RUNNING), _trial("c", Trial.PENDING)]  # b lost, a not yet finished
    restored.on_step_begin(0, snapshot)
    restored.on_trial_result(0, snapshot, _trial("a"), {"epoch": 1, "val_accuracy": 0.2})
    restored.on_trial_complete(0, snapshot, _trial("a"))
    assert {k: v for k, v in _scores(tmp_path).items() if k[0] in "ab"} == \
        {k: v for k, v in before.items() if k[0] in "ab"}
    assert ("c", 1) not in _scores(tmp_path), "c runs again from its start"
    restored.on_trial_result(0, snapshot, _trial("c"), {"epoch": 1, "val_accuracy": 0.35})
    restored.on_trial_complete(0, snapshot, _trial("c"))
    assert _scores(tmp_path)[("c", 1)] == ("stopped_early", 0.35)
    progress = restored.progress()
    assert (progress.done, progress.failed, progress.running, progress.best) == (3, 0, 0, 0.7)


def test_settle_records_trials_cut_at_the_deadline_and_trials_a_snapshot_lost(tmp_path):
    recorder = search_tune.Recorder(tmp_path, 2, Budget(seconds=20), seed=0)
    recorder.on_trial_result(0, [], _trial("a"), {"epoch": 2, "val_accuracy": 0.7})
    recorder.on_trial_result(0, [], _trial("b"), {"epoch": 1, "val_accuracy": 0.4})
    recorder.on_trial_result(0, [], _trial("lost"), {"epoch": 1, "val_accuracy": 0.3})
    ended = [_trial("a", Trial.TERMINATED), _trial("b", Trial.TERMINATED), _trial("never", Trial.TERMINATED)]
    search_tune.settle(tmp_path, ended, search_tune.Recorder(tmp_path, 2, Budget(seconds=20), seed=0))
    status = {r["trial_id"]: r["status"] for r in pq.read_table(tmp_path / TRIALS_FILE).to_pylist()}
    assert status == {"a": "completed", "b": "stopped_early", "never": "stopped_early", "lost": "failed"}
    assert not (tmp_path / TRIALS_LOG).exists()


def test_the_time_budget_is_timed_from_the_first_trials_start(tmp_path):
    """Starting Ray's trial actors can take longer than a short budget: that time is not the search's."""
    deadline = search_tune.Deadline(0.3)
    time.sleep(0.4)  # the actors start
    assert deadline.remaining() == 0.3 and not deadline.stop_all()
    deadline.on_trial_start(0, [], _trial("a"))
    assert 0.2 < deadline.remaining() <= 0.3 and not deadline.stop_all()
    deadline.on_trial_start(0, [], _trial("b"))  # a later trial does not restart the clock
    time.sleep(0.35)
    assert deadline.remaining() == 0.0 and deadline.stop_all()
    restored = pickle.loads(pickle.dumps(deadline))  # Tune pickles its stopper into the experiment
    assert restored.remaining() == 0.3 and not restored.stop_all()
    recorder = search_tune.Recorder(tmp_path, 2, Budget(seconds=0.3), deadline, seed=0)
    assert recorder.progress().remaining == 0.0  # the live display counts down the same clock


def test_a_failed_search_writes_counts_that_add_up(tmp_path):
    record = TrialRecord(tmp_path)
    record.report(_row("a", 1, 0.4))
    record.finish("a", "stopped_early")
    record.finish("b", "failed", error="TrialFailed: nan: training loss became nan", base={"trial_id": "b"})
    options = SearchOptions(dataset="digits", model="synthetic", epochs=2, out=str(tmp_path))
    settings = search_tune._Settings(load_space("randaugment"), TrainConfig(model="proxy_tiny"), 1, synthetic=True)
    with pytest.raises(AutoaugError, match="^no trial finished all 2 epochs"):
        search_tune._finish(options, settings, record, (None, None), None, tmp_path, [])
    run = json.loads((tmp_path / "run.json").read_text())
    assert {k: run[k] for k in ("state", "trials", "completed", "stopped_early", "failed")} == \
        {"state": "failed", "trials": 2, "completed": 0, "stopped_early": 1, "failed": 1}


def test_synthetic_scores_are_deterministic_and_best_at_the_optimum():
    domains = load_space("randaugment").parameters()
    point = {key: d.low for key, d in domains.items()}
    first = list(synthetic_scores(domains, point, epochs=4, seed=3))
    assert first == list(synthetic_scores(domains, point, epochs=4, seed=3))
    assert first != list(synthetic_scores(domains, point, epochs=4, seed=4))
    assert [epoch for epoch, _ in first] == [1, 2, 3, 4] and all(0 <= s <= 1 for _, s in first)
    assert first[-1][1] > first[0][1], "a learning curve: later epochs score higher"
    other = {key: d.high for key, d in domains.items()}
    assert quality(domains, point) != quality(domains, other) and 0 <= quality(domains, other) <= 1
