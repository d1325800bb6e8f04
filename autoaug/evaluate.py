"""The final protocol: train on the full training set, report test accuracy over seeds, per policy."""
from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from autoaug.datasets import load_dataset
from autoaug.errors import AutoaugError
from autoaug.policy import Policy, load_policy
from autoaug.results import check_out_folder, library_versions, write_json, write_parquet
from autoaug.trainer import EpochMetrics, TrainConfig, auto_batch_size, learning_rate_record, train


@dataclass(frozen=True)
class EvaluationOptions:
    policies: tuple[str, ...]
    dataset: str = "digits"
    data_dir: str | None = None
    model: str = "preact_resnet18"
    epochs: int = 10
    seeds: int = 1
    device: str = "auto"
    batch_size: int | None = None  # None: the trainer's auto_batch_size of the training set
    lr: float = TrainConfig.lr  # per 512 images; scaled linearly to the batch size (see trainer.scaled_lr)
    out: Path | None = None
    download: bool = False  # fetch a named dataset's files into data_dir if absent


@dataclass(frozen=True)
class Progress:
    """One finished epoch of one run; ``run`` counts from 0 over policies x seeds."""

    run: int
    runs: int
    policy: str
    seed: int
    metrics: EpochMetrics
    epochs: int


@dataclass(frozen=True)
class PolicyScore:
    """Test accuracy and calibration error (ECE) of each run that finished, and why the others failed."""

    policy: str
    accuracies: tuple[float, ...]
    failures: tuple[str, ...] = field(default_factory=tuple)
    eces: tuple[float, ...] = field(default_factory=tuple)

    @property
    def mean(self) -> float:
        """Mean test accuracy; NaN when no run finished (written as null)."""
        return statistics.fmean(self.accuracies) if self.accuracies else math.nan

    @property
    def std(self) -> float:
        """Sample standard deviation over runs; NaN for fewer than two (one run has no spread)."""
        return statistics.stdev(self.accuracies) if len(self.accuracies) > 1 else math.nan

    @property
    def mean_ece(self) -> float:
        """Mean expected calibration error (15 bins) on the test set; NaN when no run finished."""
        return statistics.fmean(self.eces) if self.eces else math.nan


def _load_all(names: tuple[str, ...]) -> list[Policy]:
    if not names:
        raise AutoaugError("name at least one policy (a file or a shipped name such as cropflip)")
    return [load_policy(name) for name in names]


def run_evaluation(options: EvaluationOptions, *,
                   on_progress: Callable[[Progress], None] | None = None) -> list[PolicyScore]:
    """Train each policy with ``options.seeds`` seeds on the full training set; score on the test set."""
    if options.out is not None:
        check_out_folder(options.out)
    policies = _load_all(options.policies)
    dataset = load_dataset(options.dataset, data_dir=options.data_dir, download=options.download)
    test = dataset.test_split()  # an image folder without test/ is an error before any training
    options = replace(options, batch_size=options.batch_size or auto_batch_size(len(dataset.train)))
    runs = len(policies) * options.seeds
    rows: list[dict] = []
    scores = []
    for p_index, policy in enumerate(policies):
        accuracies, failures, eces = [], [], []
        for seed in range(options.seeds):
            run = p_index * options.seeds + seed
            config = TrainConfig(model=options.model, epochs=options.epochs, batch_size=options.batch_size,
                                 lr=options.lr, seed=seed, device=options.device)

            def report(metrics: EpochMetrics, run: int = run, seed: int = seed, name: str = policy.name) -> None:
                rows.append({"policy": name, "seed": seed, "status": "ok", **_flat(metrics)})
                if on_progress is not None:
                    on_progress(Progress(run, runs, name, seed, metrics, options.epochs))

            result = train(policy, dataset.train, test, config, on_epoch=report)
            if result.status == "ok":
                accuracies.append(result.val_accuracy)
                eces.append(result.epochs[-1].val_ece)
            else:
                failures.append(f"seed {seed}: {result.status}: {result.message}")
                rows.append({"policy": policy.name, "seed": seed, "status": result.status, "error": result.message})
            _save(options, scores + [PolicyScore(policy.name, tuple(accuracies), tuple(failures), tuple(eces))], rows)
        scores.append(PolicyScore(policy.name, tuple(accuracies), tuple(failures), tuple(eces)))
    _save(options, scores, rows)
    return scores


def _flat(metrics: EpochMetrics) -> dict:
    """One parquet row: the trainer's held-out metrics are test-set metrics here, and are named so."""
    data = asdict(metrics)
    grid = data.pop("grid_accuracy")
    row = {key.replace("val_", "test_", 1) if key.startswith("val_") else key: value for key, value in data.items()}
    return {**row, **{f"test_grid_accuracy.{key}": value for key, value in grid.items()}}


def _save(options: EvaluationOptions, scores: list[PolicyScore], rows: list[dict]) -> None:
    """Rewrite the result files after every run, so an interrupted evaluation loses nothing finished."""
    if options.out is None:
        return
    out = Path(options.out)
    summary = {
        "options": {**asdict(options), "out": str(out)},
        "protocol": "train on the full training set, test accuracy and ECE at the last epoch; "
                    "std is null for one run, mean is null when no run finished",
        "learning_rate": learning_rate_record(TrainConfig(lr=options.lr), options.batch_size),
        "results": [{"policy": s.policy, "runs": len(s.accuracies), "mean": s.mean, "std": s.std,
                     "accuracies": list(s.accuracies), "mean_ece": s.mean_ece, "eces": list(s.eces),
                     "failures": list(s.failures)} for s in scores],
        "versions": library_versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(summary, out / "evaluation.json")
    if rows:
        write_parquet(rows, out / "evaluation.parquet")
