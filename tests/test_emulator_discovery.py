"""Every answer of the emulator validates against the official aiplatform v1 discovery document.

The document shipped with google-api-python-client is translated to JSON Schema: `$ref` to
`$defs`, objects closed (`additionalProperties: false`, so an unknown field fails), int64 as a
string of digits, google-datetime as RFC 3339 with Z, enums as their names.
"""

from __future__ import annotations

import importlib.resources
import json
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from google.rpc import code_pb2
from jsonschema import Draft202012Validator

PARENT = "projects/demo-project/locations/us-central1"
JOBS = f"/v1/{PARENT}/tuningJobs"
RFC3339_Z = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$"
BODY = {
    "baseModel": "gemini-3.5-flash",
    "supervisedTuningSpec": {
        "trainingDatasetUri": "gs://bucket/train.jsonl",
        "validationDatasetUri": "gs://bucket/val.jsonl",
        "hyperParameters": {"epochCount": "4", "learningRateMultiplier": 0.5, "adapterSize": 6},
        "exportLastCheckpointOnly": True,
    },
    "tunedModelDisplayName": "support-bot",
    "description": "Answers support tickets.",
    "labels": {"team": "ml", "managed-by": "reconciler"},
    "encryptionSpec": {"kmsKeyName": "projects/p/locations/us-central1/keyRings/r/cryptoKeys/k"},
    "serviceAccount": "tuner@demo-project.iam.gserviceaccount.com",
}


def _discovery_document() -> dict[str, Any]:
    documents = importlib.resources.files("googleapiclient") / "discovery_cache" / "documents"
    document: dict[str, Any] = json.loads((documents / "aiplatform.v1.json").read_text())
    return document


def _schema(prop: dict[str, Any]) -> dict[str, Any]:
    """JSON Schema of one discovery schema or property."""
    if "$ref" in prop:
        return {"$ref": f"#/$defs/{prop['$ref']}"}
    kind = prop.get("type")
    if kind == "string":
        if "enum" in prop:
            return {"enum": prop["enum"]}
        if prop.get("format") in ("int64", "uint64"):
            return {"type": "string", "pattern": r"^-?\d+$"}
        if prop.get("format") == "google-datetime":
            return {"type": "string", "pattern": RFC3339_Z}
        return {"type": "string"}
    if kind == "array":
        return {"type": "array", "items": _schema(prop["items"])}
    if kind == "object" and "additionalProperties" in prop:
        return {"type": "object", "additionalProperties": _schema(prop["additionalProperties"])}
    if kind == "object":
        properties = {name: _schema(p) for name, p in prop.get("properties", {}).items()}
        return {"type": "object", "properties": properties, "additionalProperties": False}
    if kind == "any":
        return {}
    return {"type": kind}  # integer, number, boolean


DOCUMENT = _discovery_document()
DEFS = {name: _schema(schema) for name, schema in DOCUMENT["schemas"].items()}
ENVELOPE = {
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "status"],
            "additionalProperties": False,
            "properties": {
                **DEFS["GoogleRpcStatus"]["properties"],
                "status": {"enum": list(code_pb2.Code.keys())},
            },
        }
    },
}


def _reachable(name: str, seen: set[str]) -> set[str]:
    """The schema and every schema it refers to, directly or not."""
    if name not in seen:
        seen.add(name)
        for ref in re.findall(r'"#/\$defs/(\w+)"', json.dumps(DEFS[name])):
            _reachable(ref, seen)
    return seen


def validator(schema_name: str) -> Draft202012Validator:
    """A validator for one discovery schema (e.g. GoogleCloudAiplatformV1TuningJob)."""
    defs = {name: DEFS[name] for name in _reachable(schema_name, set())}
    schema = {"$defs": defs, "$ref": f"#/$defs/{schema_name}"}
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


TUNING_JOB = validator("GoogleCloudAiplatformV1TuningJob")
JOB_STATES = DOCUMENT["schemas"]["GoogleCloudAiplatformV1TuningJob"]["properties"]["state"]["enum"]


def assert_valid(check: Draft202012Validator, answer: Any) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in check.iter_errors(answer)]
    assert not errors, f"{json.dumps(answer, indent=1)}\n" + "\n".join(errors)


@pytest.fixture
def http(emulator: Any) -> httpx.Client:
    client: httpx.Client = emulator.admin
    return client


