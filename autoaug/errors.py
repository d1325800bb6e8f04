"""User-facing errors: one line that says what is wrong and what is allowed."""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class AutoaugError(Exception):
    """An error caused by user input; the CLI prints it as one line and exits with code 2."""


class UnknownNameError(AutoaugError, KeyError):
    """A name that is not in a registry."""

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        super().__init__(f"unknown {kind} {name!r}{hint}; known: {', '.join(known)}")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(dict):
    """A name -> entry mapping that refuses duplicates and names the known entries on a miss."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def add(self, name: str, entry: object) -> None:
        if name in self:
            raise ValueError(f"duplicate {self.kind} {name!r}")
        self[name] = entry

    def __missing__(self, name: str) -> object:
        raise UnknownNameError(self.kind, str(name), self.keys())

    def __reduce__(self):  # pickle as a plain copy (Ray ships registries to workers)
        return (_rebuild_registry, (self.kind, dict(self)))


def _rebuild_registry(kind: str, entries: dict) -> Registry:
    registry = Registry(kind)
    registry.update(entries)
    return registry
