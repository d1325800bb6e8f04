"""`autoaug list ops|policies|models|datasets`: what this autoaug knows about."""
from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from autoaug.errors import AutoaugError, UnknownNameError
from autoaug.model_specs import MODEL_SIZES, NUM_CLASSES
from autoaug.op_specs import OPS, NativeRange
from autoaug.policy import load_policy
from autoaug.resources import shipped_policies
from autoaug_cli.app import app, examples


def _range(native: NativeRange) -> str:
    return "-" if native.unit == "none" else f"{native.low:.3g} to {native.high:.3g} {native.unit}"


def ops_table() -> Table:
    table = Table(title="ops (magnitude 0 to 1 maps to low to high)")
    for name in ("name", "signed", "standard range", "wide range"):
        table.add_column(name)
    for spec in OPS.values():
        wide = "same" if spec.wide == spec.standard else _range(spec.wide)
        table.add_row(spec.name, "yes" if spec.signed else "", _range(spec.standard), wide)
    return table


def policies_table() -> Table:
    table = Table(title="shipped policies (use the name wherever a policy file is expected)")
    for name in ("name", "kind", "description"):
        table.add_column(name)
    for name, path in shipped_policies().items():
        try:
            policy = load_policy(path)
            table.add_row(name, policy.augment.kind, policy.description)
        except AutoaugError as error:  # one broken file should not hide the others
            table.add_row(name, "[red]invalid[/red]", str(error))
    return table


def models_table() -> Table:
    table = Table(title=f"models (parameters with {NUM_CLASSES} classes)")
    for name in ("name", "parameters", "published", "slimmable"):
        table.add_column(name, justify="left" if name == "name" else "right")
    for name in sorted(MODEL_SIZES):
        size = MODEL_SIZES[name]
        table.add_row(name, f"{size.parameters:,}", f"{round(size.published):,}" if size.published else "-",
                      "yes" if size.slimmable else "-")
    return table


def datasets_table() -> Table:
    from autoaug.datasets import DATASETS, list_datasets

    table = Table(title="datasets (DIR is --data-dir; nothing is downloaded unless asked)")
    for name in ("name", "files", "how to get them"):
        table.add_column(name)
    for name in list_datasets():
        entry = DATASETS[name]
        table.add_row(name, entry.files, entry.source)
    table.add_row("PATH.npz", "x_train, y_train, x_test, y_test arrays (or a JPEG pack)", "your own")
    table.add_row("PATH/", "train/<class>/*.png|jpg (test/<class>/ only for evaluate)", "your own")
    return table


TARGETS: dict[str, Callable[[], Table]] = {
    "ops": ops_table, "policies": policies_table, "models": models_table, "datasets": datasets_table,
}


@app.command(name="list", epilog=examples("autoaug list policies", "autoaug list datasets"))
def list_command(
    target: Annotated[str, typer.Argument(help=f"What to list: {', '.join(TARGETS)}.", show_default=False)],
) -> None:
    """List ops, shipped policies, models (with parameter counts) or datasets (where their files go)."""
    if target not in TARGETS:
        raise UnknownNameError("list target", target, TARGETS)
    Console().print(TARGETS[target]())
