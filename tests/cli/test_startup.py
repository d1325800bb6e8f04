"""Starting fast: the package and the command line load without torch or Ray until a command needs them.

Checked in a fresh interpreter through ``sys.modules`` (what got imported), never by timing; the times
are in BENCHMARKS.md.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "torchvision", "ray", "nevergrad", "pyarrow", "sklearn")


def _imported_after(code: str) -> set[str]:
    """The heavy top-level modules loaded by running ``code`` in a new interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1])) & set(HEAVY)


def _cli(*commands: tuple[str, ...]) -> str:
    """Run each command in turn in one interpreter (exit codes aside: only the imports matter here)."""
    return "from autoaug_cli.app import main\n" + "".join(
        f"try:\n    main({list(args)!r})\nexcept SystemExit:\n    pass\n" for args in commands)


@pytest.mark.parametrize("code", [
    "import autoaug\nimport autoaug_cli.app",
    "import autoaug\nautoaug.load_policy('cropflip'), autoaug.Policy, autoaug.AutoaugError",
    _cli(("--help",), ("search", "--help"), ("evaluate", "--help"), ("apply", "--help")),
    _cli(("validate", "randaugment", "autoaugment-cifar10"), ("show", "randaugment")),
    _cli(("list", "ops"), ("list", "policies"), ("list", "datasets"), ("list", "models")),
], ids=["import", "exports", "help", "validate-show", "list"])
def test_startup_imports_neither_torch_nor_ray(code: str) -> None:
    assert _imported_after(code) == set()


def test_a_command_that_trains_still_gets_torch() -> None:
    # the probe must be able to fail: using a policy on images, or an op's kernel, loads torch
    code = "import autoaug\nautoaug.BatchAugment(autoaug.load_policy('cropflip'), seed=0)\n" \
           "from autoaug.op_specs import OPS\nOPS['Rotate'].kernel"
    assert {"torch", "torchvision"} <= _imported_after(code)


def test_unknown_attribute_is_an_attribute_error() -> None:
    import autoaug

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        autoaug.nope  # noqa: B018
    assert {"Policy", "load_policy", "AutoaugError", "__version__"} <= set(dir(autoaug)) and \
        set(autoaug.__all__) <= set(dir(autoaug))
