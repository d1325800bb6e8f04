"""The entry point: every failure is one line on stderr with its exit code, never a traceback."""
from __future__ import annotations

import pytest
from autoaug_cli import app as cli_app
from autoaug_cli import list_commands


def _crash() -> None:
    raise RuntimeError("the table broke")


def test_a_bug_is_one_line_with_exit_code_1(monkeypatch, capsys):
    monkeypatch.setitem(list_commands.TARGETS, "ops", _crash)
    monkeypatch.delenv("AUTOAUG_DEBUG", raising=False)
    with pytest.raises(SystemExit) as done:
        cli_app.main(["list", "ops"])
    err = capsys.readouterr().err
    assert done.value.code == cli_app.INTERNAL_ERROR == 1
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("error: internal error: RuntimeError: the table broke (AUTOAUG_DEBUG=1")


def test_autoaug_debug_shows_the_traceback(monkeypatch):
    monkeypatch.setitem(list_commands.TARGETS, "ops", _crash)
    monkeypatch.setenv("AUTOAUG_DEBUG", "1")
    with pytest.raises(RuntimeError, match="the table broke"):
        cli_app.main(["list", "ops"])
