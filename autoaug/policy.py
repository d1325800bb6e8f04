"""The policy artifact: a typed, validated, versioned model of ``policy.json``.

A magnitude is always normalised to [0, 1]: 0 is the op's weakest setting and 1 its strongest in the
policy's range set (``standard``: AutoAugment/RandAugment ranges; ``wide``: TrivialAugmentWide ranges).
Ops are stored by name, never by position. Fractions of training (``start_fraction``/``end_fraction``)
make a policy portable across epoch budgets.
"""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from autoaug.errors import AutoaugError, UnknownNameError
from autoaug.op_specs import OPS

SCHEMA_VERSION = 1
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
RangeSet = Literal["standard", "wide"]
RANDAUGMENT_OPS = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color",
                   "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize")


def _check_op(name: str) -> str:
    if name not in OPS:
        raise ValueError(str(UnknownNameError("op", name, OPS)))
    return name


class _Model(BaseModel):
    # NaN and infinities are never a valid number in a policy (and are not JSON)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class OpCall(_Model):
    """One (op, probability, magnitude) triple."""

    op: str
    probability: Fraction = 1.0
    magnitude: Fraction = 0.0

    @field_validator("op")
    @classmethod
    def _known_op(cls, name: str) -> str:
        return _check_op(name)


class NoAugment(_Model):
    kind: Literal["none"] = "none"


class SubPolicies(_Model):
    """AutoAugment form: each image draws one sub-policy and applies its ops in order."""

    kind: Literal["subpolicies"] = "subpolicies"
    ranges: RangeSet = "standard"
    subpolicies: list[Annotated[list[OpCall], Field(min_length=1)]] = Field(min_length=1)


class RandAugment(_Model):
    """RandAugment: ``num_ops`` ops drawn uniformly per image, all at one magnitude."""

    kind: Literal["randaugment"] = "randaugment"
    ranges: RangeSet = "standard"
    num_ops: int = Field(2, ge=1, le=10)
    magnitude: Fraction = 0.3
    ops: list[str] = Field(default_factory=lambda: list(RANDAUGMENT_OPS), min_length=1)

    @field_validator("ops")
    @classmethod
    def _known_ops(cls, names: list[str]) -> list[str]:
        return [_check_op(name) for name in names]


class TrivialAugment(_Model):
    """TrivialAugment: one op per image, magnitude bin drawn uniformly in [magnitude_min, magnitude_max]."""

    kind: Literal["trivialaugment"] = "trivialaugment"
    ranges: RangeSet = "wide"
    ops: list[str] = Field(default_factory=lambda: list(RANDAUGMENT_OPS), min_length=1)
    magnitude_min: Fraction = 0.0
    magnitude_max: Fraction = 1.0
    magnitude_bins: int = Field(31, ge=2, le=1001)

    @field_validator("ops")
    @classmethod
    def _known_ops(cls, names: list[str]) -> list[str]:
        return [_check_op(name) for name in names]

    @model_validator(mode="after")
    def _ordered(self) -> TrivialAugment:
        if self.magnitude_min > self.magnitude_max:
            raise ValueError("magnitude_min must be <= magnitude_max")
        return self


Phaseable = Annotated[Union[NoAugment, SubPolicies, RandAugment, TrivialAugment], Field(discriminator="kind")]


class _Span(_Model):
    start_fraction: Fraction
    end_fraction: Fraction

    @model_validator(mode="after")
    def _ordered(self) -> _Span:
        if self.start_fraction >= self.end_fraction:
            raise ValueError("start_fraction must be < end_fraction")
        return self


class SchedulePhase(_Span):
    augment: Phaseable


class Schedule(_Model):
    """PBA-style schedule: contiguous phases covering training from fraction 0 to 1."""

    kind: Literal["schedule"] = "schedule"
    phases: list[SchedulePhase] = Field(min_length=1)

    @model_validator(mode="after")
    def _contiguous(self) -> Schedule:
        edges = [(p.start_fraction, p.end_fraction) for p in self.phases]
        if edges[0][0] != 0.0 or edges[-1][1] != 1.0 or any(a[1] != b[0] for a, b in zip(edges, edges[1:])):
            raise ValueError("phases must be contiguous and cover start_fraction 0 to end_fraction 1")
        return self

    def at(self, progress: float) -> NoAugment | SubPolicies | RandAugment | TrivialAugment:
        """The phase's augmentation at a fraction of training in [0, 1]."""
        return next((p.augment for p in self.phases if progress < p.end_fraction), self.phases[-1].augment)


Augment = Annotated[Union[NoAugment, SubPolicies, RandAugment, TrivialAugment, Schedule], Field(discriminator="kind")]


class Mixing(_Model):
    """Batch mixing: each image is mixed with a random partner with ``probability``."""

    mixup_alpha: float = Field(0.0, ge=0.0, le=10.0)
    cutmix_alpha: float = Field(0.0, ge=0.0, le=10.0)
    probability: Fraction = 0.0
    cutmix_probability: Fraction = 0.5
    yoco_probability: Fraction = 0.0


class Labels(_Model):
    """Target softening: label smoothing and soft augmentation (confidence falls as occlusion grows)."""

    label_smoothing: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    soft_target_strength: Fraction = 0.0
    soft_target_power: float = Field(2.0, gt=0.0, le=10.0)


class ResolutionPhase(_Span):
    probability: Fraction
    resolution: int = Field(ge=8, le=1024)


