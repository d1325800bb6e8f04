"""`autoaug list models`: every registered model, with its parameter count as the table gives it."""
from __future__ import annotations

from autoaug_cli.app import app
from typer.testing import CliRunner

from autoaug.models import list_models


def _rows(stdout: str) -> dict[str, list[str]]:
    """Table body rows by their first cell (rich draws cells between │)."""
    cells = [[cell.strip() for cell in line.split("│")[1:-1]] for line in stdout.splitlines() if line.count("│") > 2]
    return {row[0]: row[1:] for row in cells}


def test_list_models_prints_every_registered_model_and_its_count():
    result = CliRunner().invoke(app, ["list", "models"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "parameters with 10 classes" in result.output
    rows = _rows(result.output)
    assert sorted(rows) == list_models()
    assert rows["preact_resnet18"] == ["11,172,170", "11,170,000", "-"]  # counted, and the paper's 11.17M
    assert rows["wrn_28_10"] == ["36,479,194", "36,500,000", "-"]
    assert rows["proxy_tiny"] == ["75,280", "-", "yes"]  # no published figure; slimmable
    assert rows["resnet18"][2] == "yes"
    assert all(count.replace(",", "").isdigit() and f"{int(count.replace(',', '')):,}" == count
               for count, _, _ in rows.values())
