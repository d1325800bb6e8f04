"""Trainer throughput: images/s with the policy on vs off, against a torchvision DataLoader pipeline.

    python bench/train_throughput.py            # GPU if there is one: proxy, preact_resnet18, wrn_28_10
    python bench/train_throughput.py --quick    # CPU-sized: small data, proxy and preact_resnet18

All figures come from one run, side by side.  Data: random uint8 CIFAR-sized images (throughput does not
depend on pixel values), or the CIFAR-10 pack with --cifar DIR (the torchvision pickle layout).
"""
from __future__ import annotations

import argparse
import os
import time

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from autoaug.augment import BatchAugment
from autoaug.datasets import ArrayData, load_dataset
from autoaug.models import build_model
from autoaug.policy import load_policy
from autoaug.trainer import Normalizer, TrainConfig, Trainer, resolve_device, soft_cross_entropy


def _data(args: argparse.Namespace) -> ArrayData:
    if args.cifar:
        return load_dataset("cifar10", data_dir=args.cifar).train.subset(torch.arange(args.images))
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8, generator=gen)
    return ArrayData(images, torch.randint(0, 10, (args.images,), generator=gen), tuple(map(str, range(10))))


def ours(model: str, policy_name: str, data: ArrayData, args: argparse.Namespace) -> float:
    """Images/s of our trainer's last epoch (the first pays for warm-up and autotuning)."""
    config = TrainConfig(model=model, epochs=args.epochs, batch_size=args.batch_size, device=args.device)
    tiny_eval = data.subset(torch.arange(min(256, len(data))))
    trainer = Trainer(load_policy(policy_name), data, tiny_eval, config)
    return [trainer.run_epoch() for _ in range(args.epochs)][-1].images_per_second


class _PerImage(Dataset):
    def __init__(self, data: ArrayData) -> None:
        self.data = data
        self.transform = v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(),
                                     v2.TrivialAugmentWide()])

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.data.images[i]), int(self.data.labels[i])


def torchvision_loader(model_name: str, data: ArrayData, args: argparse.Namespace) -> float:
    """Images/s of the same training step fed by torchvision's per-image transform in a DataLoader."""
    device = resolve_device(args.device)
    model = build_model(model_name, num_classes=10, in_channels=3, image_size=32).to(device)
    normalize = Normalizer(data.images).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    loader = DataLoader(_PerImage(data), batch_size=args.batch_size, shuffle=True, drop_last=True,
                        num_workers=os.cpu_count() or 1, persistent_workers=True, pin_memory=device.type == "cuda")
    seen, start = 0, 0.0
    for epoch in range(args.epochs):
        if epoch == args.epochs - 1:
            _sync(device)
            start, seen = time.perf_counter(), 0
        for images, labels in loader:
            x = normalize(images.to(device, non_blocking=True))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss = torch.nn.functional.cross_entropy(model(x), labels.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(images)
    _sync(device)
    return seen / (time.perf_counter() - start)


def augment_share(policy_name: str, data: ArrayData, args: argparse.Namespace, step_rate: float) -> float:
    """Seconds of augmentation per image over seconds of a whole training step per image."""
    device = resolve_device(args.device)
    augment = BatchAugment(load_policy(policy_name), seed=0)
    batch = data.images[: args.batch_size].to(device)
    augment(batch)
    _sync(device)
    start, reps = time.perf_counter(), 20
    for _ in range(reps):
        augment(batch)
    _sync(device)
    rate = reps * len(batch) / (time.perf_counter() - start)
    return step_rate / rate


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cifar", default=None, help="folder with cifar-10-batches-py")
    parser.add_argument("--models", default=None, help="comma-separated models")
    args = parser.parse_args()
    on_gpu = resolve_device(args.device).type == "cuda"
    args.images = 2048 if args.quick else 50_000
    args.batch_size = 256 if args.quick else 512
    args.epochs = 2
    models = (args.models or ("proxy,preact_resnet18" if args.quick else "proxy,preact_resnet18,wrn_28_10")).split(",")
    data = _data(args)
    print(f"device: {torch.cuda.get_device_name() if on_gpu else 'cpu'} ({os.cpu_count()} cores), "
          f"torch {torch.__version__}, {len(data)} images 32x32, batch {args.batch_size}")
    print(f"{'model':<16}{'no policy':>12}{'TA-wide':>12}{'tv loader':>12}{'ours/tv':>9}{'aug share':>11}")
    for model in models:
        off = ours(model, "cropflip", data, args)
        on = ours(model, "trivialaugment-wide", data, args)
        tv = torchvision_loader(model, data, args)
        share = augment_share("trivialaugment-wide", data, args, on)
        print(f"{model:<16}{off:>12,.0f}{on:>12,.0f}{tv:>12,.0f}{on / tv:>8.2f}x{100 * share:>10.1f}%", flush=True)


if __name__ == "__main__":
    main()
