"""``report.html`` for a search folder: one self-contained page (images embedded) and its PNGs beside it.

Works on a finished, interrupted or still-running search: each section says what it lacks instead.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoaug.policy import Policy, Schedule, write_atomic
from autoaug.report.analysis import IMPORTANCE_METHOD, op_usage, parameter_importance, trial_policies
from autoaug.report.head_to_head import head_to_head_section
from autoaug.report.html import Section, figure, page, paragraph, table
from autoaug.report.run_data import RunData, best_so_far, comparable_scores, load_run, resources_used, rung_scores

TOP_SHARE = 0.25  # "top trials": the best quarter at the comparable epoch (at least 3)


@dataclass(frozen=True)
class Report:
    """Where the report went and what it shows."""

    html: Path
    images: tuple[Path, ...]
    sections: tuple[str, ...]
    state: str


class _Writer:
    """Collects sections; each plot is written as a PNG beside the report and embedded in it."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.sections, self.images = folder, [], []

    def plot(self, slug: str, png: bytes, alt: str) -> str:
        path = self.folder / f"report-{slug}.png"
        write_atomic(path, png)
        self.images.append(path)
        return figure(png, alt)


def _summary(data: RunData) -> Section:
    options = data.options
    scored = [t.last_score for t in data.trials if t.last_score is not None]
    rows = [("state", data.state), ("dataset", options.get("dataset")), ("model", options.get("model")),
            ("search space", options.get("space")),
            ("algorithm", f"{options.get('algo')} + {options.get('scheduler')}" if options else None),
            ("budget", options.get("budget")), ("epochs per trial", options.get("epochs")),
            ("trials reported", len(data.trials)),
            ("best validation accuracy", f"{100 * max(scored):.2f}%" if scored else None),
            ("chosen trial", data.run.get("chosen_trial")), ("chosen policy", data.policy.name if data.policy else None),
            ("started", data.run.get("started")), ("last update", data.run.get("updated")),
            ("finished", data.run.get("finished"))]
    body = table(["", ""], [(k, v) for k, v in rows if v is not None])
    notes = "".join(paragraph(f"note: {note}", cls="note") for note in data.notes)
    return Section("Summary", body + notes)


def _progress(data: RunData, writer: _Writer) -> list[Section]:
    points = best_so_far(data.trials)
    if not points:
        return [Section("Best so far", paragraph("No trial has reported a score yet."))]
    from autoaug.report import plots
    best = writer.plot("best-so-far", plots.best_so_far(points), "best validation accuracy so far against trials "
                       "and against wall time")
    max_t = int(data.options.get("epochs") or max(t.last_epoch for t in data.trials))
    asha = data.options.get("scheduler", "asha") == "asha" and data.options.get("algo") != "pbt"
    rung_epochs = [e for e in (3 ** k for k in range(10)) if e <= max_t] if asha else []  # grace 1, factor 3
    scores = rung_scores(data.trials)
    rows = [(e, len(s), f"{100 * max(s):.2f}%", f"{100 * sorted(s)[len(s) // 2]:.2f}%") for e, s in scores.items()]
    counts = table(["epoch", "trials reaching it", "best", "median"], rows)
    rung = writer.plot("rungs", plots.rungs(data.trials, rung_epochs), "validation accuracy per epoch")
    title = "Scores per ASHA rung" if asha else "Scores per epoch"
    return [Section("Best so far", best), Section(title, rung + counts)]


