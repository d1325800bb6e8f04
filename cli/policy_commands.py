"""`autoaug validate`, `autoaug show` and `autoaug apply`: checking, reading and using policy files."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from autoaug.errors import AutoaugError
from autoaug.op_specs import OPS
from autoaug.policy import OpCall, Policy, RandAugment, Schedule, SubPolicies, TrivialAugment, load_policy
from autoaug_cli.app import USER_ERROR, app, examples, print_error

PolicyArg = Annotated[str, typer.Argument(help="A policy.json file or a shipped name (see `autoaug list policies`).")]
SeedOpt = Annotated[int, typer.Option(help="Random seed: the same seed gives the same pixels.")]
PREVIEW_SIZE = 32  # native values are shown for CIFAR-sized images
SETTINGS = ("mixing", "labels", "resolution", "width_resolution", "provenance")


@app.command(epilog=examples("autoaug validate runs/quickstart/policy.json", "autoaug validate policies/*.json"))
def validate(
    policies: Annotated[list[str], typer.Argument(help="Policy files or shipped names.", show_default=False)],
) -> None:
    """Check that policy files load: "ok: <name> (<kind>)" each, or one error line each (exit code 2)."""
    failures = 0
    for policy in policies:
        try:
            loaded = load_policy(policy)
        except AutoaugError as error:
            print_error(str(error))
            failures += 1
            continue
        typer.echo(f"ok: {loaded.name} ({loaded.augment.kind})")
    if failures:
        raise typer.Exit(USER_ERROR)


@app.command(epilog=examples("autoaug show autoaugment-cifar10",
                             "autoaug show runs/quickstart/policy.json --grid grid.png --copies 6"))
def show(
    policy: PolicyArg,
    grid: Annotated[Optional[Path], typer.Option(help="Also write a PNG: originals, then augmented copies.")] = None,
    images: Annotated[Optional[Path], typer.Option(help="Image file or folder for --grid (default: digits).")] = None,
    copies: Annotated[int, typer.Option(min=1, max=32, help="Augmented copies per image in the grid.")] = 8,
    rows: Annotated[int, typer.Option(min=1, max=64, help="Images (rows) in the grid.")] = 4,
    seed: SeedOpt = 0,
) -> None:
    """Print a policy as tables; with --grid, also draw what it does to a few images."""
    loaded = load_policy(policy)
    console = Console()
    console.print(ops_table(loaded))
    console.print(settings_table(loaded))
    if grid is not None:
        from autoaug.apply import load_image_batch  # torch loads only to draw
        from autoaug.grid import augmentation_grid, digits_images, fit_scale, phase_starts, save_png

        batch = load_image_batch(images, limit=rows) if images is not None else digits_images(rows)
        scale, starts = fit_scale(*batch.shape[-2:]), phase_starts(loaded)
        save_png(augmentation_grid(loaded, batch, copies=copies, seed=seed, scale=scale, progress=starts), grid)
        phases = f" (a block of {len(batch)} per phase, {len(starts)} phases)" if len(starts) > 1 else ""
        console.print(f"wrote {grid}: {len(batch) * len(starts)} rows{phases} x (original + {copies} copies), "
                      f"scale {scale}")


@app.command(name="apply", epilog=examples("autoaug apply randaugment --input photos/ --output augmented/ --copies 4"))
def apply_command(
    policy: PolicyArg,
    input_path: Annotated[Path, typer.Option("--input", "-i", help="An image file or a folder tree of images.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for <stem>_aug<k>.png copies.")],
    copies: Annotated[int, typer.Option(min=1, help="Augmented copies per image.")] = 1,
    seed: SeedOpt = 0,
    batch_size: Annotated[int, typer.Option(min=1, help="Augmented images per policy call.")] = 256,
    progress: Annotated[Optional[float], typer.Option(
        min=0.0, max=1.0, help="Point in training (fraction done) whose schedule phase to apply; "
        "default: one set per phase, in phase<k>_<start>-<end> subfolders.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Write into an output folder that already holds files.")] = False,
) -> None:
    """Write augmented PNG copies of images, keeping the folder layout; unreadable files are skipped."""
    from autoaug.apply import apply_policy_to_path  # torch loads here, not for --help

    loaded = load_policy(policy)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    console = Console(stderr=True)
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("augmenting", total=None)
        report = apply_policy_to_path(loaded, input_path, output, copies=copies, seed=seed, batch_size=batch_size,
                                      progress=progress, overwrite=overwrite,
                                      on_progress=lambda done, total: bar.update(task, completed=done, total=total))
    for path, reason in report.skipped:
        sys.stderr.write(f"skipped {path}: {reason}\n")
    folders = report.folders
    where = f" ({len(folders)} phases: {', '.join(str(f) for f in folders)})" if len(folders) > 1 else ""
    typer.echo(f"wrote {_count(len(report.written), 'image')}{where}, skipped {len(report.skipped)}")
    if not report.written:
        raise typer.Exit(1)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


# --------------------------------------------------------------------------- rendering
def native_value(op: str, range_set: str, magnitude: float, upto: float | None = None) -> str:
    """The op's native parameter at ``magnitude`` (or up to ``upto``) on a 32x32 image, with its unit."""
    spec = OPS[op]
    native = spec.native_range(range_set)
    if native.unit == "none":
        return "-"
    scale = native.scale(PREVIEW_SIZE, PREVIEW_SIZE)  # fractions of the image size become pixels
    values = [(native.low + (native.high - native.low) * m) * scale for m in (magnitude, upto) if m is not None]
    unit = "pixels" if scale != 1.0 else native.unit
    return ("±" if spec.signed else "") + " to ".join(f"{v:.3g}" for v in values) + f" {unit}"


