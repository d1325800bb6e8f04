"""The policy artifact: golden files per schema version, a property round trip, shipped policies, errors."""
from __future__ import annotations

import json
import os
import pickle
import stat
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoaug.augment import BatchAugment, PolicyTransform
from autoaug.errors import AutoaugError
from autoaug.mixing import BatchMixer
from autoaug.ops import op_names
from autoaug.policy import Policy, Provenance, load_policy, policy_from_dict
from autoaug.resources import shipped_policies

GOLDEN = Path(__file__).parent / "golden"
PUBLISHED = {"autoaugment-cifar10", "autoaugment-svhn", "autoaugment-imagenet", "randaugment",
             "trivialaugment-wide", "cropflip"}


# Released golden files are NEVER edited: a new schema version gets new files, and the old ones must load
# (and round trip) forever.  policy_v1.json uses every section of version 1; policy_v1_schedule.json a schedule.
@pytest.mark.parametrize("name", ["policy_v1.json", "policy_v1_schedule.json"])
def test_golden_files_load_and_round_trip(name: str) -> None:
    data = json.loads((GOLDEN / name).read_text())
    policy = load_policy(GOLDEN / name)
    assert policy.to_dict() == data
    assert json.loads(policy.dumps()) == data
    assert policy_from_dict(json.loads(policy.dumps())) == policy


def test_golden_v1_uses_every_section() -> None:
    data = json.loads((GOLDEN / "policy_v1.json").read_text())
    assert set(data) == set(Policy.model_fields)
    assert data["augment"]["kind"] == "subpolicies" and data["pre"] and data["post"]
    schedule = json.loads((GOLDEN / "policy_v1_schedule.json").read_text())["augment"]
    assert schedule["kind"] == "schedule" and len(schedule["phases"]) >= 2


# --------------------------------------------------------------------------- property round trip
fractions = st.floats(0.0, 1.0)
positive_fractions = st.floats(0.0, 1.0, exclude_min=True)
op_name = st.sampled_from(op_names())


def _some(required: dict[str, Any], optional: dict[str, st.SearchStrategy]) -> st.SearchStrategy[dict]:
    """Dicts with every ``required`` entry and any subset of the ``optional`` ones (the rest default)."""
    return st.fixed_dictionaries(required, optional=optional)


op_calls = _some({"op": op_name}, {"probability": fractions, "magnitude": fractions})
op_lists = st.lists(op_name, min_size=1, max_size=6)
ranges = st.sampled_from(["standard", "wide"])


@st.composite
def trivialaugment(draw: st.DrawFn) -> dict:
    low, high = sorted([draw(fractions), draw(fractions)])
    section = draw(_some({"kind": st.just("trivialaugment")},
                         {"ranges": ranges, "ops": op_lists, "magnitude_bins": st.integers(2, 1001)}))
    return {**section, "magnitude_min": low, "magnitude_max": high}


phaseable = st.one_of(
    st.just({"kind": "none"}),
    _some({"kind": st.just("subpolicies"), "subpolicies": st.lists(st.lists(op_calls, min_size=1, max_size=3),
                                                                     min_size=1, max_size=4)},
          {"ranges": ranges}),
    _some({"kind": st.just("randaugment")},
          {"ranges": ranges, "num_ops": st.integers(1, 10), "magnitude": fractions, "ops": op_lists}),
    trivialaugment(),
)


@st.composite
def schedule(draw: st.DrawFn) -> dict:
    cuts = sorted(set(draw(st.lists(st.floats(0.01, 0.99), max_size=3))))
    edges = [0.0, *cuts, 1.0]
    return {"kind": "schedule", "phases": [{"start_fraction": a, "end_fraction": b, "augment": draw(phaseable)}
                                           for a, b in zip(edges, edges[1:])]}


@st.composite
def spans(draw: st.DrawFn) -> tuple[float, float]:
    a, b = draw(fractions), draw(fractions)
    return (min(a, b), max(a, b)) if a != b else (0.0, 1.0)


