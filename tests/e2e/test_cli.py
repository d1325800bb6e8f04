"""The real `autoaug` command in a subprocess, on real digits images and real and broken policy files.

Every command starts a fresh interpreter that imports torch (seconds each), so the module starts all
of its commands at once, a few at a time, and each test then checks the result of its own command.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from autoaug.ops import OPS
from autoaug.policy import load_policy
from autoaug.resources import shipped_policies

SHIPPED = shipped_policies()
VALID = {"schema_version": 1, "name": "tiny", "augment": {"kind": "subpolicies", "subpolicies": [
    [{"op": "Rotate", "probability": 0.5, "magnitude": 0.3}, {"op": "Invert", "probability": 0.2}]]}}


def _with(path: tuple[str | int, ...], value: object) -> dict:
    """A copy of VALID with the entry at ``path`` set to ``value`` (or deleted if value is ...)."""
    data = json.loads(json.dumps(VALID))
    *parents, last = path
    holder = data
    for key in parents:
        holder = holder[key]
    if value is ...:
        del holder[last]
    else:
        holder[last] = value
    return data


# case -> (file text, what the one error line must say)
MALFORMED = {
    "bad_json": ('{"schema_version": 1, "name": "x",', "not valid JSON"),
    "unknown_op": (json.dumps(_with(("augment", "subpolicies", 0, 0, "op"), "Rotat")),
                   "augment.subpolicies.0.0.op: unknown op 'Rotat' (did you mean 'Rotate'?)"),
    "probability_1.5": (json.dumps(_with(("augment", "subpolicies", 0, 1, "probability"), 1.5)),
                        "augment.subpolicies.0.1.probability"),
    "missing_name": (json.dumps(_with(("name",), ...)), "name: Field required"),
    "schema_version_99": (json.dumps(_with(("schema_version",), 99)), "schema_version 99"),
    "json_list": (json.dumps([VALID]), "expected a JSON object, got list"),
}
DIGITS = ["a/d0.png", "a/d1.png", "a/b/d2.png", "d3.png"]


def _write_workspace(root: Path) -> None:
    from sklearn.datasets import load_digits

    digits = (load_digits().images[: len(DIGITS)] * (255 / 16)).round().astype(np.uint8)
    for name, digit in zip(DIGITS, digits):
        (root / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        PIL.Image.fromarray(digit.repeat(4, 0).repeat(4, 1)).save(root / "images" / name)
    (root / "images" / "a" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (root / "bad").mkdir()
    (root / "a-file").write_text("not a folder")
    for case, (text, _) in MALFORMED.items():
        (root / "bad" / f"{case}.json").write_text(text)


def _commands(root: Path) -> dict[str, list[str]]:
    commands = {
        "validate_shipped": ["validate", *SHIPPED],
        "apply_folder": ["apply", "autoaugment-cifar10", "--input", str(root / "images"), "--output",
                         str(root / "out"), "--copies", "2", "--seed", "3", "--batch-size", "4"],
        "apply_missing": ["apply", "randaugment", "--input", str(root / "nowhere"), "--output", str(root / "o")],
        "show": ["show", "autoaugment-cifar10", "--grid", str(root / "grid.png"), "--copies", "3", "--rows", "2"],
        "list_ops": ["list", "ops"],
        "list_policies": ["list", "policies"],
        "list_unknown": ["list", "op"],
        "list_datasets": ["list", "datasets"],
        "search_out_is_a_file": ["search", "--budget", "2", "--out", str(root / "a-file")],
        "evaluate_out_is_a_file": ["evaluate", "cropflip", "--epochs", "1", "--out", str(root / "a-file")],
    }
    return commands | {case: ["validate", str(root / "bad" / f"{case}.json")] for case in MALFORMED}


def _autoaug(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}  # rich would otherwise wrap or cut table cells at 80 columns
    return subprocess.run([sys.executable, "-m", "autoaug_cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("e2e")
    _write_workspace(root)
    return root


@pytest.fixture(scope="module")
def runs(workspace: Path) -> dict[str, Future[subprocess.CompletedProcess[str]]]:
    if importlib.util.find_spec("autoaug_cli") is None:
        pytest.fail("autoaug_cli is not installed: run `pip install -e .` first")
    with ThreadPoolExecutor(max_workers=max(2, min(4, os.cpu_count() or 2))) as pool:
        yield {name: pool.submit(_autoaug, args, workspace) for name, args in _commands(workspace).items()}


def _result(runs: dict[str, Future], name: str) -> subprocess.CompletedProcess[str]:
    result = runs[name].result()
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize("name", list(SHIPPED))
def test_validate_accepts_every_shipped_policy(runs: dict, name: str) -> None:
    result = _result(runs, "validate_shipped")
    assert result.returncode == 0 and result.stderr == ""
    policy = load_policy(SHIPPED[name])
    assert f"ok: {policy.name} ({policy.augment.kind})" in result.stdout.splitlines()


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_policy_is_one_error_line_naming_the_field(runs: dict, workspace: Path, case: str) -> None:
    line = _one_error_line(_result(runs, case))
    assert line.startswith(f"error: {workspace / 'bad' / case}.json: ")
    assert MALFORMED[case][1] in line


def test_apply_writes_copies_and_reports_the_corrupt_file(runs: dict, workspace: Path) -> None:
    result = _result(runs, "apply_folder")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == f"wrote {2 * len(DIGITS)} images, skipped 1"
    skipped = [line for line in result.stderr.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == 1
    assert skipped[0].startswith(f"skipped {workspace / 'images' / 'a' / 'corrupt.png'}: not a readable image")
    expected = sorted(f"{name[:-4]}_aug{k}.png" for name in DIGITS for k in range(2))
    assert sorted(p.relative_to(workspace / "out").as_posix() for p in (workspace / "out").rglob("*")
                  if p.is_file()) == expected
    for name in expected:
        with PIL.Image.open(workspace / "out" / name) as image:
            assert (image.size, image.mode) == ((32, 32), "L")


def test_apply_with_a_missing_input_is_one_error_line(runs: dict) -> None:
    line = _one_error_line(_result(runs, "apply_missing"))
    assert "nowhere: no such file or directory" in line


def test_show_prints_the_ops_and_writes_a_grid(runs: dict, workspace: Path) -> None:
    result = _result(runs, "show")
    assert result.returncode == 0, result.stderr
    policy = load_policy("autoaugment-cifar10")
    for call in [*policy.pre, *(call for sub in policy.augment.subpolicies for call in sub)]:
        assert call.op in result.stdout
    assert "±14.5 pixels" in result.stdout  # TranslateX at magnitude 1 on 32x32: 150/331 of the width
    with PIL.Image.open(workspace / "grid.png") as grid:
        # 2 digits of 32x32 upscaled 4x, original + 3 copies, 2-pixel gutters
        assert grid.size == (4 * (128 + 2) + 2, 2 * (128 + 2) + 2)


def test_list_ops_names_every_op(runs: dict) -> None:
    result = _result(runs, "list_ops")
    assert result.returncode == 0
    listed = {line.split("│")[1].strip() for line in result.stdout.splitlines() if line.count("│") > 2}
    assert set(OPS) <= listed


def test_list_policies_names_every_shipped_policy(runs: dict) -> None:
    result = _result(runs, "list_policies")
    assert result.returncode == 0
    assert all(name in result.stdout for name in SHIPPED)
    assert "invalid" not in result.stdout


def test_an_unknown_list_target_names_the_valid_ones(runs: dict) -> None:
    line = _one_error_line(_result(runs, "list_unknown"))
    assert "unknown list target 'op' (did you mean 'ops'?)" in line
    assert "datasets, models, ops, policies" in line


def test_list_datasets_says_where_files_go_and_how_to_get_them(runs: dict) -> None:
    result = _result(runs, "list_datasets")
    assert result.returncode == 0
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") > 2}
    assert {"cifar10", "cifar100", "digits", "fashion_mnist", "svhn"} <= set(rows)
    assert "cifar-10-batches-py" in rows["cifar10"] and "--download --data-dir DIR" in rows["cifar10"]
    assert "apt-get install dataset-fashion-mnist" in rows["fashion_mnist"]
    assert "scikit-learn" in rows["digits"]


def test_out_naming_a_file_is_one_line_before_anything_starts(runs: dict, workspace: Path) -> None:
    line = _one_error_line(_result(runs, "search_out_is_a_file"))
    assert line == f"error: --out {workspace / 'a-file'} is a file, not a folder; choose another --out"
    assert (workspace / "a-file").read_text() == "not a folder"


def test_evaluate_out_naming_a_file_is_one_line_before_anything_trains(runs: dict, workspace: Path) -> None:
    result = _result(runs, "evaluate_out_is_a_file")  # a check after training would take minutes, then "File exists"
    assert _one_error_line(result) == f"error: --out {workspace / 'a-file'} is a file, not a folder; choose another --out"
    assert result.stdout == "" and (workspace / "a-file").read_text() == "not a folder"


# a log line: its time, the phase, its counts, the best so far, elapsed and the phase's remaining time
LOG_LINE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} (search|re-training top k): \d+/\d+ (trials|runs) done.*; "
                      r"elapsed \d+:\d\d:\d\d, remaining ~(\d+:\d\d:\d\d|\?)$")


def _digit_folder(root: Path, per_class: int) -> Path:
    """Real digits as 32x32 PNGs in train/<class>/ only: a search must not need test/."""
    from sklearn.datasets import load_digits

    digits, counts = load_digits(), dict.fromkeys(range(10), 0)
    for image, label in zip(digits.images, digits.target):
        if counts[label] < per_class:
            counts[label] += 1
            path = root / "train" / str(label) / f"{counts[label]}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            pixels = (image * (255 / 16)).round().astype(np.uint8).repeat(4, 0).repeat(4, 1)
            PIL.Image.fromarray(pixels).save(path)
    return root


def test_search_of_a_train_only_folder_logs_every_phase_line_by_line(tmp_path: Path) -> None:
    folder, out, log = _digit_folder(tmp_path / "digits", per_class=30), tmp_path / "run", tmp_path / "log.txt"
    args = ["search", "--dataset", str(folder), "--model", "proxy_tiny", "--epochs", "1", "--budget", "5",
            "--val-size", "100", "--batch-size", "64", "--top-k", "2", "--top-k-epochs", "1", "--out", str(out)]
    with log.open("w") as handle:  # as `autoaug search ... > log.txt 2>&1`: no terminal
        done = subprocess.run([sys.executable, "-m", "autoaug_cli", *args], stdout=handle, stderr=subprocess.STDOUT,
                              timeout=600)
    lines = log.read_text().splitlines()
    assert done.returncode == 0, lines
    first = next(i for i, line in enumerate(lines) if line.startswith("chosen policy "))
    events, summary = lines[:first], lines[first:]  # the summary on lines of its own, after the events
    assert events and all(LOG_LINE.match(line) for line in events), events
    # 5 trials, the first 3 the shipped policies the space holds: the search's 2 meet the best of them head to head
    assert "(trial " in summary[0] and "5 trials: 5 completed" in summary[0]
    assert any(line.startswith("head to head: ") for line in summary)  # the verdict against the best seed
    assert f"written to {out / 'policy.json'} (top-k in top/, every trial in trials.parquet)" in summary
    assert f"report: {out / 'report.html'}" in summary
    search = [line for line in events if " search: " in line]
    retrain = [line for line in events if " re-training top k: " in line]
    assert re.search(r" search: 0/5 trials done, 0 running, 0 failed; best val -; elapsed 0:00:0\d, ", search[0]), search
    assert search and "5/5 trials done" in search[-1] and re.search(r"best val \d+\.\d\d% \(trial \w+, epoch 1\)",
                                                                      search[-1])
    assert events.index(search[-1]) < events.index(retrain[0])  # re-training shows after the search
    # ... at once: its start line comes before any run of it ends, and then each line names the leader
    assert re.search(r" re-training top k: 0/\d+ runs done, 0 failed; leading contender: -; ", retrain[0]), retrain
    assert re.search(r"; leading contender: (trial \w+|baseline [\w-]+), mean val \d+\.\d\d% over [12] runs?; ",
                     retrain[-1]), retrain
    runs = re.search(r" (\d+)/(\d+) runs done", retrain[-1])  # up to 2 candidates and the best seed, x 2 seeds
    assert runs and runs[1] == runs[2] and int(runs[2]) in (4, 6) and retrain[-1].endswith("remaining ~0:00:00")
    assert "\x1b[" not in log.read_text()
    assert (out / "policy.json").is_file() and not (folder / "test").exists()
    docs = (Path(__file__).resolve().parents[2] / "docs" / "outputs.md").read_text()
    for entry in out.iterdir():  # every file the run wrote is described
        assert f"`{entry.name}{'/' if entry.is_dir() else ''}" in docs, entry.name