def _why(data: RunData, writer: _Writer) -> list[Section]:
    from autoaug.report import plots
    epoch, trials = comparable_scores(data.trials)
    if not trials:
        return [Section("Ops in the top trials", paragraph("No scores yet."))]
    ranked = sorted(trials, key=lambda t: -t.scores[epoch])
    top = [t.trial_id for t in ranked[: max(3, math.ceil(TOP_SHARE * len(ranked)))]]
    policies = trial_policies(trials, data.options.get("space"))
    sections = []
    usage = op_usage(policies, top)
    if usage:
        text = paragraph(f"Top {len(top)} of {len(policies)} trials by validation accuracy at epoch {epoch}; an op "
                         "counts where the trial's policy can apply it (magnitude: its largest in that policy).")
        image = writer.plot("ops", plots.op_usage(usage, len(top), len(policies)), "op frequency and magnitude")
        sections.append(Section("Ops in the top trials against all", text + image))
    else:
        sections.append(Section("Ops in the top trials against all",
                                paragraph("The trials' policies could not be decoded (search space not found).")))
    ranked_params = parameter_importance(trials, epoch)
    if ranked_params:
        text = paragraph(f"Method: {IMPORTANCE_METHOD}, at epoch {epoch} over {len(trials)} trials.")
        image = writer.plot("importance", plots.importance(ranked_params), "parameter importance")
        sections.append(Section("Which parameters mattered", text + image))
    else:
        sections.append(Section("Which parameters mattered",
                                paragraph(f"Too few trials ({len(trials)}) at one epoch to estimate (5 needed).")))
    return sections


def _other_records(data: RunData) -> list[Section]:
    records = data.extra_records()  # run.json entries this report has no section for: shown as found
    if not records:
        return []
    body = "".join(paragraph(f"run.json: {key}", cls="caption") + _record_table(value)
                   for key, value in records.items())
    return [Section("Other records in run.json", body)]


def _record_table(value: Any) -> str:
    if isinstance(value, dict):
        value = [{"": k, "value": v} for k, v in value.items()]
    rows = [v for v in value if isinstance(v, dict)]
    if not rows:
        return table(["value"], [(v,) for v in value])
    columns = list(dict.fromkeys(k for row in rows for k in row))
    return table(columns, [tuple(row.get(c) for c in columns) for row in rows])


def _preview_policy(data: RunData) -> tuple[Policy | None, str]:
    if data.policy is not None:
        return data.policy, f"the chosen policy {data.policy.name}"
    scored = [t for t in data.trials if t.last_score is not None]
    if not scored:
        return None, ""
    best = max(scored, key=lambda t: (t.last_epoch, t.last_score))
    policy = trial_policies([best], data.options.get("space")).get(best.trial_id)
    return policy, f"the best trial so far ({best.trial_id}; no policy chosen yet)"


def _preview(data: RunData, writer: _Writer) -> Section:
    from autoaug.report.preview import preview_grids
    policy, what = _preview_policy(data)
    if policy is None:
        return Section("Preview", paragraph("No policy to preview yet."))
    grids = preview_grids(policy, data.options.get("dataset"), data.options.get("data_dir"))
    parts = [paragraph(f"What {what} does: originals in the first column, then augmented copies"
                       + (" (one grid per phase of the schedule)." if isinstance(policy.augment, Schedule) else "."))]
    for index, (label, png) in enumerate(grids):
        parts.append(paragraph(label, cls="caption") + writer.plot(f"preview-{index}", png, f"preview: {label}"))
    return Section("Preview of the policy", "".join(parts))


def _resources(data: RunData) -> Section:
    used = resources_used(data)
    rows = [(k, ", ".join(f"{s}: {n}" for s, n in v.items()) if isinstance(v, dict) else
             (f"{v:.3f}" if isinstance(v, float) else v)) for k, v in used.items() if v is not None]
    note = paragraph("CPU- and GPU-hours count the trials' training epochs (epoch time x the trial's share); "
                     "re-training the final candidates is not included.", cls="caption")
    return Section("Resources used", table(["", ""], rows) + note)


def write_report(folder: str | Path, *, out: str | Path | None = None) -> Report:
    """Write ``report.html`` (and ``report-*.png`` beside it) for a search folder."""
    data = load_run(folder)
    html_path = Path(out) if out is not None else data.folder / "report.html"
    html_path.parent.mkdir(parents=True, exist_ok=True)
    writer = _Writer(html_path.parent)
    sections = [_summary(data), *_progress(data, writer), *_why(data, writer), head_to_head_section(data.run, writer.plot),
                _preview(data, writer), _resources(data), *_other_records(data)]
    title = f"autoaug search report: {data.folder.name} ({data.state})"
    write_atomic(html_path, page(title, sections))
    return Report(html_path, tuple(writer.images), tuple(s.title for s in sections), data.state)
