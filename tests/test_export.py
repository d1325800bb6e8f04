"""`export --to torchvision`: the exported module against autoaug, op by op and in distribution."""
from __future__ import annotations

import ast
import importlib.util
import pickle
import random
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from autoaug.export.torchvision import export_torchvision, magnitude_bin, module_name
from autoaug.grid import digits_images
from autoaug.ops import OPS, RANGE_SETS
from autoaug.policy import (Labels, Mixing, OpCall, Policy, RandAugment, Resolution, ResolutionPhase, Schedule,
                            SchedulePhase, SubPolicies, TrivialAugment, load_policy)
from autoaug.resources import shipped_spaces
from autoaug.sampling import OP_NAMES, apply_plan, sample_plan
from autoaug.search.space import load_space

pytestmark = pytest.mark.usefixtures("one_thread")  # thousands of per-image torchvision calls
Z_BOUND = 4.5  # a seeded test; 4.5 sigma leaves about one false alarm in 10^5 comparisons


def load_module(text: str, folder: Path, name: str) -> ModuleType:
    path = folder / f"{name}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as an import would: pickling classes by reference needs it
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    return load_module(export_torchvision(load_policy("cropflip")), tmp_path_factory.mktemp("rt"), "cropflip_rt")


def tinted_digits(n: int = 24) -> torch.Tensor:
    """Real digit scans, tinted per channel so that colour ops have colour to work on."""
    grey = digits_images(n).to(torch.float32)
    tint, offset = torch.tensor([1.0, 0.6, 0.3]).view(1, 3, 1, 1), torch.tensor([0.0, 40.0, 90.0]).view(1, 3, 1, 1)
    return (grey * tint + offset).clamp(0, 255).round().to(torch.uint8)


@pytest.mark.parametrize("range_set", RANGE_SETS)
@pytest.mark.parametrize("op", list(OPS))
def test_each_exported_op_equals_ours_pixel_for_pixel(runtime: ModuleType, op: str, range_set: str) -> None:
    images = tinted_digits()
    gen = torch.Generator().manual_seed(7)
    for magnitude in (0.3, 0.7, 1.0):
        section = SubPolicies(ranges=range_set, subpolicies=[[OpCall(op=op, magnitude=magnitude)]])
        policy = Policy(name="one", augment=section)
        plan = sample_plan(policy, len(images), 32, 32, gen)
        slot = plan.slots[0]
        ours = apply_plan(images, plan)
        theirs = torch.stack([runtime.apply_op(images[i], op, float(slot.value[i]), slot.aux[i])
                              for i in range(len(images))])
        assert torch.equal(ours, theirs), f"{op} at magnitude {magnitude}"
        native = runtime.native_value(op, range_set, magnitude, 32, 32)
        assert slot.value.abs().tolist() == pytest.approx([native] * len(images), rel=1e-6, abs=1e-6)


def _ours(policy: Policy, n: int, progress: float) -> list[list[tuple[str, float]]]:
    plan = sample_plan(policy, n, 32, 32, torch.Generator().manual_seed(3), progress=progress)
    steps: list[list[tuple[str, float]]] = [[] for _ in range(n)]
    for slot in plan.slots:
        for i, (op, value) in enumerate(zip(slot.op.tolist(), slot.value.tolist())):
            if OP_NAMES[op] != "Identity":
                steps[i].append((OP_NAMES[op], value))
    return steps


def _theirs(module: ModuleType, n: int, progress: float, monkeypatch: pytest.MonkeyPatch) -> list[list[tuple[str, float]]]:
    """Run the exported pipeline on n images, recording every op it applies (and applying none)."""
    steps: list[list[tuple[str, float]]] = []

    def record(image, op, value, *rest):
        if op != "Identity":
            steps[-1].append((op, float(value)))
        return image

    monkeypatch.setattr(module, "apply_op", lambda image, op, value, aux: record(image, op, value))
    for cls in (v2.RandAugment, v2.TrivialAugmentWide):  # torchvision's own, where the export uses them
        monkeypatch.setattr(cls, "_apply_image_or_video_transform", lambda self, image, op, value, *r, **k:
                            record(image, op, 8 - value if op == "Posterize" else value))  # bits kept -> removed
    transform = module.build_transform(progress)
    torch.manual_seed(11)
    image = torch.zeros(3, 32, 32, dtype=torch.uint8)
    for _ in range(n):
        steps.append([])
        transform(image)
    return steps


def _stats(steps: list[list[tuple[str, float]]]) -> dict[str, dict[str, torch.Tensor]]:
    """Per op: applications per image, and the |value| and sign of each application."""
    counts: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(steps))
    values: dict[str, list[float]] = defaultdict(list)
    for i, image in enumerate(steps):
        for op, value in image:
            counts[op][i] += 1
            values[op].append(round(value) if op == "Posterize" else value)  # the kernel rounds
    return {op: {"count": torch.tensor(counts[op], dtype=torch.float64),
                 "size": torch.tensor([abs(v) for v in values[op]], dtype=torch.float64),
                 "negative": torch.tensor([float(v < 0) for v in values[op]], dtype=torch.float64)} for op in counts}


