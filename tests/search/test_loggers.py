"""`--log tensorboard` / `--log mlflow`: every trial's metrics and parameters through Ray Tune's own loggers."""
from __future__ import annotations

import importlib.util
import json
import logging
import struct
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import ray

from autoaug.errors import AutoaugError
from autoaug.search import tune as search_tune
from autoaug.search.options import SearchOptions

FAST = {"dataset": "digits", "model": "synthetic", "train_size": 200, "val_size": 100, "batch_size": 64,
        "top_k": 0, "scheduler": "fifo", "algo": "random", "space": "randaugment", "budget": "2", "epochs": 2}
# mlflow-skinny (the [test] extra) needs sqlalchemy and alembic for the local sqlite store
HAS_MLFLOW = all(importlib.util.find_spec(p) is not None for p in ("mlflow", "sqlalchemy", "alembic"))
HAS_TENSORBOARD = importlib.util.find_spec("tensorboardX") is not None


@pytest.fixture(scope="module")
def logged_search(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real 2-trial search (about 20 s on an idle 2-core machine) logging to every installed logger.

    The random searcher starts from the space's seed, so one trial is a seeded one (points_to_evaluate).
    """
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    patch = pytest.MonkeyPatch()
    try:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the local store in the run folder, not a team's server
        out = tmp_path_factory.mktemp("logged") / "run"
        log = ("tensorboard",) * HAS_TENSORBOARD + ("mlflow",) * HAS_MLFLOW
        search_tune.run_search(SearchOptions(**FAST, out=str(out), log=log))
    finally:
        patch.undo()
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


def _hparams(events: list) -> dict:
    """The parameters of TensorBoard's HParams tab (the session-start record of the hparams plugin)."""
    from google.protobuf.json_format import MessageToDict
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData
    for event in events:
        for value in event.summary.value:
            if value.metadata.plugin_data.plugin_name == "hparams":
                data = HParamsPluginData.FromString(value.metadata.plugin_data.content)
                if data.HasField("session_start_info"):
                    return {k: MessageToDict(v) for k, v in data.session_start_info.hparams.items()}
    return {}


def _configs(out: Path) -> dict[str, dict]:
    """Each trial's parameters, from trials.parquet's ``config.`` columns."""
    rows = pq.read_table(out / "trials.parquet").to_pylist()
    return {r["trial_id"]: {k.removeprefix("config."): v for k, v in r.items() if k.startswith("config.")}
            for r in rows}


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="tensorboardX is not installed (pip install 'autoaug[tensorboard]')")
def test_tensorboard_has_every_trials_validation_accuracy_and_parameters(logged_search: Path) -> None:
    files = sorted(logged_search.glob("tune/*/events.out.tfevents.*"))
    assert len(files) == 2  # one per trial
    logged, params = {}, {}
    for path in files:
        trial_id = _trial_in(path.parent.name, logged_search)
        events = _events(path)
        params[trial_id] = _hparams(events)
        for event in events:
            for value in event.summary.value:
                if value.tag == "ray/tune/val_accuracy":
                    logged[(trial_id, event.step)] = value.simple_value
    assert logged == pytest.approx(_finals(logged_search))
    configs = _configs(logged_search)
    seed = json.loads((logged_search / "run.json").read_text())["seeds"]["randaugment"]
    assert seed in configs.values()  # one trial is the seeded one: Ray gives it no evaluated_params
    assert set(params) == set(configs)
    for trial_id, config in configs.items():
        assert params[trial_id] == pytest.approx(config) and set(config) == {
            "augment.num_ops", "augment.magnitude", "post.0.probability", "post.0.magnitude"}


@pytest.mark.skipif(not HAS_MLFLOW, reason="mlflow is not installed (pip install 'autoaug[mlflow]')")
def test_mlflow_local_store_has_a_run_per_trial_with_metrics_and_parameters(logged_search: Path) -> None:
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=f"sqlite:///{logged_search / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(f"autoaug-{logged_search.name}")
    runs = client.search_runs([experiment.experiment_id])
    finals = {trial: acc for (trial, epoch), acc in _finals(logged_search).items() if epoch == 2}
    configs = _configs(logged_search)
    assert len(runs) == 2
    for run in runs:
        trial_id = _trial_in(run.data.tags.get("trial_name") or run.info.run_name, logged_search)
        assert run.data.params == {k: str(v) for k, v in configs[trial_id].items()}  # the seeded trial's too
        assert run.data.metrics["val_accuracy"] == pytest.approx(finals[trial_id])


def test_unknown_or_missing_logger_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(AutoaugError, match="log must be one of tensorboard, mlflow, got 'wandb'"):
        SearchOptions(log=("wandb",))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(AutoaugError, match=r"--log mlflow needs mlflow: pip install 'autoaug\[mlflow\]'"):
        SearchOptions(log=["mlflow"])


def test_mlflow_skinny_without_a_sql_store_is_a_user_error_unless_a_server_is_set(monkeypatch) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "sqlalchemy" else find_spec(name)
                        or object())  # mlflow(-skinny) present, its SQL store not
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(AutoaugError, match=r"OUT/mlflow.db \(sqlite\), which needs sqlalchemy and alembic"):
        SearchOptions(log=["mlflow"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert SearchOptions(log=["mlflow"]).log == ("mlflow",)
