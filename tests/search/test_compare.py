"""The head-to-head final choice and the rank correlation: pure functions, no training."""
from __future__ import annotations

import math

import pytest

from autoaug.search.compare import Comparison, contenders, final_ranking, rank_retrained, spearman
from autoaug.search.outcome import Candidate


def _c(trial: str, search: float, retrain: tuple[float, ...] = (), seed: str | None = None) -> Candidate:
    return Candidate(trial, {}, search, retrain, seed_policy=seed)


@pytest.mark.parametrize("xs, ys, rho", [
    ([1, 2, 3, 4], [10, 20, 30, 40], 1.0),
    ([1, 2, 3, 4], [4, 3, 2, 1], -1.0),
    ([1, 2, 3, 4, 5], [2, 1, 4, 3, 5], 0.8),
    ([1, 2, 2, 3], [1, 2, 3, 4], 0.9486832980505138),  # a tie shares the mean rank
])
def test_spearman(xs, ys, rho):
    assert spearman(xs, ys) == pytest.approx(rho)


def test_spearman_needs_three_pairs_and_spread():
    assert spearman([1, 2], [1, 2]) is None
    assert spearman([1, 1, 1], [1, 2, 3]) is None


def test_contenders_are_the_top_proposals_and_the_best_seed():
    ranked = [_c("s1", 0.9, seed="trivialaugment-wide"), _c("a", 0.85), _c("s2", 0.8, seed="cropflip"),
              _c("b", 0.7), _c("c", 0.6)]
    proposed, baseline = contenders(ranked, 2)
    assert [c.trial_id for c in proposed] == ["a", "b"] and baseline.trial_id == "s1"
    assert contenders([_c("a", 0.5)], 3) == ([_c("a", 0.5)], None)


def test_no_candidate_beats_the_baseline_so_the_baseline_is_the_result():
    comparison = Comparison(rank_retrained([_c("a", 0.9, (0.60, 0.62)), _c("b", 0.8, (0.55, 0.57))]),
                            _c("s", 0.7, (0.63, 0.65), seed="trivialaugment-wide"), (1000, 1001), 30)
    assert not comparison.beats_baseline and comparison.winner.trial_id == "s"
    assert comparison.margin == pytest.approx(-0.03)
    assert comparison.verdict().startswith("no candidate beat the baseline")
    assert "the result is the baseline trivialaugment-wide" in comparison.verdict()
    record = comparison.record()
    assert record["chosen"] == "baseline" and record["baseline"]["mean"] == pytest.approx(0.64)
    assert record["baseline"]["std"] == pytest.approx(math.sqrt(2) * 0.01)
    # search order a > b > s, re-trained order s > a > b: rho = -0.5
    assert comparison.rank_correlation == pytest.approx(-0.5)


def test_a_candidate_that_beats_the_baseline_is_chosen():
    comparison = Comparison(rank_retrained([_c("b", 0.8, (0.70, 0.72)), _c("a", 0.9, (0.60, 0.62))]),
                            _c("s", 0.7, (0.63, 0.65), seed="cropflip"))
    assert [c.trial_id for c in comparison.candidates] == ["b", "a"]  # by re-trained mean
    assert comparison.beats_baseline and comparison.winner.trial_id == "b"
    assert comparison.margin == pytest.approx(0.07)
    assert comparison.verdict() == "best candidate 71.00 ± 1.41% beats the baseline cropflip 64.00 ± 1.41% by +7.00 points"


def test_failed_retraining_ranks_last_and_a_tie_keeps_the_baseline():
    ranked = rank_retrained([_c("a", 0.9, (math.nan, math.nan)), _c("b", 0.5, (0.6, 0.6))])
    assert [c.trial_id for c in ranked] == ["b", "a"]
    tie = Comparison((_c("b", 0.5, (0.6, 0.6)),), _c("s", 0.4, (0.6, 0.6), seed="cropflip"))
    assert tie.winner.trial_id == "s"  # a candidate must beat the baseline, not tie it


def test_final_ranking_puts_the_winner_first_then_the_rest():
    baseline = _c("s", 0.7, (0.66, 0.66), seed="cropflip")
    comparison = Comparison(rank_retrained([_c("a", 0.9, (0.60, 0.62))]), baseline)
    candidates = [_c("a", 0.9), baseline, _c("z", 0.65)]
    assert [c.trial_id for c in final_ranking(candidates, comparison)] == ["s", "a", "z"]
    assert final_ranking(candidates, None) == candidates


def test_a_record_read_back_gives_the_same_verdict_and_margin():
    comparison = Comparison(rank_retrained([_c("b", 0.8, (0.70, math.nan)), _c("a", 0.9, (0.60, 0.62))]),
                            _c("s", 0.7, (0.63, 0.65), seed="cropflip"), (1000, 1001), 8)
    again = Comparison.from_record(comparison.record())
    assert again.verdict() == comparison.verdict() and again.margin == pytest.approx(comparison.margin)
    assert [c.trial_id for c in again.candidates] == ["b", "a"] and again.baseline.seed_policy == "cropflip"
    assert again.seeds == (1000, 1001) and again.epochs == 8 and math.isnan(again.candidates[0].retrain_scores[1])
    with pytest.raises(KeyError):
        Comparison.from_record({"candidates": [{"trial_id": "a"}], "baseline": None})
