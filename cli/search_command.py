"""`autoaug search`: options in, one library call, a live display out."""
from __future__ import annotations

import json
import sys
import warnings
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from autoaug.dataset_formats import MissingDataError  # numpy only: cheap at start-up
from autoaug_cli.app import app, examples, fail
from autoaug_cli.data_fix import missing_data_error
from autoaug_cli.option_help import DEFAULT_LR, DOWNLOAD_HELP, LR_HELP
from autoaug_cli.search_display import SearchDisplay

if TYPE_CHECKING:  # the library's search modules import torch: loaded when a search runs, not for --help
    from autoaug.search.compare import Comparison
    from autoaug.search.options import SearchOptions
    from autoaug.search.outcome import SearchOutcome


def _head_to_head_table(comparison: Comparison) -> Table:
    record = comparison.record()
    table = Table(title=f"head to head: {len(record['seeds'])} seeds x {record['epochs']} epochs, validation accuracy")
    for name in ("contender", "trial", "search score", "mean", "± std"):
        table.add_column(name, justify="left" if name in ("contender", "trial") else "right")
    rows = [("candidate", entry) for entry in record["candidates"]]
    rows += [(f"baseline {record['baseline']['seed_policy']}", record["baseline"])] if record["baseline"] else []
    for label, entry in rows:
        mean = "failed" if entry["mean"] is None else f"{100 * entry['mean']:.2f}%"
        std = "" if entry["std"] is None else f"{100 * entry['std']:.2f}"
        table.add_row(label, entry["trial_id"], f"{100 * entry['search_score']:.2f}%", mean, std)
    return table


def _summary(outcome: SearchOutcome) -> dict:
    comparison = outcome.head_to_head.record() if outcome.head_to_head is not None else None
    return {"head_to_head": comparison,
            "rank_correlation": comparison["rank_correlation"] if comparison else None,
            "policy": str(outcome.policy_path), "validation_score": outcome.score, "chosen_trial": outcome.chosen_trial,
            "trials": outcome.trials, "completed": outcome.completed, "stopped_early": outcome.stopped_early,
            "failed": outcome.failed, "out": str(outcome.out), "trials_table": str(outcome.trials_path),
            "run": str(outcome.run_path), "top": [str(p) for p in outcome.top_paths]}


@app.command(epilog=examples(
    "autoaug search --dataset digits --budget 12 --epochs 4 --out runs/quickstart",
    "autoaug search --dataset cifar10 --data-dir DATA --budget 30m --space default --out runs/c10"))
