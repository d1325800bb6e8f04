"""Where the shipped data lives: policies and search spaces, installed or in a source checkout."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from autoaug.errors import AutoaugError

_REPO_ROOT = Path(__file__).resolve().parent.parent


def _data_dir(package: str, folder: str) -> Path:
    """The installed package folder, else the folder at the repository root (PYTHONPATH=. runs)."""
    try:
        path = Path(str(resources.files(package)))
        if path.is_dir():
            return path
    except ModuleNotFoundError:
        pass
    return _REPO_ROOT / folder


def policies_dir() -> Path:
    return _data_dir("autoaug.policies", "policies")


def search_spaces_dir() -> Path:
    return _data_dir("autoaug.search_spaces", "search_spaces")


def shipped_policies() -> dict[str, Path]:
    """Shipped policy names (file stems) -> paths."""
    return {path.stem: path for path in sorted(policies_dir().glob("*.json"))}


def shipped_spaces() -> dict[str, Path]:
    return {path.stem: path for path in sorted(search_spaces_dir().glob("*.yaml"))}


def resolve_policy_path(name_or_path: str | Path) -> Path:
    """A path that exists, or the file of a shipped policy named ``name_or_path``."""
    path = Path(name_or_path)
    if path.exists():
        return path
    shipped = shipped_policies()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    names = ", ".join(shipped) or "none"
    raise AutoaugError(f"{name_or_path}: no such file, and not a shipped policy (shipped: {names})")
