"""`autoaug export`: a policy as a torchvision module or as timm train.py settings."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from autoaug_cli.app import app, examples


@app.command(epilog=examples(
    "autoaug export runs/quickstart/policy.json --to torchvision -o my_policy.py",
    "autoaug export randaugment --to timm --approximate -o timm_aug.yaml"))
def export(
    policy: Annotated[str, typer.Argument(help="A policy.json file or a shipped name.")],
    to: Annotated[str, typer.Option("--to", help="torchvision (a Python module) or timm (train.py flags and -c YAML).")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="File to write (torchvision default: "
                                                   "<name>_torchvision.py; timm: the YAML, else only printed).")] = None,
    approximate: Annotated[bool, typer.Option(help="timm: export parts timm cannot say exactly, each listed.")] = False,
) -> None:
    """Export a policy to torchvision.transforms.v2 or to timm's train.py (exit 2 if timm cannot say it exactly)."""
    from autoaug.export import export_policy  # loaded for this command only: start-up stays fast
    from autoaug.policy import load_policy, write_atomic

    exported = export_policy(load_policy(policy), to=to, approximate=approximate)
    out, err = Console(soft_wrap=True, highlight=False), Console(stderr=True, soft_wrap=True, highlight=False)
    if exported.target == "timm":
        out.print(exported.summary, markup=False)
        out.print(exported.text, markup=False, end="")
        if output is not None:
            write_atomic(output, exported.text)
            err.print(f"wrote {output} (train.py -c {output})", markup=False)
        return
    path = write_atomic(output or Path(exported.filename), exported.text)
    out.print(f"wrote {path}: {exported.summary}", markup=False)
    for note in exported.notes:
        err.print(f"note: {note}", markup=False)
