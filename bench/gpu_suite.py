"""Every GPU figure in one command: augmentation, training and search throughput, and search quality.

    PYTHONPATH=. python bench/gpu_suite.py --data ../shared/data/cifar10-jpeg.npz   # one H100/H200, <= 8 min
    PYTHONPATH=. python bench/gpu_suite.py --smoke                                 # CPU, tiny, < 2 min
    PYTHONPATH=. python bench/gpu_suite.py --smoke --parts augment,train           # what the default tests run

Parts, each in a process of its own under its own time limit (a part cut off keeps the rows it wrote):

- ``augment``: our batched policies against torchvision's per-image transforms in a DataLoader over all
  cores (crop+flip, TA-wide, AutoAugment, RandAugment): images/s and the ratio (bench/augment_throughput.py).
- ``train``: training images/s of proxy, preact_resnet18 and wrn_28_10 with crop+flip only and with
  TA-wide, and augmentation's share of a step (bench/train_throughput.py).
- ``search``: a search of 200 proxy trials (Nevergrad + ASHA): trials/h, GPU utilisation, and the
  aggregate training images/s against one trainer alone (bench/search_throughput.py).
- ``quality``: the search-quality protocol cut to fit (``bench/quality_protocol.py --preset gpu --smoke``;
  the CPU preset in the smoke run), where
  that file exists; the full protocol is a second, separately timed command (see bench/README.md).

Writes ``suite.json`` and ``suite.md`` (a table ready for BENCHMARKS.md) under ``--out``, and prints the table.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # the sibling benches, and autoaug from this checkout

PARTS = ("augment", "train", "search", "quality")
# seconds per part: full on one H200 (sum 465 s; measured there: augment 15 s, train 28 s, search 200 trials
# 219 s, quality 78 s), smoke on 2 CPU cores
LIMITS = {"full": {"augment": 45, "train": 90, "search": 240, "quality": 90},
          "smoke": {"augment": 30, "train": 30, "search": 45, "quality": 90}}
SIZES = {
    "full": {"aug_images": 16384, "aug_batch_cpu": 8192, "aug_batch_cuda": 65536, "aug_reps": 5, "loader_epochs": 1,
             "train_images": 20000, "train_batch": 512, "train_epochs": 2,
             "models": ("proxy", "preact_resnet18", "wrn_28_10"),
             "trials": 200, "search_epochs": 3, "search_model": "proxy", "train_size": 8000, "val_size": 2000,
             "search_batch": 256},
    "smoke": {"aug_images": 256, "aug_batch_cpu": 256, "aug_batch_cuda": 256, "aug_reps": 1, "loader_epochs": 1,
              "train_images": 128, "train_batch": 64, "train_epochs": 1, "models": ("proxy_tiny", "proxy"),
              "trials": 4, "search_epochs": 1, "search_model": "proxy_tiny", "train_size": 200, "val_size": 100,
              "search_batch": 64},
}
AUGMENT_POLICIES = ("cropflip", "trivialaugment-wide", "autoaugment-cifar10", "randaugment")


def _torchvision_policy(name: str) -> Callable:
    from torchvision.transforms import AutoAugmentPolicy, v2
    return {"cropflip": lambda: v2.Identity(), "trivialaugment-wide": lambda: v2.TrivialAugmentWide(),
            "autoaugment-cifar10": lambda: v2.AutoAugment(AutoAugmentPolicy.CIFAR10),
            "randaugment": lambda: v2.RandAugment()}[name]


class Rows:
    """A part's rows, each appended to a JSON-lines file as soon as it is measured."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def add(self, **row: object) -> None:
        with open(self.path, "a") as handle:
            handle.write(json.dumps(row, default=str) + "\n")
        print(f"  {row}", flush=True)


def _device():
    import torch
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def part_augment(args: argparse.Namespace, sizes: dict, rows: Rows) -> None:
    import augment_throughput as aug
    device = _device()
    images = aug.load_images(args.data or "random", sizes["aug_images"])
    batch = sizes[f"aug_batch_{device.type}"]
    for name in AUGMENT_POLICIES:
        theirs = aug.torchvision_loader(_torchvision_policy(name), images, sizes["loader_epochs"])
        mine = aug.ours(aug.crop_flip_policy(name), images, device, batch, sizes["aug_reps"])
        rows.add(policy=name, torchvision_per_image_images_per_s=theirs, ours_images_per_s=mine,
                 ours_device=str(device), ratio=mine / theirs, loader_workers=os.cpu_count())


