"""The tuning spec as one typed model, in the REST API's field names. Pure: no I/O.

A tuning job's user-settable fields are declared here once. The same pydantic classes validate a
manifest's `spec` (manifest.Spec extends them), make the canonical spec and its hash, the create
request body, read a job's spec off the wire, and are what the state stores as `spec`. What the
rest of the code needs to know about a field is a marker next to it (`Annotated` metadata), read
by the generic functions at the bottom of this module — never a hand-kept list elsewhere:

- `Cosmetic(...)`: the field never re-tunes (outside the hash; a change is a note). Its `unset`
  says what leaving it out means: `"empty"` (the empty string), `"name"` (the manifest's name), or
  `"service"` (the service's choice, so not compared).
- `INT64`: a proto3 int64, sent as a JSON string and read from a string or a number.
- `SERVICE_CHOOSES`: an object whose members the manifest leaves out are the service's choice:
  whatever the service picked for them is no difference.
- `MANIFEST_REFERENCE`: not an API field — the name of another manifest, resolved by the planner
  (reconciler.plan.continuation) into the API field beside it before a request is made.

A `bool` member is a proto3 `bool` (no wrapper): `false` is its default, the service can never tell
it from an unset one and never prints it. The hash keeps what the manifest wrote (hashes recorded
before this rule must not move); `false_variants` gives the spellings that mean the same, and the
planner matches a job by any of them.

Adding a field to the API's spec is one edit here (plus docs/manifest.md); see
docs/architecture.md, "Spec model and kinds".
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.fields import FieldInfo

SPEC_HASH_LENGTH = 20

# Checked with fullmatch (Python's `$` also matches before a final newline) and, where given as a
# pydantic `pattern=`, by pydantic-core's Rust engine, whose `$` is the end of the text.
GCS_URI = re.compile(r"^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]/[^\r\n]{1,1024}$")
KMS_KEY = re.compile(r"^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$")
SERVICE_ACCOUNT = re.compile(r"^[a-zA-Z0-9._%+-]{1,100}@[a-zA-Z0-9.-]{1,200}$")
AdapterSize = Literal[
    "ADAPTER_SIZE_ONE",
    "ADAPTER_SIZE_TWO",
    "ADAPTER_SIZE_FOUR",
    "ADAPTER_SIZE_EIGHT",
    "ADAPTER_SIZE_SIXTEEN",
    "ADAPTER_SIZE_THIRTY_TWO",
]


# -- markers --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cosmetic:
    """A field that cannot alter the weights: outside the hash, never re-tunes on its own."""

    unset: Literal["empty", "name", "service"] = "empty"


@dataclass(frozen=True)
class Int64:
    """A proto3 int64: a JSON string on the wire (numbers are read too)."""


@dataclass(frozen=True)
class ServiceChooses:
    """An object whose members the manifest leaves out are left to the service."""


@dataclass(frozen=True)
class ManifestReference:
    """Not an API field: another manifest's name, resolved by the planner (never sent)."""


INT64 = Int64()
SERVICE_CHOOSES = ServiceChooses()
MANIFEST_REFERENCE = ManifestReference()


