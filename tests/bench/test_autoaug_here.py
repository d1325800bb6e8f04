"""bench/autoaug_here.py: the CLI of a checkout where nothing is installed."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_the_checkout_launcher_runs_the_cli_without_an_install() -> None:
    """bench/autoaug_here.py maps cli/ to autoaug_cli, as the GPU machine (nothing installed) needs."""
    code = ("import runpy, sys\n"
            "launcher = runpy.run_path(sys.argv[1])\n"
            "launcher['_load_cli']()\n"
            "import autoaug_cli.app\n"
            "print(autoaug_cli.app.__file__)\n"
            "sys.argv = ['autoaug', 'list', 'policies']\n"
            "autoaug_cli.app.main()\n")
    launcher = Path(__file__).resolve().parents[2] / "bench" / "autoaug_here.py"
    done = subprocess.run([sys.executable, "-c", code, str(launcher)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    first, rest = done.stdout.split("\n", 1)
    assert Path(first) == launcher.parents[1] / "cli" / "app.py"
    assert "cropflip" in rest and "trivialaugment-wide" in rest