def _train_data(args: argparse.Namespace, count: int):
    import torch

    from autoaug.datasets import ArrayData, load_dataset
    if args.data:
        train = load_dataset(args.data).train
        return train.subset(torch.arange(min(count, len(train))))
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, 3, 32, 32), dtype=torch.uint8, generator=gen)
    return ArrayData(images, torch.randint(0, 10, (count,), generator=gen), tuple(map(str, range(10))))


def part_train(args: argparse.Namespace, sizes: dict, rows: Rows) -> None:
    import train_throughput as tt
    data = _train_data(args, sizes["train_images"])
    settings = SimpleNamespace(epochs=sizes["train_epochs"], batch_size=sizes["train_batch"], device=args.device)
    for model in sizes["models"]:
        off = tt.ours(model, "cropflip", data, settings)
        on = tt.ours(model, "trivialaugment-wide", data, settings)
        share = tt.augment_share("trivialaugment-wide", data, settings, on)
        rows.add(model=model, images_per_s_cropflip=off, images_per_s_ta_wide=on, slowdown=off / on,
                 augment_share_of_step=share, device=str(_device()), batch=sizes["train_batch"])


@contextmanager
def gpu_utilisation(samples: list[float], every: float = 0.5) -> Iterator[None]:
    """Samples the GPU's utilisation (torch.cuda.utilization, else nvidia-smi) in a thread while inside."""
    import torch
    stop = threading.Event()

    def read() -> float | None:
        try:
            return float(torch.cuda.utilization())
        except Exception:  # no pynvml: ask nvidia-smi
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=5).stdout
                return float(out.split()[0])
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                return None

    def loop() -> None:
        while not stop.wait(every):
            value = read()
            if value is not None:
                samples.append(value)

    thread = threading.Thread(target=loop, daemon=True)
    if torch.cuda.is_available():
        thread.start()
    try:
        yield
    finally:
        stop.set()


def _progress_rows(rows: Rows, samples: list[float], every: float = 15.0) -> Callable:
    """A progress row every ``every`` seconds: what a search cut at its limit leaves behind."""
    last = [time.monotonic()]

    def write(progress) -> None:
        if time.monotonic() - last[0] >= every:
            last[0] = time.monotonic()
            util = sum(samples) / len(samples) if samples else None
            rows.add(progress_trials_finished=progress.done + progress.failed, elapsed_s=progress.elapsed,
                     gpu_utilisation_mean_percent=util)
    return write


def part_search(args: argparse.Namespace, sizes: dict, rows: Rows) -> None:
    import search_throughput as st
    import torch
    settings = SimpleNamespace(cifar=None, model=sizes["search_model"], epochs=sizes["search_epochs"],
                               trials=sizes["trials"], train_size=sizes["train_size"], val_size=sizes["val_size"],
                               batch_size=sizes["search_batch"], device=args.device, gpus_per_trial=None, top_k=0)
    with tempfile.TemporaryDirectory() as folder:
        dataset = args.data or st._dataset(settings, Path(folder))
        alone = st.single_trainer(dataset, settings, torch.get_num_threads())
        rows.add(single_trainer_images_per_s=alone, model=settings.model)
        samples: list[float] = []
        st.run_search = functools.partial(st.run_search, on_progress=_progress_rows(rows, samples))
        with gpu_utilisation(samples):
            figures = st.search(dataset, settings, Path(folder) / "search")
        util = sum(samples) / len(samples) if samples else None
        rows.add(**figures, gpu_utilisation_mean_percent=util, gpu_samples=len(samples),
                 aggregate_vs_single_while_training=figures["aggregate_images_per_s_while_training"] / alone)


def part_quality(args: argparse.Namespace, sizes: dict, rows: Rows) -> None:
    script = HERE / "quality_protocol.py"
    if not script.exists():
        rows.add(skipped=f"{script.name} is not in this checkout: no quality figures")
        return
    # on the GPU machine, the GPU protocol cut to fit; in the CPU smoke run, the CPU one
    preset = "cpu" if args.smoke else "gpu"
    if not _quality_data_present(preset):
        rows.add(skipped="no CIFAR-10 JPEG pack (../shared/data or shared/data): no quality figures")
        return
    folder = Path(args.out) / "quality"  # a fresh run each time: the protocol refuses a used folder
    shutil.rmtree(folder, ignore_errors=True)
    command = [sys.executable, str(script), "--smoke", "--out", str(folder)]
    command += [] if args.smoke else ["--preset", preset]
    done = subprocess.run(command, capture_output=True, text=True)
    rows.add(command=" ".join(command[1:]), returncode=done.returncode, output_tail=done.stdout[-3000:],
             error_tail=done.stderr[-1500:])


