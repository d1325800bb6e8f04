"""Augmentation throughput: our batched policies against torchvision's per-image transforms, same run.

    python bench/augment_throughput.py            # CPU, and the GPU too if there is one
    python bench/augment_throughput.py --quick    # small sizes, a few seconds (CI smoke test)
    python bench/augment_throughput.py --device cpu --data digits

Each policy is timed as the same work on both sides: zero-padded RandomCrop (4 pixels) + horizontal flip +
the policy, on uint8 32x32 images.  Ours: the whole batch at once (sampling included) on the device, after
a warm-up, over several batches.  torchvision: ``v2.RandomCrop``, ``v2.RandomHorizontalFlip`` and
``v2.TrivialAugmentWide()`` / ``v2.AutoAugment(CIFAR10)`` image by image in a DataLoader over all cores
(``num_workers=os.cpu_count()``, batch 512), as an ordinary training pipeline feeds a GPU.  Our shipped
policies add Cutout after the policy; the last row times that too, on our side only.

The per-image table times the path an ordinary DataLoader pipeline takes: one 32x32 PIL image at a time
on one thread (as in a DataLoader worker), ``PolicyTransform(policy)`` beside torchvision's
``v2.AutoAugment(CIFAR10)`` / ``v2.TrivialAugmentWide()``, the policy alone (no crop or flip), in
alternating rounds so that a shared machine's load falls on both sides alike; the median round counts.

Data (``--data``): ``random`` uniform uint8 (the default: throughput barely depends on pixel values),
``digits`` (scikit-learn's 8x8 scans upscaled), or a path to the CIFAR-10 JPEG pack
(``cifar10-jpeg.npz``, decoded here).
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import AutoAugmentPolicy, v2

import PIL.Image

from autoaug.augment import BatchAugment, PolicyTransform
from autoaug.policy import Policy, load_policy

POLICIES = {  # our shipped policy -> torchvision's per-image transform for the same policy
    "trivialaugment-wide": lambda: v2.TrivialAugmentWide(),
    "autoaugment-cifar10": lambda: v2.AutoAugment(AutoAugmentPolicy.CIFAR10),
}


def load_images(source: str, count: int) -> torch.Tensor:
    """``count`` uint8 images ``[N, 3, 32, 32]`` from ``random``, ``digits`` or a CIFAR-10 JPEG pack."""
    if source == "random":
        return torch.randint(0, 256, (count, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    if source == "digits":
        from autoaug.grid import digits_images
        grey = digits_images(min(count, 1797))
        return grey.expand(-1, 3, -1, -1).repeat(-(-count // len(grey)), 1, 1, 1)[:count].contiguous()
    from torchvision.io import decode_jpeg
    pack = np.load(source)
    blob, offsets = pack["train_jpeg"], pack["train_offsets"]
    n = min(count, len(offsets) - 1)
    images = [decode_jpeg(torch.from_numpy(blob[offsets[i]:offsets[i + 1]].copy())) for i in range(n)]
    return torch.stack(images).repeat(-(-count // n), 1, 1, 1)[:count]


def ours(policy: Policy, images: torch.Tensor, device: torch.device, batch: int, reps: int) -> float:
    """Images/s of BatchAugment on ``device``: two warm-up batches, then the median of 3 runs of ``reps``."""
    augment = BatchAugment(policy, seed=0)
    x = images[torch.arange(batch) % len(images)].to(device)
    for _ in range(2):  # each op meets new group sizes at first: oneDNN and cuDNN build their kernels then
        augment(x)
    rates = []
    for _ in range(3):  # the median: a shared machine's other work lands in one run, not in the figure
        _sync(device)
        start = time.perf_counter()
        for _ in range(reps):
            augment(x)
        _sync(device)
        rates.append(reps * batch / (time.perf_counter() - start))
    return sorted(rates)[1]


class _PerImage(Dataset):
    """uint8 tensors with a per-image transform in ``__getitem__``, as a torchvision pipeline does."""

    def __init__(self, images: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(self.images[index])


def torchvision_loader(make_policy: Callable[[], v2.Transform], images: torch.Tensor, epochs: int) -> float:
    """Images/s of torchvision's per-image transforms in a DataLoader over all cores, after a warm-up epoch."""
    transform = v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(), make_policy()])
    loader = DataLoader(_PerImage(images, transform), batch_size=512, shuffle=True,
                        num_workers=os.cpu_count() or 1, persistent_workers=True)
    for _ in loader:  # starts the workers
        pass
    start, seen = time.perf_counter(), 0
    for _ in range(epochs):
        for batch in loader:
            seen += len(batch)
    rate = seen / (time.perf_counter() - start)
    del loader  # stops the workers before our side is timed on the same cores
    return rate