def _z(a: torch.Tensor, b: torch.Tensor) -> float:
    spread = (a.var(unbiased=True) / len(a) + b.var(unbiased=True) / len(b)).sqrt().item()
    gap = abs(a.mean().item() - b.mean().item())
    return gap / spread if spread > 1e-12 else (0.0 if gap <= 1e-5 * max(1.0, abs(a.mean().item())) else float("inf"))


def _custom_policies() -> dict[str, Policy]:
    subset = ["ShearX", "Rotate", "Solarize", "Posterize", "Color", "Equalize"]
    return {
        "trivial-standard-range": Policy(name="t", augment=TrivialAugment(ranges="standard", ops=subset, magnitude_min=0.2,
                                                                          magnitude_max=0.7),
                                         post=[OpCall(op="Cutout", probability=0.4, magnitude=0.3),
                                               OpCall(op="RandomErasing", probability=0.3, magnitude=0.6)]),
        "randaugment-off-grid": Policy(name="r", augment=RandAugment(num_ops=3, magnitude=0.37, ops=subset + ["Invert"])),
        "schedule": Policy(name="s", augment=Schedule(phases=[
            SchedulePhase(start_fraction=0.0, end_fraction=0.5, augment=RandAugment(num_ops=1, magnitude=0.2)),
            SchedulePhase(start_fraction=0.5, end_fraction=1.0, augment=SubPolicies(subpolicies=[
                [OpCall(op="Rotate", probability=0.8, magnitude=0.9), OpCall(op="Contrast", probability=0.5, magnitude=0.4)],
                [OpCall(op="TranslateY", probability=0.6, magnitude=0.5)]]))])),
    }


DISTRIBUTION_CASES = ["randaugment", "trivialaugment-wide", "autoaugment-cifar10", *_custom_policies()]


