"""docs/outputs.md stays true: its pandas lines run on a real trials table, and it names every column."""
from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from autoaug.search.outcome import config_columns, write_rows

DOCS = Path(__file__).resolve().parents[2] / "docs" / "outputs.md"


def _python_block(text: str) -> str:
    return re.search(r"```python\n(.*?)```", text, re.S).group(1)


def _rows() -> list[dict]:
    config = {"mixing.mixup_alpha": 0.2, "augment.ops.Rotate": True}
    return [{"trial_id": trial, "status": status, "error": None, "epoch": epoch, "val_accuracy": accuracy,
             **config_columns(config)}
            for trial, status, epoch, accuracy in [("a_00000", "completed", 1, 0.50), ("a_00000", "completed", 2, 0.70),
                                                   ("a_00001", "stopped_early", 1, 0.40),
                                                   ("a_00002", "completed", 1, 0.60), ("a_00002", "completed", 2, 0.90)]]


def test_the_pandas_lines_read_the_table_best_trial_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pandas")
    code = _python_block(DOCS.read_text())
    assert len(code.strip().splitlines()) == 3
    write_rows(tmp_path / "runs" / "quickstart", _rows())
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, str(DOCS), "exec"), {})
    order = [line.split()[0] for line in printed.getvalue().splitlines() if line.startswith("a_")]
    assert order == ["a_00002", "a_00000", "a_00001"]


def test_every_column_a_search_writes_is_documented() -> None:
    from autoaug.search.tune import _METRIC_COLUMNS

    documented = set(re.findall(r"`([a-z_]+)`", DOCS.read_text()))
    assert {"trial_id", "status", "error", "history", *_METRIC_COLUMNS} <= documented
    assert "config.<name>" in DOCS.read_text()