class Resolution(_Model):
    """Train on batches downscaled to ``resolution`` with ``probability`` during each phase."""

    phases: list[ResolutionPhase] = Field(min_length=1)


class WidthResolution(_Model):
    """MutualNet sandwich training: largest, smallest and random widths, each at a random resolution."""

    widths: list[Annotated[float, Field(gt=0.0, le=1.0)]] = Field(min_length=1)
    resolutions: list[Annotated[int, Field(ge=8, le=1024)]] = Field(min_length=1)
    num_random_subnets: int = Field(2, ge=0, le=8)


class Provenance(_Model):
    source: str
    dataset: str | None = None
    model: str | None = None
    search_space: str | None = None
    algorithm: str | None = None
    budget: str | None = None
    seed: int | None = None
    validation_score: float | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    created: str | None = None


class Policy(_Model):
    """A complete augmentation policy: ``pre`` ops, the ``augment`` section, ``post`` ops, options."""

    schema_version: Literal[1] = SCHEMA_VERSION
    name: str = Field(min_length=1)
    description: str = ""
    pre: list[OpCall] = Field(default_factory=list)
    augment: Augment = Field(default_factory=NoAugment)
    post: list[OpCall] = Field(default_factory=list)
    mixing: Mixing | None = None
    labels: Labels | None = None
    resolution: Resolution | None = None
    width_resolution: WidthResolution | None = None
    provenance: Provenance | None = None

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    def dumps(self) -> str:
        """Strict JSON: a NaN or an infinity (which validation refuses) is an error, never a bare ``NaN``."""
        try:
            return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"
        except ValueError as error:
            raise AutoaugError(f"policy {self.name!r} cannot be written as JSON: {error}") from None

    def save(self, path: str | Path) -> Path:
        """Write atomically (a reader never sees a half-written file)."""
        return write_atomic(Path(path), self.dumps())


_AUGMENT_KINDS = ("none", "subpolicies", "randaugment", "trivialaugment", "schedule")


FILE_MODE = 0o644  # what the project writes is read by others: a team's shared runs, a web server


def write_atomic(path: Path, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename; the file is ``FILE_MODE``.

    A set mode, not the umask's: under umask 077 (common on shared machines) a colleague could not read
    a search's results, and mkstemp's 0600 would have the same effect.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb" if isinstance(data, bytes) else "x") as handle:
            handle.write(data)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:  # a failed or interrupted save leaves the old file and no temporary one
        tmp.unlink(missing_ok=True)
        raise
    return path


def _format_error(error: ValidationError) -> str:
    first = error.errors()[0]
    loc = list(first["loc"])
    # pydantic puts the union tag into the path ("augment.randaugment.magnitude"); users never wrote it
    loc = [part for i, part in enumerate(loc) if not (i and loc[i - 1] == "augment" and part in _AUGMENT_KINDS)]
    where = ".".join(str(part) for part in loc) or "policy"
    message = first["msg"].removeprefix("Value error, ")
    # the offending value helps for a wrong type, a non-finite number or a wrong literal
    if first["type"].endswith("_type") or first["type"] in _SHOW_INPUT:
        message = f"{message} (got {_short(first['input'])})"
    return f"{where}: {message}"


_SHOW_INPUT = ("literal_error", "finite_number")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def policy_from_dict(data: object, *, origin: str = "policy", strict: bool = False) -> Policy:
    """Validate a parsed JSON object; the schema version is read first.

    ``strict`` (as for files) refuses booleans and strings where numbers belong instead of converting them;
    code that builds policies from search points (NumPy integers) validates laxly. NaN and infinities are
    refused either way.
    """
    if not isinstance(data, dict):
        raise AutoaugError(f"{origin}: expected a JSON object, got {type(data).__name__}")
    version = data.get("schema_version")
    if version is None:
        raise AutoaugError(f"{origin}: schema_version: missing (this autoaug reads version {SCHEMA_VERSION})")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise AutoaugError(f"{origin}: schema_version: expected a positive integer, got {_short(version)}")
    if version > SCHEMA_VERSION:
        raise AutoaugError(f"{origin}: schema_version {version} is newer than this autoaug reads "
                           f"({SCHEMA_VERSION}); upgrade autoaug")
    try:
        return Policy.model_validate(data, strict=strict)
    except ValidationError as error:
        raise AutoaugError(f"{origin}: {_format_error(error)}") from None
    except RecursionError:
        raise AutoaugError(f"{origin}: nested too deeply to be a policy") from None


def load_policy(path: str | Path) -> Policy:
    """Load and validate ``policy.json`` strictly; a shipped policy may be named instead of a path.

    Every unreadable file (missing, binary, not JSON, nested too deeply, not a valid policy) is an
    ``AutoaugError`` with one line that names the file and, where there is one, the field.
    """
    from autoaug.resources import resolve_policy_path
    path = resolve_policy_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise AutoaugError(f"{path}: cannot read: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise AutoaugError(f"{path}: not a JSON text file (byte {error.start} is not UTF-8)") from None
    try:
        data = json.loads(text)  # NaN parses, and validation refuses it naming the field
    except json.JSONDecodeError as error:
        raise AutoaugError(f"{path}: not valid JSON: {error.msg} at line {error.lineno} column {error.colno}") from None
    except RecursionError:
        raise AutoaugError(f"{path}: not a policy: JSON nested too deeply") from None
    return policy_from_dict(data, origin=str(path), strict=True)