@pytest.mark.parametrize("progress", [0.75])
@pytest.mark.parametrize("case", DISTRIBUTION_CASES)
def test_ops_and_magnitudes_drawn_match_the_policy(case: str, progress: float, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    policy = _custom_policies().get(case) or load_policy(case)
    module = load_module(export_torchvision(policy), tmp_path, f"dist_{case.replace('-', '_')}")
    ours, theirs = _stats(_ours(policy, 20_000, progress)), _stats(_theirs(module, 1_500, progress, monkeypatch))
    assert set(ours) == set(theirs), "the same ops appear"
    for op in ours:
        assert _z(ours[op]["count"], theirs[op]["count"]) < Z_BOUND, f"{op}: how often it is applied"
        if len(theirs[op]["size"]) >= 30:
            assert _z(ours[op]["size"], theirs[op]["size"]) < Z_BOUND, f"{op}: its magnitudes"
            assert _z(ours[op]["negative"], theirs[op]["negative"]) < Z_BOUND, f"{op}: its sign"


def test_distribution_test_can_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A policy one magnitude step off is told apart from the real one."""
    policy = load_policy("randaugment")
    shifted = policy.model_copy(update={"augment": policy.augment.model_copy(update={"magnitude": 10 / 30})})
    module = load_module(export_torchvision(shifted), tmp_path, "shifted_ra")
    ours, theirs = _stats(_ours(policy, 20_000, 0.0)), _stats(_theirs(module, 1_500, 0.0, monkeypatch))
    assert _z(ours["Rotate"]["size"], theirs["Rotate"]["size"]) > Z_BOUND


def test_torchvision_own_transforms_are_used_where_exact() -> None:
    assert "v2.RandAugment(num_ops=2, magnitude=9, num_magnitude_bins=31" in export_torchvision(load_policy("randaugment"))
    assert "v2.TrivialAugmentWide(num_magnitude_bins=31" in export_torchvision(load_policy("trivialaugment-wide"))
    custom = export_torchvision(_custom_policies()["randaugment-off-grid"])
    assert "v2.RandAugment" not in custom and "RandomOps(" in custom
    assert magnitude_bin(0.3) == (31, 9) and magnitude_bin(0.25) == (5, 1)
    assert magnitude_bin(0.123456789) is None


class _Images(Dataset):
    def __init__(self, transform: v2.Transform) -> None:
        self.images, self.transform = tinted_digits(16), transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(self.images[index])


def test_exported_pipeline_pickles_and_runs_in_dataloader_workers(tmp_path: Path) -> None:
    module = load_module(export_torchvision(load_policy("autoaugment-cifar10")), tmp_path, "aa_workers")
    transform = module.build_transform()
    assert type(pickle.loads(pickle.dumps(transform)).transforms[2]).__name__ == "SubPolicies"
    data = _Images(transform)
    batches = [b for b in DataLoader(data, batch_size=4, num_workers=2)]
    out = torch.cat(batches)
    assert out.shape == (16, 3, 32, 32) and out.dtype == torch.uint8
    assert (out != data.images).any(dim=(1, 2, 3)).float().mean() > 0.5, "most images changed"
    again = torch.cat([b for b in DataLoader(data, batch_size=4, num_workers=2)])
    assert not torch.equal(out, again), "each epoch's workers draw afresh"


def test_exported_module_imports_torch_and_torchvision_only() -> None:
    tree = ast.parse(export_torchvision(load_policy("trivialaugment-wide")))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported == {"__future__", "math", "collections", "typing", "PIL", "torch", "torchvision"}


@pytest.mark.slow
def test_exported_module_runs_where_autoaug_cannot_be_imported(tmp_path: Path) -> None:
    text = export_torchvision(load_policy("trivialaugment-wide"))
    (tmp_path / "ta_alone.py").write_text(text)
    code = ("import sys; sys.modules['autoaug'] = None; import torch, ta_alone; "
            "x = torch.zeros(3, 32, 32, dtype=torch.uint8); print(ta_alone.build_transform()(x).shape)")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "torch.Size([3, 32, 32])" in done.stdout


def test_batch_transforms_loss_and_phases(tmp_path: Path) -> None:
    policy = Policy(name="mix", augment=RandAugment(num_ops=1, magnitude=0.5),
                    mixing=Mixing(mixup_alpha=0.4, cutmix_alpha=1.0, probability=1.0, cutmix_probability=0.25,
                                  yoco_probability=0.5),
                    labels=Labels(label_smoothing=0.1, soft_target_strength=0.2),
                    resolution=Resolution(phases=[ResolutionPhase(start_fraction=0.0, end_fraction=0.5, probability=1.0,
                                                                  resolution=16)]))
    text = export_torchvision(policy)
    module = load_module(text, tmp_path, module_name(policy))
    mix = module.build_batch_transform(num_classes=10)
    assert "p=[0.25, 0.75]" in text and "v2.RandomApply" in text
    images, labels = mix(torch.rand(8, 3, 32, 32), torch.arange(8))
    assert labels.shape == (8, 10) and torch.allclose(labels.sum(1), torch.ones(8))
    assert module.build_loss().label_smoothing == 0.1
    low = module.build_low_resolution()
    assert low(torch.rand(2, 3, 32, 32)).shape[-1] == 16
    module.set_progress(low, 0.6)
    assert low(torch.rand(2, 3, 32, 32)).shape[-1] == 32
    yoco = module.build_transform()
    assert type(yoco).__name__ == "YOCO"
    image, label = yoco(tinted_digits(1)[0], 3)
    assert image.shape == (3, 32, 32) and label == 3
    assert any("soft targets" in d for d in module.DIFFERENCES) and any("per batch" in d for d in module.DIFFERENCES)


def test_schedule_follows_progress(tmp_path: Path) -> None:
    policy = _custom_policies()["schedule"]
    module = load_module(export_torchvision(policy), tmp_path, "sched")
    transform = module.build_transform()
    schedule = transform.transforms[0]
    assert type(schedule.current()).__name__ == "RandAugment"  # torchvision's own: magnitude 6 of 31 bins
    module.set_progress(transform, 0.5)
    assert type(schedule.current()).__name__ == "SubPolicies"


@pytest.mark.parametrize("space_name", list(shipped_spaces()))
def test_every_shipped_space_exports_runnable_modules(space_name: str, tmp_path: Path) -> None:
    space = load_space(space_name)
    image = tinted_digits(1)[0]
    for sample in range(3):
        policy = space.decode(space.sample(random.Random(sample)), name=f"{space_name}-{sample}")
        module = load_module(export_torchvision(policy), tmp_path, f"space_{space_name}_{sample}")
        out = module.build_transform(0.5)(image)
        assert out.shape == image.shape and out.dtype == torch.uint8
        mix = module.build_batch_transform(num_classes=10)
        if mix is not None:
            assert mix(torch.rand(4, 3, 32, 32), torch.arange(4))[1].shape[0] == 4
        assert isinstance(module.build_loss(), torch.nn.CrossEntropyLoss)
        assert (module.build_low_resolution() is None) == (policy.resolution is None)


@pytest.mark.parametrize("name", ["randaugment", "trivialaugment-wide"])
def test_torchvisions_own_transforms_apply_our_ops_pixel_for_pixel(name: str, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the export uses v2.RandAugment/TrivialAugmentWide, each op they apply equals our kernel's."""
    module = load_module(export_torchvision(load_policy(name)), tmp_path, f"own_{name.replace('-', '_')}")
    calls = []
    cls = v2.RandAugment if name == "randaugment" else v2.TrivialAugmentWide
    original = cls._apply_image_or_video_transform

    def record(self, image, op, value, *rest, **kwargs):
        out = original(self, image, op, value, *rest, **kwargs)
        calls.append((op, value, image, out))
        return out

    monkeypatch.setattr(cls, "_apply_image_or_video_transform", record)
    section = module.build_transform().transforms[2]
    torch.manual_seed(5)
    for image in tinted_digits(48):
        section(image)
    assert len({op for op, *_ in calls}) >= 12, "most ops were drawn"
    for op, value, image, out in calls:
        ours = 8 - value if op == "Posterize" else value  # torchvision passes bits kept; ours, bits removed
        assert torch.equal(OPS[op].kernel(image[None], torch.tensor([float(ours)]), torch.zeros(1, 4))[0], out), op
