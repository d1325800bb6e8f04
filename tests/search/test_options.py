"""The search's pure parts, without Ray: budgets, options, resuming, GPU shares, rows and choosing."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from autoaug.datasets import load_dataset
from autoaug.errors import AutoaugError, UnknownNameError
from autoaug.policy import load_policy
from autoaug.search.options import (SearchOptions, parse_budget, prepare, resolve_batch_size, resolve_gpus_per_trial,
                                    resolve_model, resumed_options)
from autoaug.search.outcome import (Candidate, candidate_table, check_extension, choose, config_columns,
                                    rank_candidates, read_run, update_run, write_rows, write_top)


@pytest.mark.parametrize("text, trials, seconds", [("200", 200, None), (" 8 ", 8, None), ("30m", None, 1800.0),
                                                   ("2h", None, 7200.0), ("90s", None, 90.0), ("1.5h", None, 5400.0),
                                                   ("2H", None, 7200.0), (12, 12, None)])
def test_budget_parsing(text, trials, seconds):
    budget = parse_budget(text)
    assert (budget.trials, budget.seconds) == (trials, seconds)


@pytest.mark.parametrize("text", ["0", "-3", "ten", "30 minutes", "5d", "", "0m", "1e3", "2.5"])
def test_bad_budgets_say_what_is_allowed(text):
    with pytest.raises(AutoaugError, match=r"budget must be .*\(200\) or a duration \(90s, 30m, 2h\)"):
        parse_budget(text)


@pytest.mark.parametrize("change, message", [
    ({"algo": "bayes"}, "algo must be one of nevergrad, random, pbt, got 'bayes'"),
    ({"scheduler": "hyperband"}, "scheduler must be one of asha, fifo"),
    ({"epochs": 0}, "epochs must be an integer >= 1"),
    ({"top_k_seeds": 1}, "top_k_seeds must be an integer >= 2"),
    ({"val_size": 0.0}, "val_size must be"),
    ({"val_size": 10.5}, "val_size must be"),
    ({"gpus_per_trial": -0.5}, "gpus_per_trial must be >= 0"),
    ({"device": "tpu"}, "device must be auto, cpu or cuda"),
    ({"budget": "soon"}, "budget must be"),
])
def test_bad_options_are_user_errors(change, message):
    with pytest.raises(AutoaugError, match=message):
        SearchOptions(**change)


def test_retrain_epochs_default_to_twice_the_trials():
    assert SearchOptions(epochs=3).retrain_epochs == 6
    assert SearchOptions(epochs=3, top_k_epochs=4).retrain_epochs == 4


@pytest.mark.parametrize("epochs, target, top_k_epochs, trial, retrain", [
    (None, None, None, 5, 10),  # the defaults
    (None, 30, None, 15, 30),  # trials train half the target; the head-to-head all of it
    (None, 7, None, 4, 7),
    (6, 30, None, 6, 30),  # given epochs win
    (None, 30, 20, 15, 20),
])
def test_trial_and_head_to_head_epochs_derive_from_the_target(epochs, target, top_k_epochs, trial, retrain):
    options = SearchOptions(epochs=epochs, target_epochs=target, top_k_epochs=top_k_epochs)
    assert (options.trial_epochs, options.retrain_epochs) == (trial, retrain)


def test_prepare_records_the_trial_epochs(tmp_path):
    options = prepare(SearchOptions(target_epochs=30, out=str(tmp_path / "run"), device="cpu"))
    assert options.epochs == 15 and options.target_epochs == 30


def test_resume_may_extend_the_budget_but_not_change_the_rest():
    saved = SearchOptions(dataset="cifar10", epochs=7, budget="12", out="/runs/a").to_dict()
    given = SearchOptions(out="/runs/a", resume=True)
    assert resumed_options(saved, given).budget == "12"  # the default budget means: not given
    assert resumed_options(saved, replace(given, budget="40")).budget == "40"


def test_auto_model_is_the_tiny_proxy_on_cpu_and_names_are_checked(monkeypatch):
    assert resolve_model("auto", device="cpu") == "proxy_tiny"
    assert resolve_model("wrn_40_2", device="cpu") == "wrn_40_2"
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    assert resolve_model("auto", device="auto") == "proxy" and resolve_model("auto", device="cpu") == "proxy_tiny"
    with pytest.raises(UnknownNameError, match="did you mean 'resnet18'"):
        resolve_model("resnet_18", device="cpu")


def test_auto_batch_size_is_resolved_from_the_training_part_and_recorded():
    train = load_dataset("digits").train  # 1,437 images: 89 per step of 16 -> 64
    assert resolve_batch_size(SearchOptions(), train).batch_size == 64
    assert resolve_batch_size(SearchOptions(batch_size=100), train).batch_size == 100


def test_resume_takes_the_saved_options():
    saved = SearchOptions(dataset="cifar10", epochs=7, budget="30m", seed=3, out="/runs/a").to_dict()
    given = SearchOptions(out="/runs/a", resume=True, address="10.0.0.1:6379")
    options = resumed_options(json.loads(json.dumps(saved)), given)
    assert (options.dataset, options.epochs, options.budget, options.seed) == ("cifar10", 7, "30m", 3)
    assert options.resume and options.address == "10.0.0.1:6379"
    assert resumed_options(saved, replace(given, epochs=7)).epochs == 7  # the same value again is fine
    with pytest.raises(AutoaugError, match="its own epochs \\(7\\); leave out epochs"):
        resumed_options(saved, replace(given, epochs=2))


@pytest.mark.parametrize("requested, device, cluster, local, joined, expected", [
    (None, "auto", 0, 0, False, 0.0),      # no GPU anywhere: trials must not wait for one
    (1.0, "auto", 0, 0, False, 0.0),       # an explicit request is dropped too, not left pending forever
    (0.5, "auto", 0, 0, True, 0.0),        # a joined cluster without GPUs
    (None, "auto", 2, 0, False, 0.0),      # Ray saw GPUs this torch cannot use (CPU-only build)
    (None, "auto", 1, 1, False, 0.25),
    (0.5, "auto", 4, 0, True, 0.5),        # a joined cluster's GPUs count without one on the driver
    (None, "cpu", 1, 1, False, 0.0),
])
def test_gpu_share(requested, device, cluster, local, joined, expected):
    assert resolve_gpus_per_trial(requested, device=device, cluster_gpus=cluster, local_gpus=local,
                                  joined_cluster=joined) == expected


def test_impossible_gpu_requests_are_errors():
    with pytest.raises(AutoaugError, match="--device cuda was asked for"):
        resolve_gpus_per_trial(None, device="cuda", cluster_gpus=0, local_gpus=0, joined_cluster=False)
    with pytest.raises(AutoaugError, match="more than the 1 GPUs"):
        resolve_gpus_per_trial(2.0, device="auto", cluster_gpus=1, local_gpus=1, joined_cluster=False)


def test_config_columns_are_flat_and_typed():
    columns = config_columns({"b.widths": [0.5, 1.0], "a.p": 0.3, "c.flag": True})
    assert columns == {"config.a.p": 0.3, "config.b.widths": "[0.5, 1.0]", "config.c.flag": True}


ROWS = [{"trial_id": "a", "epoch": 1, "val_accuracy": 0.9, "status": "stopped_early"},
        {"trial_id": "b", "epoch": 1, "val_accuracy": 0.5, "status": "completed"},
        {"trial_id": "b", "epoch": 2, "val_accuracy": 0.7, "status": "completed"},
        {"trial_id": "c", "epoch": 2, "val_accuracy": 0.8, "status": "completed"},
        {"trial_id": "e", "epoch": 2, "val_accuracy": 0.8, "status": "completed"},
        {"trial_id": "d", "epoch": 2, "val_accuracy": 0.99, "status": "failed"},
        {"trial_id": "f", "epoch": None, "val_accuracy": None, "status": "failed"}]


def test_ranking_uses_full_length_trials_only():
    ranked = rank_candidates(ROWS, {t: {"x": t} for t in "abcdef"}, epochs=2)
    assert [c.trial_id for c in ranked] == ["c", "e", "b"]  # ties broken by trial id
    assert ranked[0] == Candidate("c", {"x": "c"}, 0.8)


def test_choosing_by_mean_of_retraining():
    nan = float("nan")
    candidates = [Candidate("c", {}, 0.8, (0.60, 0.62)), Candidate("e", {}, 0.8, (0.70, nan)),
                  Candidate("b", {}, 0.7, (nan, nan)), Candidate("g", {}, 0.6)]
    chosen = choose(candidates)
    # e's one good re-run beats c's mean; b could not be re-trained and falls behind, by its trial score
    assert [c.trial_id for c in chosen] == ["e", "c", "b", "g"]
    assert chosen[0].score == pytest.approx(0.70) and chosen[1].score == pytest.approx(0.61)
    assert chosen[2].score == 0.7 and not chosen[2].retrained
    table = candidate_table(chosen)
    assert table[0] == {"rank": 1, "trial_id": "e", "seed_policy": None, "search_score": 0.8,
                        "retrain_scores": [0.70, None],
                        "score": pytest.approx(0.70)}
    assert math.isfinite(json.loads(json.dumps(table))[2]["score"])


def test_without_retraining_the_trial_score_decides():
    candidates = [Candidate("b", {}, 0.7), Candidate("c", {}, 0.8)]
    assert [c.trial_id for c in choose(candidates)] == ["b", "c"]  # order kept: rank_candidates sorted it


def test_top_policies_replace_stale_ranks(tmp_path):
    policy = load_policy("cropflip")
    write_top(tmp_path, [policy, policy, policy])
    paths = write_top(tmp_path, [policy.model_copy(update={"name": "best"}), policy])
    assert sorted(p.name for p in (tmp_path / "top").iterdir()) == ["rank-1.json", "rank-2.json"]
    assert [p.name for p in paths] == ["rank-1.json", "rank-2.json"]
    assert load_policy(tmp_path / "policy.json").name == "best"


def test_run_record_merges(tmp_path):
    update_run(tmp_path, state="running", started="t0")
    update_run(tmp_path, state="finished", trials=3)
    record = read_run(tmp_path)
    assert (record["state"], record["started"], record["trials"]) == ("finished", "t0", 3) and record["updated"]
    (tmp_path / "run.json").write_text("{broken")
    with pytest.raises(AutoaugError, match="not valid JSON"):
        read_run(tmp_path)


@pytest.mark.parametrize("budget, algo, message", [
    ("1", "nevergrad", "^--budget 1 is less than the 2 trials this search already ran; give at least 2 "
                       "\\(or leave --budget out to finish its 2 trials\\)$"),
    ("5", "random", "^--resume --budget extends searches with --algo nevergrad; this one is random"),
    ("30m", "nevergrad", "^--resume can change a budget of trials only; this search's budget is 2 trials"),
])
def test_a_budget_extension_is_checked_against_what_was_spent(tmp_path, budget, algo, message):
    write_rows(tmp_path, [{"trial_id": "a", "epoch": 1}, {"trial_id": "a", "epoch": 2}, {"trial_id": "b", "epoch": 1}])
    saved = {"options": {"budget": "2"}}
    check_extension(tmp_path, SearchOptions(budget="2"), saved)  # the same budget: a plain resume
    check_extension(tmp_path, SearchOptions(budget="9"), saved)  # larger: extends
    with pytest.raises(AutoaugError, match=message):
        check_extension(tmp_path, SearchOptions(budget=budget, algo=algo), saved)