# -- the model ------------------------------------------------------------------------------------
class SpecModel(BaseModel):
    """Base: REST names as aliases; strict, closed and frozen (it validates manifests)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class HyperParameters(SpecModel):
    epoch_count: Annotated[Annotated[int, Field(ge=1, le=1000)] | None, INT64] = Field(None, alias="epochCount")
    learning_rate_multiplier: Annotated[float, Field(gt=0, le=1000)] | None = Field(
        None, alias="learningRateMultiplier"
    )
    adapter_size: AdapterSize | None = Field(None, alias="adapterSize")


def _gcs(value: str | None) -> str | None:
    if value is not None and not GCS_URI.fullmatch(value):
        raise ValueError("must be a Cloud Storage URI gs://BUCKET/OBJECT")
    return value


def _evaluation(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """EvaluationConfig is passed through as it is written (compared structurally); only the two
    members the discovery document marks Required are checked here."""
    if value is None:
        return value
    if not isinstance(value.get("metrics"), list) or not value["metrics"]:
        raise ValueError("evaluationConfig.metrics: required, a list of metrics")
    out = value.get("outputConfig")
    dest = out.get("gcsDestination") if isinstance(out, dict) else None
    prefix = dest.get("outputUriPrefix") if isinstance(dest, dict) else None
    if not isinstance(prefix, str) or not prefix.startswith("gs://"):
        raise ValueError("evaluationConfig.outputConfig.gcsDestination.outputUriPrefix: required, a gs:// URI")
    return value


class SupervisedTuning(SpecModel):
    training_dataset_uri: str = Field(alias="trainingDatasetUri")
    validation_dataset_uri: str | None = Field(None, alias="validationDatasetUri")
    hyper_parameters: Annotated[HyperParameters | None, SERVICE_CHOOSES] = Field(None, alias="hyperParameters")
    export_last_checkpoint_only: bool | None = Field(None, alias="exportLastCheckpointOnly")
    evaluation_config: dict[str, Any] | None = Field(None, alias="evaluationConfig")

    _uris = field_validator("training_dataset_uri", "validation_dataset_uri")(_gcs)
    _eval = field_validator("evaluation_config")(_evaluation)


class PreferenceHyperParameters(SpecModel):
    epoch_count: Annotated[Annotated[int, Field(ge=1, le=1000)] | None, INT64] = Field(None, alias="epochCount")
    learning_rate_multiplier: Annotated[float, Field(gt=0, le=1000)] | None = Field(
        None, alias="learningRateMultiplier"
    )
    adapter_size: AdapterSize | None = Field(None, alias="adapterSize")
    # Weight of the KL-divergence regularisation; the API documents no range or default.
    beta: Annotated[float, Field(ge=0, le=1000)] | None = None


class PreferenceOptimization(SpecModel):
    training_dataset_uri: str = Field(alias="trainingDatasetUri")
    validation_dataset_uri: str | None = Field(None, alias="validationDatasetUri")
    hyper_parameters: Annotated[PreferenceHyperParameters | None, SERVICE_CHOOSES] = Field(
        None, alias="hyperParameters"
    )
    export_last_checkpoint_only: bool | None = Field(None, alias="exportLastCheckpointOnly")

    _uris = field_validator("training_dataset_uri", "validation_dataset_uri")(_gcs)


class EncryptionSpec(SpecModel):
    kms_key_name: str = Field(alias="kmsKeyName", pattern=KMS_KEY.pattern)

    @field_validator("kms_key_name")
    @classmethod
    def _no_space(cls, value: str) -> str:
        # `[^/]+` also matches a line break ("...cryptoKeys/k\n" would reach the API)
        if any(c.isspace() for c in value):
            raise ValueError("a key name has no spaces or line breaks")
        return value


TUNED_MODEL = re.compile(r"^projects/[^/\s]+/locations/[^/\s]+/models/[A-Za-z0-9_-]+(@[A-Za-z0-9_-]+)?$")
MANIFEST_NAME = r"^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$"


class PreTunedModel(SpecModel):
    """The tuned model a continuous tuning job starts from: a Model resource name, or (`model`,
    the reconciler's own) another manifest whose tuned model the planner fills in."""

    tuned_model_name: str | None = Field(None, alias="tunedModelName", pattern=TUNED_MODEL.pattern)
    checkpoint_id: str | None = Field(None, alias="checkpointId", min_length=1, max_length=128,
                                      pattern=r"^[A-Za-z0-9_.-]+$")
    model: Annotated[str | None, MANIFEST_REFERENCE] = Field(None, pattern=MANIFEST_NAME)

    @model_validator(mode="after")
    def _one_source(self) -> PreTunedModel:
        if (self.tuned_model_name is None) == (self.model is None):
            raise ValueError("set exactly one of tunedModelName (a tuned Model's resource name) or model "
                             "(the name of another manifest)")
        return self


class TuningJobSpec(SpecModel):
    """The fields of a TuningJob every tuning method shares (a kind adds its method's spec).

    The source is a oneof in the API: `baseModel`, or `preTunedModel` (continuous tuning)."""

    base_model: str | None = Field(None, alias="baseModel", min_length=1, max_length=200,
                                   pattern=r"^[A-Za-z0-9/._@-]+$")
    pre_tuned_model: PreTunedModel | None = Field(None, alias="preTunedModel")
    tuned_model_display_name: Annotated[str | None, Cosmetic("name")] = Field(
        None, alias="tunedModelDisplayName", min_length=1, max_length=128
    )
    description: Annotated[str | None, Cosmetic("empty")] = Field(None, max_length=4096)
    service_account: Annotated[str | None, Cosmetic("service")] = Field(
        None, alias="serviceAccount", pattern=SERVICE_ACCOUNT.pattern
    )
    encryption_spec: EncryptionSpec | None = Field(None, alias="encryptionSpec")


    @model_validator(mode="after")
    def _one_source_model(self) -> TuningJobSpec:
        if (self.base_model is None) == (self.pre_tuned_model is None):
            raise ValueError("set exactly one of baseModel or preTunedModel (continuous tuning)")
        return self


class SupervisedSpec(TuningJobSpec):
    """A supervised fine-tuning job (`supervisedTuningSpec`)."""

    supervised_tuning_spec: SupervisedTuning = Field(alias="supervisedTuningSpec")


class PreferenceSpec(TuningJobSpec):
    """A preference optimization job (`preferenceOptimizationSpec`)."""

    preference_optimization_spec: PreferenceOptimization = Field(alias="preferenceOptimizationSpec")


# -- hashing --------------------------------------------------------------------------------------
def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def spec_hash(spec: dict[str, Any]) -> str:
    """Short, stable hash of a tuning spec (fits a label value)."""
    return hashlib.sha256(canonical_json(spec).encode()).hexdigest()[:SPEC_HASH_LENGTH]


# -- reading the model's declarations -------------------------------------------------------------
def wire_name(model: type[BaseModel], attr: str) -> str:
    info = model.model_fields[attr]
    return info.alias or attr


def marker(info: FieldInfo, kind: type[Any]) -> Any:
    """The field's marker of type `kind`, or None."""
    return next((m for m in info.metadata if isinstance(m, kind)), None)


def nested_model(info: FieldInfo) -> type[SpecModel] | None:
    """The spec model a field holds (through `X | None` and `Annotated`), if it holds one."""
    todo: list[Any] = [info.annotation]
    while todo:
        tp = todo.pop()
        if isinstance(tp, type) and issubclass(tp, SpecModel):
            return tp
        origin = typing.get_origin(tp)
        if origin in (Union, types.UnionType):
            todo.extend(typing.get_args(tp))
        elif origin is Annotated:
            todo.append(typing.get_args(tp)[0])
    return None


def fields_of(model: type[BaseModel]) -> Iterator[tuple[str, FieldInfo, type[SpecModel] | None]]:
    """(wire name, field info, nested spec model or None) of each field, in declaration order."""
    yield from _fields(model)


@functools.cache
def _fields(model: type[BaseModel]) -> tuple[tuple[str, FieldInfo, type[SpecModel] | None], ...]:
    """`fields_of`, worked out once per model (models never change after their class is made)."""
    return tuple((info.alias or attr, info, nested_model(info)) for attr, info in model.model_fields.items())


def cosmetic_fields(model: type[BaseModel]) -> dict[str, Cosmetic]:
    """The top-level cosmetic fields of a spec model, by wire name."""
    return dict(_cosmetic_fields(model))


@functools.cache
def _cosmetic_fields(model: type[BaseModel]) -> dict[str, Cosmetic]:
    out: dict[str, Cosmetic] = {}
    for name, info, _ in fields_of(model):
        mark = marker(info, Cosmetic)
        if mark is not None:
            out[name] = mark
    return out


@functools.cache
def int64_names(model: type[BaseModel]) -> frozenset[str]:
    """Wire names of every int64 field, at any depth."""
    out: set[str] = set()
    for name, info, nested in fields_of(model):
        if marker(info, Int64) is not None:
            out.add(name)
        if nested is not None:
            out |= int64_names(nested)
    return frozenset(out)


def leaf_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Wire paths of every scalar field, at any depth (what a round-trip test must cover)."""
    out: list[tuple[str, ...]] = []
    for name, _, nested in fields_of(model):
        out += leaf_paths(nested, prefix + (name,)) if nested is not None else [prefix + (name,)]
    return out


# -- the spec as data -----------------------------------------------------------------------------
def as_data(spec: SpecModel) -> dict[str, Any]:
    """Every field the spec sets, in REST names and manifest types (int64 as int); unset
    members and empty objects left out (an empty message is an unset one)."""
    out: dict[str, Any] = {}
    values = spec.__dict__  # a pydantic model keeps every field's value there
    for attr, name in _wire_names(type(spec)):
        value = values.get(attr)
        if value is None:
            continue
        if isinstance(value, SpecModel):
            value = as_data(value)
        if value == {}:
            continue
        out[name] = value
    return out


@functools.cache
def _wire_names(model: type[BaseModel]) -> tuple[tuple[str, str], ...]:
    """(attribute, wire name) of each field of `model`."""
    return tuple((attr, info.alias or attr) for attr, info in model.model_fields.items())


def narrowed(model: type[SpecModel], spec: SpecModel) -> SpecModel:
    """`spec` (validated, of `model` or a model extending it) as `model`: its fields only, empty
    objects unset — what `construct(model, as_data(spec))` gives. Validated again rather than
    constructed: the values passed `model`'s own rules already, and pydantic-core builds the
    nested models ~5 times faster than `model_construct` does (6 against 28 µs a manifest)."""
    names = {name for _, name in _wire_names(model)}
    return model.model_validate({k: v for k, v in as_data(spec).items() if k in names})


def construct(model: type[SpecModel], data: dict[str, Any]) -> SpecModel:
    """A spec from data already checked (a saved plan, a test), without validating it again;
    members the model does not know are left out."""
    values: dict[str, Any] = {}
    for (attr, _), (name, _, nested) in zip(_wire_names(model), _fields(model), strict=True):
        value = data.get(name)
        if value is None:
            continue
        values[attr] = construct(nested, value) if nested is not None and isinstance(value, dict) else value
    return model.model_construct(**values)


def without_cosmetic(spec: SpecModel) -> dict[str, Any]:
    """What the hash covers (with the parent): every field but the cosmetic ones."""
    cosmetic = _cosmetic_fields(type(spec))
    return {k: v for k, v in as_data(spec).items() if k not in cosmetic}


def int64_to_str(data: Any, names: frozenset[str]) -> Any:
    """proto3 JSON: the int64 fields among `names` as strings, at any depth."""
    if isinstance(data, dict):
        return {k: (str(v) if k in names and isinstance(v, int) and not isinstance(v, bool)
                    else int64_to_str(v, names)) for k, v in data.items()}
    if isinstance(data, list):
        return [int64_to_str(v, names) for v in data]
    return data


def _int64_value(value: Any) -> Any:
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return value


def read_observed(model: type[BaseModel], raw: dict[str, Any]) -> dict[str, Any]:
    """The fields of `model` found in a job as the API shows it, in manifest types (int64 as
    int, doubles as floats). Not validated: a job made elsewhere may break a manifest's rules,
    and is still read. Members the model does not know are left out; so are empty objects."""
    out: dict[str, Any] = {}
    for name, nested, how in _reader(model):
        value = raw.get(name)
        if value is None:
            continue
        if nested is not None:
            value = read_observed(nested, value) if isinstance(value, dict) else None
            if not value:
                continue
        elif how == "int64":
            value = _int64_value(value)
        elif how == "float" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        out[name] = value
    return out


@functools.cache
def _reader(model: type[BaseModel]) -> tuple[tuple[str, type[SpecModel] | None, str], ...]:
    """What `read_observed` does with each field of `model` (wire name, nested model, "int64",
    "float" or ""), worked out once per model: a listing reads thousands of jobs."""
    def how(info: FieldInfo) -> str:
        if marker(info, Int64) is not None:
            return "int64"
        return "float" if info.annotation is not None and _is_float(info) else ""

    return tuple((name, nested, how(info)) for name, info, nested in _fields(model))


def _is_float(info: FieldInfo) -> bool:
    todo: list[Any] = [info.annotation]
    while todo:
        tp = todo.pop()
        if tp is float:
            return True
        todo.extend(typing.get_args(tp)[:1] if typing.get_origin(tp) is Annotated else typing.get_args(tp))
    return False


def restrict_to_wanted(model: type[BaseModel], observed: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """`observed` without the members of SERVICE_CHOOSES objects that `wanted` leaves out
    (whatever the service chose for them is no difference), at any depth."""
    out: dict[str, Any] = {}
    for name, info, nested in fields_of(model):
        if name not in observed:
            continue
        value = observed[name]
        if nested is not None and isinstance(value, dict):
            want = wanted.get(name) or {}
            if marker(info, ServiceChooses) is not None:
                value = {k: v for k, v in value.items() if k in want}
            value = restrict_to_wanted(nested, value, want)
            if not value:
                continue
        out[name] = value
    return out


def _is_bool(info: FieldInfo) -> bool:
    todo: list[Any] = [info.annotation]
    while todo:
        tp = todo.pop()
        if tp is bool:
            return True
        todo.extend(typing.get_args(tp)[:1] if typing.get_origin(tp) is Annotated else typing.get_args(tp))
    return False


def false_variants(model: type[BaseModel], data: dict[str, Any]) -> list[dict[str, Any]]:
    """Every spelling of `data` that means the same to the service: each proto3 `bool` member
    that is false or unset, either way (objects left empty are dropped). `data` comes first."""
    variants: list[dict[str, Any]] = [dict(data)]
    for name, info, nested in fields_of(model):
        value = data.get(name)
        if nested is not None and isinstance(value, dict):
            inner = false_variants(nested, value)
            variants = [{**v, name: i} if i else {k: x for k, x in v.items() if k != name}
                        for v in variants for i in inner]
        elif _is_bool(info) and value in (None, False):
            variants = [w for v in variants for w in ({k: x for k, x in v.items() if k != name}, {**v, name: False})]
    unique: dict[str, dict[str, Any]] = {}
    for v in variants:
        unique.setdefault(canonical_json(v), v)
    first = canonical_json(data)
    return [unique.pop(first, data), *unique.values()]


def with_false_defaults(model: type[BaseModel], observed: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """`observed` with each `bool` member that `wanted` sets to false and `observed` lacks set to
    false (proto3 JSON never prints a false), at any depth — inside opaque mappings too."""
    out = dict(observed)
    for name, info, nested in fields_of(model):
        want, have = wanted.get(name), out.get(name)
        if nested is not None and isinstance(want, dict) and isinstance(have, dict):
            out[name] = with_false_defaults(nested, have, want)
        elif want is False and _is_bool(info) and have is None:
            out[name] = False
        elif isinstance(want, (dict, list)) and have is not None:
            out[name] = _false_filled(have, want)
    return out


def _false_filled(have: Any, want: Any) -> Any:
    """An opaque value as the service shows it, with the false members `want` has and it lacks."""
    if isinstance(have, dict) and isinstance(want, dict):
        filled = {k: _false_filled(v, want[k]) if k in want else v for k, v in have.items()}
        return {**filled, **{k: False for k, v in want.items() if v is False and k not in have}}
    if isinstance(have, list) and isinstance(want, list) and len(have) == len(want):
        return [_false_filled(h, w) for h, w in zip(have, want, strict=True)]
    return have


def without_references(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """`data` without the MANIFEST_REFERENCE members (never sent to the API), at any depth;
    members the model does not declare (`labels`) are kept."""
    fields = {name: (info, nested) for name, info, nested in fields_of(model)}
    out: dict[str, Any] = {}
    for name, value in data.items():
        info, nested = fields.get(name, (None, None))
        if info is not None and marker(info, ManifestReference) is not None:
            continue
        if nested is not None and isinstance(value, dict):
            value = without_references(nested, value)
            if not value:
                continue
        out[name] = value
    return out
