"""Shipped policies as points of the shipped spaces: the search's warm start."""
from __future__ import annotations

import functools

import pytest

from autoaug.policy import Labels, Mixing, load_policy
from autoaug.resources import shipped_policies, shipped_spaces
from autoaug.search.options import SearchOptions
from autoaug.search.outcome import Candidate, config_columns, policy_for, rank_candidates, trial_configs
from autoaug.search.seeds import (autoaugment_family, canonical, encode, same_point, seed_names, seed_of,
                                  seeds_for)
from autoaug.search.space import load_space as _load_space, space_from_dict

load_space = functools.lru_cache(maxsize=None)(_load_space)  # loading checks every parameter: once per space

# what each shipped space can express, of the seeds a CIFAR-like dataset gets
EXPRESSIBLE = {
    "default": {"cropflip", "trivialaugment-wide", "randaugment"},
    "trivialaugment": {"cropflip", "trivialaugment-wide"},
    "randaugment": {"randaugment"},
    "autoaugment": {"autoaugment-cifar10"},
    "mixing": {"cropflip"},
    "resolution": {"cropflip"},
    "width_resolution": set(),  # it always trains sub-networks: no shipped policy does
}


def test_every_shipped_space_is_in_the_table():
    assert set(EXPRESSIBLE) == set(shipped_spaces())


@pytest.mark.parametrize("space_name", sorted(shipped_spaces()))
def test_each_space_seeds_the_shipped_policies_it_can_express(space_name):
    seeds = seeds_for(load_space(space_name), "cifar10")
    assert {seed.name for seed in seeds} == EXPRESSIBLE[space_name]


@pytest.mark.parametrize("space_name", sorted(shipped_spaces()))
@pytest.mark.parametrize("policy_name", sorted(shipped_policies()))
def test_decode_of_encode_does_what_the_policy_does(space_name, policy_name):
    space, policy = load_space(space_name), load_policy(policy_name)
    point = encode(space, policy)
    if point is None:
        return
    assert set(point) == set(space.parameters())
    assert canonical(space.decode(point)) == canonical(policy)


@pytest.mark.parametrize("family", ["svhn", "imagenet"])
def test_the_autoaugment_space_holds_every_published_policy(family):
    space, policy = load_space("autoaugment"), load_policy(f"autoaugment-{family}")
    point = encode(space, policy)
    decoded = space.decode(point)
    assert decoded.augment == policy.augment  # all 25 sub-policies, op by op
    assert canonical(decoded) == canonical(policy)


def test_the_trivialaugment_wide_seed_is_exact_where_the_space_has_its_form():
    point = encode(load_space("default"), load_policy("trivialaugment-wide"))
    assert point["augment"] == "trivialaugment" and point["augment.trivialaugment.ranges"] == "wide"
    assert point["augment.trivialaugment.magnitude_max"] == 1.0
    assert all(point[k] for k in point if k.startswith("augment.trivialaugment.ops."))
    assert point["mixing.probability"] == 0.0 and point["labels.label_smoothing"] == 0.0  # the mixing-off form
    assert (point["post.0.probability"], point["post.0.magnitude"]) == (1.0, 0.5)


def test_randaugment_n2_m9_is_a_point_of_the_default_space():
    point = encode(load_space("default"), load_policy("randaugment"))
    assert (point["augment"], point["augment.randaugment.num_ops"], point["augment.randaugment.magnitude"]) == \
        ("randaugment", 2, 0.3)


def test_crop_and_flip_is_trivialaugment_over_identity_without_cutout():
    decoded = load_space("trivialaugment").decode(encode(load_space("trivialaugment"), load_policy("cropflip")))
    assert decoded.augment.ops == ["Identity"] and decoded.post[0].probability == 0.0


def test_switched_off_sections_compare_equal_to_absent_ones():
    base = load_policy("cropflip")
    off = base.model_copy(update={"mixing": Mixing(mixup_alpha=0.5, probability=0.0),
                                  "labels": Labels(label_smoothing=0.0)})
    assert canonical(off) == canonical(base)
    on = base.model_copy(update={"mixing": Mixing(mixup_alpha=0.5, probability=0.2)})
    assert canonical(on) != canonical(base)


def test_a_policy_outside_the_space_has_no_point():
    space = space_from_dict({"name": "narrow", "template": {"augment": {
        "kind": "randaugment", "num_ops": 2, "magnitude": {"search": "uniform", "low": 0.5, "high": 1.0}}}},
        origin="narrow")
    assert encode(space, load_policy("randaugment")) is None  # magnitude 0.3 is below the range, no crop
    assert encode(load_space("randaugment"), load_policy("trivialaugment-wide")) is None


@pytest.mark.parametrize("dataset, family", [("cifar10", "cifar10"), ("/data/svhn-small.npz", "svhn"),
                                             ("imagenet_folder", "imagenet"), ("digits", "cifar10")])
def test_autoaugment_policy_follows_the_dataset_family(dataset, family):
    assert autoaugment_family(dataset) == family
    assert seed_names(dataset)[-1] == f"autoaugment-{family}"


def test_a_trial_is_recognised_as_its_seed_through_optimizer_round_off():
    seeds = seeds_for(load_space("trivialaugment"), "cifar10")
    noisy = {k: v + 1e-12 if isinstance(v, float) else v for k, v in seeds[1].point.items()}
    assert seed_of(noisy, seeds) == seeds[1].name
    other = {**seeds[1].point, "augment.magnitude_max": 0.5}
    assert seed_of(other, seeds) is None and not same_point(other, seeds[1].point)


def test_trials_read_back_from_their_rows_and_seeds_are_marked():
    space = load_space("width_resolution")  # list-valued choices come back from their JSON text
    point = {"width_resolution.widths": [0.25, 1.0], "width_resolution.resolutions": [24, 32],
             "width_resolution.num_random_subnets": 2}
    rows = [{"trial_id": "t1", "epoch": 1, "status": "completed", "val_accuracy": 0.5, **config_columns(point)}]
    assert trial_configs(rows, space) == {"t1": point}
    trivial = load_space("trivialaugment")
    seeds = seeds_for(trivial, "cifar10")
    other = {**seeds[0].point, "augment.magnitude_max": 0.7, "augment.ops.Rotate": True}
    rows = [{"trial_id": t, "epoch": 2, "status": "completed", "val_accuracy": acc, **config_columns(c)}
            for t, c, acc in (("s", seeds[1].point, 0.6), ("p", other, 0.7), ("q", seeds[0].point, 0.4))]
    ranked = rank_candidates(rows, trial_configs(rows, trivial), 2, tuple(seeds))
    assert [(c.trial_id, c.seed_policy) for c in ranked] == [("p", None), ("s", "trivialaugment-wide"),
                                                              ("q", "cropflip")]


def test_a_chosen_seed_is_written_as_the_shipped_policy_with_the_verdict():
    space = load_space("trivialaugment")
    seed = seeds_for(space, "cifar10")[1]
    candidate = Candidate("s", seed.point, 0.6, (0.62, 0.64), seed_policy=seed.name)
    options = SearchOptions(dataset="cifar10", epochs=4, budget="12", model="proxy_tiny")
    policy = policy_for(options, space, candidate, [], rank=1, versions={}, verdict="no candidate beat it")
    assert policy.name == "trivialaugment-cifar10-rank1"
    assert policy.augment == load_policy("trivialaugment-wide").augment and policy.post == seed.policy.post
    assert policy.provenance.algorithm.endswith("; head to head: no candidate beat it")
    assert policy.provenance.validation_score == pytest.approx(0.63)
    assert "The shipped policy trivialaugment-wide" in policy.description
