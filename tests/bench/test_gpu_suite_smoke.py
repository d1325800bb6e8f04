"""bench/gpu_suite.py --smoke runs on CPU, so the one GPU command cannot rot between GPU sessions."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

SUITE = Path(__file__).parents[2] / "bench" / "gpu_suite.py"
sys.path.insert(0, str(SUITE.parent))
import gpu_suite  # noqa: E402


def _smoke(out: Path, parts: str) -> dict:
    # limits x3: a loaded CI machine must not cut a part short (the limits themselves are checked below)
    done = subprocess.run([sys.executable, str(SUITE), "--smoke", "--parts", parts, "--out", str(out),
                           "--time-scale", "3"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    suite = json.loads((out / "suite.json").read_text())
    assert [p["part"] for p in suite["parts"]] == parts.split(",")
    assert all(p["status"] == "ok" and p["rows"] for p in suite["parts"]), suite
    assert (out / "suite.md").read_text().startswith("GPU suite, ")
    return {p["part"]: p["rows"] for p in suite["parts"]}


def test_the_whole_smoke_suite_writes_every_parts_figures(tmp_path):
    """The issue's `python bench/gpu_suite.py --smoke`, all four parts (about 75 s on two idle cores)."""
    rows = _smoke(tmp_path, ",".join(("augment", "train", "search", "quality")))
    assert [r["policy"] for r in rows["augment"]] == ["cropflip", "trivialaugment-wide", "autoaugment-cifar10",
                                                      "randaugment"]
    assert all(r["ours_images_per_s"] > 0 and r["ratio"] == pytest.approx(
        r["ours_images_per_s"] / r["torchvision_per_image_images_per_s"]) for r in rows["augment"])
    assert [r["model"] for r in rows["train"]] == ["proxy_tiny", "proxy"]
    assert all(r["images_per_s_cropflip"] > 0 and 0 < r["augment_share_of_step"] for r in rows["train"])
    search = rows["search"][-1]
    assert search["trials"] == 4 and search["trials_per_hour"] > 0
    quality = rows["quality"][0]
    if "skipped" in quality:  # a checkout without the CIFAR-10 pack beside it
        assert not gpu_suite._quality_data_present("cpu")
    else:
        assert quality["returncode"] == 0 and "margin" in quality["output_tail"], quality


def test_a_part_past_its_limit_is_cut_and_reported(tmp_path):
    args = gpu_suite.argparse.Namespace(device="cpu", smoke=True, data=None)
    result = gpu_suite.run_part("augment", args, tmp_path, 0.5)  # torch alone takes longer to import
    assert result["status"] == "cut at its 0.5 s limit" and result["rows"] == []
    assert "cut at its 0.5 s limit" in gpu_suite.markdown({"machine": "m", "date": "d", "smoke": True, "seconds": 1.0,
                                                           "parts": [result]})


def test_the_quality_part_runs_the_gpu_protocol_on_the_gpu_and_the_cpu_one_in_the_smoke_run(tmp_path, monkeypatch):
    commands = []
    monkeypatch.setattr(gpu_suite, "_quality_data_present", lambda preset: True)
    monkeypatch.setattr(gpu_suite.subprocess, "run",
                        lambda command, **kwargs: commands.append(command) or SimpleNamespace(returncode=0, stdout="",
                                                                                             stderr=""))
    for smoke in (False, True):
        args = gpu_suite.argparse.Namespace(device="cuda", smoke=smoke, data=None, out=str(tmp_path))
        gpu_suite.part_quality(args, {}, gpu_suite.Rows(tmp_path / f"quality-{smoke}.jsonl"))
    full, smoke_run = commands
    assert full[-2:] == ["--preset", "gpu"] and "--smoke" in full and "--preset" not in smoke_run
    assert full[full.index("--out") + 1] == str(tmp_path / "quality")
