"""The typer app and the entry point that turns user errors into one line on stderr."""
from __future__ import annotations

import os
import sys
from typing import NoReturn

import typer

from autoaug.errors import AutoaugError


def examples(*commands: str) -> str:
    """A help epilog: the command's real examples, one a paragraph (rich keeps them unwrapped where it can)."""
    return "[bold]Examples[/]\n\n" + "\n\n".join(f"  {command}" for command in commands)


app = typer.Typer(
    name="autoaug",
    help="Search, inspect and apply data-augmentation policies (policy.json artifacts).",
    epilog=examples("autoaug search --dataset digits --budget 12 --epochs 4 --out runs/quickstart",
                    "autoaug COMMAND --help   (each command's options, with examples)"),
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

INTERNAL_ERROR = 1
USER_ERROR = 2
INTERRUPTED = 130


def print_error(message: str) -> None:
    """``error: <message>`` as exactly one line on stderr (plain: rich would wrap it)."""
    sys.stderr.write(f"error: {' '.join(message.split())}\n")
    sys.stderr.flush()


def fail(message: str, code: int = USER_ERROR) -> NoReturn:
    print_error(message)
    raise SystemExit(code)


def _os_message(error: OSError) -> str:
    where = f"{error.filename}: " if error.filename else ""
    return f"{where}{error.strerror or error}"


def main(argv: list[str] | None = None) -> None:
    """Run the app; user errors exit with code 2 and one line, never a traceback."""
    try:
        app(args=argv, prog_name="autoaug")
    except AutoaugError as error:
        fail(str(error))
    except OSError as error:  # missing or unwritable user paths, a full disk
        fail(_os_message(error))
    except KeyboardInterrupt:
        fail("interrupted", INTERRUPTED)
    except SystemExit as done:
        if done.code == INTERRUPTED:  # typer turns Ctrl-C inside a command into a silent exit 130
            fail("interrupted", INTERRUPTED)
        raise
    except Exception as error:  # a bug of ours, not the user's input: one line; the traceback on request
        if os.environ.get("AUTOAUG_DEBUG"):
            raise
        fail(f"internal error: {type(error).__name__}: {error} (AUTOAUG_DEBUG=1 shows the traceback; "
             "please report it)", INTERNAL_ERROR)


from autoaug_cli import evaluate_command, list_commands, policy_commands, search_command  # noqa: E402,F401
from autoaug_cli import export_command, report_command  # noqa: E402,F401
