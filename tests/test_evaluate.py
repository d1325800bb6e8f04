"""`run_evaluation` end to end on real digits: the test split, result files, failures, the summary."""
from __future__ import annotations

import json
import math
import os
import statistics
import stat
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import autoaug.evaluate as evaluate_module
from autoaug.datasets import load_dataset
from autoaug.errors import AutoaugError
from autoaug.evaluate import EvaluationOptions, PolicyScore, run_evaluation
from autoaug.results import json_safe, write_json, write_parquet
from autoaug.trainer import EpochMetrics, TrainResult

TRAIN, TEST = 256, 100


@pytest.fixture(scope="module")
def digits_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """256 training and 100 test images of the real digits, as a user's .npz file."""
    digits = load_dataset("digits")
    path = tmp_path_factory.mktemp("data") / "digits-small.npz"
    np.savez(path, x_train=digits.train.images[:TRAIN].numpy(), y_train=digits.train.labels[:TRAIN].numpy(),
             x_test=digits.test.images[:TEST].numpy(), y_test=digits.test.labels[:TEST].numpy())
    return path


@pytest.fixture(params=[0o022, 0o077], ids=["umask022", "umask077"])
def umask(request):
    """Result files are 0644 whatever the umask: 077, common on shared machines, must not hide them."""
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


@pytest.fixture()
def umask_077():
    old = os.umask(0o077)
    yield
    os.umask(old)


