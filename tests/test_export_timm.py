"""`export --to timm`: exact where timm's grammar can say the policy, refused (or listed approximations) elsewhere."""
from __future__ import annotations

import importlib.util

import pytest
import yaml

from autoaug.export import export_policy
from autoaug.export.timm import TimmInexpressible, export_timm
from autoaug.policy import (Labels, Mixing, OpCall, Policy, RandAugment, Resolution, ResolutionPhase, Schedule,
                            SchedulePhase, SubPolicies, TrivialAugment, WidthResolution, load_policy)
from autoaug.resources import shipped_policies
from autoaug_cli import app as cli_app

FLIP = [OpCall(op="HorizontalFlip", probability=0.5)]
MIXING = Mixing(mixup_alpha=0.8, cutmix_alpha=1.0, probability=0.6, cutmix_probability=0.3)


def test_exact_policy_gives_flags_and_yaml_with_its_values() -> None:
    policy = Policy(name="exact", pre=FLIP, labels=Labels(label_smoothing=0.1))
    result = export_timm(policy)
    assert result.approximations == ()
    assert result.args == {"scale": [1.0, 1.0], "ratio": [1.0, 1.0], "hflip": 0.5, "color_jitter": 0.0, "mixup": 0.0,
                           "cutmix": 0.0, "smoothing": 0.1}
    assert result.flags() == "--scale 1 1 --ratio 1 1 --hflip 0.5 --color-jitter 0 --mixup 0 --cutmix 0 --smoothing 0.1"
    assert yaml.safe_load(result.yaml()) == result.args
    assert result.yaml().startswith("# exact")


def test_parts_with_probability_zero_are_absent_so_the_policy_stays_exact() -> None:
    never = Policy(name="never", pre=[*FLIP, OpCall(op="RandomCrop", probability=0.0, magnitude=0.5),
                                      OpCall(op="Rotate", probability=0.0, magnitude=0.3)],
                   post=[OpCall(op="Cutout", probability=0.0, magnitude=0.1)],
                   mixing=Mixing(mixup_alpha=0.8, probability=0.0),
                   resolution=Resolution(phases=[ResolutionPhase(start_fraction=0.0, end_fraction=0.2, probability=0.0,
                                                                 resolution=16)]))
    result = export_timm(never)
    assert result.approximations == () and result.args == export_timm(Policy(name="flip", pre=FLIP)).args
    assert "reprob" not in result.args and result.args["scale"] == [1.0, 1.0]
    once = never.model_copy(update={"post": [OpCall(op="Cutout", probability=0.5, magnitude=0.1)]})
    assert export_timm(once, approximate=True).args["reprob"] == 0.5  # the same part, able to act: approximated


def test_mixing_is_an_approximation_that_names_timms_reversed_batch_partner() -> None:
    policy = Policy(name="mix", pre=FLIP, mixing=MIXING)
    with pytest.raises(TimmInexpressible, match="image B-1-i of its batch"):
        export_timm(policy)
    result = export_timm(policy, approximate=True)
    assert result.args == {"scale": [1.0, 1.0], "ratio": [1.0, 1.0], "hflip": 0.5, "color_jitter": 0.0, "mixup": 0.8,
                           "cutmix": 1.0, "mixup_prob": 0.6, "mixup_switch_prob": 0.3, "mixup_mode": "elem",
                           "smoothing": 0.0}
    assert "--mixup-switch-prob 0.3 --mixup-mode elem --smoothing 0" in result.flags()
    assert len(result.approximations) == 1 and "random permutation" in result.approximations[0]


def test_no_mixing_no_smoothing_is_said_explicitly_against_timms_defaults() -> None:
    args = export_timm(Policy(name="plain")).args
    assert args["smoothing"] == 0.0 and args["hflip"] == 0.0 and args["mixup"] == 0.0 and "aa" not in args


CASES = {
    "custom sub-policy list": Policy(name="s", augment=SubPolicies(subpolicies=[[OpCall(op="Rotate", magnitude=0.5)]])),
    "schedule": Policy(name="sch", augment=Schedule(phases=[
        SchedulePhase(start_fraction=0.0, end_fraction=0.3, augment=RandAugment()),
        SchedulePhase(start_fraction=0.3, end_fraction=1.0, augment=TrivialAugment())])),
    "YOCO": Policy(name="y", mixing=Mixing(yoco_probability=0.5)),
    "soft targets": Policy(name="soft", labels=Labels(soft_target_strength=0.3)),
    "low-resolution phases": Policy(name="res", resolution=Resolution(phases=[
        ResolutionPhase(start_fraction=0.0, end_fraction=0.5, probability=0.5, resolution=16)])),
    "width_resolution": Policy(name="wr", width_resolution=WidthResolution(widths=[0.5, 1.0], resolutions=[24, 32])),
    "timm's rand op set": Policy(name="ra", augment=RandAugment(magnitude=0.5)),
    "rounded to timm's integer M4": Policy(name="ra", augment=RandAugment(magnitude=0.37)),
    "Rotate (probability 0.3) dropped": Policy(name="r", pre=[OpCall(op="Rotate", probability=0.3, magnitude=0.2)]),
    "RandomCrop": load_policy("cropflip"),
}


