"""Search throughput: trials per hour, and the device's aggregate training images/s during a search
against one trainer alone on the same device (target: at least 90 %).

    python bench/search_throughput.py            # 200 trials, proxy net, CIFAR-10-sized data, GPU if any
    python bench/search_throughput.py --quick    # CPU-sized smoke run: a few tiny trials

The search is the product's default (Nevergrad + ASHA); top-k re-training is off unless --top-k is given,
so the wall time is the search's own.  Data: random uint8 CIFAR-sized images (throughput does not depend
on pixel values), or CIFAR-10 with --cifar DIR.  Every figure comes from one run, side by side.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from autoaug.datasets import load_dataset, split_train_val
from autoaug.policy import load_policy
from autoaug.search.options import SearchOptions
from autoaug.search.tune import run_search
from autoaug.trainer import TrainConfig, Trainer, resolve_device

FULL = {"trials": 200, "epochs": 5, "model": "proxy", "train_size": 45000, "val_size": 5000, "batch_size": 512}
QUICK = {"trials": 6, "epochs": 2, "model": "proxy_tiny", "train_size": 1000, "val_size": 200, "batch_size": 128}


def _dataset(args: argparse.Namespace, folder: Path) -> str:
    """A path ``load_dataset`` reads: CIFAR-10 itself, or random images of its shape in an .npz file."""
    if args.cifar:
        return "cifar10"
    rng = np.random.default_rng(0)
    count = args.train_size + args.val_size
    path = folder / "cifar-shaped.npz"
    np.savez(path, x_train=rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8),
             y_train=rng.permutation(np.arange(count) % 10), x_test=np.zeros((10, 32, 32, 3), np.uint8), y_test=np.arange(10))
    return str(path)


def single_trainer(dataset: str, args: argparse.Namespace, threads: int) -> float:
    """Training images/s of one trainer alone on the device, after its first (warm-up) epoch."""
    torch.set_num_threads(threads)
    data = load_dataset(dataset, data_dir=args.cifar)
    train, val = split_train_val(data.train, val_size=args.val_size, seed=0, train_size=args.train_size)
    config = TrainConfig(model=args.model, epochs=args.epochs, batch_size=args.batch_size, device=args.device)
    trainer = Trainer(load_policy("trivialaugment-wide"), train, val, config)
    speeds = [trainer.run_epoch().images_per_second for _ in range(args.epochs)]
    return float(np.mean(speeds[1:] or speeds))


def search(dataset: str, args: argparse.Namespace, out: Path) -> dict[str, float]:
    options = SearchOptions(dataset=dataset, data_dir=args.cifar, model=args.model, epochs=args.epochs,
                            budget=str(args.trials), train_size=args.train_size, val_size=args.val_size,
                            batch_size=args.batch_size, device=args.device, gpus_per_trial=args.gpus_per_trial,
                            top_k=args.top_k, out=str(out))
    start = time.perf_counter()
    outcome = run_search(options)
    wall = time.perf_counter() - start
    rows = pq.read_table(outcome.trials_path).to_pylist()
    images = sum(r["images_per_second"] * r["epoch_seconds"] for r in rows if r.get("epoch_seconds"))
    first_start = min(r["reported_at"] - r["time_total_s"] for r in rows if r.get("reported_at"))
    last_result = max(r["reported_at"] for r in rows if r.get("reported_at"))
    run = json.loads(outcome.run_path.read_text())
    return {"wall_s": wall, "trials": outcome.trials, "trials_per_hour": 3600 * outcome.trials / wall,
            "epochs_trained": len(rows), "aggregate_images_per_s_end_to_end": images / wall,
            "aggregate_images_per_s_while_training": images / max(1e-9, last_result - first_start),
            "concurrent_trials": run["resources"]["concurrency"], "gpus_per_trial": run["resources"]["gpus"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a CPU-sized smoke run")
    parser.add_argument("--trials", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--model")
    parser.add_argument("--train-size", type=int)
    parser.add_argument("--val-size", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--gpus-per-trial", type=float)
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cifar", help="CIFAR-10 folder (python pickle layout) instead of random images")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    with tempfile.TemporaryDirectory() as folder:
        dataset = _dataset(args, Path(folder))
        cores = torch.get_num_threads()
        # alone: with one core, as a trial has, and with all of them; the better one is the baseline
        alone = {threads: single_trainer(dataset, args, threads) for threads in sorted({1, cores})}
        torch.set_num_threads(cores)
        figures = search(dataset, args, Path(folder) / "search")
    for threads, speed in alone.items():
        figures[f"single_trainer_images_per_s_{threads}_threads"] = speed
    figures["aggregate_vs_best_single_while_training"] = \
        figures["aggregate_images_per_s_while_training"] / max(alone.values())
    device = resolve_device(args.device)
    figures["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {cores} cores"
    settings = {k: getattr(args, k) for k in ("trials", "epochs", "model", "train_size", "val_size", "batch_size")}
    if args.json:
        print(json.dumps({"settings": settings, **figures}))
        return
    print(f"settings: {settings}")
    for key, value in figures.items():
        print(f"{key:40s} {value:,.2f}" if isinstance(value, float) else f"{key:40s} {value}")


if __name__ == "__main__":
    main()
