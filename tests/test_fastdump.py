"""The listing's shortcut past pydantic (reconciler.vertex.fastdump, issue 15): for any data it
accepts, it gives exactly what validating the wire model and dumping it gives; what it is not
sure of goes to pydantic, so a malformed job is refused as before. The data is generated from the
models' own fields (a field added there is exercised here), with right and wrong types, nulls,
int64 strings, enum numbers, unknown members and Python names."""

from __future__ import annotations

import json
import types
import typing
from typing import Any, Union

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from reconciler.vertex.fastdump import dump
from reconciler.vertex.wire import JOB_STATES, TuningJob

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=8)
_NUMERIC = st.sampled_from(["3", "-2", "007", "1.5", " 4", "4 ", "", "-", "9" * 25]) | st.integers().map(str)
_BIG = st.sampled_from([2**53, 2**53 + 1, -(2**53) - 1, 2**63, 2**64 + 5, 10**40])


def _scalar(annotation: Any) -> st.SearchStrategy[Any]:
    if annotation is str:
        return st.text(max_size=4) | st.sampled_from([*JOB_STATES.values(), "ADAPTER_SIZE_FOUR"])
    if annotation is int:
        return st.one_of(*[st.integers()] * 4, _NUMERIC, _BIG, st.booleans(), st.sampled_from([3.0, 2.5]))
    if annotation is float:
        return st.one_of(*[st.floats(allow_nan=False)] * 4, st.integers(), _BIG, _NUMERIC, st.booleans())
    if annotation is bool:
        return st.one_of(*[st.booleans()] * 4, st.sampled_from([0, 1, "true"]))
    return _JSON


def _value(annotation: Any) -> st.SearchStrategy[Any]:
    """Data of the field's type, mostly; any JSON value (a wrong type) sometimes."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        return _value(next(a for a in args if a is not type(None))) | st.none()
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        right = _model(annotation)
    elif origin is dict:
        right = st.dictionaries(st.text(max_size=3), _value(args[1]), max_size=3)
    elif origin is list:
        right = st.lists(_value(args[0]), max_size=3)
    else:
        right = _scalar(annotation)
    return st.one_of(*[right] * 12, _JSON)  # a wrong type now and then: one is enough to leave the shortcut


def _model(model: type[BaseModel]) -> st.SearchStrategy[dict[str, Any]]:
    known = {info.alias or name: _value(info.annotation) for name, info in model.model_fields.items()}
    python_names = [name for name, info in model.model_fields.items() if info.alias and info.alias != name]
    extra_keys = st.text(max_size=4) | st.sampled_from(python_names or ["x"])
    return st.builds(lambda fields, extra: {**extra, **fields},
                     st.fixed_dictionaries({}, optional=known),  # type: ignore[arg-type]
                     st.dictionaries(extra_keys, _JSON, max_size=2))


def _pydantic(data: Any) -> dict[str, Any] | None:
    try:
        return TuningJob.model_validate(data).model_dump(by_alias=True, exclude_none=True)
    except ValidationError:
        return None


def _same(a: Any, b: Any) -> bool:
    """Equal, types included (2 is not 2.0), key order aside."""
    return json.dumps(a, sort_keys=True, default=repr) == json.dumps(b, sort_keys=True, default=repr)


@settings(max_examples=800, deadline=None)
@given(_model(TuningJob))
def test_what_the_shortcut_gives_is_what_pydantic_gives(data: dict[str, Any]) -> None:
    fast = dump(TuningJob, data)
    if fast is not None:
        slow = _pydantic(data)
        assert slow is not None, "the shortcut accepted data that pydantic refuses"
        assert _same(fast, slow)


def _api_job(i: int) -> dict[str, Any]:
    """A job as the REST API shows it (proto3 JSON: int64 as strings, enums as names)."""
    parent = "projects/123/locations/us-central1"
    return {
        "name": f"{parent}/tuningJobs/{i}", "tunedModelDisplayName": f"m-{i}", "baseModel": "gemini-2.5-flash",
        "supervisedTuningSpec": {"trainingDatasetUri": "gs://b/t.jsonl", "exportLastCheckpointOnly": True,
                                 "hyperParameters": {"epochCount": "3", "learningRateMultiplier": 1,
                                                     "adapterSize": "ADAPTER_SIZE_FOUR"}},
        "state": "JOB_STATE_SUCCEEDED", "createTime": "2026-01-01T00:00:00Z", "labels": {"team": "a"},
        "tunedModel": {"model": f"{parent}/models/{i}@1", "endpoint": f"{parent}/endpoints/{i}",
                       "checkpoints": [{"checkpointId": "1", "epoch": "1", "step": "10", "endpoint": "e"}]},
        "tuningDataStats": {"supervisedTuningDataStats": {"tuningStepCount": "10"}},
        "error": {"code": 3, "message": "m", "details": []}, "encryptionSpec": {"kmsKeyName": "k"},
        "preTunedModel": {"tunedModelName": "projects/123/locations/us-central1/models/1"},
    }


def test_jobs_as_the_api_shows_them_take_the_shortcut() -> None:
    for i in range(3):
        job = _api_job(i)
        fast = dump(TuningJob, job)
        assert fast is not None and _same(fast, _pydantic(job))
        assert fast["supervisedTuningSpec"]["hyperParameters"] == {
            "epochCount": 3, "learningRateMultiplier": 1.0, "adapterSize": "ADAPTER_SIZE_FOUR"}


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every member and item path of `value`, containers included."""
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += _paths(item, (*prefix, index))
    return out


