"""`autoaug report`: the page's content on finished, running and interrupted searches, written as a search writes."""
from __future__ import annotations

import base64
import io
import math
import random
import re
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from autoaug.policy import Policy, Schedule, SchedulePhase, TrivialAugment
from autoaug.report import write_report
from autoaug.report.analysis import parameter_importance
from autoaug.report.preview import preview_grids
from autoaug.report.run_data import Trial, best_so_far, comparable_scores
from autoaug.search.compare import Comparison, rank_retrained
from autoaug.search.outcome import Candidate, config_columns, update_run, write_rows
from autoaug.search.space import load_space
from autoaug_cli import app as cli_app

EPOCHS, START = 3, 1_700_000_000.0


def _rows(trials: int, *, finished: bool) -> list[dict]:
    """Rows as the Recorder writes them: one per trial and epoch, ASHA stopping every other trial at epoch 1."""
    space, rows = load_space("default"), []
    for t in range(trials):
        config = space.sample(random.Random(t))
        epochs = EPOCHS if t % 2 == 0 or not finished else 1
        status = ("completed" if epochs == EPOCHS else "stopped_early") if finished else "running"
        for epoch in range(1, epochs + 1):
            rows.append({"trial_id": f"t{t:02d}", "status": status, "error": None, "epoch": epoch,
                         "val_accuracy": 0.1 * epoch + 0.01 * t, "train_loss": 1.0, "val_loss": 1.0, "val_ece": 0.1,
                         "images_per_second": 500.0, "epoch_seconds": 36.0, "node_id": "n1",
                         "time_total_s": 36.0 * epoch, "reported_at": START + 60 * t + epoch,
                         **config_columns(config)})
    return rows


def make_run(folder: Path, *, trials: int = 8, state: str = "finished", policy: bool = True,
             extra: dict | None = None) -> Path:
    write_rows(folder, _rows(trials, finished=state == "finished"))
    options = {"dataset": "digits", "space": "default", "model": "proxy_tiny", "algo": "nevergrad",
               "scheduler": "asha", "epochs": EPOCHS, "budget": str(trials)}
    fields = {"state": state, "options": options, "resources": {"cpus": 2, "gpus": 0.25, "concurrency": 1},
              "started": "2026-01-01T00:00:00+00:00", **(extra or {})}
    if state == "finished":
        fields.update(finished="2026-01-01T01:30:00+00:00", chosen_trial="t06",
                      candidates=[{"rank": 1, "trial_id": "t06", "search_score": 0.36, "retrain_scores": [0.5, 0.52],
                                   "score": 0.51},
                                  {"rank": 2, "trial_id": "t04", "search_score": 0.34, "retrain_scores": [0.49, None],
                                   "score": 0.49}])
    update_run(folder, **fields)
    if policy:
        space = load_space("default")
        space.decode(space.sample(random.Random(6)), name="chosen").save(folder / "policy.json")
    return folder


def _images(html: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]


def _comparison_record() -> dict:
    """A head-to-head record as the search writes it: three re-trained candidates and the baseline seed."""
    candidates = [Candidate("t06", {}, 0.36, (0.50, 0.52)), Candidate("t04", {}, 0.34, (0.49, math.nan)),
                  Candidate("t02", {}, 0.38, (0.44, 0.46))]  # t02: re-trained but not in run.json's top candidates
    baseline = Candidate("t00", {}, 0.30, (0.47, 0.49), seed_policy="cropflip")
    return Comparison(rank_retrained(candidates), baseline, (1000, 1001), EPOCHS).record()


def test_finished_run_report_has_every_section_and_its_plots_embedded(tmp_path: Path) -> None:
    report = write_report(make_run(tmp_path, extra={"head_to_head": _comparison_record(), "rank_correlation": 0.4,
                                                    "learning_rate": {"peak_lr": 0.05}}))
    html = report.html.read_text()
    assert report.html == tmp_path / "report.html" and report.state == "finished"
    for title in ("Summary", "Best so far", "Scores per ASHA rung", "Ops in the top trials against all",
                  "Which parameters mattered", "Final candidates head to head", "Preview of the policy",
                  "Resources used", "Other records in run.json"):
        assert f"<h2>{title}</h2>" in html
    embedded = _images(html)
    assert len(embedded) == len(report.images) == 6  # best, rungs, ops, importance, head-to-head, preview
    for png, path in zip(embedded, report.images):
        assert path.read_bytes() == png and path.parent == tmp_path
        assert PIL.Image.open(io.BytesIO(png)).size[0] >= 400
    assert "RandomForestRegressor" in html and "permutation" in html  # the method is named
    assert "run.json: learning_rate" in html and "run.json: head_to_head" not in html  # shown as found: unknown only
    assert "trial CPU-hours</td><td>0.320" in html  # 16 epochs x 36 s x 2 CPUs
    assert "trial GPU-hours</td><td>0.040" in html and "wall-clock hours</td><td>1.500" in html
    assert "http://" not in html and "https://" not in html  # self-contained: nothing to fetch


