"""Result files: Parquet rows and strict JSON documents, replaced atomically, readable by others (0644)."""
from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from autoaug.errors import AutoaugError
from autoaug.policy import FILE_MODE, write_atomic


def check_out_folder(out: str | Path) -> None:
    """``out`` must be a folder or not exist yet, nor lie under a file: said before anything starts, so
    that a command does not train for minutes and then fail on its first write with "File exists"."""
    path = Path(out).expanduser()
    for place in (path, *path.parents):
        if place.exists():
            if not place.is_dir():
                what = "is a file" if place == path else f"lies under {place}, which is a file"
                raise AutoaugError(f"--out {out} {what}, not a folder; choose another --out")
            return


def write_parquet(rows: Sequence[dict[str, Any]], path: str | Path, *, metadata: dict[bytes, bytes] | None = None) -> Path:
    """Write ``rows`` (dicts; missing keys become nulls) as one Parquet table, atomically, mode 0644."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    table = pa.Table.from_pylist([{key: row.get(key) for key in columns} for row in rows])
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    sink = pa.BufferOutputStream()  # a results table is small: written whole, then saved like every other file
    pq.write_table(table, sink)
    return write_atomic(Path(path), sink.getvalue().to_pybytes())


def json_safe(data: Any) -> Any:
    """``data`` with every NaN or infinite float replaced by None (JSON null), in nested dicts and lists."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: json_safe(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_safe(value) for value in data]
    return data