@pytest.mark.parametrize("part", list(CASES))
def test_inexpressible_part_is_refused_by_name_or_listed_when_approximating(part: str) -> None:
    with pytest.raises(TimmInexpressible, match="Pass --approximate") as refused:
        export_timm(CASES[part])
    assert part in str(refused.value)
    approximated = export_timm(CASES[part], approximate=True)
    assert any(part in note for note in approximated.approximations)
    assert all(f"{note}" in approximated.yaml() for note in approximated.approximations)


def test_approximations_map_to_timm_values() -> None:
    args = export_timm(load_policy("randaugment"), approximate=True).args
    assert args["aa"] == "rand-m3-n2-p1.0-inc1"  # autoaug 0.3 = torchvision's 9 of 30 bins = timm's 3 of 10
    assert args["reprob"] == 1.0 and args["remode"] == "const" and args["scale"] == [0.77, 1.0]
    assert export_timm(load_policy("trivialaugment-wide"), approximate=True).args["aa"] == "rand-m10-n1-mstd101-p1.0-inc1"


@pytest.mark.skipif(importlib.util.find_spec("timm") is None, reason="timm is not installed (optional)")
@pytest.mark.parametrize("name", list(shipped_policies()))
def test_timm_parses_what_we_write(name: str) -> None:
    from timm.data import Mixup
    from timm.data.auto_augment import rand_augment_transform
    from timm.data.random_erasing import RandomErasing

    args = export_timm(load_policy(name), approximate=True).args
    if "aa" in args:
        transform = rand_augment_transform(args["aa"], {})
        level = int(args["aa"].split("-m")[1].split("-")[0])
        probability = float(args["aa"].split("-p")[1].split("-")[0])
        assert transform.num_layers == int(args["aa"].split("-n")[1].split("-")[0])
        assert {op.magnitude for op in transform.ops} == {level} and {op.prob for op in transform.ops} == {probability}
        assert "ColorIncreasing" in {op.name for op in transform.ops}  # inc1 took
    if "reprob" in args:
        RandomErasing(probability=args["reprob"], mode=args["remode"], max_count=args["recount"], device="cpu")
    Mixup(mixup_alpha=args["mixup"], cutmix_alpha=args["cutmix"], prob=args.get("mixup_prob", 1.0),
          switch_prob=args.get("mixup_switch_prob", 0.5), mode=args.get("mixup_mode", "batch"),
          label_smoothing=args["smoothing"], num_classes=10)


@pytest.mark.skipif(importlib.util.find_spec("timm") is None, reason="timm is not installed (optional)")
def test_timm_elem_mixup_pairs_each_image_with_the_reversed_batch() -> None:
    """What the Mixup/CutMix approximation note says: in a batch of 4, image 0 mixes with 3 and 1 with 2."""
    import torch
    from timm.data import Mixup

    mixup = Mixup(mixup_alpha=1.0, cutmix_alpha=0.0, prob=1.0, mode="elem", label_smoothing=0.0, num_classes=4)
    images, targets = mixup(torch.arange(4.0).view(4, 1, 1, 1), torch.arange(4))
    partners = targets.clone().fill_diagonal_(0).argmax(1)
    assert partners.tolist() == [3, 2, 1, 0]
    lam = targets.diagonal()
    assert torch.allclose(images.flatten(), lam * torch.arange(4.0) + (1 - lam) * torch.arange(3.0, -1.0, -1.0))


def test_cli_refuses_with_exit_2_and_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli_app.main(["export", "randaugment", "--to", "timm"])
    err = capsys.readouterr().err
    assert done.value.code == 2 and err.count("\n") == 1 and "timm's rand op set" in err


def test_cli_approximate_prints_flags_and_writes_yaml(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ra.yaml"
    with pytest.raises(SystemExit) as done:
        cli_app.main(["export", "randaugment", "--to", "timm", "--approximate", "-o", str(out)])
    assert done.value.code == 0
    printed = capsys.readouterr().out
    assert printed.startswith("--aa rand-m3-n2-p1.0-inc1 ") and "# approximations:" in printed
    assert yaml.safe_load(out.read_text())["aa"] == "rand-m3-n2-p1.0-inc1"


def test_cli_torchvision_writes_a_module_and_names_unknown_targets(tmp_path, capsys) -> None:
    out = tmp_path / "ra_tv.py"
    with pytest.raises(SystemExit) as done:
        cli_app.main(["export", "randaugment", "--to", "torchvision", "-o", str(out)])
    assert done.value.code == 0 and "def build_transform" in out.read_text()
    assert f"wrote {out}" in capsys.readouterr().out
    with pytest.raises(SystemExit) as done:
        cli_app.main(["export", "randaugment", "--to", "keras"])
    assert done.value.code == 2 and "known: timm, torchvision" in capsys.readouterr().err
    assert export_policy(load_policy("cropflip"), to="torchvision").filename == "cropflip_torchvision.py"
