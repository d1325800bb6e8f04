"""The search's progress events: counts, and which trial at which epoch the best score comes from."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from autoaug.search.options import Budget
from autoaug.search.outcome import Progress
from autoaug.search.tune import Recorder


@dataclass
class _Trial:
    trial_id: str
    status: str = "RUNNING"
    config: dict = field(default_factory=lambda: {"mixing.mixup_alpha": 0.1})


def test_progress_names_the_trial_and_epoch_of_the_best_score(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path, epochs=2, budget=Budget(trials=3), seed=0)
    a, b = _Trial("a"), _Trial("b")
    for trial, epoch, accuracy in [(a, 1, 0.5), (b, 1, 0.8), (a, 2, 0.8), (b, 2, 0.6)]:
        recorder.on_trial_result(0, [a, b], trial, {"epoch": epoch, "val_accuracy": accuracy})
    progress = recorder.progress()
    # b reached 0.8 first (epoch 1); a's equal score came a epoch later
    assert (progress.best, progress.best_trial, progress.best_epoch) == (0.8, "b", 1)
    assert (progress.phase, progress.done, progress.running, progress.total) == ("search", 0, 2, 3)
    a.status = "TERMINATED"
    recorder.on_trial_complete(0, [a, b], a)
    assert recorder.progress().done == 1


def test_progress_defaults_let_other_phases_send_only_what_they_count() -> None:
    p = Progress(2, total=6, phase="retrain")
    assert (p.running, p.failed, p.best, p.elapsed, p.remaining, p.best_trial, p.best_epoch) == \
        (0, 0, None, 0.0, None, None, None)