@st.composite
def resolution(draw: st.DrawFn) -> dict:
    phases = []
    for _ in range(draw(st.integers(1, 3))):
        start, end = draw(spans())
        phases.append({"start_fraction": start, "end_fraction": end, "probability": draw(fractions),
                       "resolution": draw(st.integers(8, 1024))})
    return {"phases": phases}


alphas = st.floats(0.0, 10.0)
sections = {
    "description": st.text(max_size=30),
    "pre": st.lists(op_calls, max_size=3),
    "augment": st.one_of(phaseable, schedule()),
    "post": st.lists(op_calls, max_size=2),
    "mixing": _some({}, {"mixup_alpha": alphas, "cutmix_alpha": alphas, "probability": fractions,
                         "cutmix_probability": fractions, "yoco_probability": fractions}),
    "labels": _some({}, {"label_smoothing": st.floats(0.0, 1.0, exclude_max=True), "soft_target_strength": fractions,
                         "soft_target_power": st.floats(0.0, 10.0, exclude_min=True)}),
    "resolution": resolution(),
    "width_resolution": _some({"widths": st.lists(positive_fractions, min_size=1, max_size=4),
                               "resolutions": st.lists(st.integers(8, 1024), min_size=1, max_size=4)},
                              {"num_random_subnets": st.integers(0, 8)}),
    "provenance": _some({"source": st.text(max_size=20)},
                        {"dataset": st.text(max_size=10), "model": st.text(max_size=10), "seed": st.integers(),
                         "validation_score": st.floats(allow_nan=False, allow_infinity=False),
                         "versions": st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
                         "created": st.text(max_size=25)}),
}
policies = _some({"schema_version": st.just(1), "name": st.text(min_size=1, max_size=20)}, sections)


def _contains(full: Any, given_part: Any) -> bool:
    """Every value the input gave survives unchanged (defaults may be added around it)."""
    if isinstance(given_part, dict):
        return isinstance(full, dict) and all(k in full and _contains(full[k], v) for k, v in given_part.items())
    if isinstance(given_part, list):
        return isinstance(full, list) and len(full) == len(given_part) and all(map(_contains, full, given_part))
    return full == given_part and type(full) in (type(given_part), float)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies)
def test_any_valid_policy_round_trips(data: dict) -> None:
    policy = policy_from_dict(data)
    again = policy_from_dict(json.loads(policy.dumps()))
    assert again == policy and again.to_dict() == policy.to_dict()
    assert _contains(policy.to_dict(), data)
    assert pickle.loads(pickle.dumps(policy)) == policy


# --------------------------------------------------------------------------- shipped policies
def test_shipped_names_include_the_published_policies() -> None:
    assert PUBLISHED <= set(shipped_policies())


@pytest.mark.parametrize("name", sorted(shipped_policies()))
def test_shipped_policy_loads_and_round_trips(name: str) -> None:
    policy = load_policy(name)
    assert policy.name == name and policy.provenance is not None and policy.provenance.source
    assert load_policy(shipped_policies()[name]) == policy
    assert policy_from_dict(json.loads(policy.dumps())) == policy


# --------------------------------------------------------------------------- errors
BASE = {"schema_version": 1, "name": "p"}