def _quality_data_present(preset: str) -> bool:
    """Whether the quality protocol finds its data: the unpacked file, or the pack to unpack it from."""
    import dataclasses

    import quality_protocol as protocol  # beside this file

    smoke = dataclasses.replace(protocol.PRESETS[preset], **protocol.SMOKE)
    return protocol.UNPACK.exists() or protocol.data_file(smoke).exists()


PART_FUNCTIONS = {"augment": part_augment, "train": part_train, "search": part_search, "quality": part_quality}


def run_part(name: str, args: argparse.Namespace, out: Path, limit: float) -> dict:
    """The part in a child process, killed at ``limit`` seconds; its rows so far either way."""
    rows_path = out / f"{name}.jsonl"
    rows_path.unlink(missing_ok=True)
    command = [sys.executable, __file__, "--run-part", name, "--out", str(out), "--device", args.device]
    command += (["--smoke"] if args.smoke else []) + (["--data", args.data] if args.data else [])
    start, status = time.monotonic(), "ok"
    try:
        done = subprocess.run(command, timeout=limit)
        status = "ok" if done.returncode == 0 else f"failed (exit {done.returncode})"
    except subprocess.TimeoutExpired:
        status = f"cut at its {limit:g} s limit"
    rows = [json.loads(line) for line in rows_path.read_text().splitlines()] if rows_path.exists() else []
    return {"part": name, "status": status, "seconds": time.monotonic() - start, "limit_s": limit, "rows": rows}


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value).replace("|", "/").replace("\n", " ")[:80]


def markdown(suite: dict) -> str:
    lines = [f"GPU suite, {suite['machine']}, {suite['date']} ({'smoke' if suite['smoke'] else 'full'}; "
             f"{suite['seconds']:.0f} s)", ""]
    for part in suite["parts"]:
        lines += [f"**{part['part']}**: {part['status']}, {part['seconds']:.0f} s of {part['limit_s']:g}", ""]
        columns = list(dict.fromkeys(k for row in part["rows"] for k in row if k not in ("output_tail", "error_tail")))
        if columns:
            lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
            lines += ["| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |" for row in part["rows"]]
            lines.append("")
    return "\n".join(lines)


def _machine() -> str:
    import torch
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               "unknown CPU") if os.path.exists("/proc/cpuinfo") else "unknown CPU"
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return f"{gpu}; {cpu}, {os.cpu_count()} cores; torch {torch.__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="the CIFAR-10 JPEG pack (cifar10-jpeg.npz); default: random images")
    parser.add_argument("--out", default="bench-results/gpu-suite", help="folder for suite.json and suite.md")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny sizes: the whole suite in < 2 min")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (smoke: cpu)")
    parser.add_argument("--time-scale", type=float, default=1.0,
                        help="multiply every part's time limit (a loaded machine; the tests use it)")
    parser.add_argument("--run-part", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    mode = "smoke" if args.smoke else "full"
    if args.smoke:
        args.device = "cpu"
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the smoke run is the CPU run, GPU or not
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.run_part:
        PART_FUNCTIONS[args.run_part](args, SIZES[mode], Rows(out / f"{args.run_part}.jsonl"))
        return 0
    parts = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {', '.join(unknown)}; known: {', '.join(PARTS)}")
    start = time.monotonic()
    results = []
    for name in parts:
        limit = LIMITS[mode][name] * args.time_scale
        print(f"[{name}] up to {limit:g} s", flush=True)
        results.append(run_part(name, args, out, limit))
    suite = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": _machine(),
             "smoke": args.smoke, "data": args.data or "random", "seconds": time.monotonic() - start,
             "parts": results}
    (out / "suite.json").write_text(json.dumps(suite, indent=2, default=str) + "\n")
    (out / "suite.md").write_text(markdown(suite) + "\n")
    print(markdown(suite))
    return 0 if all(p["status"] == "ok" for p in results) else 1


if __name__ == "__main__":
    sys.exit(main())