def search(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option(help="Dataset name, .npz file or image folder.")] = "digits",
    budget: Annotated[str, typer.Option(help="Trials (200) or a duration of searching (90s, 30m, 2h), timed from the first trial's start; the top-k re-training comes after it.")] = "20",
    space: Annotated[str, typer.Option(help="Shipped space name or a .yaml file.")] = "default",
    model: Annotated[str, typer.Option(help="Backbone trained in each trial (auto: proxy on a GPU, proxy_tiny on CPU).")] = "auto",
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Epochs per trial (default: half of --target-epochs, else 5).")] = None,
    target_epochs: Annotated[Optional[int], typer.Option(min=1, help="Epochs the policy will be trained for; trials train half that, the head-to-head all of it.")] = None,
    algo: Annotated[str, typer.Option(help="nevergrad, random or pbt.")] = "nevergrad",
    scheduler: Annotated[str, typer.Option(help="asha (early stopping) or fifo.")] = "asha",
    gpus_per_trial: Annotated[Optional[float], typer.Option(help="GPU share per trial (0.25 where there is a GPU; always 0 without).")] = None,
    cpus_per_trial: Annotated[int, typer.Option(min=1, help="CPU cores (torch threads) each trial gets; as many trials run at once as the cores allow.")] = 1,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    train_size: Annotated[Optional[int], typer.Option(help="Class-balanced training subset.")] = None,
    val_size: Annotated[float, typer.Option(help="Validation carved from training: fraction or count.")] = 0.2,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Default: at least 16 steps an epoch, at most 512.")] = None,
    data_dir: Annotated[Optional[str], typer.Option(help="Folder holding a named dataset's files (see `autoaug list datasets`).")] = None,
    download: Annotated[bool, typer.Option(help=DOWNLOAD_HELP)] = False,
    lr: Annotated[float, typer.Option(min=0.0, help=LR_HELP)] = DEFAULT_LR,
    seed: Annotated[int, typer.Option(help="Seeds the validation split, the search algorithm and the trainer.")] = 0,
    out: Annotated[Optional[str], typer.Option(help="Output folder (default: autoaug-runs/<dataset>-<time>).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the interrupted search in --out.")] = False,
    address: Annotated[Optional[str], typer.Option(help="Join this Ray cluster (host:port or auto).")] = None,
    top_k: Annotated[int, typer.Option(min=0, help="Re-train the best k head to head with the best shipped policy before choosing.")] = 3,
    top_k_epochs: Annotated[Optional[int], typer.Option(min=1, help="Epochs of those runs (default: --target-epochs, else 2 x --epochs).")] = None,
    top_k_seeds: Annotated[int, typer.Option(min=2, help="Seeds of those runs (the same for every contender).")] = 2,
    log: Annotated[Optional[list[str]], typer.Option(help="Also log every trial to tensorboard (files under OUT/tune) or mlflow (MLFLOW_TRACKING_URI, else OUT/mlflow.db); repeatable.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON summary, nothing else.")] = False,
) -> None:
    """Search augmentation policies; writes policy.json, top/, trials.parquet and run.json (see docs/outputs.md)."""
    from autoaug.results import check_out_folder
    from autoaug.search.options import SearchOptions

    if resume and out is None:
        fail("--resume needs --out DIR: the folder of the search to continue")
    out = out or f"autoaug-runs/{dataset.rstrip('/').replace('/', '_')}-{datetime.now():%Y%m%d-%H%M%S}"
    check_out_folder(out)  # before Ray or the data load: seconds, not a late "File exists"
    options = SearchOptions(dataset=dataset, data_dir=data_dir, space=space, model=model, epochs=epochs,
                            target_epochs=target_epochs, top_k_seeds=top_k_seeds,
                            budget=budget, algo=algo, scheduler=scheduler, gpus_per_trial=gpus_per_trial,
                            cpus_per_trial=cpus_per_trial, device=device, train_size=train_size, val_size=val_size,
                            batch_size=batch_size, seed=seed, out=out, resume=resume, address=address,
                            top_k=top_k, top_k_epochs=top_k_epochs, download=download, lr=lr,
                            log=tuple(log or ()))
    try:
        outcome = _run(options, as_json)  # Ctrl-C: SearchInterrupted, one line saying how to resume
    except MissingDataError as error:
        raise missing_data_error(ctx, error, data_dir) from None
    report = write_search_report(outcome.out)
    if as_json:
        print(json.dumps({**_summary(outcome), "report": None if report is None else str(report)}))
        return
    console = Console(soft_wrap=True)
    console.print(
        f"chosen policy [bold]{outcome.policy.name}[/]: validation accuracy {100 * outcome.score:.2f}% "
        f"(trial {outcome.chosen_trial}; {outcome.trials} trials: {outcome.completed} completed, "
        f"{outcome.stopped_early} stopped early, {outcome.failed} failed)")
    if outcome.head_to_head is not None:
        console.print(_head_to_head_table(outcome.head_to_head))
        console.print(f"head to head: {outcome.head_to_head.verdict()}")
        rho = outcome.head_to_head.rank_correlation
        console.print("rank correlation (search score vs re-trained mean, Spearman): "
                      + ("n/a (fewer than 3 re-trained)" if rho is None else f"{rho:+.2f}"))
    console.print(f"written to {outcome.policy_path} (top-k in top/, every trial in trials.parquet)"
                  + (f"\nreport: {report}" if report is not None else ""))


def _run(options: SearchOptions, as_json: bool) -> SearchOutcome:
    warnings.filterwarnings("ignore")  # Ray's and nevergrad's import-time notices are not the user's concern
    from autoaug.search.outcome import SearchInterrupted
    from autoaug.search.tune import run_search  # ray loads only for this command

    if as_json:
        return run_search(options)
    display = SearchDisplay()
    try:
        return run_search(options, on_progress=display.update)
    except SearchInterrupted:
        write_search_report(options.out)  # what an interrupted search has is worth a look too
        raise
    finally:
        display.close()


def write_search_report(out: str | Path) -> Path | None:
    """report.html in the search folder; a report that fails is a note, never a failed search."""
    from autoaug.report import write_report  # matplotlib loads only here
    try:
        return write_report(out).html
    except Exception as error:  # noqa: BLE001
        sys.stderr.write(f"note: no report.html ({type(error).__name__}: {error}); try: autoaug report {out}\n")
        return None
