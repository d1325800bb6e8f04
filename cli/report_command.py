"""`autoaug report`: a search folder as one self-contained report.html, with its plots as PNGs beside it."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from autoaug_cli.app import app, examples


@app.command(epilog=examples("autoaug report runs/quickstart",
                             "autoaug report runs/quickstart -o quickstart-report.html"))
def report(
    run_dir: Annotated[Path, typer.Argument(help="The --out folder of an autoaug search (finished, interrupted or running).")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Where to write the page (default: RUN_DIR/report.html).")] = None,
) -> None:
    """Write report.html: progress, ASHA rungs, ops and parameters that mattered, candidates, preview, resources."""
    warnings.filterwarnings("ignore")  # sklearn's and matplotlib's notices are not the user's concern
    from autoaug.report import write_report  # matplotlib loads only for this command

    written = write_report(run_dir, out=output)
    Console(soft_wrap=True, highlight=False).print(
        f"wrote {written.html} ({len(written.images)} plots as PNGs beside it; the search is {written.state})", markup=False)