@pytest.fixture
def make(http: httpx.Client) -> Callable[..., str]:
    """Create a job (BODY with top-level overrides) and return its name."""

    def make(**fields: Any) -> str:
        body = {key: value for key, value in {**BODY, **fields}.items() if value is not None}
        r = http.post(JOBS, json=body)
        assert r.status_code == 200, r.text
        assert_valid(TUNING_JOB, r.json())
        name: str = r.json()["name"]
        return name

    return make


def test_the_translated_schema_rejects_what_the_api_never_sends() -> None:
    for bad in (
        {"surprise": 1},
        {"state": "RUNNING"},
        {"createTime": "2025-01-01 00:00:00"},
        {"createTime": "2025-01-01T00:00:00+01:00"},
        {"supervisedTuningSpec": {"hyperParameters": {"epochCount": 3}}},
        {"tunedModel": {"model": "m", "extra": True}},
        {"labels": {"team": 1}},
    ):
        assert not TUNING_JOB.is_valid(bad), bad
    assert TUNING_JOB.is_valid({"state": "JOB_STATE_RUNNING", "createTime": "2025-01-01T00:00:00Z"})


def test_jobs_in_every_state_match_the_tuning_job_schema(
    emulator: Any, http: httpx.Client, make: Callable[..., str]
) -> None:
    def read(*names: str) -> list[dict[str, Any]]:
        return [http.get(f"/v1/{name}").json() for name in names]

    emulator.fail(labels={"team": "doomed"}, message="Dataset row 3 is malformed.")
    cancelled_early, succeeding, failing = make(), make(), make(labels={"team": "doomed"})
    http.post(f"/v1/{cancelled_early}:cancel")
    emulator.advance(60)
    answers = read(cancelled_early, succeeding, failing)  # cancelled, running, running
    cancelled_late = make()
    emulator.advance(60)
    http.post(f"/v1/{cancelled_late}:cancel", json={})
    answers += read(cancelled_late)  # cancelling, after running
    emulator.advance(600)
    answers += read(succeeding, failing, cancelled_late)
    where = {"project": "demo-project", "location": "us-central1", **BODY}
    seeded = emulator.seed([{**where, "state": state} for state in JOB_STATES[1:]])
    answers += read(*seeded) + emulator.jobs()
    for answer in answers:
        assert_valid(TUNING_JOB, answer)
    assert {answer["state"] for answer in answers} == set(JOB_STATES[1:])
    fields = {key for answer in answers for key in answer}
    assert {"tunedModel", "tuningDataStats", "error", "startTime", "endTime"} <= fields


def test_list_and_cancel_answers_match_their_schemas(
    emulator: Any, http: httpx.Client, make: Callable[..., str]
) -> None:
    listing = validator("GoogleCloudAiplatformV1ListTuningJobsResponse")
    empty = validator("GoogleProtobufEmpty")
    names = [make() for _ in range(3)]
    emulator.advance(1000)
    page = http.get(JOBS, params={"pageSize": "2"}).json()
    assert "nextPageToken" in page
    last = http.get(JOBS, params={"pageSize": "2", "pageToken": page["nextPageToken"]}).json()
    nothing = http.get(JOBS, params={"filter": "labels.team=nobody"}).json()
    for answer in (page, last, nothing):
        assert_valid(listing, answer)
    cancel = http.post(f"/v1/{make()}:cancel", json={}).json()
    assert_valid(empty, cancel)
    assert len(names) == len(page["tuningJobs"]) + len(last["tuningJobs"])


def test_generate_content_answers_match_the_schema(
    emulator: Any, http: httpx.Client, make: Callable[..., str]
) -> None:
    name = make()
    emulator.advance(1000)
    endpoint = http.get(f"/v1/{name}").json()["tunedModel"]["endpoint"]
    body = {"contents": [{"role": "user", "parts": [{"text": "Where is my parcel?"}]}]}
    answer = http.post(f"/v1/{endpoint}:generateContent", json=body).json()
    assert_valid(validator("GoogleCloudAiplatformV1GenerateContentResponse"), answer)


