"""The pre-registered quality protocol: search, then evaluate the found policy against every shipped one.

Everything runs through the `autoaug` CLI, as a user would run it:

  1. unpack the CIFAR-10 JPEG copy (../shared/data) into .data/ (a git-ignored folder)
  2. `autoaug search` on the training split only (validation carved from it)
  3. `autoaug evaluate` of the found policy and every shipped policy, several seeds each, trained on the
     whole training split and scored on the test split the search never saw
  4. a table: mean, std, n and the standard error per policy, and whether the found policy's mean is at
     or above the best shipped policy's; written as quality.json and quality.md in --out

  python bench/quality_protocol.py --preset cpu              # the first CPU protocol of BENCHMARKS.md (~30 min idle)
  python bench/quality_protocol.py --preset cpu4k            # the second: 4,000 images, 1,000 validation (~45 min)
  python bench/quality_protocol.py --preset gpu              # the GPU protocol: proxy search, PreAct-ResNet-18
  python bench/quality_protocol.py --preset gpu --smoke      # the same commands, tiny: checks the path works
  python bench/quality_protocol.py --preset cpu --print      # the exact commands, not run
  python bench/quality_protocol.py --preset cpu --table      # the table from a run's files (partial if cut short)

Exit status 0 when every command ran (whatever the table shows), 1 when one failed.
The GPU suite calls `main(["--preset", "gpu", ...])` or runs this file.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# ../shared beside a worktree, or shared/ inside a checkout (as on the device machine)
UNPACK = next((path for path in (ROOT.parent / "shared" / "data" / "unpack_cifar10.py",
                                 ROOT / "shared" / "data" / "unpack_cifar10.py") if path.exists()),
              ROOT.parent / "shared" / "data" / "unpack_cifar10.py")
# the `autoaug` command of this interpreter's install, else of this checkout (PYTHONPATH=. on the GPU machine)
AUTOAUG = ([sys.executable, "-m", "autoaug_cli"] if importlib.util.find_spec("autoaug_cli")
           else [sys.executable, str(ROOT / "bench" / "autoaug_here.py")])
SHIPPED = ("cropflip", "trivialaugment-wide", "randaugment", "autoaugment-cifar10", "autoaugment-svhn",
           "autoaugment-imagenet")


@dataclass(frozen=True)
class Preset:
    """One protocol: data, the search's settings, the evaluation's settings."""

    limit: int | None  # training images kept (test: a fifth of it); None: all of CIFAR-10
    search_model: str
    target_epochs: int
    budget: int
    val_size: int
    top_k: int
    eval_model: str
    eval_epochs: int
    seeds: int
    device: str
    space: str = "default"
    top_k_seeds: int = 2


PRESETS = {
    # 2,000 training images and a net that overfits them: strong policies have room to help
    "cpu": Preset(limit=2000, search_model="proxy_tiny", target_epochs=30, budget=24, val_size=400, top_k=2,
                  eval_model="proxy_tiny", eval_epochs=30, seeds=3, device="cpu"),
    # the second CPU protocol: twice the data, a validation split of 1,000 and 3 head-to-head seeds, so that
    # the search's final choice can resolve margins of a couple of points (the first could not)
    "cpu4k": Preset(limit=4000, search_model="proxy_tiny", target_epochs=30, budget=24, val_size=1000, top_k=2,
                    eval_model="proxy_tiny", eval_epochs=30, seeds=3, device="cpu", top_k_seeds=3),
    # the GPU protocol: search with the proxy net, then PreAct-ResNet-18, 80 epochs, 2 seeds
    "gpu": Preset(limit=None, search_model="proxy", target_epochs=40, budget=200, val_size=5000, top_k=3,
                  eval_model="preact_resnet18", eval_epochs=80, seeds=2, device="cuda"),
}
SMOKE = {"limit": 600, "target_epochs": 2, "budget": 4, "val_size": 100, "top_k": 1, "eval_epochs": 1, "seeds": 2}


def data_file(preset: Preset) -> Path:
    return ROOT / ".data" / (f"cifar10-{preset.limit // 1000}k.npz" if preset.limit and preset.limit >= 1000
                             else f"cifar10-{preset.limit or 'full'}.npz")


def commands(preset: Preset, out: Path) -> list[list[str]]:
    """The protocol's commands, in order (the unpack step only where its file is missing)."""
    data = data_file(preset)
    unpack = [sys.executable, str(UNPACK), "--format", "npz", "--out", str(data)]
    unpack += ["--limit", str(preset.limit)] if preset.limit else []
    search = [*AUTOAUG, "search", "--dataset", str(data), "--space", preset.space, "--model", preset.search_model,
              "--target-epochs", str(preset.target_epochs), "--budget", str(preset.budget),
              "--val-size", str(preset.val_size), "--top-k", str(preset.top_k), "--top-k-seeds",
              str(preset.top_k_seeds), "--device", preset.device, "--seed", "0", "--json",
              "--out", str(out / "search")]
    evaluate = [*AUTOAUG, "evaluate", str(out / "search" / "policy.json"), *SHIPPED, "--dataset", str(data),
                "--model", preset.eval_model, "--epochs", str(preset.eval_epochs), "--seeds", str(preset.seeds),
                "--device", preset.device, "--out", str(out / "evaluate")]
    return [unpack, search, evaluate]