def _strict(text: str) -> dict:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_run_evaluation_end_to_end(digits_npz, tmp_path, monkeypatch, umask_077):
    seen = []
    real_train = evaluate_module.train

    def train(policy, train_data, eval_data, config, *, on_epoch):
        seen.append((len(train_data), len(eval_data), config.seed))
        if config.seed == 2:  # a run that fails after one epoch
            result = real_train(policy, train_data, eval_data, config.__class__(**{**config.__dict__, "epochs": 1}),
                                on_epoch=on_epoch)
            return TrainResult("nan", "training loss became nan in epoch 2", result.epochs)
        return real_train(policy, train_data, eval_data, config, on_epoch=on_epoch)

    monkeypatch.setattr(evaluate_module, "train", train)
    progress = []
    options = EvaluationOptions(("cropflip",), dataset=str(digits_npz), model="proxy_tiny", epochs=2, seeds=3,
                                device="cpu", out=tmp_path)
    (score,) = run_evaluation(options, on_progress=progress.append)
    # the final protocol trains on the whole training file and scores on its test part
    assert seen == [(TRAIN, TEST, 0), (TRAIN, TEST, 1), (TRAIN, TEST, 2)]
    assert [(p.run, p.seed, p.metrics.epoch) for p in progress] == [(0, 0, 1), (0, 0, 2), (1, 1, 1), (1, 1, 2),
                                                                   (2, 2, 1)]
    assert all((p.runs, p.epochs, p.policy) == (3, 2, "cropflip") for p in progress)
    assert len(score.accuracies) == 2 and len(score.eces) == 2
    assert score.failures == ("seed 2: nan: training loss became nan in epoch 2",)
    assert all(round(a * TEST, 4) == round(a * TEST) for a in score.accuracies)  # scored on the 100 test images

    rows = pq.read_table(tmp_path / "evaluation.parquet").to_pylist()
    assert not any(key.startswith("val_") for key in rows[0])  # test metrics are named test_*
    last = {r["seed"]: r for r in rows if r["status"] == "ok" and r["epoch"] == 2}
    assert [last[0]["test_accuracy"], last[1]["test_accuracy"]] == pytest.approx(list(score.accuracies))
    assert [last[0]["test_ece"], last[1]["test_ece"]] == pytest.approx(list(score.eces))
    failed = [r for r in rows if r["status"] != "ok"]
    assert [(r["policy"], r["seed"], r["status"], r["error"]) for r in failed] == [
        ("cropflip", 2, "nan", "training loss became nan in epoch 2")]

    summary = _strict((tmp_path / "evaluation.json").read_text())
    (result,) = summary["results"]
    assert result["mean"] == pytest.approx(statistics.fmean(score.accuracies))
    assert result["std"] == pytest.approx(statistics.stdev(score.accuracies))
    assert result["mean_ece"] == pytest.approx(statistics.fmean(score.eces)) and result["runs"] == 2
    assert result["eces"] == list(score.eces) and result["accuracies"] == list(score.accuracies)
    assert result["policy"] == "cropflip"
    assert result["failures"] == list(score.failures)
    assert summary["options"]["batch_size"] == 32 and summary["options"]["out"] == str(tmp_path)  # resolved
    assert set(summary["versions"]) == {"autoaug", "torch", "torchvision"} and summary["created"].endswith("+00:00")
    assert "ECE" in summary["protocol"]
    for name in ("evaluation.json", "evaluation.parquet"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name


def test_failed_and_single_runs_write_null_not_nan(digits_npz, tmp_path, monkeypatch):
    monkeypatch.setattr(evaluate_module, "train",
                        lambda *args, **kwargs: TrainResult("oom", "out of device memory: 2 GiB", ()))
    options = EvaluationOptions(("cropflip",), dataset=str(digits_npz), model="proxy_tiny", epochs=1, seeds=1,
                                device="cpu", out=tmp_path)
    (score,) = run_evaluation(options)
    assert math.isnan(score.mean) and math.isnan(score.std) and math.isnan(score.mean_ece)
    text = (tmp_path / "evaluation.json").read_text()
    assert "NaN" not in text
    (result,) = _strict(text)["results"]
    assert result["mean"] is None and result["std"] is None and result["mean_ece"] is None
    assert result["failures"] == ["seed 0: oom: out of device memory: 2 GiB"]


def test_policy_score_statistics():
    one = PolicyScore("a", (0.9,), eces=(0.05,))
    assert one.mean == 0.9 and math.isnan(one.std) and one.mean_ece == 0.05  # one run has no spread
    two = PolicyScore("b", (0.8, 0.9), eces=(0.1, 0.2))
    assert two.mean == pytest.approx(0.85) and two.std == pytest.approx(math.sqrt(0.005))
    assert two.mean_ece == pytest.approx(0.15)


def test_summary_cells_show_ece_and_say_n_1():
    from autoaug_cli.evaluate_command import summary_cells

    assert summary_cells(PolicyScore("a", (0.9,), eces=(0.0512,))) == ("90.00%", "n=1", "0.051", "1")
    assert summary_cells(PolicyScore("b", (0.8, 0.9), eces=(0.1, 0.2))) == ("85.00%", "7.07", "0.150", "2")
    assert summary_cells(PolicyScore("c", (), ("seed 0: nan: x",))) == ("-", "-", "-", "0")


def test_json_is_strict_and_nan_becomes_null(tmp_path, umask):
    data = {"a": float("nan"), "b": [1.0, float("inf"), {"c": -float("inf")}], "d": (2, "x"), "e": 0.5}
    assert json_safe(data) == {"a": None, "b": [1.0, None, {"c": None}], "d": [2, "x"], "e": 0.5}
    path = write_json(data, tmp_path / "out" / "r.json")
    assert _strict(path.read_text()) == json_safe(data)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_parquet_is_readable_by_others_and_leaves_no_temporary(tmp_path, umask):
    path = write_parquet([{"a": 1}, {"b": "x"}], tmp_path / "t.parquet")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert pq.read_table(path).to_pylist() == [{"a": 1, "b": None}, {"a": None, "b": "x"}]
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]


def test_parquet_failure_leaves_the_old_file(tmp_path, monkeypatch):
    path = write_parquet([{"a": 1}], tmp_path / "t.parquet")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", broken)
    with pytest.raises(OSError, match="disk full"):
        write_parquet([{"a": 2}], path)
    assert pq.read_table(path).to_pylist() == [{"a": 1}] and [p.name for p in tmp_path.iterdir()] == ["t.parquet"]