_ODD = st.one_of(_JSON, _NUMERIC, _BIG, st.sampled_from([True, False, 0, 1, 2.0, 2.5, "", "x", [], {}, None]))


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(_paths(_api_job(0))), _ODD, st.booleans())
def test_one_odd_member_in_a_job_the_api_would_send(path: tuple[Any, ...], value: Any, add: bool) -> None:
    """A job as the API shows it with one member replaced (or one added beside it), whatever the
    value: the shortcut gives what pydantic gives, or leaves it to pydantic."""
    job = json.loads(json.dumps(_api_job(0)))
    holder = job
    for step in path[:-1]:
        holder = holder[step]
    if add and isinstance(holder, dict):
        holder[f"{path[-1]}Extra"] = value
    else:
        holder[path[-1]] = value
    fast = dump(TuningJob, job)
    if fast is not None:
        assert _same(fast, _pydantic(job))


@pytest.mark.parametrize("job", [
    {"name": 5}, {"labels": ["x"]}, {"labels": {"a": 1}}, {"state": True}, {"base_model": "x"},
    {"supervisedTuningSpec": {"hyperParameters": {"epochCount": 1.5}}}, {"tunedModel": []},
    {"error": {"code": "5"}},  # pydantic reads it (5); the shortcut leaves it to pydantic
])
def test_what_the_shortcut_is_not_sure_of_goes_to_pydantic(job: dict[str, Any]) -> None:
    assert dump(TuningJob, job) is None


def test_a_field_of_an_unknown_type_is_refused_when_the_module_reads_the_model() -> None:
    class Odd(BaseModel, extra="allow"):
        when: set[int] | None = None

    with pytest.raises(TypeError, match="does not know the field type"):
        dump(Odd, {})


# -- a manifest's spec narrowed to its kind by validation (reconciler.spec.narrowed) ------------
_HP = st.fixed_dictionaries({}, optional={
    "epochCount": st.integers(1, 1000),
    "learningRateMultiplier": st.floats(0.01, 1000) | st.integers(1, 1000),
    "adapterSize": st.sampled_from(["ADAPTER_SIZE_ONE", "ADAPTER_SIZE_FOUR", "ADAPTER_SIZE_SIXTEEN"]),
})
_METHOD = st.fixed_dictionaries({"trainingDatasetUri": st.just("gs://bucket/t.jsonl")}, optional={
    "validationDatasetUri": st.just("gs://bucket/v.jsonl"), "hyperParameters": _HP,
    "exportLastCheckpointOnly": st.booleans(),
    "evaluationConfig": st.just({"metrics": [{"aggregationMetrics": ["AVERAGE"]}],
                                 "outputConfig": {"gcsDestination": {"outputUriPrefix": "gs://bucket/e"}}}),
})
_SPEC = st.builds(
    lambda source, method, extra, preference: {
        **source, **extra,
        ("preferenceOptimizationSpec" if preference else "supervisedTuningSpec"):
            {**{k: v for k, v in method.items() if not (preference and k == "evaluationConfig")},
             **({"hyperParameters": {**method.get("hyperParameters", {}), "beta": 0.5}} if preference else {})}},
    st.sampled_from([{"baseModel": "gemini-2.5-flash"},
                     {"preTunedModel": {"tunedModelName": "projects/p/locations/us-central1/models/1"}},
                     {"preTunedModel": {"model": "other-model", "checkpointId": "2"}}]),
    _METHOD,
    st.fixed_dictionaries({}, optional={
        "tunedModelDisplayName": st.just("Shown"), "description": st.just("d"), "protect": st.booleans(),
        "encryptionSpec": st.just({"kmsKeyName": "projects/p/locations/us-central1/keyRings/r/cryptoKeys/k"}),
        "region": st.just("europe-west4")}),
    st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(_SPEC)
def test_a_spec_narrowed_by_validation_is_the_one_construct_makes(spec: dict[str, Any]) -> None:
    from reconciler.kinds import kind_of_spec
    from reconciler.manifest import Manifest
    from reconciler.spec import as_data, construct

    manifest = Manifest.model_validate({"apiVersion": "reconciler/v1", "kind": "TunedModel",
                                        "metadata": {"name": "m"}, "spec": spec})
    kind = kind_of_spec(manifest.spec)
    narrow = kind.narrow(manifest.spec)
    built = construct(kind.spec_type, as_data(manifest.spec))
    assert type(narrow) is type(built) is kind.spec_type
    assert narrow == built and as_data(narrow) == as_data(built)
    assert _same(as_data(narrow), as_data(built))
