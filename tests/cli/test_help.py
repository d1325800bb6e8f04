"""Help that teaches: every command's --help describes every option and ends with real examples."""
from __future__ import annotations

import click
import pytest
import typer.main
from typer.testing import CliRunner

from autoaug_cli.app import app

GROUP = typer.main.get_command(app)
COMMANDS = sorted(GROUP.commands)  # every registered command, so a new one is checked with no extra work


def _help(*args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    return result.output


def test_every_command_is_walked() -> None:
    assert {"search", "evaluate", "validate", "show", "apply", "list"} <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_and_argument_has_a_description(name: str) -> None:
    command = GROUP.commands[name]
    assert command.help, f"{name} has no description"
    missing = [param.name for param in command.params
               if isinstance(param, (click.Option, click.Argument)) and not (getattr(param, "help", None) or "").strip()]
    assert missing == [], f"autoaug {name}: options without a description: {missing}"


@pytest.mark.parametrize("name", COMMANDS)
def test_help_ends_with_real_examples(name: str) -> None:
    text = _help(name)
    tail = text[text.rindex("Examples"):]  # after the options table: the help ends with them
    examples = [line.strip() for line in tail.splitlines() if line.strip().startswith("autoaug ")]
    assert 1 <= len(examples) <= 2 and all(line.split()[1] == name for line in examples), tail
    for example in examples:  # each example is a valid command line: its options exist
        options = {word.split("=")[0] for word in example.split() if word.startswith("--")}
        known = {opt for param in GROUP.commands[name].params for opt in param.opts}
        assert options <= known, (example, options - known)


def test_top_level_help_lists_commands_and_an_example() -> None:
    text = _help()
    assert all(name in text for name in COMMANDS)
    assert "autoaug search --dataset digits --budget 12 --epochs 4 --out runs/quickstart" in text


def test_options_named_in_the_issue_are_described() -> None:
    text = _help("search")
    for option, words in (("--data-dir", "dataset's files"), ("--cpus-per-trial", "CPU cores"),
                          ("--seed", "validation split")):
        line = next(line for line in text.splitlines() if option in line)
        assert words in line, line
