"""Search spaces: every shipped file validates and every point of every space decodes to a policy."""
from __future__ import annotations

import functools
import json
import random

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from autoaug.errors import AutoaugError
from autoaug.policy import policy_from_dict
from autoaug.resources import shipped_spaces
from autoaug.search.space import SearchSpace, load_space, space_from_dict

SPACES = sorted(shipped_spaces())
RANDAUGMENT = {"augment": {"kind": "randaugment", "magnitude": {"search": "uniform", "low": 0.1, "high": 0.2}}}


def test_the_designed_spaces_ship():
    assert {"autoaugment", "randaugment", "trivialaugment", "mixing", "resolution", "width_resolution",
            "default"} <= set(SPACES)


@pytest.mark.parametrize("name", SPACES)
def test_every_shipped_space_validates(name):
    space = load_space(name)
    assert space.name == name and space.description
    assert space.parameters(), "a space with nothing to search"
    text = shipped_spaces()[name].read_text()
    assert "!!python" not in text and "lambda" not in text  # data only: no tags, no code


@functools.lru_cache(maxsize=None)
def _loaded(name: str) -> SearchSpace:
    return load_space(name)  # loading checks every parameter's ends: once per space, not per example


@pytest.mark.parametrize("name", SPACES)
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_every_point_decodes_to_a_valid_policy(name, seed):
    space = _loaded(name)
    point = space.sample(random.Random(seed))
    policy = space.decode(point)
    assert policy_from_dict(json.loads(policy.dumps())) == policy  # survives the JSON round trip
    for key, domain in space.parameters().items():
        if domain.kind in ("uniform", "loguniform", "int"):
            assert domain.low <= point[key] <= domain.high
        else:
            assert point[key] in domain.choices


def test_decode_places_values_by_path():
    space = load_space("randaugment")
    policy = space.decode({"augment.num_ops": 3, "augment.magnitude": 0.7, "post.0.probability": 0.25,
                           "post.0.magnitude": 0.4})
    assert (policy.augment.num_ops, policy.augment.magnitude) == (3, 0.7)
    assert [call.op for call in policy.pre] == ["RandomCrop", "HorizontalFlip"]  # the fixed part
    assert (policy.post[0].op, policy.post[0].probability, policy.post[0].magnitude) == ("Cutout", 0.25, 0.4)


def test_subset_flags_choose_the_ops():
    space = load_space("trivialaugment")
    point = {key: key.endswith((".Rotate", ".Solarize")) for key in space.parameters() if ".ops." in key}
    point.update({"augment.magnitude_max": 0.5, "post.0.probability": 1.0, "post.0.magnitude": 0.5})
    policy = space.decode(point)
    assert policy.augment.ops == ["Rotate", "Solarize"] and policy.augment.magnitude_max == 0.5
    assert space.decode({**point, **{key: False for key in point if ".ops." in key}}).augment.ops == ["Identity"]


def test_repeat_unrolls_independent_parameters():
    space = load_space("autoaugment")
    ops = [k for k in space.parameters() if k.endswith(".op")]
    assert len(ops) == 50 and "augment.subpolicies.24.1.op" in ops  # 25 sub-policies of 2, as published
    point = space.sample(random.Random(0))
    point = {**point, "augment.subpolicies.0.0.op": "Rotate", "augment.subpolicies.0.1.op": "Equalize",
             "augment.subpolicies.0.1.probability": 0.25}
    first = space.decode(point).augment.subpolicies[0]
    assert [(c.op, c.probability) for c in first] == [("Rotate", point["augment.subpolicies.0.0.probability"]),
                                                       ("Equalize", 0.25)]


def test_oneof_picks_a_schedule_shape():
    space = load_space("resolution")
    assert space.parameters()["resolution"].choices == ("early", "progressive", "throughout")
    point = space.sample(random.Random(0))
    progressive = space.decode({**point, "resolution": "progressive",
                                "resolution.progressive.phases.1.resolution": 28}).resolution
    assert len(progressive.phases) == 2 and progressive.phases[1].resolution == 28
    throughout = space.decode({**point, "resolution": "throughout"}).resolution
    assert (throughout.phases[0].start_fraction, throughout.phases[0].end_fraction) == (0.0, 1.0)


def _space(template: object) -> dict:
    return {"name": "x", "template": template}


@pytest.mark.parametrize("data, message", [
    ({"name": "x"}, "template is required"),
    ({**_space({}), "extra": 1}, "unknown key 'extra' \\(allowed: name, description, template\\)"),
    (_space([1, 2]), "template must be a mapping"),
    (_space({"augment": {"kind": "randaugment", "num_ops": {"search": "gauss"}}}), "augment.num_ops: search must be"),
    (_space({"augment": {"kind": "randaugment", "magnitude": {"search": "uniform", "low": 1, "high": 0}}}),
     "augment.magnitude: uniform needs numbers low <= high"),
    (_space({"augment": {"kind": "randaugment", "magnitude": {"search": "uniform", "low": 0, "hihg": 1}}}),
     "unknown key 'hihg' in a uniform domain \\(allowed: search, low, high\\)"),
    (_space({"augment": {"kind": "randaugment", "num_ops": {"search": "int", "low": 1, "high": 2.5}}}),
     "int needs whole numbers"),
    (_space({"labels": {"label_smoothing": {"search": "loguniform", "low": 0, "high": 0.1}}}), "low > 0"),
    (_space({"pre": {"search": "repeat", "count": 0, "item": {"op": "Rotate"}}}), "positive integer 'count'"),
    (_space({"augment": {"kind": "randaugment", "ops": {"search": "subset", "choices": []}}}), "non-empty list"),
    (_space({"resolution": {"search": "oneof", "options": [1, 2]}}), "mapping 'options'"),
    # a misspelt op deep in a long list is found at load time, named with its parameter
    (_space({"pre": [{"op": {"search": "choice", "choices": ["Rotate", "Equalize", *["Solarize"] * 40, "Rotat", "Invert"]}}]}),
     "not a valid policy.*pre.0.op: unknown op 'Rotat' \\(did you mean 'Rotate'\\?\\)"),
    (_space({"augment": {"kind": "randaugment", "magnitude": {"search": "uniform", "low": 0, "high": 2}}}),
     "augment.magnitude: Input should be less than or equal to 1"),
    (_space({"augment": {"kind": "trivialaugment", "magnitude_min": 0.5,
                         "magnitude_max": {"search": "uniform", "low": 0.2, "high": 1.0}}}), "magnitude_min must be"),
])
def test_malformed_spaces_give_one_line_errors(data, message):
    with pytest.raises(AutoaugError, match=message) as error:
        space_from_dict(data, origin="space.yaml")
    assert "\n" not in str(error.value) and str(error.value).startswith("space.yaml")


def test_user_space_files(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"name": "mine", "template": RANDAUGMENT}))
    space = load_space(path)
    assert list(space.parameters()) == ["augment.magnitude"]
    assert 0.1 <= space.decode(space.sample(random.Random(0))).augment.magnitude <= 0.2
    (tmp_path / "nameless.json").write_text(json.dumps({"template": RANDAUGMENT}))  # JSON is YAML too
    assert load_space(tmp_path / "nameless.json").name == "nameless"


@pytest.mark.parametrize("name, message", [("defualt", "did you mean 'default'"), ("missing.yaml", "no such"),
                                           ("bad.yaml", "not valid YAML")])
def test_unknown_names_and_broken_files(tmp_path, monkeypatch, name, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(AutoaugError, match=message) as error:
        load_space(name)
    assert "\n" not in str(error.value)
