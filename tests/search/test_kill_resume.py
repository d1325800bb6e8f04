"""kill -9 at any point, then --resume: every trial finished before a kill keeps its rows and scores.
SIGTERM (as Ctrl-C) ends a search cleanly, resumable."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray

from autoaug.results import read_trials
from autoaug.search.options import SearchOptions, trial_seed
from autoaug.search.outcome import Progress, SearchInterrupted, trial_configs
from autoaug.search.space import load_space
from autoaug.search.tune import run_search
from autoaug.search.synthetic import EPOCH_SECONDS_ENV, synthetic_scores

BUDGET = 16
TIMEOUT = 240


def _start(out: Path, resume: bool) -> subprocess.Popen:
    args = ["--resume"] if resume else ["--dataset", "digits", "--model", "synthetic", "--budget", str(BUDGET),
                                        "--epochs", "3", "--top-k", "2", "--seed", "5"]
    env = {**os.environ, EPOCH_SECONDS_ENV: "0.3", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([sys.executable, "-m", "autoaug_cli", "search", *args, "--out", str(out), "--json"],
                            env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finished(out: Path) -> dict[tuple[str, int | None], tuple[str, float | None]]:
    """(trial, epoch) -> (status, score) of every trial with a final status."""
    try:
        rows = read_trials(out)
    except (OSError, ValueError):  # the table replaced under our feet: read again next time
        return {}
    return {(r["trial_id"], r["epoch"]): (r["status"], r.get("val_accuracy")) for r in rows
            if r["status"] != "running"}


def _wait_for(process: subprocess.Popen, out: Path, trials: int) -> None:
    start = time.monotonic()
    while len({key[0] for key in _finished(out)}) < trials:
        if process.poll() is not None:
            raise AssertionError(f"the search ended before {trials} trials finished: {process.communicate()}")
        if time.monotonic() - start > TIMEOUT:
            process.kill()
            raise AssertionError(f"fewer than {trials} trials finished in {TIMEOUT} s")
        time.sleep(0.1)


def _descendants(pid: int) -> list[int]:
    """Every process under ``pid`` (from /proc: no psutil needed)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def _kill_everything(process: subprocess.Popen) -> None:
    """SIGKILL the driver's process group and every Ray process under it (workers have groups of their own)."""
    family = _descendants(process.pid)
    os.killpg(process.pid, signal.SIGKILL)
    for pid in family:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.communicate()


def _kill_and_check(out: Path, kills: list[int]) -> dict:
    """Kill once after each count of finished trials in ``kills``, resume each time, then run to the end."""
    kept: dict = {}
    for number, after in enumerate(kills):
        process = _start(out, resume=number > 0)
        _wait_for(process, out, after)
        _kill_everything(process)
        finished = _finished(out)
        assert {k: v for k, v in finished.items() if k in kept} == kept, f"kill {number} changed a finished trial"
        kept = finished
    return kept


@pytest.mark.slow
def test_repeated_kill_9_and_resume_lose_no_finished_trial(tmp_path):
    rng = random.Random(12)
    kills = sorted(rng.sample(range(2, BUDGET - 2), 3))
    kept = _kill_and_check(tmp_path / "run", kills)
    process = _start(tmp_path / "run", resume=True)
    stdout, stderr = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, stderr
    final = _finished(tmp_path / "run")
    assert {k: v for k, v in final.items() if k in kept} == kept
    summary = json.loads(stdout)
    statuses = [r["status"] for r in read_trials(tmp_path / "run") if r["epoch"] in (None, 1)]
    assert summary["trials"] == len(statuses) >= BUDGET
    assert summary["completed"] + summary["stopped_early"] + summary["failed"] == summary["trials"]


@pytest.fixture(scope="module")
def local_ray():
    os.environ[EPOCH_SECONDS_ENV] = "0.05"  # Ray's workers take the environment of its start
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield
    ray.shutdown()
    del os.environ[EPOCH_SECONDS_ENV]


@pytest.mark.slow
def test_kill_9_then_sigterm_then_resume_lose_no_finished_trial(local_ray, tmp_path):
    """One kill -9 of everything; the resumed search, in this process, is stopped with SIGTERM as `kill PID`
    or a job scheduler would; a second resume finishes it with every finished trial intact."""
    out = tmp_path / "run"
    _sigterm_then_finish(out, _kill_and_check(out, [3]))


def test_sigterm_ends_a_search_resumably(local_ray, tmp_path):
    _sigterm_then_finish(tmp_path / "run", {})
    # the resumed search numbers its trials on from where it stopped: every trial has a seed of its own,
    # and trained with it (a synthetic score is a function of the point and the seed), runs again included
    rows = read_trials(tmp_path / "run")
    seeds = {r["trial_id"]: r["seed"] for r in rows}
    assert sorted(seeds.values()) == sorted(trial_seed(5, n) for n in range(1, len(seeds) + 1))
    space = load_space("default")
    configs = trial_configs(rows, space)
    for row in (r for r in rows if r["epoch"] is not None):
        scores = dict(synthetic_scores(space.parameters(), configs[row["trial_id"]], epochs=3, seed=row["seed"]))
        assert row["val_accuracy"] == pytest.approx(scores[row["epoch"]])


def _sigterm_then_finish(out: Path, kept: dict) -> None:
    sent: list[int] = []
    handler = signal.getsignal(signal.SIGTERM)

    def stop_soon(progress: Progress) -> None:
        if progress.done >= len({key[0] for key in kept}) + 3 and not sent:
            sent.append(progress.done)
            os.kill(os.getpid(), signal.SIGTERM)

    options = SearchOptions(out=str(out), resume=True) if kept else \
        SearchOptions(dataset="digits", model="synthetic", budget=str(BUDGET), epochs=3, top_k=2, seed=5, out=str(out))
    with pytest.raises(SearchInterrupted, match="autoaug search --resume --out"):
        run_search(options, on_progress=stop_soon)
    assert sent and json.loads((out / "run.json").read_text())["state"] == "interrupted"
    assert signal.getsignal(signal.SIGTERM) is handler, "the search gives SIGTERM back"
    interrupted = _finished(out)
    assert len({key[0] for key in interrupted}) >= sent[0]
    assert {k: v for k, v in interrupted.items() if k in kept} == kept
    outcome = run_search(SearchOptions(out=str(out), resume=True))
    final = _finished(out)
    assert {k: v for k, v in final.items() if k in interrupted} == interrupted
    trials = {key[0] for key in final}
    assert outcome.trials == len(trials) >= BUDGET and all(v[0] != "running" for v in final.values())
    assert outcome.completed + outcome.stopped_early + outcome.failed == outcome.trials
