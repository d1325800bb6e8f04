"""The report's plots, drawn with matplotlib's Agg backend (no display needed) into PNG bytes."""
from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: a server or a Ray worker has no display
import matplotlib.pyplot as plt  # noqa: E402

from autoaug.report.analysis import OpUse  # noqa: E402
from autoaug.report.run_data import Trial  # noqa: E402

TOP_COLOUR, ALL_COLOUR, LINE_COLOUR, BASELINE_COLOUR = "#d62728", "#7f7f7f", "#1f77b4", "#2ca02c"


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


def best_so_far(points: list[tuple[int, float, float]]) -> bytes:
    """Best validation accuracy so far against trials ended, and against wall time."""
    figure, (by_trials, by_time) = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    counts, seconds, best = zip(*points)
    by_trials.step(counts, [100 * b for b in best], where="post", color=LINE_COLOUR, marker="o", markersize=3)
    by_trials.set(xlabel="trials ended", ylabel="best validation accuracy so far (%)", title="against trials")
    by_time.step([s / 60 for s in seconds], [100 * b for b in best], where="post", color=LINE_COLOUR, marker="o",
                 markersize=3)
    by_time.set(xlabel="minutes since the first trial ended", title="against wall time")
    for axis in (by_trials, by_time):
        axis.grid(alpha=0.3)
    return _png(figure)


def rungs(trials: list[Trial], rung_epochs: list[int]) -> bytes:
    """Every trial's validation accuracy by epoch; ASHA's rungs marked, where trials stop or go on."""
    figure, axis = plt.subplots(figsize=(10, 3.8))
    for trial in trials:
        epochs = sorted(trial.scores)
        axis.plot(epochs, [100 * trial.scores[e] for e in epochs], color=ALL_COLOUR, alpha=0.35, linewidth=1,
                  marker="o", markersize=3)
    for epoch in rung_epochs:
        axis.axvline(epoch, color=TOP_COLOUR, alpha=0.25, linewidth=6)
    axis.set(xlabel="epoch (shaded: ASHA rungs)" if rung_epochs else "epoch", ylabel="validation accuracy (%)",
             title=f"scores per epoch and rung, {len(trials)} trials")
    axis.grid(alpha=0.3)
    return _png(figure)


def op_usage(usage: list[OpUse], top_count: int, all_count: int) -> bytes:
    """Share of trials using each op, and its mean magnitude, in the top trials against all trials."""
    figure, (share, magnitude) = plt.subplots(1, 2, figsize=(10, 0.32 * len(usage) + 1.6), sharey=True)
    rows = list(range(len(usage)))[::-1]
    names = [u.op for u in usage]
    share.barh([r + 0.2 for r in rows], [100 * u.share_top for u in usage], height=0.4, color=TOP_COLOUR,
               label=f"top {top_count}")
    share.barh([r - 0.2 for r in rows], [100 * u.share_all for u in usage], height=0.4, color=ALL_COLOUR,
               label=f"all {all_count}")
    share.set(yticks=rows, yticklabels=names, xlabel="trials whose policy has the op (%)", title="how often")
    share.legend(loc="lower right")
    for offset, colour, values in ((0.2, TOP_COLOUR, [u.magnitude_top for u in usage]),
                                   (-0.2, ALL_COLOUR, [u.magnitude_all for u in usage])):
        kept = [(r + offset, v) for r, v in zip(rows, values) if v is not None]
        if kept:
            magnitude.scatter([v for _, v in kept], [r for r, _ in kept], color=colour, s=25)
    magnitude.set(xlim=(-0.05, 1.05), xlabel="mean magnitude (0 to 1)", title="at what magnitude")
    for axis in (share, magnitude):
        axis.grid(alpha=0.3, axis="x")
    return _png(figure)


def importance(ranked: list[tuple[str, float, float]], most: int = 15) -> bytes:
    """Permutation importance of the searched parameters, with its spread over repeats."""
    ranked = ranked[:most]
    figure, axis = plt.subplots(figsize=(10, 0.35 * len(ranked) + 1.4))
    rows = list(range(len(ranked)))[::-1]
    axis.barh(rows, [m for _, m, _ in ranked], xerr=[s for _, _, s in ranked], color=LINE_COLOUR, alpha=0.8)
    axis.set(yticks=rows, yticklabels=[name for name, _, _ in ranked],
             xlabel="drop in R² when the parameter is shuffled", title="which searched parameters mattered")
    axis.grid(alpha=0.3, axis="x")
    return _png(figure)


def head_to_head(entries: list[tuple[str, list[float]]], *, baseline: str | None = None) -> bytes:
    """Each contender's re-training scores (dots) and mean (bar); the ``baseline`` entry in its own colour,
    with its mean drawn across the plot so each candidate reads as above or below it."""
    figure, axis = plt.subplots(figsize=(10, 0.5 * len(entries) + 1.4))
    rows = list(range(len(entries)))[::-1]
    for row, (name, scores) in zip(rows, entries):
        if not scores:
            continue
        mean, is_baseline = 100 * sum(scores) / len(scores), name == baseline
        axis.scatter([100 * s for s in scores], [row] * len(scores), color=BASELINE_COLOUR if is_baseline else ALL_COLOUR,
                     s=20)
        axis.scatter([mean], [row], color=BASELINE_COLOUR if is_baseline else TOP_COLOUR, marker="|", s=400)
        if is_baseline:
            axis.axvline(mean, color=BASELINE_COLOUR, linestyle="--", linewidth=1)
    marked = "; dashed: the baseline's mean" if baseline is not None else ""
    axis.set(yticks=rows, yticklabels=[name for name, _ in entries], xlabel="validation accuracy (%)",
             ylim=(-0.6, len(entries) - 0.4), title=f"final candidates head to head (dots: runs; bar: mean{marked})")
    for tick in axis.get_yticklabels():
        if tick.get_text() == baseline:
            tick.set_color(BASELINE_COLOUR)
            tick.set_fontweight("bold")
    axis.grid(alpha=0.3, axis="x")
    return _png(figure)