def _has_row(section: str, row: list[str]) -> bool:
    """Whether a table row starts with these cells."""
    return "<tr><td>" + "</td><td>".join(row) + "</td>" in section


def _head_to_head_html(html: str) -> str:
    start = html.index("<h2>Final candidates head to head</h2>")
    return html[start:html.index("<h2>", start + 4)]


def test_head_to_head_shows_every_contender_the_baseline_the_margin_and_the_verdict(tmp_path: Path) -> None:
    report = write_report(make_run(tmp_path, trials=3, extra={"head_to_head": _comparison_record()}))
    section = _head_to_head_html(report.html.read_text())
    # contender, baseline?, chosen?, search score, runs, mean ± std, n: best mean first, the baseline last
    assert _has_row(section, ["candidate t06", "", "yes", "36.00%", "50.00%, 52.00%", "51.00% ± 1.41", "2"])
    assert _has_row(section, ["candidate t04", "", "", "34.00%", "49.00%, -", "49.00% ± 0.00", "1"])
    assert _has_row(section, ["candidate t02", "", "", "38.00%", "44.00%, 46.00%", "45.00% ± 1.41", "2"])
    assert _has_row(section, ["baseline cropflip (t00)", "yes", "", "30.00%", "47.00%, 49.00%", "48.00% ± 1.41", "2"])
    assert section.index("candidate t02") < section.index("baseline cropflip (t00)")
    assert "same 2 seeds (1000, 1001) for 3 epochs" in section
    assert "margin (best candidate&#x27;s mean minus the baseline&#x27;s): +3.00 points" in section
    assert ("verdict: best candidate 51.00 ± 1.41% beats the baseline cropflip 48.00 ± 1.41% by +3.00 points"
            in section)
    # t02 searched best and re-trained worst
    assert "rank correlation of search score and re-trained mean: -0.20" in section
    assert 'alt="contenders re-trained head to head; baseline cropflip (t00) marked"' in section
    assert len(_images(section)) == 1


def test_head_to_head_when_the_baseline_wins_and_when_the_record_is_foreign(tmp_path: Path) -> None:
    losing = Comparison((Candidate("t06", {}, 0.36, (0.40, 0.42)),), Candidate("t00", {}, 0.3, (0.5, 0.5), "cropflip"),
                        (1000, 1001), EPOCHS).record()
    html = write_report(make_run(tmp_path / "a", trials=3, extra={"head_to_head": losing})).html.read_text()
    section = _head_to_head_html(html)
    assert _has_row(section, ["baseline cropflip (t00)", "yes", "yes"]) and "-9.00 points" in section
    assert "the result is the baseline cropflip" in section
    foreign = {"head_to_head": [{"policy": "chosen", "accuracies": [0.61, 0.63]}]}  # a list: not a record at all
    section = _head_to_head_html(write_report(make_run(tmp_path / "b", trials=3, extra=foreign)).html.read_text())
    assert "head_to_head is unreadable" not in section  # so the ranked candidates are shown, without a note
    assert "#1 t06" in section and "50.00%, 52.00%" in section and "51.00%" in section
    torn = {"head_to_head": {"candidates": [{"trial_id": "t06"}], "baseline": None}}
    section = _head_to_head_html(write_report(make_run(tmp_path / "c", trials=3, extra=torn)).html.read_text())
    assert "note: run.json&#x27;s head_to_head is unreadable (KeyError" in section and "#2 t04" in section


