"""Searching on a Ray cluster of several nodes: trials spread over them, and losing a node loses no result."""
from __future__ import annotations

import threading
import time

import pytest
import ray

from autoaug.results import read_trials
from autoaug.search.synthetic import EPOCH_SECONDS_ENV
from autoaug_cli.app import main


@pytest.mark.parametrize("address, message", [
    ("127.0.0.1:9", "error: no Ray cluster answers at 127.0.0.1:9 (Connection refused)"),
    ("localhost", "error: --address must be host:port, ray://host:port or auto, got 'localhost'"),
])
def test_a_wrong_address_fails_within_seconds_with_one_line(tmp_path, capsys, address, message):
    assert not ray.is_initialized()
    start = time.monotonic()
    with pytest.raises(SystemExit) as exit_:
        main(["search", "--model", "synthetic", "--address", address, "--out", str(tmp_path / "run")])
    assert exit_.value.code == 2 and time.monotonic() - start < 10
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), lines


def test_address_auto_without_a_started_cluster_is_one_line(monkeypatch):
    import ray._private.utils

    from autoaug.errors import AutoaugError
    from autoaug.search.tune import _check_reachable

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray._private.utils, "read_ray_address", lambda temp_dir=None: None)
    with pytest.raises(AutoaugError, match="^--address auto: no Ray cluster was started on this machine"):
        _check_reachable("auto")
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:9")
    with pytest.raises(AutoaugError, match="^no Ray cluster answers at 127.0.0.1:9"):
        _check_reachable("auto")


def _finished(out) -> dict:
    try:
        return {(r["trial_id"], r["epoch"]): (r["status"], r.get("val_accuracy"), r.get("node_id"))
                for r in read_trials(out) if r["status"] != "running"}
    except (OSError, ValueError):
        return {}


@pytest.mark.slow
def test_trials_spread_over_nodes_and_a_lost_node_loses_no_finished_trial(tmp_path, monkeypatch):
    from ray.cluster_utils import Cluster

    from autoaug.search.options import SearchOptions
    from autoaug.search.tune import run_search

    # the nodes' workers inherit it: a trial (3 s) outlasts a loaded machine's actor start-up, so trials overlap
    monkeypatch.setenv(EPOCH_SECONDS_ENV, "1.0")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    doomed = [cluster.add_node(num_cpus=1) for _ in range(2)][-1]
    cluster.wait_for_nodes()
    out, before_loss = tmp_path / "run", {}

    def remove_a_node() -> None:
        while len({key[0] for key in _finished(out)}) < 4:
            time.sleep(0.1)
        before_loss.update(_finished(out))
        cluster.remove_node(doomed)

    killer = threading.Thread(target=remove_a_node, daemon=True)
    killer.start()
    try:
        outcome = run_search(SearchOptions(dataset="digits", model="synthetic", budget="14", epochs=3,
                                           scheduler="fifo", top_k=0, address=cluster.address, out=str(out)))
    finally:
        ray.shutdown()
        cluster.shutdown()
    killer.join(timeout=5)
    assert before_loss, "the node was removed mid-search"
    final = _finished(out)
    assert {k: v for k, v in final.items() if k in before_loss} == before_loss
    nodes = {r["node_id"] for r in read_trials(out) if r.get("node_id")}
    assert len(nodes) >= 2, ((out / "run.json").read_text(), [(r["trial_id"], r["status"], r.get("node_id"))
                                                            for r in read_trials(out)])
    statuses = {r["trial_id"]: r["status"] for r in read_trials(out)}
    assert set(statuses.values()) <= {"completed", "failed"} and outcome.trials == len(statuses) == 14
    assert outcome.completed == sum(s == "completed" for s in statuses.values()) >= 4