@pytest.mark.parametrize("data, message", [
    ({**BASE, "augment": {"kind": "subpolicies", "subpolicies": [[{"op": "Rotat"}]]}},
     "augment.subpolicies.0.0.op: unknown op 'Rotat' (did you mean 'Rotate'?); known: AutoContrast, "),
    ({**BASE, "augment": {"kind": "randaugment", "ops": ["Rotate", "Sharpnes"]}},
     "augment.ops: unknown op 'Sharpnes' (did you mean 'Sharpness'?)"),
    ({**BASE, "pre": [{"op": "Rotate", "probability": 1.5}]}, "pre.0.probability: Input should be less than or equal to 1"),
    ({**BASE, "pre": [{"op": "Rotate", "magnitude": -0.1}]}, "pre.0.magnitude: Input should be greater than or equal"),
    ({"schema_version": 1}, "name: Field required"),
    ({**BASE, "name": ""}, "name: String should have at least 1 character"),
    ({"name": "p"}, "schema_version: missing (this autoaug reads version 1)"),
    ({**BASE, "schema_version": 2}, "schema_version 2 is newer than this autoaug reads (1); upgrade autoaug"),
    ({**BASE, "schema_version": "1"}, "schema_version: expected a positive integer, got '1'"),
    ({**BASE, "schema_version": True}, "schema_version: expected a positive integer, got True"),
    ({**BASE, "colour": 1}, "colour: Extra inputs are not permitted"),
    ([1, 2], "expected a JSON object, got list"),
    ({**BASE, "augment": {"kind": "schedule", "phases": [
        {"start_fraction": 0, "end_fraction": 0.4, "augment": {"kind": "none"}},
        {"start_fraction": 0.5, "end_fraction": 1, "augment": {"kind": "none"}}]}},
     "augment: phases must be contiguous and cover start_fraction 0 to end_fraction 1"),
    ({**BASE, "resolution": {"phases": [{"start_fraction": 0.5, "end_fraction": 0.5, "probability": 1,
                                          "resolution": 16}]}}, "resolution.phases.0: start_fraction must be <"),
    ({**BASE, "augment": {"kind": "magic"}}, "augment: Input tag 'magic' found using 'kind' does not match"),
    ({**BASE, "augment": {"kind": "trivialaugment", "magnitude_min": 0.6, "magnitude_max": 0.5}},
     "augment: magnitude_min must be <= magnitude_max"),
    ({**BASE, "augment": {"kind": "schedule", "phases": [
        {"start_fraction": 0, "end_fraction": 1, "augment": {"kind": "randaugment", "num_ops": 0}}]}},
     "augment.phases.0.augment.num_ops: Input should be greater than or equal to 1"),
    ({**BASE, "mixing": {"mixup_alpha": -1}}, "mixing.mixup_alpha: Input should be greater than or equal to 0"),
], ids=lambda value: value if isinstance(value, str) and len(value) < 30 else None)
def test_malformed_policies_give_one_line_errors(data: object, message: str) -> None:
    with pytest.raises(AutoaugError) as error:
        policy_from_dict(data, origin="p.json")
    text = str(error.value)
    assert text.startswith(f"p.json: {message}"), text
    assert "\n" not in text


def test_messages_show_the_value_only_where_it_helps() -> None:
    with pytest.raises(AutoaugError) as error:
        policy_from_dict({"schema_version": 1, "description": "d"}, origin="p.json")
    assert str(error.value) == "p.json: name: Field required"  # no "(got {...})": the whole policy is no help
    with pytest.raises(AutoaugError) as error:
        policy_from_dict({**BASE, "augment": {"kind": "trivialaugment", "magnitude_bins": 1}}, origin="p.json")
    assert str(error.value) == "p.json: augment.magnitude_bins: Input should be greater than or equal to 2"


def test_search_points_validate_laxly_and_files_strictly() -> None:
    """Search algorithms hand NumPy numbers to the decoder: accepted there, and still refused in files."""
    import numpy as np
    data = {**BASE, "augment": {"kind": "randaugment", "num_ops": np.int64(3), "magnitude": np.float32(0.5)}}
    section = policy_from_dict(data).augment
    assert (section.num_ops, section.magnitude) == (3, 0.5) and type(section.num_ops) is int
    with pytest.raises(AutoaugError, match="augment.num_ops: Input should be a valid integer"):
        policy_from_dict(data, strict=True)


def test_a_folder_is_not_a_policy(tmp_path: Path) -> None:
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(AutoaugError) as error:
        load_policy(tmp_path / "dir.json")
    assert str(error.value) == f"{tmp_path / 'dir.json'}: cannot read: Is a directory"


def test_bad_json_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text('{"schema_version": 1,\n "name": }')
    with pytest.raises(AutoaugError) as error:
        load_policy(tmp_path / "p.json")
    assert str(error.value) == f"{tmp_path / 'p.json'}: not valid JSON: Expecting value at line 2 column 10"
    (tmp_path / "q.json").write_text(json.dumps({**BASE, "pre": [{"op": "Rotate", "probability": 2}]}))
    with pytest.raises(AutoaugError, match=r"q\.json: pre\.0\.probability"):
        load_policy(tmp_path / "q.json")
    with pytest.raises(AutoaugError, match="no such file, and not a shipped policy .*cropflip") as error:
        load_policy(tmp_path / "missing.json")
    assert "\n" not in str(error.value)