def test_head_to_head_plot_marks_the_baseline_in_its_colour() -> None:
    from autoaug.report import plots
    entries = [("candidate a", [0.50, 0.52]), ("baseline cropflip (s)", [0.47, 0.49])]
    baseline_colour = (0x2C, 0xA0, 0x2C)

    def coloured(png: bytes) -> int:
        pixels = np.asarray(PIL.Image.open(io.BytesIO(png)).convert("RGB"))
        return int((pixels == baseline_colour).all(axis=-1).sum())

    assert coloured(plots.head_to_head(entries, baseline="baseline cropflip (s)")) > 200  # dots, bar, line, label
    assert coloured(plots.head_to_head(entries)) == 0


def test_running_run_without_policy_previews_the_best_trial_so_far(tmp_path: Path) -> None:
    report = write_report(make_run(tmp_path, trials=3, state="running", policy=False))
    html = report.html.read_text()
    assert "(running)" in html and "policy.json: not there yet" in html
    assert "the best trial so far (t02; no policy chosen yet)" in html
    assert "Too few trials (3) at one epoch" in html
    assert len(_images(html)) == 4  # no importance with 3 trials, no candidates yet


def test_interrupted_run_with_run_json_only(tmp_path: Path) -> None:
    update_run(tmp_path, state="interrupted", options={"dataset": "digits", "space": "default"})
    html = write_report(tmp_path).html.read_text()
    assert "(interrupted)" in html and "No trial has reported a score yet." in html
    assert "trials.parquet: not there yet" in html and _images(html) == []


def test_schedule_policy_previews_each_phase() -> None:
    phases = [SchedulePhase(start_fraction=0.0, end_fraction=0.4, augment=TrivialAugment(magnitude_max=0.2)),
              SchedulePhase(start_fraction=0.4, end_fraction=1.0, augment=TrivialAugment())]
    grids = preview_grids(Policy(name="sched", augment=Schedule(phases=phases)), "digits", None)
    assert [label for label, _ in grids] == ["phase 0 to 0.4 of training (trivialaugment)",
                                             "phase 0.4 to 1 of training (trivialaugment)"]
    first, second = (PIL.Image.open(io.BytesIO(png)) for _, png in grids)
    assert first.size == second.size and first.tobytes() != second.tobytes()


def _trial(trial_id: str, scores: dict[int, float], ended: float, config: dict | None = None) -> Trial:
    return Trial(trial_id, "completed", scores, config or {}, ended, 10.0)


def test_best_so_far_and_comparable_epoch() -> None:
    trials = [_trial("a", {1: 0.3}, 100.0), _trial("b", {1: 0.5, 2: 0.6}, 160.0), _trial("c", {1: 0.4}, 190.0)]
    assert best_so_far(trials) == [(1, 0.0, 0.3), (2, 60.0, 0.6), (3, 90.0, 0.6)]
    assert comparable_scores(trials, least=2)[0] == 1 and comparable_scores(trials, least=1)[0] == 2


def test_importance_ranks_the_parameter_that_decides_the_score() -> None:
    rng = random.Random(0)
    trials = []
    for i in range(30):
        config = {"decides": rng.random(), "noise": rng.random(), "flag": rng.random() < 0.5, "constant": 1.0}
        trials.append(_trial(f"t{i}", {1: 0.8 * config["decides"] + 0.02 * rng.random()}, float(i), config))
    ranked = parameter_importance(trials, 1)
    assert ranked[0][0] == "decides" and ranked[0][1] > 5 * max(m for name, m, _ in ranked[1:])
    assert "constant" not in {name for name, _, _ in ranked}  # never varied: cannot have mattered


def _started_run(folder: Path) -> Path:
    update_run(folder, state="running", options={"dataset": "digits", "space": "default"})
    return folder


def test_cli_report_and_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli_app.main(["report", str(_started_run(tmp_path)), "-o", str(tmp_path / "out" / "r.html")])
    assert done.value.code == 0 and "(running)" in (tmp_path / "out" / "r.html").read_text()
    assert f"wrote {tmp_path / 'out' / 'r.html'} (0 plots" in capsys.readouterr().out
    with pytest.raises(SystemExit) as done:
        cli_app.main(["report", str(tmp_path / "nowhere")])
    assert done.value.code == 2 and "no such folder" in capsys.readouterr().err


def test_search_writes_the_report_and_a_failing_report_is_only_a_note(tmp_path: Path, capsys) -> None:
    from autoaug_cli.search_command import write_search_report
    assert write_search_report(_started_run(tmp_path)) == tmp_path / "report.html"
    assert write_search_report(tmp_path / "nowhere") is None
    assert "note: no report.html" in capsys.readouterr().err
