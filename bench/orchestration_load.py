"""What the search machinery costs alone: a search of synthetic trials (no training, microseconds each).

    nice -n 10 python bench/orchestration_load.py --trials 1000       # Nevergrad + ASHA, all cores
    python bench/orchestration_load.py --trials 50                    # a quick look

The ``synthetic`` model scores a policy from its parameters in microseconds and reports every epoch like
a real trial, so the wall time is the orchestration's: the searcher, the scheduler, Ray's actors and the
trial record.  Reports trials/h, the driver's memory (RSS) every 10 % of the trials, and the overhead per
trial (wall time x concurrent trials / trials): what each trial costs beyond its training.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

from autoaug.results import read_trials
from autoaug.search.options import SearchOptions
from autoaug.search.outcome import Progress
from autoaug.search.tune import run_search


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--algo", default="nevergrad")
    parser.add_argument("--scheduler", default="asha")
    args = parser.parse_args()
    memory: list[tuple[int, float, float]] = []
    start = time.perf_counter()

    def sample(progress: Progress) -> None:
        finished = progress.done + progress.failed
        if not memory or finished >= memory[-1][0] + max(1, args.trials // 10):
            memory.append((finished, round(time.perf_counter() - start, 1), round(rss_mb(), 1)))

    with tempfile.TemporaryDirectory() as folder:
        options = SearchOptions(dataset="digits", model="synthetic", budget=str(args.trials), epochs=args.epochs,
                                algo=args.algo, scheduler=args.scheduler, top_k=0, out=str(Path(folder) / "run"))
        outcome = run_search(options, on_progress=sample)
        wall = time.perf_counter() - start
        rows = read_trials(outcome.out)
        run = json.loads(outcome.run_path.read_text())
    reported = sorted(r["reported_at"] for r in rows if r.get("reported_at"))
    searching = reported[-1] - reported[0]
    concurrency = run["resources"]["concurrency"]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    figures = {
        "trials": outcome.trials, "completed": outcome.completed, "stopped_early": outcome.stopped_early,
        "failed": outcome.failed, "epochs_reported": sum(1 for r in rows if r.get("epoch")),
        "wall_s_with_startup": round(wall, 1), "search_s_first_to_last_report": round(searching, 1),
        "trials_per_hour": round(3600 * outcome.trials / searching),
        "overhead_s_per_trial": round(searching * concurrency / outcome.trials, 3),
        "concurrency": concurrency, "driver_cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "driver_rss_mb_by_finished_trials": memory, "driver_max_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "cores": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 1),
    }
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