def per_image(make_policy: Callable[[], v2.Transform], policy: Policy, images: torch.Tensor,
              rounds: int) -> tuple[float, float]:
    """Images/s of torchvision's and our per-image transform on PIL images, one thread, alternating rounds."""
    pils = [PIL.Image.fromarray(image.permute(1, 2, 0).numpy()) for image in images]
    theirs, ours_ = make_policy(), PolicyTransform(policy, seed=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a DataLoader worker runs one thread
    rates: dict[str, list[float]] = {"theirs": [], "ours": []}
    try:
        for transform in (theirs, ours_):  # warm-up: first calls build kernels and caches
            for image in pils[:64]:
                transform(image)
        for _ in range(rounds):
            for name, transform in (("theirs", theirs), ("ours", ours_)):
                start = time.perf_counter()
                for image in pils:
                    transform(image)
                rates[name].append(len(pils) / (time.perf_counter() - start))
    finally:
        torch.set_num_threads(threads)
    return statistics.median(rates["theirs"]), statistics.median(rates["ours"])


def policy_only(name: str) -> Policy:
    """Our shipped policy without crop, flip or Cutout: the same work as torchvision's policy transform."""
    return load_policy(name).model_copy(update={"pre": [], "post": []})


def crop_flip_policy(name: str) -> Policy:
    """Our shipped policy without its post ops (Cutout): the same work as torchvision's pipeline."""
    return load_policy(name).model_copy(update={"post": []})


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _devices(choice: str) -> list[torch.device]:
    if choice == "auto":
        return [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    return [torch.device(choice)]


def _machine(devices: list[torch.device]) -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               "unknown CPU") if os.path.exists("/proc/cpuinfo") else "unknown CPU"
    gpus = [torch.cuda.get_device_name(d) for d in devices if d.type == "cuda"]
    return f"{cpu}, {os.cpu_count()} cores" + (f", {', '.join(gpus)}" if gpus else ", no GPU used")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test of a few seconds")
    parser.add_argument("--device", default="auto", help="auto (CPU, and GPU if any), cpu, cuda or cuda:N")
    parser.add_argument("--data", default="random", help="random, digits or a path to cifar10-jpeg.npz")
    parser.add_argument("--per-image", action="store_true", help="only the per-image table (PolicyTransform)")
    args = parser.parse_args()
    devices = _devices(args.device)
    batch = {"cpu": 512 if args.quick else 8192, "cuda": 4096 if args.quick else 65536}
    reps = 2 if args.quick else 5
    loader_images, epochs = (1024, 1) if args.quick else (16384, 2)
    count, rounds = (256, 3) if args.quick else (2048, 7)
    images = load_images(args.data, count if args.per_image else max(loader_images, 8192))
    load = f"load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"{datetime.date.today()}  {_machine(devices)}  torch {torch.__version__}  data: {args.data} 32x32  {load}")
    if not args.per_image:
        batched_table(images, devices, batch, reps, loader_images, epochs)
    print(f"\nper image: 32x32 PIL, one thread, median of {rounds} alternating rounds of {count} images")
    print(f"{'policy (alone)':<26}{'torchvision':>13}{'PolicyTransform':>17}{'ours/tv':>10}")
    for name, make_policy in POLICIES.items():
        theirs, rate = per_image(make_policy, policy_only(name), images[:count], rounds)
        print(f"{name:<26}{theirs:>13,.0f}{rate:>17,.0f}{rate / theirs:>9.2f}x", flush=True)


def batched_table(images: torch.Tensor, devices: list[torch.device], batch: dict[str, int], reps: int,
                  loader_images: int, epochs: int) -> None:
    """Our batched policies on each device against torchvision's per-image transforms in a DataLoader."""
    print(f"ours: batches of {', '.join(f'{batch[d.type]} on {d}' for d in devices)}, median of 3 x {reps} after a "
          f"warm-up; "
          f"torchvision: DataLoader, {os.cpu_count()} workers, batch 512, {epochs} x {loader_images} images")
    header = f"{'policy (+ crop, flip)':<26}{'torchvision':>13}" + "".join(f"{'ours ' + str(d):>14}" for d in devices)
    print(header + "".join(f"{'ours/tv ' + d.type:>13}" for d in devices))
    for name, make_policy in POLICIES.items():
        theirs = torchvision_loader(make_policy, images[:loader_images], epochs)
        rates = [ours(crop_flip_policy(name), images, d, batch[d.type], reps) for d in devices]
        print(f"{name:<26}{theirs:>13,.0f}" + "".join(f"{r:>14,.0f}" for r in rates)
              + "".join(f"{r / theirs:>12.1f}x" for r in rates), flush=True)
    rates = [ours(load_policy("trivialaugment-wide"), images, d, batch[d.type], reps) for d in devices]
    print(f"{'trivialaugment-wide+Cutout':<26}{'-':>13}" + "".join(f"{r:>14,.0f}" for r in rates))


if __name__ == "__main__":
    main()
