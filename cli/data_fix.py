"""Missing data, told as the exact command that fetches it: the user's own command line plus --download."""
from __future__ import annotations

import shlex
import typer

from autoaug.dataset_formats import MissingDataError
from autoaug.errors import AutoaugError

SUGGESTED_DATA_DIR = "data"  # where to download when the user named no --data-dir
_ADDED = ("download", "data_dir")  # put last, so that the fix reads at the end of the line


def _words(param: object, value: object) -> list[str]:
    """``param`` as typed on a command line (options by their first name); duck-typed, as typer vendors click."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if getattr(param, "param_type_name", "") == "argument":
        return [str(v) for v in values]
    opts, secondary = getattr(param, "opts", []), getattr(param, "secondary_opts", [])
    if getattr(param, "is_flag", False):
        return opts[:1] if value else secondary[:1]
    return [word for v in values for word in (opts[0], str(v))]


def with_download(ctx: typer.Context, data_dir: str | None) -> str:
    """The command line of ``ctx`` as the user gave it, with ``--data-dir`` and ``--download`` added."""
    given = [p for p in ctx.command.params if p.name not in _ADDED
             and getattr(ctx.get_parameter_source(p.name), "name", "") == "COMMANDLINE"]
    ordered = sorted(given, key=lambda p: getattr(p, "param_type_name", "") != "argument")  # arguments first
    words = [word for p in ordered for word in _words(p, ctx.params[p.name])]
    words += ["--data-dir", data_dir or SUGGESTED_DATA_DIR, "--download"]
    return f"{ctx.command_path} {shlex.join(words)}"


def missing_data_error(ctx: typer.Context, error: MissingDataError, data_dir: str | None) -> AutoaugError:
    """The error to show: what is missing, and the command that downloads it and runs again."""
    return AutoaugError(f"{error.problem}; to download it (needs a network) and run: {with_download(ctx, data_dir)}")
