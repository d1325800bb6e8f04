"""`autoaug evaluate`: the final protocol, policies side by side over seeds."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from autoaug_cli.app import app, examples
from autoaug.dataset_formats import MissingDataError  # numpy only: cheap at start-up
from autoaug_cli.data_fix import missing_data_error
from autoaug_cli.option_help import DEFAULT_LR, DOWNLOAD_HELP, LR_HELP

if TYPE_CHECKING:
    from autoaug.evaluate import EvaluationOptions, PolicyScore


@app.command(epilog=examples(
    "autoaug evaluate cropflip runs/quickstart/policy.json --dataset digits --epochs 10 --seeds 2",
    "autoaug evaluate cropflip trivialaugment-wide --dataset cifar10 --data-dir DATA --epochs 80 --seeds 2 --out eval/"))
def evaluate(
    ctx: typer.Context,
    policies: Annotated[list[str], typer.Argument(help="Policy files or shipped names (cropflip, randaugment, ...).")],
    dataset: Annotated[str, typer.Option(help="Dataset name, .npz file or image folder.")] = "digits",
    model: Annotated[str, typer.Option(help="Backbone (see `autoaug list models`).")] = "preact_resnet18",
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs of each run.")] = 10,
    seeds: Annotated[int, typer.Option(min=1, help="Runs per policy; mean ± std is reported.")] = 1,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Default: at least 16 steps an epoch, at most 512.")] = None,
    lr: Annotated[float, typer.Option(min=0.0, help=LR_HELP)] = DEFAULT_LR,
    data_dir: Annotated[Optional[str], typer.Option(help="Folder holding a named dataset's files (see `autoaug list datasets`).")] = None,
    download: Annotated[bool, typer.Option(help=DOWNLOAD_HELP)] = False,
    out: Annotated[Optional[Path], typer.Option(help="Write evaluation.json and evaluation.parquet here.")] = None,
) -> None:
    """Train on the full training set and compare test accuracy of policies over seeds."""
    from autoaug.evaluate import EvaluationOptions, run_evaluation  # torch loads here, not for --help
    from autoaug.results import check_out_folder

    if out is not None:
        check_out_folder(out)  # before the progress bar, which would leave a blank line above the error

    options = EvaluationOptions(tuple(policies), dataset, data_dir, model, epochs, seeds, device, batch_size, lr, out,
                                download=download)
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("evaluating", total=len(policies) * seeds * epochs)

        def show(p) -> None:
            bar.update(task, completed=p.run * p.epochs + p.metrics.epoch,
                       description=f"{p.policy} seed {p.seed} epoch {p.metrics.epoch}/{p.epochs} "
                                   f"acc {p.metrics.val_accuracy:.3f}")

        try:
            scores = run_evaluation(options, on_progress=show)
        except MissingDataError as error:
            raise missing_data_error(ctx, error, data_dir) from None
    Console().print(_table(scores, options))


def _table(scores: list[PolicyScore], options: EvaluationOptions) -> Table:
    table = Table(title=f"test accuracy: {options.dataset}, {options.model}, {options.epochs} epochs")
    for name in ("policy", "mean", "± std", "ECE", "runs", "failed"):
        table.add_column(name, justify="left" if name == "policy" else "right")
    for s in sorted(scores, key=lambda s: -s.mean if s.accuracies else 1.0):
        table.add_row(s.policy, *summary_cells(s), "; ".join(s.failures) or "0")
    return table


def summary_cells(score: PolicyScore) -> tuple[str, str, str, str]:
    """Mean accuracy, its spread ("n=1" for a single run, which has none), mean ECE, and the run count."""
    if not score.accuracies:
        return "-", "-", "-", "0"
    spread = f"{100 * score.std:.2f}" if len(score.accuracies) > 1 else "n=1"
    return f"{100 * score.mean:.2f}%", spread, f"{score.mean_ece:.3f}", str(len(score.accuracies))
