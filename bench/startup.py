"""Start-up time of autoaug commands: CPU time (user + sys) and wall time, medians of --repeat runs.

    python bench/startup.py                      # this checkout
    python bench/startup.py --before /tmp/base   # and, interleaved, another checkout (e.g. `git archive`)

CPU time is the steadier figure on a shared machine: wall time grows with whatever else runs.  With
--before, each command runs alternately in both checkouts, so the ratio is measured side by side.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = {"--help": ["--help"], "validate": ["validate", "cropflip", "randaugment"], "list ops": ["list", "ops"],
            "list policies": ["list", "policies"], "list datasets": ["list", "datasets"],
            "list models": ["list", "models"], "search --help": ["search", "--help"], "import autoaug": None}


def _checkout_path(root: Path, into: Path) -> str:
    """A folder where `autoaug` and `autoaug_cli` import from ``root`` (the CLI's folder is `cli/`)."""
    into.mkdir(parents=True, exist_ok=True)
    for name, target in (("autoaug", root / "autoaug"), ("autoaug_cli", root / "cli")):
        (into / name).symlink_to(target)
    return str(into)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _time(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    cpu, wall = _children_cpu(), time.perf_counter()
    subprocess.run(argv, env=env, cwd=tempfile.gettempdir(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=False)
    return _children_cpu() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--before", type=Path, help="another checkout to time side by side")
    args = parser.parse_args()
    here = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        setups = {"now": {**os.environ, "PYTHONPATH": _checkout_path(here, Path(tmp, "now")), "COLUMNS": "200"}}
        if args.before:
            setups = {"before": {**setups["now"], "PYTHONPATH": _checkout_path(args.before, Path(tmp, "before"))},
                      **setups}
        print("| command | " + " | ".join(f"CPU {k} | wall {k}" for k in setups) + " |")
        for name, command in COMMANDS.items():
            argv = [sys.executable, *(["-c", "import autoaug"] if command is None else ["-m", "autoaug_cli", *command])]
            runs: dict[str, list[tuple[float, float]]] = {k: [] for k in setups}
            for _ in range(args.repeat):
                for label, env in setups.items():
                    runs[label].append(_time(argv, env))
            cells = [f"{statistics.median(c for c, _ in r):.2f} s | {statistics.median(w for _, w in r):.2f} s"
                     for r in runs.values()]
            print(f"| `{name}` | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