def test_without_out_nothing_is_written_and_names_are_required(digits_npz, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(evaluate_module, "train", lambda *args, **kwargs: TrainResult("nan", "x", ()))
    run_evaluation(EvaluationOptions(("cropflip",), dataset=str(digits_npz), model="proxy_tiny", device="cpu"))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(AutoaugError, match=r"^name at least one policy \(a file or a shipped name such as cropflip\)$"):
        run_evaluation(EvaluationOptions((), dataset=str(digits_npz)))


def test_an_out_that_is_a_file_is_refused_before_anything_trains(digits_npz, tmp_path, monkeypatch):
    trained = []
    monkeypatch.setattr(evaluate_module, "train", lambda *args, **kwargs: trained.append(1))
    (tmp_path / "a-file").write_text("not a folder")
    for out, what in ((tmp_path / "a-file", "is a file"), (tmp_path / "a-file" / "eval", "lies under")):
        with pytest.raises(AutoaugError, match=f"^--out {out} {what}.*; choose another --out$"):
            run_evaluation(EvaluationOptions(("cropflip",), dataset=str(digits_npz), out=out))
    assert trained == [] and (tmp_path / "a-file").read_text() == "not a folder"


def test_runs_count_over_policies_and_seeds(digits_npz, monkeypatch):
    def train(policy, train_data, eval_data, config, *, on_epoch):
        metrics = EpochMetrics(1, 1.0, 0.5 + config.seed / 10, 1.0, 0.1, 1.0, 1.0)
        on_epoch(metrics)
        return TrainResult("ok", "", (metrics,))

    monkeypatch.setattr(evaluate_module, "train", train)
    progress = []
    scores = run_evaluation(EvaluationOptions(("cropflip", "randaugment"), dataset=str(digits_npz), epochs=1, seeds=2,
                                              device="cpu"), on_progress=progress.append)
    assert [(p.run, p.policy, p.seed) for p in progress] == [
        (0, "cropflip", 0), (1, "cropflip", 1), (2, "randaugment", 0), (3, "randaugment", 1)]
    assert [(s.policy, s.accuracies) for s in scores] == [("cropflip", (0.5, 0.6)), ("randaugment", (0.5, 0.6))]


def test_the_options_reach_the_dataset_every_run_and_the_learning_rate_record(digits_npz, tmp_path, monkeypatch):
    loads, configs = [], []

    def load(name, *, data_dir, download):
        loads.append((name, data_dir, download))
        return load_dataset(name, data_dir=data_dir)  # the file is local: nothing to fetch

    def train(policy, train_data, eval_data, config, *, on_epoch):
        configs.append(config)
        return TrainResult("nan", "x", ())

    monkeypatch.setattr(evaluate_module, "load_dataset", load)
    monkeypatch.setattr(evaluate_module, "train", train)
    run_evaluation(EvaluationOptions(("cropflip",), dataset=str(digits_npz), model="proxy_tiny", epochs=3, seeds=2,
                                     device="cpu", batch_size=16, lr=0.2, out=tmp_path, download=True))
    assert loads == [(str(digits_npz), None, True)]
    assert [(c.model, c.epochs, c.batch_size, c.lr, c.seed, c.device) for c in configs] == [
        ("proxy_tiny", 3, 16, 0.2, 0, "cpu"), ("proxy_tiny", 3, 16, 0.2, 1, "cpu")]
    # 0.2 per 512 images at batch 16: 0.2 * 16 / 512 = 0.00625
    assert _strict((tmp_path / "evaluation.json").read_text())["learning_rate"] == {
        "lr_per_512_images": 0.2, "batch_size": 16, "peak_lr": pytest.approx(0.00625), "warmup_fraction": 0.05,
        "schedule": "cosine"}