def test_errors_match_the_google_error_envelope(
    emulator: Any, http: httpx.Client, make: Callable[..., str]
) -> None:
    envelope = Draft202012Validator(ENVELOPE)
    name = make()
    emulator.advance(1000)
    responses = [
        ("INVALID_ARGUMENT", http.post(JOBS, json={**BODY, "foo": 1})),
        ("INVALID_ARGUMENT", http.post(JOBS, json={**BODY, "baseModel": "gemini-9"})),
        ("INVALID_ARGUMENT", http.post(JOBS, content=b"{")),
        ("INVALID_ARGUMENT", http.get(JOBS, params={"filter": "state="})),
        ("NOT_FOUND", http.get(f"{JOBS}/404")),
        ("NOT_FOUND", http.get("/v1/projects/p/locations/l/nothing")),
        ("FAILED_PRECONDITION", http.post(f"/v1/{name}:cancel", json={})),
    ]
    emulator.configure(submissions_per_minute=1)
    http.post(JOBS, json=BODY)
    responses.append(("RESOURCE_EXHAUSTED", http.post(JOBS, json=BODY)))
    emulator.configure(rate_503=1.0)
    responses.append(("UNAVAILABLE", http.get(JOBS)))
    for status, response in responses:
        answer = response.json()
        assert_valid(envelope, answer)
        assert (answer["error"]["code"], answer["error"]["status"]) == (
            response.status_code,
            status,
        )


# ----- the issue-13 fields, validated against the FULL installed document ----------------------
# (the shared extract in /work/shared/reference cuts EvaluationConfig and the preference
# statistics down to stubs, which would accept anything inside them)

EVALUATION = {
    "metrics": [
        {
            "aggregationMetrics": ["AVERAGE"],
            "pointwiseMetricSpec": {"metricPromptTemplate": "Rate it."},
        }
    ],
    "outputConfig": {"gcsDestination": {"outputUriPrefix": "gs://bucket/eval"}},
    "autoraterConfig": {"samplingCount": 4, "flipEnabled": True},
}


def test_the_document_has_the_full_evaluation_and_preference_schemas() -> None:
    schemas = DOCUMENT["schemas"]
    assert {"metrics", "outputConfig", "autoraterConfig"} <= set(
        schemas["GoogleCloudAiplatformV1EvaluationConfig"]["properties"]
    )
    assert (
        "scoresDistribution"
        in schemas["GoogleCloudAiplatformV1PreferenceOptimizationDataStats"]["properties"]
    )


def test_new_v1_fields_are_echoed_and_filled_in_as_the_schema_says(
    emulator: Any, http: httpx.Client, make: Callable[..., str]
) -> None:
    supervised = {
        **BODY["supervisedTuningSpec"],
        "exportLastCheckpointOnly": False,
        "evaluationConfig": EVALUATION,
    }
    parent = make(supervisedTuningSpec=supervised)
    preference = make(
        supervisedTuningSpec=None,
        preferenceOptimizationSpec={
            "trainingDatasetUri": "gs://bucket/prefs.jsonl",
            "hyperParameters": {"epochCount": "2", "beta": 0.1, "adapterSize": "ADAPTER_SIZE_FOUR"},
        },
    )
    emulator.advance(1000)
    parent_job = http.get(f"/v1/{parent}").json()
    continuation = make(
        baseModel=None,
        tunedModelDisplayName=None,
        preTunedModel={"tunedModelName": parent_job["tunedModel"]["model"], "checkpointId": "2"},
    )
    emulator.advance(1000)
    answers = [http.get(f"/v1/{name}").json() for name in (parent, preference, continuation)]
    answers += emulator.jobs()
    for answer in answers:
        assert_valid(TUNING_JOB, answer)
    parent_job, preference_job, continued = answers[:3]
    assert parent_job["supervisedTuningSpec"]["evaluationConfig"] == EVALUATION
    assert len(parent_job["tunedModel"]["checkpoints"]) == 4
    assert len(parent_job["evaluateDatasetRuns"]) == 4
    assert "preferenceOptimizationDataStats" in preference_job["tuningDataStats"]
    assert preference_job["preferenceOptimizationSpec"]["hyperParameters"]["beta"] == 0.1
    assert continued["preTunedModel"]["baseModel"] == "gemini-3.5-flash"
    assert "baseModel" not in continued


def test_a_429_with_retry_info_matches_the_envelope(emulator: Any, http: httpx.Client) -> None:
    emulator.configure(rate_429=1.0, retry_after_seconds=2.5)
    response = http.get(JOBS)
    assert_valid(Draft202012Validator(ENVELOPE), response.json())
    assert {
        "@type": "type.googleapis.com/google.rpc.RetryInfo",
        "retryDelay": "2.500s",
    } in response.json()["error"]["details"]
