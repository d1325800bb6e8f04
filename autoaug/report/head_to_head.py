"""The report's head-to-head section: every contender re-trained with the same seeds, the baseline marked."""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from autoaug.report.html import Section, paragraph, table
from autoaug.search.compare import Comparison

TITLE = "Final candidates head to head"
Plot = Callable[[str, bytes, str], str]  # (slug, png, alt) -> the embedded figure


def _pct(value: Any) -> str:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return f"{100 * value:.2f}%" if ok else "-"


def _label(entry: dict[str, Any], baseline: bool) -> str:
    if baseline:
        return f"baseline {entry.get('seed_policy')} ({entry['trial_id']})"
    return f"candidate {entry['trial_id']}"


def _finite(scores: list[Any]) -> list[float]:
    return [float(s) for s in scores if isinstance(s, (int, float)) and math.isfinite(s)]


def _contenders(record: dict[str, Any]) -> list[tuple[dict[str, Any], bool]]:
    """Each re-trained contender's entry, and whether it is the baseline (last, where there is one)."""
    return [(e, False) for e in record["candidates"]] + ([(record["baseline"], True)] if record["baseline"] else [])


def _rows(record: dict[str, Any], chosen: str) -> list[tuple[Any, ...]]:
    rows = []
    for entry, baseline in _contenders(record):
        runs = _finite(entry["retrain_scores"])
        mean = "failed" if not runs else f"{_pct(entry.get('mean'))} ± {100 * (entry.get('std') or 0.0):.2f}"
        rows.append((_label(entry, baseline), "yes" if baseline else "", "yes" if entry["trial_id"] == chosen else "",
                     _pct(entry.get("search_score")), ", ".join(_pct(s) for s in entry["retrain_scores"]) or "-",
                     mean, len(runs)))
    return rows


def _plot_entries(record: dict[str, Any]) -> list[tuple[str, list[float]]]:
    return [(_label(entry, baseline), _finite(entry["retrain_scores"])) for entry, baseline in _contenders(record)]


def _verdict(record: dict[str, Any], comparison: Comparison) -> str:
    seeds = ", ".join(str(s) for s in comparison.seeds) or "?"
    what = (f"Every contender re-trained on the same split with the same {len(comparison.seeds)} seeds ({seeds}) "
            f"for {comparison.epochs} epochs; mean ± std of validation accuracy over those runs "
            "(n: runs that finished).")
    margin = comparison.margin
    lines = [what, "margin (best candidate's mean minus the baseline's): "
             + ("none (no baseline or no candidate)" if margin is None else f"{100 * margin:+.2f} points"),
             f"verdict: {comparison.verdict()}"]
    rho = record.get("rank_correlation")
    if isinstance(rho, (int, float)):
        lines.append(f"Spearman's rank correlation of search score and re-trained mean: {rho:.2f}")
    return "".join(paragraph(line) for line in lines)


def _from_record(record: dict[str, Any], plot: Plot) -> str:
    from autoaug.report import plots
    comparison = Comparison.from_record(record)
    chosen = comparison.winner.trial_id if comparison.candidates or comparison.baseline else ""
    header = ["contender", "baseline", "chosen", "search score", "re-training runs", "mean ± std", "n"]
    parts = [table(header, _rows(record, chosen)), _verdict(record, comparison)]
    entries = _plot_entries(record)
    if any(scores for _, scores in entries):
        baseline = _label(record["baseline"], True) if record["baseline"] else None
        alt = "contenders re-trained head to head" + (f"; {baseline} marked" if baseline else "")
        parts.append(plot("head-to-head", plots.head_to_head(entries, baseline=baseline), alt))
    return "".join(parts)


def _from_candidates(candidates: list[dict[str, Any]], plot: Plot) -> str:
    """Runs without a head-to-head record (PBT, --top-k 0, one contender): the ranked candidates only."""
    from autoaug.report import plots
    labels = [f"#{c.get('rank')} {c.get('trial_id')}" + (f" (seed {c['seed_policy']})" if c.get("seed_policy") else "")
              for c in candidates]
    rows = [(label, _pct(c.get("search_score")), ", ".join(_pct(s) for s in c.get("retrain_scores") or []) or "-",
             _pct(c.get("score"))) for label, c in zip(labels, candidates)]
    parts = [table(["candidate", "search score", "re-training runs", "score"], rows)]
    entries = [(label, _finite(c.get("retrain_scores") or [])) for label, c in zip(labels, candidates)]
    if any(scores for _, scores in entries):
        parts.append(plot("head-to-head", plots.head_to_head(entries), "final candidates head to head"))
    return "".join(parts)


def head_to_head_section(run: dict[str, Any], plot: Plot) -> Section:
    """The head-to-head record ``run.json`` keeps where there is one, else the ranked candidates."""
    record, candidates = run.get("head_to_head"), run.get("candidates") or []
    if isinstance(record, dict):
        try:
            return Section(TITLE, _from_record(record, plot))
        except (KeyError, TypeError, ValueError, AttributeError) as error:  # a foreign or torn record
            note = paragraph(f"note: run.json's head_to_head is unreadable ({type(error).__name__}: {error})",
                             cls="note")
            return Section(TITLE, note + (_from_candidates(candidates, plot) if candidates else ""))
    if candidates:
        return Section(TITLE, _from_candidates(candidates, plot))
    return Section(TITLE, paragraph("No final candidates yet."))
