"""`--log tensorboard` / `--log mlflow`: every trial's metrics and parameters through Ray Tune's own loggers."""
from __future__ import annotations

import importlib.util
import logging
import struct
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import ray

from autoaug.errors import AutoaugError
from autoaug.search import tune as search_tune
from autoaug.search.options import SearchOptions

FAST = {"dataset": "digits", "model": "proxy_tiny", "train_size": 200, "val_size": 100, "batch_size": 64,
        "top_k": 0, "scheduler": "fifo", "algo": "random", "space": "randaugment", "budget": "2", "epochs": 2}
HAS_MLFLOW = importlib.util.find_spec("mlflow") is not None
HAS_TENSORBOARD = importlib.util.find_spec("tensorboardX") is not None


@pytest.fixture(scope="module")
def logged_search(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        out = tmp_path_factory.mktemp("logged") / "run"
        log = ("tensorboard",) * HAS_TENSORBOARD + ("mlflow",) * HAS_MLFLOW
        search_tune.run_search(SearchOptions(**FAST, out=str(out), log=log))
    finally:
        ray.shutdown()
    return out


def _finals(out: Path) -> dict[str, float]:
    """Each trial's validation accuracy per epoch, from trials.parquet: (trial, epoch) -> value."""
    return {(r["trial_id"], r["epoch"]): r["val_accuracy"] for r in pq.read_table(out / "trials.parquet").to_pylist()}


def _trial_in(name: str, out: Path) -> str:
    """The trial id that Tune put into a folder or run name (``_trial_<trial id>_...``)."""
    (trial_id,) = {trial for trial, _ in _finals(out) if f"_{trial}_" in f"{name}_"}
    return trial_id


def _events(path: Path) -> list:
    """TensorBoard event records (TFRecord framing: length, its CRC, the Event proto, its CRC)."""
    from tensorboardX.proto import event_pb2
    data, at, events = path.read_bytes(), 0, []
    while at < len(data):
        (length,) = struct.unpack("<Q", data[at:at + 8])
        event = event_pb2.Event()
        event.ParseFromString(data[at + 12:at + 12 + length])
        events.append(event)
        at += 12 + length + 4
    return events


@pytest.mark.slow  # a real search: about 20 s on an idle 2-core machine
@pytest.mark.skipif(not HAS_TENSORBOARD, reason="tensorboardX is not installed (pip install 'autoaug[tensorboard]')")
def test_tensorboard_has_every_trials_validation_accuracy(logged_search: Path) -> None:
    files = sorted(logged_search.glob("tune/*/events.out.tfevents.*"))
    assert len(files) == 2  # one per trial
    logged = {}
    for path in files:
        trial_id = _trial_in(path.parent.name, logged_search)
        for event in _events(path):
            for value in event.summary.value:
                if value.tag == "ray/tune/val_accuracy":
                    logged[(trial_id, event.step)] = value.simple_value
    assert logged == pytest.approx(_finals(logged_search))


@pytest.mark.slow
@pytest.mark.skipif(not HAS_MLFLOW, reason="mlflow is not installed (pip install 'autoaug[mlflow]')")
def test_mlflow_local_store_has_a_run_per_trial_with_metrics_and_parameters(logged_search: Path) -> None:
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=f"sqlite:///{logged_search / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(f"autoaug-{logged_search.name}")
    runs = client.search_runs([experiment.experiment_id])
    finals = {trial: acc for (trial, epoch), acc in _finals(logged_search).items() if epoch == 2}
    assert len(runs) == 2
    for run in runs:
        trial_id = _trial_in(run.data.tags.get("trial_name") or run.info.run_name, logged_search)
        assert {"augment.num_ops", "augment.magnitude"} <= set(run.data.params)
        assert run.data.metrics["val_accuracy"] == pytest.approx(finals[trial_id])


def test_unknown_or_missing_logger_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(AutoaugError, match="log must be one of tensorboard, mlflow, got 'wandb'"):
        SearchOptions(log=("wandb",))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(AutoaugError, match=r"--log mlflow needs mlflow: pip install 'autoaug\[mlflow\]'"):
        SearchOptions(log=["mlflow"])
