"""The search's progress display: every phase with its own counts and time left; plain lines in a log."""
from __future__ import annotations

import io
import math
import re
from datetime import datetime

from rich.console import Console

from autoaug.search.compare import collect_retraining
from autoaug.search.outcome import Progress
from autoaug_cli.search_display import PhaseClock, SearchDisplay, best_text, clock, plain_line

LINE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} (search|re-training top k): .*; elapsed \d:\d\d:\d\d, "
                  r"remaining ~(\d:\d\d:\d\d|\?)$")


def _log_display() -> tuple[SearchDisplay, io.StringIO]:
    stream = io.StringIO()  # not a terminal: plain lines
    return SearchDisplay(Console(file=stream, width=80)), stream


def test_best_says_which_trial_and_epoch_it_is() -> None:
    p = Progress(3, 1, 0, 12, 0.975, 30.0, 60.0, best_trial="3f2a_00004", best_epoch=5)
    assert best_text(p) == "97.50% (trial 3f2a_00004, epoch 5)"
    assert best_text(Progress(0)) == "-"
    assert best_text(Progress(2, best=0.5, phase="retrain", leader="trial x", leader_runs=1)) == \
        "trial x, mean val 50.00% over 1 run"
    assert best_text(Progress(0, phase="retrain")) == "-"


def _events(display: SearchDisplay) -> None:
    """A search of 3 trials, then the re-training's events as the library sends them: 2 contenders and the
    baseline, 2 seeds each, run 2 at a time; the runs end in this order (NaN: a run that failed)."""
    display.update(Progress(0, 2, 0, 3, 0.41, 5.0, None, best_trial="a_00000", best_epoch=1))
    display.update(Progress(1, 2, 0, 3, 0.62, 9.0, 18.0, best_trial="a_00001", best_epoch=1))
    display.update(Progress(1, 2, 0, 3, 0.62, 9.5, 17.0, best_trial="a_00001", best_epoch=1))  # nothing new
    display.update(Progress(3, 0, 0, 3, 0.70, 20.0, 0.0, best_trial="a_00002", best_epoch=1))
    ended = [(0, 0, 0.9338), (1, 0, 0.9512), (1, 1, 0.8606), (2, 0, math.nan), (0, 1, 0.9000), (2, 1, 0.9700)]
    scores = collect_retraining(("trial a_00002", "trial a_00001", "baseline cropflip"), 2, 2, ended, display.update)
    assert scores[1] == (0.9512, 0.8606) and math.isnan(scores[2][0])


def test_a_log_gets_one_timestamped_line_per_event_and_every_phase() -> None:
    display, stream = _log_display()
    _events(display)
    display.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10 and all(LINE.match(line) for line in lines), lines
    assert "search: 1/3 trials done, 2 running, 0 failed; best val 62.00% (trial a_00001, epoch 1)" in lines[1]
    assert "remaining ~0:00:00" in lines[2]  # the search is over
    events = [line.split(" ", 2)[2].rsplit("; elapsed", 1)[0] for line in lines[3:]]
    # the start at once, then a line per run: the lead passes between contenders as runs end, and each
    # line says whose mean it is and over how many runs
    assert events == [
        "re-training top k: 0/6 runs done, 0 failed; leading contender: -",
        "re-training top k: 1/6 runs done, 0 failed; leading contender: trial a_00002, mean val 93.38% over 1 run",
        "re-training top k: 2/6 runs done, 0 failed; leading contender: trial a_00001, mean val 95.12% over 1 run",
        "re-training top k: 3/6 runs done, 0 failed; leading contender: trial a_00002, mean val 93.38% over 1 run",
        "re-training top k: 3/6 runs done, 1 failed; leading contender: trial a_00002, mean val 93.38% over 1 run",
        "re-training top k: 4/6 runs done, 1 failed; leading contender: trial a_00002, mean val 91.69% over 2 runs",
        "re-training top k: 5/6 runs done, 1 failed; leading contender: baseline cropflip, mean val 97.00% over 1 run",
    ]
    assert lines[3].endswith("remaining ~?") and lines[-1].endswith("remaining ~0:00:00")
    assert "\x1b[" not in stream.getvalue()  # no terminal codes in a log


def test_nothing_is_written_before_the_first_event() -> None:
    display, stream = _log_display()
    display.close()
    assert stream.getvalue() == ""


def test_a_phase_without_its_own_estimate_is_timed_from_its_start() -> None:
    clock_ = PhaseClock(start=0.0)
    clock_.record(Progress(3, 0, 0, 3, 0.7, 20.0, 0.0), now=20.0)
    clock_.record(Progress(0, total=4, phase="retrain"), now=21.0)
    assert clock_.remaining("retrain", now=21.0) is None
    clock_.record(Progress(1, total=4, phase="retrain"), now=41.0)  # started at 20 s, when the search last reported
    assert clock_.remaining("retrain", now=41.0) == 63.0  # 21 s a run, 3 runs to go
    assert clock_.remaining("retrain", now=51.0) == 53.0  # and it ticks down between events
    assert clock_.remaining("search", now=51.0) == 0.0


def test_the_search_estimate_ticks_down_between_reports() -> None:
    clock_ = PhaseClock(start=0.0)
    clock_.record(Progress(1, 1, 0, None, 0.5, 10.0, 50.0), now=10.0)  # a time budget: no total
    assert clock_.remaining("search", now=25.0) == 35.0
    assert clock_.remaining("search", now=90.0) == 0.0


def test_the_live_view_shows_a_row_per_phase() -> None:
    display = SearchDisplay(Console(file=io.StringIO(), force_terminal=True, width=120))
    display.clock.record(Progress(12, 0, 0, 12, 0.9, 60.0, 0.0, best_trial="t7", best_epoch=4), now=60.0)
    display.clock.record(Progress(2, running=4, total=6, phase="retrain"), now=70.0)
    out = io.StringIO()
    Console(file=out, width=160).print(display)
    text = out.getvalue()
    assert "12/12 trials done" in text and "best val 90.00% (trial t7, epoch 4)" in text
    assert "re-training top k" in text and "2/6 runs done" in text


def test_plain_line_and_clock_formats() -> None:
    line = plain_line(Progress(2, 1, 1, 5, None), 3725.0, None, datetime(2026, 1, 2, 3, 4, 5))
    assert line == "2026-01-02 03:04:05 search: 2/5 trials done, 1 running, 1 failed; best val -; elapsed 1:02:05, " \
                   "remaining ~?"
    assert clock(59.9) == "0:00:59" and clock(None) == "?"