def write_json(data: Any, path: str | Path) -> Path:
    """Strict JSON (no NaN, which most JSON readers reject): non-finite floats are written as null."""
    return write_atomic(Path(path), json.dumps(json_safe(data), indent=2, default=str, allow_nan=False) + "\n")


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a result, for provenance."""
    import torch
    import torchvision

    import autoaug
    return {"autoaug": autoaug.__version__, "torch": torch.__version__, "torchvision": torchvision.__version__}


TRIALS_FILE = "trials.parquet"
TRIALS_LOG = "trials.log.jsonl"
FINAL_STATUSES = ("completed", "stopped_early", "failed")
_SEQ_KEY = b"autoaug.trials.seq"  # the last log event that trials.parquet holds


class TrialRecord:
    """Every trial's rows (one per reported epoch): the search's record of truth.

    ``trials.parquet`` holds the rows up to its last compaction; ``trials.log.jsonl`` holds, one JSON line
    each, the events since.  An event costs one appended line, whatever the number of rows (rewriting
    the table on every event grew with it: 83 ms at 10,000 rows).  Once a trial has a final status its
    rows never change: events about it that come later (a resumed search running it again) are ignored.
    A line cut short by a kill is ignored too; the events before it stand.

    The table is rewritten from time to time during a search (so that it is current to within a
    second or so) but never for more than 1/``REFRESH_RATIO`` of the time: its cost grows with the
    rows, so the pause between rewrites grows with it.  ``read_trials`` is always exact.
    """

    REFRESH_RATIO = 50  # wait at least 50 x the last rewrite's duration before the next: <= 2 % of the time
    REFRESH_MIN_SECONDS = 1.0

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.rows: dict[tuple[str, int | None], dict[str, Any]] = {}
        self.status: dict[str, str] = {}
        self.errors: dict[str, str | None] = {}
        self.last_epoch: dict[str, int] = {}
        self.counts = dict.fromkeys((*FINAL_STATUSES, "running"), 0)
        self.best: float | None = None
        self.best_at: tuple[str, int | None] | None = None  # (trial, epoch) of ``best``: the live display names it
        self.seq = 0
        self._log: Any = None
        self._next_refresh = time.monotonic() + self.REFRESH_MIN_SECONDS
        self._load()

    def _load(self) -> None:
        path = self.out / TRIALS_FILE
        if path.exists():
            table = pq.read_table(path)
            self.seq = int((table.schema.metadata or {}).get(_SEQ_KEY, b"0"))
            for row in table.to_pylist():
                self._set_status(row["trial_id"], row.get("status") or "running", row.get("error"), recount=False)
                self._put(row)
        log = self.out / TRIALS_LOG
        if log.exists():
            for line in log.read_bytes().splitlines():
                try:
                    event = json.loads(line)
                except ValueError:  # a line cut short by a kill: nothing after it was written either
                    break
                if event.get("seq", 0) > self.seq:
                    self.seq = event["seq"]
                    self._apply(event)

    def is_final(self, trial_id: str) -> bool:
        return self.status.get(trial_id) in FINAL_STATUSES

    def report(self, row: dict[str, Any]) -> None:
        """One reported epoch of a running trial (``trial_id`` and ``epoch`` identify the row)."""
        self._append({"kind": "row", "row": row})

    def finish(self, trial_id: str, status: str, *, error: str | None = None,
               base: dict[str, Any] | None = None) -> None:
        """The trial's final status; ``base`` (its id and config columns) is its row if it reported none."""
        if status not in FINAL_STATUSES:
            raise ValueError(f"status must be one of {', '.join(FINAL_STATUSES)}, got {status!r}")
        self._append({"kind": "final", "trial_id": trial_id, "status": status, "error": error, "base": base})

    def restart(self, trial_id: str, keep_epochs: float) -> None:
        """A resumed search runs an unfinished trial again: its rows after ``keep_epochs`` go."""
        self._append({"kind": "restart", "trial_id": trial_id, "keep": keep_epochs})

    def _append(self, event: dict[str, Any]) -> None:
        if not self._apply(event):
            return
        self.seq += 1
        if self._log is None:
            self.out.mkdir(parents=True, exist_ok=True)
            self._log = open(self.out / TRIALS_LOG, "ab", buffering=0)  # noqa: SIM115 - kept open between events
            os.fchmod(self._log.fileno(), FILE_MODE)  # read_trials reads it during a search, from any account
        # one write call per event: once it returns, the line survives a kill of this process
        self._log.write(json.dumps({"seq": self.seq, **event}, default=str).encode() + b"\n")
        if time.monotonic() >= self._next_refresh:
            self.compact()

    def _apply(self, event: dict[str, Any]) -> bool:
        """Apply an event to the rows in memory; False for one that changes nothing (a final trial's)."""
        trial_id = event["row"]["trial_id"] if event["kind"] == "row" else event["trial_id"]
        if self.is_final(trial_id):
            return False
        if event["kind"] == "row":
            self._set_status(trial_id, "running", None)
            self._put(event["row"])
        elif event["kind"] == "final":
            if trial_id not in self.last_epoch and event.get("base"):
                self._put({**event["base"], "trial_id": trial_id, "epoch": None})
            self._set_status(trial_id, event["status"], event.get("error"))
        else:
            self._drop_after(trial_id, event["keep"])
        return True

    def _put(self, row: dict[str, Any]) -> None:
        trial_id, epoch = row["trial_id"], row.get("epoch")
        self.rows[(trial_id, epoch)] = row
        if epoch is not None:
            self.last_epoch[trial_id] = max(epoch, self.last_epoch.get(trial_id, 0))
        else:
            self.last_epoch.setdefault(trial_id, 0)
        score = row.get("val_accuracy")
        if score is not None and math.isfinite(score) and self.status.get(trial_id) != "failed":
            if self.best is None or score > self.best:  # the earliest on ties
                self.best, self.best_at = score, (trial_id, epoch)

    def _set_status(self, trial_id: str, status: str, error: str | None, *, recount: bool = True) -> None:
        before = self.status.get(trial_id)
        if before is not None:
            self.counts[before] -= 1
        self.status[trial_id], self.errors[trial_id] = status, error
        self.counts[status] += 1
        if status == "failed" and recount:  # a failed trial's scores do not count; rare enough to recount
            scored = [r for r in self.table() if r["status"] != "failed"
                      and r.get("val_accuracy") is not None and math.isfinite(r["val_accuracy"])]
            top = max(scored, key=lambda r: r["val_accuracy"], default=None)
            self.best = None if top is None else top["val_accuracy"]
            self.best_at = None if top is None else (top["trial_id"], top.get("epoch"))

    def _drop_after(self, trial_id: str, keep: float) -> None:
        for epoch in range(int(min(keep, 1e9)) + 1, self.last_epoch.get(trial_id, 0) + 1):
            self.rows.pop((trial_id, epoch), None)
        if trial_id in self.last_epoch and keep < self.last_epoch[trial_id]:
            self.last_epoch[trial_id] = int(keep)

    def table(self) -> list[dict[str, Any]]:
        """Every row with its trial's status and error, by trial and epoch."""
        rows = sorted(self.rows.values(), key=lambda r: (r["trial_id"], r.get("epoch") or 0))
        return [{"trial_id": r["trial_id"], "status": self.status.get(r["trial_id"], "running"),
                 "error": self.errors.get(r["trial_id"]),
                 **{k: v for k, v in r.items() if k not in ("trial_id", "status", "error")}} for r in rows]

    def compact(self) -> Path | None:
        """Write every row to ``trials.parquet`` (atomically) and empty the log it now holds."""
        start = time.monotonic()
        rows = self.table()
        if not rows:
            return None
        path = write_parquet(rows, self.out / TRIALS_FILE, metadata={_SEQ_KEY: str(self.seq).encode()})
        self.close()
        (self.out / TRIALS_LOG).unlink(missing_ok=True)  # a kill before this line: its events are <= seq
        took = time.monotonic() - start
        self._next_refresh = time.monotonic() + max(self.REFRESH_MIN_SECONDS, self.REFRESH_RATIO * took)
        return path

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def read_trials(out: str | Path) -> list[dict[str, Any]]:
    """The rows of every trial of the search in ``out`` (one per trial and reported epoch; a trial that
    never reported has one row with a null epoch), with its status: ``completed``, ``stopped_early``,
    ``failed`` or ``running``.  Reads ``trials.parquet`` and the events logged since it was written,
    so it is current during a search and after a kill."""
    return TrialRecord(out).table()


def trial_configs(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each trial's config back from its flattened ``config.<name>`` columns (lists were stored as JSON)."""
    configs: dict[str, dict[str, Any]] = {}
    for row in rows:
        config = {}
        for key, value in row.items():
            if key.startswith("config.") and value is not None:
                is_json = isinstance(value, str) and value[:1] in "[{"
                config[key.removeprefix("config.")] = json.loads(value) if is_json else value
        configs.setdefault(row["trial_id"], config)
    return configs