# --------------------------------------------------------------------------- pickling and saving
def test_pickled_callables_behave_like_the_originals() -> None:
    """Ray pickles what it ships to workers: each must arrive able to do the same work."""
    policy = load_policy(GOLDEN / "policy_v1.json")
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(16) % 10

    augment = BatchAugment(policy, seed=3)
    copy = pickle.loads(pickle.dumps(augment))
    assert torch.equal(copy(images), augment(images))

    mixer = BatchMixer(policy, num_classes=10, seed=4)
    mixer(images, labels)  # a used mixer pickles too; its copy restarts from the seed
    copy_images, copy_targets = pickle.loads(pickle.dumps(mixer))(images, labels)
    fresh_images, fresh_targets = BatchMixer(policy, num_classes=10, seed=4)(images, labels)
    assert torch.equal(copy_images, fresh_images) and torch.equal(copy_targets, fresh_targets)

    transform = PolicyTransform(policy, seed=5)
    copy = pickle.loads(pickle.dumps(transform))
    assert torch.equal(copy(images[0]), transform(images[0]))
    assert copy.policy == policy


def test_save_round_trips_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    policy = load_policy(GOLDEN / "policy_v1.json")
    path = policy.save(tmp_path / "out" / "p.json")
    assert path == tmp_path / "out" / "p.json" and load_policy(path) == policy
    assert load_policy(policy.save(tmp_path / "a" / "b" / "p.json")) == policy  # missing parents are made
    load_policy("cropflip").save(path)  # overwriting an existing file
    assert load_policy(path).name == "cropflip"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["p.json"]


