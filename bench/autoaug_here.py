"""The `autoaug` command of this checkout without installing it: `python bench/autoaug_here.py search ...`.

`PYTHONPATH=.` makes `autoaug` importable from a checkout, but the CLI's folder is `cli/`, installed as
`autoaug_cli`; this maps one to the other, for machines where nothing is installed (the GPU machine).
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _load_cli() -> None:
    sys.path.insert(0, str(ROOT))  # autoaug itself, from this checkout
    spec = importlib.util.spec_from_file_location("autoaug_cli", ROOT / "cli" / "__init__.py",
                                                  submodule_search_locations=[str(ROOT / "cli")])
    module = importlib.util.module_from_spec(spec)
    sys.modules["autoaug_cli"] = module
    spec.loader.exec_module(module)


if __name__ == "__main__":
    if importlib.util.find_spec("autoaug_cli") is None:
        _load_cli()
    from autoaug_cli.app import main
    sys.exit(main())
