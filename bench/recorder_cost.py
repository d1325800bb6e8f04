"""What the search's bookkeeping costs per event, at 1,000 and 10,000 rows (target: flat).

    python bench/recorder_cost.py            # 1,000 and 10,000 rows, 1,000 events each
    python bench/recorder_cost.py --quick    # 100 and 1,000 rows, 100 events

Each event is what a trial's report or end costs the driver: the row appended to the trial record
(``autoaug.results.TrialRecord``), timed with the periodic table refresh off.  The refresh (a compaction)
runs at most every 50 x its own duration, so it adds at most 2 % of the driver's time at any size;
its duration at each size is the "compact" column.  For comparison, the old recorder's cost: the whole table rewritten
per event (timed on a few events and scaled to 1,000).  Also the one-off costs: compacting the record
into trials.parquet at the end, and reading it back (``read_trials``) with the log not yet compacted.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from autoaug.results import TrialRecord, read_trials, write_parquet

EPOCHS = 5


def _row(index: int) -> dict:
    """A row shaped like a search's: metrics and a dozen config columns."""
    trial, epoch = f"t{index // EPOCHS:06d}", index % EPOCHS + 1
    config = {f"config.augment.ops.{k}.magnitude": (index * 7 + k) % 100 / 100 for k in range(10)}
    return {"trial_id": trial, "epoch": epoch, "val_accuracy": 0.5 + (index % 97) / 200, "train_loss": 1.0,
            "val_loss": 1.1, "val_ece": 0.05, "images_per_second": 2000.0, "epoch_seconds": 3.0,
            "node_id": "f" * 56, "time_total_s": 3.0 * epoch, "reported_at": 1.7e9 + index,
            "config.augment.ops": json.dumps(["rotate", "shear_x"]), **config}


class _NoRefresh(TrialRecord):
    REFRESH_MIN_SECONDS = float("inf")


def _events(record: TrialRecord, start: int, count: int) -> None:
    for index in range(start, start + count):
        record.report(_row(index))
        if index % EPOCHS == EPOCHS - 1:
            record.finish(_row(index)["trial_id"], "completed")


def record_cost(rows: int, events: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        record = _NoRefresh(folder)
        _events(record, 0, rows)
        record.compact()  # a search resumed at this size: its rows in the table
        record = _NoRefresh(folder)
        start = time.perf_counter()
        _events(record, rows, events)
        per_1000 = (time.perf_counter() - start) / events * 1000
        start = time.perf_counter()
        read = len(read_trials(folder))
        read_s = time.perf_counter() - start
        start = time.perf_counter()
        record.compact()
        return {"rows": rows, "record_s_per_1000_events": per_1000, "read_with_log_s": read_s,
                "compact_s": time.perf_counter() - start, "rows_read": read}


def rewrite_cost(rows: int, events: int) -> float:
    """The old recorder: every event rewrote the whole table."""
    table = [_row(i) for i in range(rows)]
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        for index in range(rows, rows + events):
            table.append(_row(index))
            write_parquet(table, Path(folder) / "trials.parquet")
        return (time.perf_counter() - start) / events * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes, events, rewrites = ((100, 1000), 100, 5) if args.quick else ((1000, 10000), 1000, 20)
    figures = []
    record_cost(100, 100)  # warm-up: the first events pay for imports and first allocations
    for rows in sizes:
        figure = record_cost(rows, events)
        figure["old_rewrite_s_per_1000_events"] = rewrite_cost(rows, rewrites)
        figures.append(figure)
    if args.json:
        print(json.dumps(figures))
        return
    print("| rows | append: s per 1,000 events | old rewrite: s per 1,000 events | read_trials (log) s | compact s |")
    print("|---:|---:|---:|---:|---:|")
    for f in figures:
        print(f"| {f['rows']:,} | {f['record_s_per_1000_events']:.3f} | {f['old_rewrite_s_per_1000_events']:.1f} "
              f"| {f['read_with_log_s']:.3f} | {f['compact_s']:.3f} |")


if __name__ == "__main__":
    main()