def test_save_is_readable_by_others_under_a_restrictive_umask(tmp_path: Path) -> None:
    # it was mkstemp's 0600, then the umask's: under umask 077 colleagues could not read a policy
    old = os.umask(0o077)
    try:
        path = load_policy("cropflip").save(tmp_path / "p.json")
        plain = tmp_path / "plain.json"
        plain.write_text("{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(plain.stat().st_mode) == 0o600  # the umask is in force
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_save_is_atomic_when_interrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A save that fails before the rename leaves the old file whole, and no temporary file behind."""
    path = load_policy("cropflip").save(tmp_path / "p.json")
    before = path.read_text()

    def fail(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        load_policy(GOLDEN / "policy_v1.json").save(path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["p.json"]


# --------------------------------------------------------------------------- strict schema, unreadable files
def _numeric_leaves(data: Any, path: tuple = ()) -> list[tuple]:
    """Paths of every number in a parsed policy (booleans are not numbers)."""
    if isinstance(data, dict):
        return [leaf for key, value in data.items() for leaf in _numeric_leaves(value, (*path, key))]
    if isinstance(data, list):
        return [leaf for i, value in enumerate(data) for leaf in _numeric_leaves(value, (*path, i))]
    return [path] if isinstance(data, (int, float)) and not isinstance(data, bool) else []


def _replaced(data: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    copy = list(data) if isinstance(data, list) else dict(data)
    copy[path[0]] = _replaced(data[path[0]], path[1:], value)
    return copy


def _cli_validate(path: Path, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    from autoaug_cli import app as cli_app
    with pytest.raises(SystemExit) as done:
        cli_app.main(["validate", str(path)])
    return done.value.code, capsys.readouterr().err


GOLDEN_DATA = {name: json.loads((GOLDEN / name).read_text()) for name in ("policy_v1.json", "policy_v1_schedule.json")}
LEAVES = [(name, leaf) for name, data in GOLDEN_DATA.items() for leaf in _numeric_leaves(data)
          if leaf != ("schema_version",)]  # read before the schema, with its own message (tested above)
NOT_NUMBERS = [True, False, "0.5", "1", float("nan"), float("inf"), float("-inf"), [0.5], {"value": 0.5}]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(LEAVES), st.sampled_from(NOT_NUMBERS))
def test_fuzzed_bad_numbers_exit_2_naming_the_field(tmp_path_factory: pytest.TempPathFactory,
                                                    capsys: pytest.CaptureFixture, leaf: tuple, bad: Any) -> None:
    """Any number of a golden policy turned into a boolean, a string, NaN, an infinity or a container:
    `autoaug validate` exits 2 with one line that names the file and the field (pydantic coerced many)."""
    name, path = leaf
    target = tmp_path_factory.mktemp("fuzz") / "bad.json"
    target.write_text(json.dumps(_replaced(GOLDEN_DATA[name], path, bad)))  # NaN/Infinity as Python writes them
    code, err = _cli_validate(target, capsys)
    field = ".".join(str(part) for part in path)
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith(f"error: {target}: {field}: "), (field, err)


@pytest.mark.parametrize("field, value, message", [
    (("augment", "subpolicies", 0, 0, "magnitude"), True, "Input should be a valid number (got True)"),
    (("augment", "subpolicies", 0, 0, "probability"), "0.5", "Input should be a valid number (got '0.5')"),
    (("mixing", "mixup_alpha"), float("nan"), "Input should be a finite number (got nan)"),
    (("labels", "soft_target_power"), float("inf"), "Input should be a finite number (got inf)"),
    (("provenance", "validation_score"), float("-inf"), "Input should be a finite number (got -inf)"),
    (("resolution", "phases", 0, "resolution"), 24.0, "Input should be a valid integer (got 24.0)"),
    (("width_resolution", "num_random_subnets"), False, "Input should be a valid integer (got False)"),
    (("augment", "ranges"), "huge", "Input should be 'standard' or 'wide' (got 'huge')"),
    (("mixing",), 0.5, "Input should be a valid dictionary or instance of Mixing (got 0.5)"),
    (("provenance", "versions"), [1] * 40, "Input should be a valid dictionary (got [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, "
                                           "1, 1, 1, 1, 1, 1, 1, 1, 1,...)"),
])
def test_strict_numbers_in_files(tmp_path: Path, field: tuple, value: Any, message: str) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(_replaced(GOLDEN_DATA["policy_v1.json"], field, value)))
    with pytest.raises(AutoaugError) as error:
        load_policy(path)
    assert str(error.value) == f"{path}: {'.'.join(map(str, field))}: {message}"


def test_nan_never_reaches_a_file() -> None:
    """A NaN that slips past validation (model_copy does not validate) is refused, not written as bare NaN."""
    policy = load_policy("cropflip")
    with pytest.raises(AutoaugError, match="cannot be written as JSON"):
        score = Provenance.model_construct(source="s", validation_score=float("nan"))
        policy.model_copy(update={"provenance": score}).dumps()
    with pytest.raises(AutoaugError, match="mixing.probability: Input should be a finite number"):
        policy_from_dict({**BASE, "mixing": {"probability": float("nan")}})


@pytest.mark.parametrize("content, message", [
    (bytes(range(256)), "not a JSON text file (byte 128 is not UTF-8)"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "not a JSON text file (byte 0 is not UTF-8)"),
    (b"[" * 100_000 + b"]" * 100_000, "not a policy: JSON nested too deeply"),
    (b'{"schema_version": 1, "name": "x", "provenance": {"source": "s", "versions": '
     + b"[" * 5000 + b"]" * 5000 + b"}}", "not a policy: JSON nested too deeply"),
    (b'{"schema_version": 1, "name": NaN}', "name: Input should be a valid string (got nan)"),
    (b"", "not valid JSON: Expecting value at line 1 column 1"),
])
def test_unreadable_policy_files_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                      content: bytes, message: str) -> None:
    from autoaug_cli import app as cli_app
    path = tmp_path / "p.json"
    path.write_bytes(content)
    for argv in (["validate", str(path)], ["show", str(path)],
                 ["apply", str(path), "-i", str(tmp_path), "-o", str(tmp_path / "out")]):
        with pytest.raises(SystemExit) as done:
            cli_app.main(argv)
        err = capsys.readouterr().err
        assert done.value.code == 2 and err == f"error: {path}: {message}\n", (argv, err)
