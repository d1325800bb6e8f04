"""The real `autoaug search` on real digits: Ray Tune, Nevergrad, ASHA, Parquet rows, resume, two nodes."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from autoaug.policy import load_policy
from autoaug.search.options import retrain_seeds, trial_seed
from autoaug.search.outcome import trial_configs
from autoaug.results import read_trials
from autoaug.search.seeds import canonical, seed_of, seeds_for
from autoaug.search.synthetic import EPOCH_SECONDS_ENV
from autoaug.search.space import load_space

FAST = ["--dataset", "digits", "--model", "proxy_tiny", "--epochs", "2", "--train-size", "300", "--val-size", "100",
        "--batch-size", "64", "--seed", "0"]
COMMAND = [sys.executable, "-m", "autoaug_cli", "search"]
SEEDS = seeds_for(load_space("default"), "digits")


def _search(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, timeout=timeout)


def _rows(out: Path) -> list[dict]:
    return pq.read_table(out / "trials.parquet").to_pylist()


def _epochs_by_trial(rows: list[dict]) -> dict[str, list[int]]:
    epochs: dict[str, list[int]] = {}
    for row in rows:
        epochs.setdefault(row["trial_id"], []).append(row["epoch"])
    return {trial: sorted(values) for trial, values in epochs.items()}


def test_search_with_nevergrad_and_asha_writes_rows_and_chooses_by_the_rule(tmp_path):
    out = tmp_path / "run"
    done = _search(*FAST, "--budget", "8", "--top-k", "2", "--top-k-epochs", "2", "--out", str(out), "--json",
                   "--lr", "0.8", timeout=600)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)  # one JSON document and nothing else on stdout
    rows, run = _rows(out), json.loads((out / "run.json").read_text())
    # --lr is per 512 images: at batch 64 the trials trained at 0.8 * 64 / 512
    assert run["options"]["lr"] == 0.8 and run["learning_rate"]["peak_lr"] == pytest.approx(0.1)
    epochs = _epochs_by_trial(rows)
    assert len(epochs) == 8 and len(rows) == sum(len(e) for e in epochs.values())  # one row per trial x epoch
    assert all(e == list(range(1, len(e) + 1)) for e in epochs.values())
    for row in rows:  # ASHA stops some after epoch 1; those are not candidates
        assert row["status"] == ("completed" if len(epochs[row["trial_id"]]) == 2 else "stopped_early")
    expected = {"trial_id", "seed", "status", "error", "epoch", "val_accuracy", "train_loss", "val_loss", "val_ece",
                "images_per_second", "epoch_seconds", "time_total_s", "node_id"}
    assert expected <= set(rows[0])
    # each trial trained with a seed of its own, from --seed and the order it was proposed in
    assert sorted({r["trial_id"]: r["seed"] for r in rows}.values()) == sorted(trial_seed(0, n) for n in range(1, 9))
    assert {f"config.{name}" for name in load_space("default").parameters()} <= set(rows[0])
    assert run["state"] == "finished" and run["started"] and {"ray", "nevergrad"} <= set(run["versions"])
    assert (out / "top" / "rank-1.json").exists() and summary["trials"] == 8
    # the seeds: the shipped policies the space can express, tried first as ordinary trials
    assert set(run["seeds"]) == {"cropflip", "trivialaugment-wide", "randaugment"}
    configs = trial_configs(rows, load_space("default"))
    seed_trials = {t: seed_of(c, SEEDS) for t, c in configs.items() if seed_of(c, SEEDS)}
    assert set(seed_trials.values()) == set(run["seeds"])  # (the optimizer may propose a seed again)
    # the rule: the top 2 proposals and the best seed re-trained head to head, 2 seeds each; a proposal is
    # chosen only if its mean beats the baseline's
    finals = sorted((r for r in rows if r["epoch"] == 2), key=lambda r: (-r["val_accuracy"], r["trial_id"]))
    h2h = run["head_to_head"]
    proposals = [r["trial_id"] for r in finals if r["trial_id"] not in seed_trials][:2]
    best_seed = next((r for r in finals if r["trial_id"] in seed_trials), None)
    if not proposals or best_seed is None:  # ASHA stopped every proposal (or every seed): nothing to compare
        assert h2h is None and run["chosen_trial"] == finals[0]["trial_id"] == summary["chosen_trial"]
        return
    assert {c["trial_id"] for c in h2h["candidates"]} == set(proposals)
    assert h2h["baseline"]["trial_id"] == best_seed["trial_id"]
    assert h2h["baseline"]["seed_policy"] == seed_trials[best_seed["trial_id"]]
    entries = [*h2h["candidates"], h2h["baseline"]]
    assert all(len(e["retrain_scores"]) == 2 for e in entries) and h2h["seeds"] == list(retrain_seeds(0, 2))
    best = max(h2h["candidates"], key=lambda e: e["mean"])
    assert h2h["margin"] == pytest.approx(best["mean"] - h2h["baseline"]["mean"])
    chosen = best if h2h["margin"] > 0 else h2h["baseline"]
    assert h2h["chosen"] == ("candidate" if h2h["margin"] > 0 else "baseline")
    assert run["rank_correlation"] == h2h["rank_correlation"] == summary["rank_correlation"]
    assert summary["chosen_trial"] == chosen["trial_id"] == run["chosen_trial"]
    policy = load_policy(out / "policy.json")
    assert policy.provenance.validation_score == pytest.approx(chosen["mean"]) == summary["validation_score"]
    assert "head to head:" in policy.provenance.algorithm
    assert (policy.provenance.dataset, policy.provenance.search_space, policy.provenance.model) == \
        ("digits", "default", "proxy_tiny")
    assert {"autoaug", "torch", "ray", "nevergrad"} <= set(policy.provenance.versions)
    if chosen["seed_policy"] is None:
        chosen_row = next(r for r in finals if r["trial_id"] == chosen["trial_id"])
        assert policy.mixing.mixup_alpha == pytest.approx(chosen_row["config.mixing.mixup_alpha"])
    else:  # the baseline is written as the shipped policy itself
        assert canonical(policy) == canonical(load_policy(chosen["seed_policy"]))


def _wait_for_completed_trial(out: Path, process: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        try:  # the trial record, not the table: the table is rewritten only every second or so
            if any(r["status"] == "completed" for r in read_trials(out)):
                return
        except (OSError, ValueError):  # not written yet
            pass
        time.sleep(0.3)
    pytest.fail("no trial completed in time")


def test_interrupted_search_resumes_without_losing_or_repeating(tmp_path):
    out = tmp_path / "run"
    process = subprocess.Popen([*COMMAND, *FAST, "--budget", "6", "--top-k", "0", "--scheduler", "fifo", "--out",
                                str(out), "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_completed_trial(out, process, 240)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 2 and stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: search interrupted after"), stderr
    assert lines[0].endswith(f"continue it with autoaug search --resume --out {out}")
    assert json.loads((out / "run.json").read_text())["state"] == "interrupted"
    before = {(r["trial_id"], r["epoch"]): r["time_total_s"] for r in _rows(out) if r["status"] == "completed"}
    assert before

    done = _search("--resume", "--out", str(out))  # every other option comes from run.json
    assert done.returncode == 0, done.stderr
    assert "chosen policy" in done.stdout and "search: 6/6 trials done" in done.stderr.splitlines()[-1]
    # not a terminal: one timestamped progress line per event, and no Ray tables or logs
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d search: ", line) for line in done.stderr.splitlines()), \
        done.stderr
    rows = _rows(out)
    epochs = _epochs_by_trial(rows)
    assert len(epochs) == 6 and all(e == [1, 2] for e in epochs.values())  # the budget, each epoch once
    after = {(r["trial_id"], r["epoch"]): r["time_total_s"] for r in rows}
    assert all(after[key] == seconds for key, seconds in before.items())  # completed trials were not re-run
    run = json.loads((out / "run.json").read_text())
    assert run["state"] == "finished" and len(run["resumed"]) == 1 and run["options"]["model"] == "proxy_tiny"
    smaller = _search("--resume", "--out", str(out), "--budget", "3")  # less than it spent: refused before Ray
    assert smaller.returncode == 2 and smaller.stdout == ""
    assert smaller.stderr.strip() == "error: --budget 3 is less than the 6 trials this search already ran; give " \
                                     "at least 6 (or leave --budget out to finish its 6 trials)"


def test_trials_run_on_both_nodes_of_a_two_node_cluster(tmp_path, monkeypatch):
    from ray.cluster_utils import Cluster

    # trials of 2 real epochs (about 1 s each) all ran on the first node's reused actor before a loaded
    # machine had started the second node's (10-20 s of importing torch): synthetic trials of 3 x 1 s
    # that the nodes' workers inherit keep 6 trials' work (18 s) longer than that start-up
    monkeypatch.setenv(EPOCH_SECONDS_ENV, "1.0")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        out = tmp_path / "run"
        done = _search("--dataset", "digits", "--model", "synthetic", "--epochs", "3", "--budget", "6",
                       "--top-k", "0", "--scheduler", "fifo", "--address", cluster.address, "--out", str(out),
                       "--json")
        assert done.returncode == 0, done.stderr
        rows = _rows(out)
        assert len({r["trial_id"] for r in rows}) == 6
        assert len({r["node_id"] for r in rows}) == 2
    finally:
        cluster.shutdown()


BAD = [(["--dataset", "cifar11"], "did you mean 'cifar10'"), (["--budget", "soon"], "budget must be"),
       (["--space", "nope"], "unknown search space"),
       (["--model", "resnet1"], "unknown model"), (["--resume"], "--resume needs --out"),
       (["--space", "width_resolution", "--model", "wrn_40_2"], "needs a slimmable model")]


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    with ThreadPoolExecutor(4) as pool:  # each command imports torch: run them side by side
        results = list(pool.map(lambda bad: _search(*bad[0], "--out", str(tmp_path / "x"))
                                if "--resume" not in bad[0] else _search(*bad[0]), BAD))
    for (args, message), done in zip(BAD, results):
        assert done.returncode == 2, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr, (args, done.stderr)
        assert done.stdout == ""
    assert not (tmp_path / "x" / "tune").exists()
