"""The search's progress: a live view in a terminal, plain timestamped lines in a log (one per event)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table

if TYPE_CHECKING:
    from autoaug.search.outcome import Progress

# phase -> (its name on screen, what it counts, what its best score is)
PHASES = {
    "search": ("search", "trials", "best val"),
    "retrain": ("re-training top k", "runs", "leading contender:"),
}


def clock(seconds: float | None) -> str:
    """``h:mm:ss``, or ``?`` where there is no estimate."""
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def _names(phase: str) -> tuple[str, str, str]:
    return PHASES.get(phase, (phase, "steps", "best val"))


def best_text(p: Progress) -> str:
    """``97.50% (trial 3f2a_00004, epoch 5)``: the best score and where it comes from.

    In the re-training, ``trial 3f2a_00004, mean val 93.38% over 2 runs``: a mean moves as runs end
    and the lead passes between contenders, so the line names whose mean it is and over how many runs.
    """
    if p.best is None:
        return "-"
    if p.leader is not None:
        runs = f"{p.leader_runs} run{'s' if p.leader_runs != 1 else ''}"
        return f"{p.leader}, mean val {100 * p.best:.2f}% over {runs}"
    where = [f"trial {p.best_trial}"] if p.best_trial else []
    where += [f"epoch {p.best_epoch}"] if p.best_epoch is not None else []
    return f"{100 * p.best:.2f}%" + (f" ({', '.join(where)})" if where else "")


def counts_text(p: Progress) -> str:
    """``3/12 trials done, 2 running, 0 failed`` (running only while the phase has work in flight)."""
    unit = _names(p.phase)[1]
    total = "?" if p.total is None else str(p.total)
    running = f", {p.running} running" if p.phase == "search" else ""
    return f"{p.done}/{total} {unit} done{running}, {p.failed} failed"


@dataclass
class PhaseClock:
    """When each phase started and last reported, for a remaining time that ticks between reports."""

    start: float = field(default_factory=time.monotonic)
    phase_start: dict[str, float] = field(default_factory=dict)
    last: dict[str, tuple[Progress, float]] = field(default_factory=dict)

    def record(self, progress: Progress, now: float) -> None:
        if progress.phase not in self.phase_start:  # a phase starts where the previous one last reported
            previous = max((at for _, at in self.last.values()), default=self.start)
            self.phase_start[progress.phase] = previous if self.last else now
        self.last[progress.phase] = (progress, now)

    def remaining(self, phase: str, now: float) -> float | None:
        """The phase's own estimate, less the time since it was made; else the phase's rate so far."""
        progress, at = self.last[phase]
        if progress.total is not None and progress.done + progress.failed >= progress.total:
            return 0.0
        if progress.remaining is not None:
            return max(0.0, progress.remaining - (now - at))
        finished = progress.done + progress.failed
        if not finished or progress.total is None:
            return None
        spent = at - self.phase_start[phase]
        return max(0.0, spent / finished * (progress.total - finished) - (now - at))


def plain_line(p: Progress, elapsed: float, remaining: float | None, when: datetime) -> str:
    """One log line: time, phase, counts, best, elapsed since the command started, phase remaining."""
    name, _, best = _names(p.phase)
    return (f"{when:%Y-%m-%d %H:%M:%S} {name}: {counts_text(p)}; {best} {best_text(p)}; "
            f"elapsed {clock(elapsed)}, remaining ~{clock(remaining)}")


class SearchDisplay:
    """Shows each progress event: redrawn in place in a terminal, appended as a line elsewhere.

    Nothing is shown before the first event, so that an error found before any trial runs stays the
    single line it is.
    """

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.clock = PhaseClock()
        self.live: Live | None = None
        self._last_line: str | None = None

    @property
    def plain(self) -> bool:
        return not self.console.is_terminal

    def update(self, progress: Progress) -> None:
        now = time.monotonic()
        self.clock.record(progress, now)
        if self.plain:
            self._write_line(progress, now)
        elif self.live is None:
            self.live = Live(self, console=self.console, refresh_per_second=2)
            self.live.start()

    def _write_line(self, progress: Progress, now: float) -> None:
        remaining = self.clock.remaining(progress.phase, now)
        line = plain_line(progress, now - self.clock.start, remaining, datetime.now())
        key = line.split(" ", 2)[2].rsplit("; elapsed", 1)[0]  # repeated counts and best: no new line
        if key != self._last_line:
            self._last_line = key
            stream: TextIO = self.console.file
            stream.write(line + "\n")
            stream.flush()

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def __rich__(self) -> Table:
        now = time.monotonic()
        table = Table.grid(padding=(0, 2))
        for phase, (progress, _) in self.clock.last.items():
            name, _, best = _names(phase)
            table.add_row(name, counts_text(progress), f"{best} {best_text(progress)}",
                          f"remaining ~{clock(self.clock.remaining(phase, now))}")
        table.add_row("", f"elapsed {clock(now - self.clock.start)}")
        return table