def _call_row(label: str, call: OpCall, range_set: str) -> tuple[str, ...]:
    return (label, call.op, f"{call.probability:.2f}", f"{call.magnitude:.2f}",
            native_value(call.op, range_set, call.magnitude))


def _augment_rows(section: Any, label: str) -> list[tuple[str, ...]]:
    if isinstance(section, Schedule):
        return [row for phase in section.phases
                for row in _augment_rows(phase.augment, f"{label} {phase.start_fraction:.0%}-{phase.end_fraction:.0%}")]
    if isinstance(section, SubPolicies):
        return [_call_row(f"{label} #{i + 1}" if k == 0 else "", call, section.ranges)
                for i, sub in enumerate(section.subpolicies) for k, call in enumerate(sub)]
    if isinstance(section, RandAugment):
        pick = f"{label}: {section.num_ops} of {len(section.ops)}"
        return [_call_row(pick if k == 0 else "", OpCall(op=op, magnitude=section.magnitude), section.ranges)
                for k, op in enumerate(section.ops)]
    if isinstance(section, TrivialAugment):
        low, high = section.magnitude_min, section.magnitude_max
        pick = f"{label}: 1 of {len(section.ops)}"
        return [(pick if k == 0 else "", op, "1.00", f"{low:.2f} to {high:.2f}",
                 native_value(op, section.ranges, low, high)) for k, op in enumerate(section.ops)]
    return [(label, "(none)", "", "", "")]


def ops_table(policy: Policy) -> Table:
    """pre ops, the augment section and post ops; native values use the section's range set."""
    augment = policy.augment
    ranges = f", {augment.ranges} ranges" if isinstance(augment, (SubPolicies, RandAugment, TrivialAugment)) else ""
    table = Table(title=f"{policy.name}: augment {augment.kind}{ranges}", caption=policy.description or None)
    for name in ("section", "op", "probability", "magnitude", f"native value at {PREVIEW_SIZE}x{PREVIEW_SIZE}"):
        table.add_column(name, justify="left" if name in ("section", "op") else "right")
    parts = ([_call_row("" if k else "pre", call, "standard") for k, call in enumerate(policy.pre)],
             _augment_rows(augment, "augment"),
             [_call_row("" if k else "post", call, "standard") for k, call in enumerate(policy.post)])
    for rows in parts:
        for row in rows:
            table.add_row(*row)
        if rows:
            table.add_section()
    return table


def _format(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_format(v)}" for k, v in value.items())
    if isinstance(value, list):
        separator = "; " if value and isinstance(value[0], dict) else ", "
        return separator.join(_format(v) for v in value)
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def settings_table(policy: Policy) -> Table:
    """The option sections, one row per setting; sections left out of the file show as off."""
    table = Table(title="settings")
    for name in ("section", "setting", "value"):
        table.add_column(name)
    for name in SETTINGS:
        settings = {k: v for k, v in policy.to_dict().get(name, {}).items() if v not in ({}, [], "")}
        if not settings:
            table.add_row(name, "(off)", "")
        for k, (key, value) in enumerate(settings.items()):
            table.add_row(name if k == 0 else "", key, _format(value))
        table.add_section()
    return table
