"""bench/quality_protocol.py: the commands it runs and the table it publishes (nothing is trained here)."""
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parent.parent / "bench" / "quality_protocol.py"
_SPEC = importlib.util.spec_from_file_location("quality_protocol", _PATH)
protocol = importlib.util.module_from_spec(_SPEC)
sys.modules["quality_protocol"] = protocol  # dataclasses look their module up while the class is built
_SPEC.loader.exec_module(protocol)


# BENCHMARKS.md's two pre-registered CPU protocols: (preset, images, validation images, head-to-head seeds)
@pytest.mark.parametrize("preset, limit, val_size, top_k_seeds", [("cpu", 2000, 400, 2), ("cpu4k", 4000, 1000, 3)])
def test_the_cpu_commands_are_the_registered_ones(tmp_path, preset, limit, val_size, top_k_seeds):
    unpack, search, evaluate = protocol.commands(protocol.PRESETS[preset], tmp_path)
    assert unpack[-2:] == ["--limit", str(limit)] and unpack[-3].endswith(f".data/cifar10-{limit // 1000}k.npz")
    text = " ".join(search)
    for part in ("--space default", "--model proxy_tiny", "--target-epochs 30", "--budget 24",
                 f"--val-size {val_size}", "--top-k 2", f"--top-k-seeds {top_k_seeds}", "--device cpu", "--seed 0"):
        assert part in text
    assert evaluate[evaluate.index("evaluate") + 1] == str(tmp_path / "search" / "policy.json")
    assert set(protocol.SHIPPED) <= set(evaluate) and "--seeds 3" in " ".join(evaluate)
    assert "--epochs 30" in " ".join(evaluate) and "--model proxy_tiny" in " ".join(evaluate)


def test_the_gpu_preset_is_the_issues_protocol_and_smoke_is_tiny(tmp_path):
    gpu = protocol.PRESETS["gpu"]
    assert (gpu.search_model, gpu.eval_model, gpu.eval_epochs, gpu.seeds, gpu.limit) == \
        ("proxy", "preact_resnet18", 80, 2, None)
    assert protocol.main(["--preset", "gpu", "--smoke", "--print", "--out", str(tmp_path)]) == 0


def test_table_reports_mean_std_n_sem_and_the_verdict():
    evaluation = {"results": [
        {"policy": "found", "accuracies": [0.60, 0.62, 0.64]},
        {"policy": "cropflip", "accuracies": [0.58, 0.60, 0.62]},
        {"policy": "trivialaugment-wide", "accuracies": [0.61, 0.61, 0.61]},
    ]}
    rows, verdict = protocol.table(evaluation, "found")
    assert [r.policy for r in rows] == ["found", "trivialaugment-wide", "cropflip"]
    assert rows[0].std == pytest.approx(0.02) and rows[0].sem == pytest.approx(0.02 / math.sqrt(3))
    assert verdict["best_shipped"] == "trivialaugment-wide" and verdict["margin"] == pytest.approx(0.01)
    assert verdict["at_or_above_best_shipped"] is True
    text = protocol.markdown(rows, verdict)
    assert "| **found** (`found`) | 62.00% | 2.00 | 3 | 1.15 |" in text
    assert "at or above the best shipped policy's (trivialaugment-wide): margin +1.00 points" in text


def test_a_partial_evaluation_gives_a_partial_table():
    rows, verdict = protocol.table({"results": [{"policy": "found", "accuracies": [0.6]}]}, "found")
    assert [r.n for r in rows] == [1] and verdict["margin"] is None
    assert "Not enough finished runs" in protocol.markdown(rows, verdict)