@dataclass(frozen=True)
class Row:
    policy: str
    accuracies: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.accuracies)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accuracies) if self.accuracies else math.nan

    @property
    def std(self) -> float:
        return statistics.stdev(self.accuracies) if self.n > 1 else math.nan

    @property
    def sem(self) -> float:
        return self.std / math.sqrt(self.n) if self.n > 1 else math.nan


def table(evaluation: dict, found_name: str) -> tuple[list[Row], dict]:
    """Rows best mean first, and the verdict: found vs the best shipped policy."""
    rows = sorted((Row(r["policy"], tuple(r["accuracies"])) for r in evaluation["results"]),
                  key=lambda row: -row.mean if row.n else math.inf)
    found = next((row for row in rows if row.policy == found_name), Row(found_name, ()))
    shipped = [row for row in rows if row.policy != found_name and row.n]
    if not shipped or not found.n:  # a partial evaluation: nothing to compare yet
        return rows, {"found": found_name, "found_mean": found.mean if found.n else None, "best_shipped": None,
                      "best_shipped_mean": None, "margin": None, "at_or_above_best_shipped": None,
                      "margin_over_standard_errors": None}
    best = max(shipped, key=lambda row: row.mean)
    margin = found.mean - best.mean
    verdict = {"found": found.policy, "found_mean": found.mean, "best_shipped": best.policy,
               "best_shipped_mean": best.mean, "margin": margin, "at_or_above_best_shipped": margin >= 0,
               "margin_over_standard_errors": margin / math.hypot(found.sem, best.sem)
               if found.n > 1 and best.n > 1 and math.hypot(found.sem, best.sem) > 0 else None}
    return rows, verdict


def markdown(rows: list[Row], verdict: dict) -> str:
    lines = ["| policy | test accuracy, mean | std | n | standard error |", "|---|---:|---:|---:|---:|"]
    for row in rows:
        label = f"**found** (`{row.policy}`)" if row.policy == verdict["found"] else row.policy
        lines.append(f"| {label} | {100 * row.mean:.2f}% | {100 * row.std:.2f} | {row.n} | {100 * row.sem:.2f} |")
    lines.append("")
    if verdict["margin"] is None:
        lines.append("Not enough finished runs to compare the found policy with a shipped one.")
        return "\n".join(lines) + "\n"
    word = "at or above" if verdict["at_or_above_best_shipped"] else "below"
    lines.append(f"The found policy's mean is {word} the best shipped policy's ({verdict['best_shipped']}): "
                 f"margin {100 * verdict['margin']:+.2f} points.")
    return "\n".join(lines) + "\n"


def _run(command: list[str], log: Path) -> tuple[int, float, str]:
    start = time.monotonic()
    with log.open("a") as handle:
        handle.write(f"$ {shlex.join(command)}\n")
        handle.flush()
        done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=handle, text=True)
        handle.write(done.stdout)
    return done.returncode, time.monotonic() - start, done.stdout


def run(preset: Preset, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    log, timings = out / "protocol.log", {}
    for name, command in zip(("unpack", "search", "evaluate"), commands(preset, out)):
        if name == "unpack" and data_file(preset).exists():
            continue
        code, seconds, stdout = _run(command, log)
        timings[name] = seconds
        print(f"{name}: exit {code} after {seconds:.0f} s", file=sys.stderr)
        if code != 0:
            return 1
    return report(preset, out, timings)


def report(preset: Preset, out: Path, timings: dict[str, float]) -> int:
    """quality.json and quality.md from the files in ``out`` (an unfinished evaluation gives a partial table)."""
    evaluation = json.loads((out / "evaluate" / "evaluation.json").read_text())
    found = json.loads((out / "search" / "policy.json").read_text())["name"]
    rows, verdict = table(evaluation, found)
    run_record = json.loads((out / "search" / "run.json").read_text())
    record = {"preset": preset.__dict__, "seconds": timings, "verdict": verdict,
              "rows": [{"policy": r.policy, "mean": r.mean, "std": r.std, "n": r.n, "sem": r.sem,
                        "accuracies": list(r.accuracies)} for r in rows],
              "search_head_to_head": run_record.get("head_to_head"),
              "search_rank_correlation": run_record.get("rank_correlation")}
    (out / "quality.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / "quality.md").write_text(markdown(rows, verdict))
    print(markdown(rows, verdict))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny data, 1-2 epochs, 4 trials: checks the path")
    parser.add_argument("--out", type=Path, default=None, help="default: runs/quality-<preset>[-smoke]")
    parser.add_argument("--device", default=None, help="override the preset's device (cpu, cuda)")
    parser.add_argument("--print", dest="show", action="store_true", help="print the commands, run nothing")
    parser.add_argument("--table", action="store_true",
                        help="only write the table from the files already in --out (partial if the run was cut short)")
    args = parser.parse_args(argv)
    preset = PRESETS[args.preset]
    preset = replace(preset, **SMOKE) if args.smoke else preset
    preset = replace(preset, device=args.device) if args.device else preset
    out = (args.out or ROOT / "runs" / f"quality-{args.preset}{'-smoke' if args.smoke else ''}").resolve()
    if args.show:
        for command in commands(preset, out):
            print(shlex.join(command))
        return 0
    if args.table:
        return report(preset, out, {})
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    return run(preset, out)


if __name__ == "__main__":
    sys.exit(main())
