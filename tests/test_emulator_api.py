"""The emulator's REST API over real HTTP: lifecycle, validation, encodings, lists, quotas,
faults, generateContent, admin routes and persistence.

Every test runs against its own emulator (`emulator` fixture: manual clock, pending 60 s,
running 600 s, cancelling 30 s, no quotas, no faults); time moves only by `advance`.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.emulator.backend import Backend, EmulatorConfig
from reconciler.emulator.server import EmulatorServer, start_embedded

PARENT = "projects/demo-project/locations/us-central1"
JOBS = f"/v1/{PARENT}/tuningJobs"
NAME = re.compile(r"projects/[1-9]\d{11}/locations/us-central1/tuningJobs/\d+")


def job_body(**fields: Any) -> dict[str, Any]:
    """A valid create body; keyword arguments replace top-level fields."""
    body: dict[str, Any] = {
        "baseModel": "gemini-3.1-flash-lite",
        "supervisedTuningSpec": {
            "trainingDatasetUri": "gs://bucket/train.jsonl",
            "validationDatasetUri": "gs://bucket/val.jsonl",
            "hyperParameters": {
                "epochCount": 3,
                "learningRateMultiplier": 1.0,
                "adapterSize": "ADAPTER_SIZE_FOUR",
            },
        },
        "tunedModelDisplayName": "support-bot",
        "labels": {"team": "ml"},
    }
    body.update(fields)
    return body


def hyper(**fields: Any) -> dict[str, Any]:
    """A valid create body with the given hyperParameters."""
    body = job_body()
    body["supervisedTuningSpec"]["hyperParameters"] = fields
    return body


@pytest.fixture
def http(emulator: Any) -> httpx.Client:
    """A client for the API routes (the fixture's own, to save building one per test)."""
    client: httpx.Client = emulator.admin
    return client


def create(http: httpx.Client, body: dict[str, Any] | None = None, **params: str) -> dict[str, Any]:
    r = http.post(JOBS, json=job_body() if body is None else body, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def get(http: httpx.Client, name: str) -> dict[str, Any]:
    r = http.get(f"/v1/{name}")
    assert r.status_code == 200, r.text
    return r.json()


def error_of(response: httpx.Response, code: int, status: str) -> str:
    """The error message, after checking the envelope, HTTP code and canonical status."""
    assert response.status_code == code, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert (error["code"], error["status"]) == (code, status)
    return error["message"]


# ----- create / get / list / cancel ---------------------------------------------------------


def test_create_returns_a_pending_job_with_server_set_fields(http: httpx.Client) -> None:
    job = create(http)
    assert NAME.fullmatch(job["name"])
    assert job["state"] == "JOB_STATE_PENDING"
    assert job["createTime"] == job["updateTime"]
    assert job["createTime"].endswith("Z")
    assert job["baseModel"] == "gemini-3.1-flash-lite"
    assert job["labels"] == {"team": "ml"}
    for absent in ("startTime", "endTime", "error", "tunedModel", "tuningDataStats"):
        assert absent not in job
    assert get(http, job["name"]) == job


def test_output_only_fields_in_a_create_body_are_ignored(http: httpx.Client) -> None:
    body = job_body(
        name="projects/x/locations/y/tuningJobs/1",
        state="JOB_STATE_SUCCEEDED",
        createTime="2020-01-01T00:00:00Z",
        tunedModel={"model": "m"},
        experiment="e",
    )
    job = create(http, body)
    assert job["state"] == "JOB_STATE_PENDING"
    assert job["name"] != body["name"] and "tunedModel" not in job and "experiment" not in job
    assert job["createTime"] != "2020-01-01T00:00:00Z"


def test_jobs_are_found_by_project_id_or_number(http: httpx.Client) -> None:
    job = create(http)
    number = job["name"].split("/")[1]
    job_id = job["name"].rsplit("/", 1)[1]
    assert get(http, f"{PARENT}/tuningJobs/{job_id}")["name"] == job["name"]
    listed = http.get(f"/v1/projects/{number}/locations/us-central1/tuningJobs").json()
    assert [j["name"] for j in listed["tuningJobs"]] == [job["name"]]


def test_job_ids_are_numeric_unique_and_increasing(http: httpx.Client) -> None:
    ids = [int(create(http)["name"].rsplit("/", 1)[1]) for _ in range(5)]
    assert ids == sorted(set(ids))


def test_concurrent_creates_get_distinct_ids(emulator: Any) -> None:
    names: list[str] = []

    def create_some() -> None:
        with httpx.Client(base_url=emulator.url) as client:
            names.extend(create(client)["name"] for _ in range(10))

    threads = [threading.Thread(target=create_some) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(names)) == 60
    assert emulator.stats()["requests"]["create"] == 60


def test_configured_project_number_is_used_in_names(emulator: Any, http: httpx.Client) -> None:
    emulator.configure(project_numbers={"demo-project": "123456789012"})
    assert create(http)["name"].startswith("projects/123456789012/locations/us-central1/")


def test_v1beta1_paths_are_not_found_because_only_v1_is_emulated(
    emulator: Any, http: httpx.Client
) -> None:
    job = create(http)
    for response in (
        http.get(f"/v1beta1/{job['name']}"),
        http.get(f"/v1beta1/{PARENT}/tuningJobs"),
        http.post(f"/v1beta1/{PARENT}/tuningJobs", json=job_body()),
        http.post(f"/v1beta1/{job['name']}:cancel", json={}),
    ):
        assert "serves the Vertex AI v1 API only" in error_of(response, 404, "NOT_FOUND")
    assert emulator.stats()["jobs"] == 1
    assert get(http, job["name"])["state"] == "JOB_STATE_PENDING"


def test_lifecycle_follows_the_clock(emulator: Any, http: httpx.Client) -> None:
    job = create(http)
    emulator.advance(59)
    assert get(http, job["name"])["state"] == "JOB_STATE_PENDING"
    emulator.advance(1)
    running = get(http, job["name"])
    assert running["state"] == "JOB_STATE_RUNNING"
    assert running["startTime"] == running["updateTime"] != job["updateTime"]
    stats = running["tuningDataStats"]["supervisedTuningDataStats"]
    assert int(stats["tuningDatasetExampleCount"]) > 0
    assert isinstance(stats["totalBillableTokenCount"], str)
    assert "tunedModel" not in running and "endTime" not in running
    emulator.advance(600)
    done = get(http, job["name"])
    assert done["state"] == "JOB_STATE_SUCCEEDED"
    assert done["endTime"] == done["updateTime"] != running["updateTime"]
    assert done["startTime"] == running["startTime"]
    parent = job["name"].rsplit("/tuningJobs/", 1)[0]
    assert re.fullmatch(rf"{parent}/models/\d+@1", done["tunedModel"]["model"])
    assert re.fullmatch(rf"{parent}/endpoints/\d+", done["tunedModel"]["endpoint"])
    assert done["gcsMetricsUri"].startswith("gs://")
    assert done["experiment"].startswith(parent)
    assert done["tuningDataStats"] == running["tuningDataStats"]  # derived, stable


def test_one_advance_moves_through_several_states(emulator: Any, http: httpx.Client) -> None:
    job = create(http)
    emulator.advance(10_000)
    done = get(http, job["name"])
    assert done["state"] == "JOB_STATE_SUCCEEDED"
    assert "startTime" in done and done["startTime"] < done["endTime"]


def test_cancel_moves_a_live_job_through_cancelling_to_cancelled(
    emulator: Any, http: httpx.Client
) -> None:
    job = create(http)
    emulator.advance(100)
    r = http.post(f"/v1/{job['name']}:cancel", json={})
    assert (r.status_code, r.json()) == (200, {})
    cancelling = get(http, job["name"])
    assert cancelling["state"] == "JOB_STATE_CANCELLING"
    assert "endTime" not in cancelling and "error" not in cancelling
    emulator.advance(30)
    cancelled = get(http, job["name"])
    assert cancelled["state"] == "JOB_STATE_CANCELLED"
    assert cancelled["error"] == {"code": 1, "message": "CANCELLED"}
    assert cancelled["endTime"] == cancelled["updateTime"]
    assert cancelled["startTime"] == cancelling["startTime"]
    assert "tunedModel" not in cancelled


def test_cancel_accepts_no_body_an_empty_body_null_or_an_empty_object(
    http: httpx.Client,
) -> None:
    for content in (None, b"", b"{}", b"null"):
        job = create(http)
        r = http.post(f"/v1/{job['name']}:cancel", content=content)
        assert (r.status_code, r.json()) == (200, {}), content
        assert get(http, job["name"])["state"] == "JOB_STATE_CANCELLING"


def test_cancel_rejects_unknown_body_fields(http: httpx.Client) -> None:
    job = create(http)
    r = http.post(f"/v1/{job['name']}:cancel", json={"force": True})
    assert 'Unknown name "force"' in error_of(r, 400, "INVALID_ARGUMENT")


def test_cancel_of_a_cancelling_job_is_a_no_op(emulator: Any, http: httpx.Client) -> None:
    job = create(http)
    http.post(f"/v1/{job['name']}:cancel", json={})
    emulator.advance(20)
    before = get(http, job["name"])
    r = http.post(f"/v1/{job['name']}:cancel", json={})
    assert (r.status_code, r.json()) == (200, {})
    emulator.advance(10)  # still ends 30 s after the first cancel
    after = get(http, job["name"])
    assert after["state"] == "JOB_STATE_CANCELLED"
    assert before["updateTime"] < after["updateTime"]


def test_cancel_of_a_finished_job_is_failed_precondition(emulator: Any, http: httpx.Client) -> None:
    where = {"project": "demo-project", "location": "us-central1"}
    states = ["JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"]
    names = emulator.seed([{**where, "state": state} for state in states])
    for name, state in zip(names, states, strict=False):
        message = error_of(http.post(f"/v1/{name}:cancel", json={}), 400, "FAILED_PRECONDITION")
        assert name in message and state in message
        assert get(http, name)["state"] == state


def test_unknown_jobs_are_not_found(http: httpx.Client) -> None:
    job = create(http)
    job_id = job["name"].rsplit("/", 1)[1]
    for name in (
        f"{PARENT}/tuningJobs/999",
        f"{PARENT}/tuningJobs/no-such-job",
        f"projects/other-project/locations/us-central1/tuningJobs/{job_id}",
        f"projects/demo-project/locations/europe-west4/tuningJobs/{job_id}",
    ):
        assert name in error_of(http.get(f"/v1/{name}"), 404, "NOT_FOUND")
        error_of(http.post(f"/v1/{name}:cancel", json={}), 404, "NOT_FOUND")


# ----- validation ------------------------------------------------------------------------


def _labels(count: int) -> dict[str, str]:
    return {f"k{i}": "v" for i in range(count)}


SPEC = "tuning_job.supervised_tuning_spec"
HYPER = f"{SPEC}.hyper_parameters"
INVALID_BODIES = {
    "unknown top-level field": (job_body(foo=1), "tuning_job"),
    "unknown nested field": (hyper(epochCount=3, batchSize=8), HYPER),
    "string field given a number": (job_body(baseModel=5), "tuning_job.base_model"),
    "message given a string": (job_body(supervisedTuningSpec="x"), SPEC),
    "labels given a list": (job_body(labels=["a"]), "tuning_job.labels"),
    "label value given a number": (job_body(labels={"a": 1}), "tuning_job.labels[a]"),
    "bool given a string": (
        job_body(
            supervisedTuningSpec={
                "trainingDatasetUri": "gs://b/t",
                "exportLastCheckpointOnly": "yes",
            }
        ),
        f"{SPEC}.export_last_checkpoint_only",
    ),
    "int64 given words": (hyper(epochCount="three"), f"{HYPER}.epoch_count"),
    "int64 given a fraction": (hyper(epochCount=2.5), f"{HYPER}.epoch_count"),
    "double given a bool": (
        hyper(learningRateMultiplier=True),
        f"{HYPER}.learning_rate_multiplier",
    ),
    "missing baseModel": (job_body(baseModel=None), "tuning_job.base_model"),
    "missing trainingDatasetUri": (
        job_body(supervisedTuningSpec={"validationDatasetUri": "gs://b/v.jsonl"}),
        f"{SPEC}.training_dataset_uri",
    ),
    "training URI not on GCS": (
        job_body(supervisedTuningSpec={"trainingDatasetUri": "s3://b/t.jsonl"}),
        f"{SPEC}.training_dataset_uri",
    ),
    "training URI without object": (
        job_body(supervisedTuningSpec={"trainingDatasetUri": "gs://bucket"}),
        f"{SPEC}.training_dataset_uri",
    ),
    "validation URI not on GCS": (
        job_body(
            supervisedTuningSpec={
                "trainingDatasetUri": "gs://b/t",
                "validationDatasetUri": "v.jsonl",
            }
        ),
        f"{SPEC}.validation_dataset_uri",
    ),
    "unsupported base model": (job_body(baseModel="gemini-9-ultra"), "tuning_job.base_model"),
    "epochCount zero": (hyper(epochCount=0), f"{HYPER}.epoch_count"),
    "epochCount negative": (hyper(epochCount="-2"), f"{HYPER}.epoch_count"),
    "learningRateMultiplier zero": (
        hyper(learningRateMultiplier=0),
        f"{HYPER}.learning_rate_multiplier",
    ),
    "learningRateMultiplier negative": (
        hyper(learningRateMultiplier=-1),
        f"{HYPER}.learning_rate_multiplier",
    ),
    "unknown adapterSize name": (hyper(adapterSize="ADAPTER_SIZE_FIVE"), f"{HYPER}.adapter_size"),
    "unknown adapterSize number": (hyper(adapterSize=7), f"{HYPER}.adapter_size"),
    "adapterSize the model does not take": (
        job_body(
            baseModel="translation-llm-002",
            supervisedTuningSpec={
                "trainingDatasetUri": "gs://b/t.jsonl",
                "hyperParameters": {"adapterSize": "ADAPTER_SIZE_ONE"},
            },
        ),
        f"{HYPER}.adapter_size",
    ),
    "65 labels": (job_body(labels=_labels(65)), "tuning_job.labels"),
    "label key with uppercase": (job_body(labels={"Team": "ml"}), "tuning_job.labels"),
    "label key starting with a digit": (job_body(labels={"1team": "ml"}), "tuning_job.labels"),
    "label key of 64 characters": (job_body(labels={"k" * 64: "v"}), "tuning_job.labels"),
    "label value of 64 characters": (job_body(labels={"k": "v" * 64}), "tuning_job.labels"),
    "label value with a space": (job_body(labels={"k": "a b"}), "tuning_job.labels"),
    "label value with a dot": (job_body(labels={"k": "1.0"}), "tuning_job.labels"),
    "display name over 128 characters": (
        job_body(tunedModelDisplayName="x" * 129),
        "tuning_job.tuned_model_display_name",
    ),
}


def test_invalid_create_bodies_are_rejected_naming_the_field(
    emulator: Any, http: httpx.Client
) -> None:
    for case, (body, field) in INVALID_BODIES.items():
        r = http.post(JOBS, json={k: v for k, v in body.items() if v is not None})
        message = error_of(r, 400, "INVALID_ARGUMENT")
        assert field.rsplit(".", 1)[-1] in message, case
        [detail] = r.json()["error"]["details"]
        assert detail["@type"] == "type.googleapis.com/google.rpc.BadRequest", case
        assert any(v["field"].startswith(field) for v in detail["fieldViolations"]), case
    assert emulator.stats()["jobs"] == 0


def test_unknown_fields_and_bad_values_get_the_front_end_messages(http: httpx.Client) -> None:
    body = {"foo": 1, **hyper(batchSize=8, epochCount="x")}
    message = error_of(http.post(JOBS, json=body), 400, "INVALID_ARGUMENT")
    assert message.splitlines() == [
        "Invalid JSON payload received. Unknown name \"foo\" at 'tuning_job': Cannot find field.",
        (
            'Invalid JSON payload received. Unknown name "batchSize" at '
            "'tuning_job.supervised_tuning_spec.hyper_parameters': Cannot find field."
        ),
        (
            "Invalid value at 'tuning_job.supervised_tuning_spec.hyper_parameters.epoch_count' "
            '(TYPE_INT64), "x"'
        ),
    ]


def test_validation_accepts_the_limits_and_the_documented_forms(http: httpx.Client) -> None:
    for body in (
        job_body(labels=_labels(64)),
        job_body(labels={"k" * 63: "v" * 63, "équipe": "données", "empty": ""}),
        job_body(tunedModelDisplayName="é" * 128),
        job_body(baseModel="publishers/google/models/gemini-3.5-flash-lite"),
        job_body(baseModel="gemini-3.5-flash@default"),
        job_body(
            supervisedTuningSpec={
                "trainingDatasetUri": "projects/p/locations/us-central1/datasets/123",
                "exportLastCheckpointOnly": True,
            }
        ),
        {
            "base_model": "gemini-3.5-flash",
            "supervised_tuning_spec": {"training_dataset_uri": "gs://b/t"},
        },
        hyper(epochCount="1", learningRateMultiplier="0.5"),
    ):
        create(http, body)


def test_malformed_json_is_invalid_argument(http: httpx.Client) -> None:
    for content in (b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe"):
        r = http.post(JOBS, content=content, headers={"content-type": "application/json"})
        assert "Invalid JSON payload" in error_of(r, 400, "INVALID_ARGUMENT")


def test_bad_parent_or_name_patterns_are_invalid_argument(http: httpx.Client) -> None:
    for request in (
        http.build_request("POST", "/v1/projects/demo-project/tuningJobs", json=job_body()),
        http.build_request("GET", "/v1/projects/demo-project/tuningJobs"),
        http.build_request("GET", "/v1/folders/f/locations/us-central1/tuningJobs"),
        http.build_request("GET", "/v1/projects/bad project/locations/us-central1/tuningJobs/1"),
        http.build_request("POST", "/v1/projects/p/locations/Bad_Region/tuningJobs/1:cancel"),
    ):
        error_of(http.send(request), 400, "INVALID_ARGUMENT")


def test_unknown_routes_are_not_found_in_the_google_envelope(http: httpx.Client) -> None:
    for method, path in (
        ("GET", "/v1/projects/p/locations/l/models"),
        ("DELETE", f"{JOBS}/1"),
        ("POST", f"{JOBS}/1:pause"),
        ("GET", f"{JOBS}/1/operations/2/extra"),
        ("GET", "/v2/anything"),
        ("GET", "/_emulator/nothing"),
        ("GET", "/_emulator/reset"),
    ):
        error_of(http.request(method, path), 404, "NOT_FOUND")


def test_query_parameters_unknown_to_the_method_are_rejected(http: httpx.Client) -> None:
    job = create(http)
    ok = {"alt": "json", "prettyPrint": "false", "fields": "name", "$.xgafv": "2"}
    assert http.get(f"/v1/{job['name']}", params={**ok, "key": "k", "quotaUser": "u"}).is_success
    message = error_of(
        http.get(f"/v1/{job['name']}", params={"pageSize": "5"}), 400, "INVALID_ARGUMENT"
    )
    assert 'Unknown name "pageSize"' in message
    error_of(http.get(JOBS, params={"readMask": "name"}), 400, "INVALID_ARGUMENT")


# ----- wire encodings --------------------------------------------------------------------


def test_enums_and_int64_are_accepted_as_names_numbers_and_strings(http: httpx.Client) -> None:
    cases = [
        (
            {"adapterSize": 6, "epochCount": 3},
            {"adapterSize": "ADAPTER_SIZE_TWO", "epochCount": "3"},
        ),
        (
            {"adapterSize": 2, "epochCount": "4"},
            {"adapterSize": "ADAPTER_SIZE_FOUR", "epochCount": "4"},
        ),
        (
            {"adapterSize": "ADAPTER_SIZE_EIGHT", "epochCount": 5.0},
            {"adapterSize": "ADAPTER_SIZE_EIGHT", "epochCount": "5"},
        ),
        ({"adapterSize": "ADAPTER_SIZE_UNSPECIFIED"}, {}),
        ({"adapterSize": 0, "learningRateMultiplier": "2"}, {"learningRateMultiplier": 2.0}),
    ]
    for given, echoed in cases:
        body = job_body(baseModel="gemini-3.5-flash")
        body["supervisedTuningSpec"]["hyperParameters"] = given
        job = create(http, body)
        assert job["supervisedTuningSpec"]["hyperParameters"] == echoed, given


def test_enum_encoding_int_turns_response_enums_into_numbers(
    emulator: Any, http: httpx.Client
) -> None:
    params = {"$alt": "json;enum-encoding=int"}
    job = create(http, hyper(adapterSize=6), **params)
    assert job["state"] == 2
    assert job["supervisedTuningSpec"]["hyperParameters"] == {"adapterSize": 6}
    emulator.advance(60)
    assert http.get(f"/v1/{job['name']}", params=params).json()["state"] == 3
    listed = http.get(JOBS, params=params).json()["tuningJobs"]
    assert [j["state"] for j in listed] == [3]
    plain = get(http, job["name"])
    assert plain["state"] == "JOB_STATE_RUNNING"
    assert plain["supervisedTuningSpec"]["hyperParameters"]["adapterSize"] == "ADAPTER_SIZE_TWO"


def test_empty_and_default_fields_are_omitted(http: httpx.Client) -> None:
    body = job_body(description="", labels={})
    body["supervisedTuningSpec"]["exportLastCheckpointOnly"] = False
    job = create(http, body)
    assert "description" not in job and "labels" not in job
    assert "exportLastCheckpointOnly" not in job["supervisedTuningSpec"]
    r = http.get("/v1/projects/empty-project/locations/us-central1/tuningJobs")
    assert (r.status_code, r.json()) == (200, {})


# ----- list: pagination --------------------------------------------------------------------


def _seed_times(emulator: Any, times: list[str]) -> list[str]:
    jobs = [{"project": "demo-project", "location": "us-central1", "createTime": t} for t in times]
    return emulator.seed(jobs)


def _pages(http: httpx.Client, params: dict[str, str]) -> list[list[str]]:
    pages: list[list[str]] = []
    while True:
        r = http.get(JOBS, params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        pages.append([j["name"] for j in body.get("tuningJobs", [])])
        if "nextPageToken" not in body:
            return pages
        assert body["nextPageToken"]
        params = {**params, "pageToken": body["nextPageToken"]}


def test_pages_are_stable_newest_first_without_duplicates_or_gaps(
    emulator: Any, http: httpx.Client
) -> None:
    times = [f"2025-01-{day:02d}T00:00:00Z" for day in range(1, 21)] * 2  # pairs share a time
    names = _seed_times(emulator, times)
    pages = _pages(http, {"pageSize": "7"})
    assert [len(p) for p in pages] == [7, 7, 7, 7, 7, 5]
    flat = [name for page in pages for name in page]
    ids = {name: int(name.rsplit("/", 1)[1]) for name in names}
    expected = sorted(names, key=lambda n: (times[names.index(n)], ids[n]), reverse=True)
    assert flat == expected


def test_jobs_created_while_paging_do_not_shift_later_pages(
    emulator: Any, http: httpx.Client
) -> None:
    names = _seed_times(emulator, [f"2025-02-{day:02d}T00:00:00Z" for day in range(1, 11)])
    first = http.get(JOBS, params={"pageSize": "4"}).json()
    create(http)
    create(http)
    rest = _pages(http, {"pageSize": "4", "pageToken": first["nextPageToken"]})
    seen = [j["name"] for j in first["tuningJobs"]] + [n for page in rest for n in page]
    assert sorted(seen) == sorted(names)


def test_page_size_defaults_and_caps(emulator: Any, http: httpx.Client) -> None:
    emulator.configure(default_page_size=4, max_page_size=6)
    _seed_times(emulator, ["2025-03-01T00:00:00Z"] * 10)
    for size, count in (("", 4), ("0", 4), ("5", 5), ("6", 6), ("500", 6)):
        params = {"pageSize": size} if size else {}
        assert len(http.get(JOBS, params=params).json()["tuningJobs"]) == count, size
    assert len(emulator.jobs()) == 10
    for size in ("-1", "ten", "99999999999"):
        error_of(http.get(JOBS, params={"pageSize": size}), 400, "INVALID_ARGUMENT")


def test_page_tokens_are_bound_to_parent_and_filter(emulator: Any, http: httpx.Client) -> None:
    _seed_times(emulator, ["2025-03-01T00:00:00Z"] * 3)
    token = http.get(JOBS, params={"pageSize": "1"}).json()["nextPageToken"]
    assert http.get(JOBS, params={"pageSize": "1", "pageToken": token}).is_success
    other_parent = "/v1/projects/demo-project/locations/europe-west4/tuningJobs"
    for path, params in (
        (JOBS, {"pageToken": token, "filter": "labels.team:*"}),
        (other_parent, {"pageToken": token}),
        (JOBS, {"pageToken": "garbage"}),
        (JOBS, {"pageToken": token[:-3]}),
    ):
        assert "page_token" in error_of(http.get(path, params=params), 400, "INVALID_ARGUMENT")


# ----- list: filters -----------------------------------------------------------------------


@pytest.fixture
def filter_jobs(emulator: Any) -> dict[str, str]:
    """Five jobs with known states, labels and create times, by nickname."""
    where = {"project": "demo-project", "location": "us-central1"}

    def job(labels: dict[str, str], state: str, month: int) -> dict[str, Any]:
        created = f"2025-{month:02d}-01T00:00:00Z"
        return {"labels": labels, "state": f"JOB_STATE_{state}", "createTime": created}

    jobs = {
        "ml-running": job({"team": "ml"}, "RUNNING", 1),
        "ml-done": job({"team": "ml", "tier": "gold"}, "SUCCEEDED", 2),
        "ops-pending": job({"team": "ops"}, "PENDING", 3),
        "ops-failed": job({"team": "ops"}, "FAILED", 4),
        "bare": job({}, "RUNNING", 5),
    }
    names = emulator.seed([{**where, **job} for job in jobs.values()])
    return dict(zip(names, jobs, strict=False))


FILTERS = {
    'state="JOB_STATE_RUNNING"': {"ml-running", "bare"},
    "state=JOB_STATE_RUNNING": {"ml-running", "bare"},
    "state != JOB_STATE_RUNNING": {"ml-done", "ops-pending", "ops-failed"},
    "labels.team=ml": {"ml-running", "ml-done"},
    'labels.team="ops"': {"ops-pending", "ops-failed"},
    "labels.team!=ml": {"ops-pending", "ops-failed", "bare"},
    "labels.tier:*": {"ml-done"},
    "labels:team": {"ml-running", "ml-done", "ops-pending", "ops-failed"},
    "labels.team=ml AND state=JOB_STATE_SUCCEEDED": {"ml-done"},
    "labels.team=ml state=JOB_STATE_SUCCEEDED": {"ml-done"},
    "labels.team=ml OR labels.team=ops": {"ml-running", "ml-done", "ops-pending", "ops-failed"},
    "NOT labels.team:*": {"bare"},
    "-labels.team:*": {"bare"},
    "NOT (labels.team=ml OR labels.team=ops)": {"bare"},
    "(state=JOB_STATE_RUNNING OR state=JOB_STATE_PENDING) AND labels.team:*": {
        "ml-running",
        "ops-pending",
    },
    # AIP-160: OR binds tighter than AND
    "labels.team=ops AND state=JOB_STATE_PENDING OR state=JOB_STATE_FAILED": {
        "ops-pending",
        "ops-failed",
    },
    'create_time >= "2025-03-01T00:00:00Z"': {"ops-pending", "ops-failed", "bare"},
    "create_time<2025-02-01T00:00:00Z": {"ml-running"},
    "create_time=2025-02-01T01:00:00+01:00": {"ml-done"},
    "": {"ml-running", "ml-done", "ops-pending", "ops-failed", "bare"},
}


def test_filters_select_the_matching_jobs(http: httpx.Client, filter_jobs: dict[str, str]) -> None:
    for text, expected in FILTERS.items():
        r = http.get(JOBS, params={"filter": text})
        assert r.status_code == 200, (text, r.text)
        got = {filter_jobs[j["name"]] for j in r.json().get("tuningJobs", [])}
        assert got == expected, text


def test_filters_see_the_state_at_the_current_time(emulator: Any, http: httpx.Client) -> None:
    job = create(http)
    running = {"filter": "state=JOB_STATE_RUNNING"}
    assert http.get(JOBS, params=running).json() == {}
    emulator.advance(60)
    assert [j["name"] for j in http.get(JOBS, params=running).json()["tuningJobs"]] == [job["name"]]


MALFORMED_FILTERS = [
    "state=",
    "state=JOB_STATE_NOPE",
    "(state=JOB_STATE_RUNNING",
    "state=JOB_STATE_RUNNING)",
    "foo=bar",
    "labels.team ml",
    'labels.team="unterminated',
    "state<JOB_STATE_RUNNING",
    "labels.=x",
    "AND state=JOB_STATE_RUNNING",
    "state=JOB_STATE_RUNNING and labels.team=ml",
    "create_time>yesterday",
    "!",
]


def test_malformed_filters_are_invalid_argument(http: httpx.Client) -> None:
    for text in MALFORMED_FILTERS:
        r = http.get(JOBS, params={"filter": text})
        assert "filter" in error_of(r, 400, "INVALID_ARGUMENT"), text


# ----- quotas ------------------------------------------------------------------------------


def test_submissions_over_the_quota_get_429_with_retry_after(
    emulator: Any, http: httpx.Client
) -> None:
    emulator.configure(submissions_per_minute=2)
    create(http)
    create(http)
    r = http.post(JOBS, json=job_body())
    message = error_of(r, 429, "RESOURCE_EXHAUSTED")
    assert message.startswith("Quota exceeded for aiplatform.googleapis.com/")
    assert "per minute per region" in message
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert http.get(JOBS).is_success  # reads are not submissions
    other_region = "/v1/projects/demo-project/locations/europe-west4/tuningJobs"
    assert http.post(other_region, json=job_body()).is_success
    stats = emulator.stats()
    assert stats["faults"]["quota_429"] == 1 and stats["jobs"] == 3


def test_requests_over_the_quota_get_429_whatever_the_project_spelling(
    emulator: Any, http: httpx.Client
) -> None:
    emulator.configure(requests_per_minute=3)
    job = create(http)
    number = job["name"].split("/")[1]
    assert http.get(f"/v1/{job['name']}").is_success
    assert http.get(f"/v1/projects/{number}/locations/us-central1/tuningJobs").is_success
    r = http.get(JOBS)
    error_of(r, 429, "RESOURCE_EXHAUSTED")
    assert "Retry-After" in r.headers
    assert emulator.stats()["requests"]["list"] == 2
    assert http.get("/_emulator/stats").is_success  # admin routes are never limited


# ----- faults ------------------------------------------------------------------------------


def test_injected_503s_follow_the_fault_seed(emulator: Any, http: httpx.Client) -> None:
    emulator.configure(rate_503=0.5, fault_seed=42)
    first = [http.get(JOBS) for _ in range(20)]
    emulator.configure(fault_seed=42)
    again = [http.get(JOBS).status_code for _ in range(20)]
    codes = [r.status_code for r in first]
    assert again == codes and set(codes) == {200, 503}
    error_of(next(r for r in first if r.status_code == 503), 503, "UNAVAILABLE")
    assert emulator.stats()["faults"]["503"] == 2 * codes.count(503)


def test_injected_429s_carry_retry_after(emulator: Any, http: httpx.Client) -> None:
    emulator.configure(rate_429=1.0, retry_after_seconds=3, fault_seed=1)
    r = http.get(JOBS)
    error_of(r, 429, "RESOURCE_EXHAUSTED")
    assert r.headers["Retry-After"] == "3"
    assert emulator.stats()["faults"]["429"] == 1
    assert emulator.stats()["jobs"] == 0  # admin routes are never faulted


def test_a_lost_create_stores_the_job_but_fails_the_call(emulator: Any, http: httpx.Client) -> None:
    emulator.configure(lost_create_rate=1.0, fault_seed=3)
    first = http.post(JOBS, json=job_body())
    error_of(first, 504, "DEADLINE_EXCEEDED")
    second = http.post(JOBS, json=job_body())
    assert second.status_code == 502
    assert second.headers["content-type"].startswith("text/html")
    assert "502" in second.text
    assert len(emulator.jobs()) == 2
    assert emulator.stats()["faults"]["lost_create"] == 2


def test_latency_delays_api_calls_concurrently_but_not_admin_routes(
    emulator: Any, http: httpx.Client
) -> None:
    # Bounds with seconds of headroom: a loaded 2-core CI machine must not break them.
    emulator.configure(latency_ms=1500)
    started = time.monotonic()
    assert http.get("/_emulator/stats").is_success
    assert time.monotonic() - started < 1.0  # the admin route does not wait the 1.5 s
    results: list[int] = []

    def call() -> None:
        with httpx.Client(base_url=emulator.url) as client:
            results.append(client.get(JOBS).status_code)

    threads = [threading.Thread(target=call) for _ in range(5)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    assert results == [200] * 5
    assert 1.5 <= elapsed < 5.0  # overlapping, not 5 x 1.5 s


# ----- fail rules --------------------------------------------------------------------------


def test_a_label_rule_fails_existing_and_future_jobs_at_the_end_of_running(
    emulator: Any, http: httpx.Client
) -> None:
    existing = create(http)
    other = create(http, job_body(labels={"team": "ops"}))
    emulator.fail(labels={"team": "ml"}, message="Dataset row 7 is malformed.")
    future = create(http)
    emulator.advance(60)
    assert get(http, existing["name"])["state"] == "JOB_STATE_RUNNING"
    emulator.advance(600)
    for job in (existing, future):
        failed = get(http, job["name"])
        assert failed["state"] == "JOB_STATE_FAILED"
        assert failed["error"] == {"code": 3, "message": "Dataset row 7 is malformed."}
        assert failed["endTime"] == failed["updateTime"]
        assert "tunedModel" not in failed
    assert get(http, other["name"])["state"] == "JOB_STATE_SUCCEEDED"


def test_a_base_model_rule_fails_matching_jobs(emulator: Any, http: httpx.Client) -> None:
    emulator.fail(baseModel="gemini-3.5-flash")
    doomed = create(http, job_body(baseModel="publishers/google/models/gemini-3.5-flash"))
    fine = create(http)
    emulator.advance(1000)
    assert get(http, doomed["name"])["state"] == "JOB_STATE_FAILED"
    assert get(http, fine["name"])["state"] == "JOB_STATE_SUCCEEDED"


def test_a_job_named_explicitly_fails_even_after_it_succeeded(
    emulator: Any, http: httpx.Client
) -> None:
    running = create(http)
    done = create(http)
    emulator.advance(100)
    emulator.fail(name=running["name"])
    emulator.advance(1000)
    assert get(http, running["name"])["state"] == "JOB_STATE_FAILED"
    emulator.fail(name=done["name"], message="late")
    failed = get(http, done["name"])
    assert (failed["state"], failed["error"]["message"]) == ("JOB_STATE_FAILED", "late")
    r = emulator.admin.post("/_emulator/fail", json={"name": f"{PARENT}/tuningJobs/1"})
    error_of(r, 404, "NOT_FOUND")
    error_of(emulator.admin.post("/_emulator/fail", json={}), 400, "INVALID_ARGUMENT")


# ----- generateContent ---------------------------------------------------------------------


def _generate(http: httpx.Client, endpoint: str, text: str = "hello") -> httpx.Response:
    body = {"contents": [{"role": "user", "parts": [{"text": text}]}]}
    return http.post(f"/v1/{endpoint}:generateContent", json=body)


def test_generate_content_answers_on_the_endpoint_of_a_succeeded_job(
    emulator: Any, http: httpx.Client
) -> None:
    job = create(http)
    emulator.advance(1000)
    endpoint = get(http, job["name"])["tunedModel"]["endpoint"]
    r = _generate(http, endpoint, "What is the refund policy?")
    assert r.status_code == 200, r.text
    answer = r.json()
    [candidate] = answer["candidates"]
    assert candidate["content"]["role"] == "model"
    assert candidate["finishReason"] == "STOP" and candidate["index"] == 0
    assert candidate["content"]["parts"] == [
        {"text": "Tuned model support-bot says: What is the refund policy?"}
    ]
    usage = answer["usageMetadata"]
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"]
    assert answer["modelVersion"] == "gemini-3.1-flash-lite"
    by_id = endpoint.replace(endpoint.split("/")[1], "demo-project")
    assert _generate(http, by_id).is_success
    assert emulator.stats()["requests"]["generateContent"] == 2


def test_generate_content_uses_canned_replies(emulator: Any, http: httpx.Client) -> None:
    jobs = [create(http), create(http)]
    emulator.advance(1000)
    first, second = (get(http, j["name"])["tunedModel"]["endpoint"] for j in jobs)
    admin = emulator.admin
    assert admin.post(
        "/_emulator/replies", json={"endpoint": "*", "text": "Always this."}
    ).is_success
    by_id = first.replace(first.split("/")[1], "demo-project")
    assert admin.post(
        "/_emulator/replies", json={"endpoint": by_id, "text": "Only first."}
    ).is_success

    def text(endpoint: str) -> str:
        return _generate(http, endpoint).json()["candidates"][0]["content"]["parts"][0]["text"]

    assert (text(first), text(second)) == ("Only first.", "Always this.")


def test_generate_content_needs_a_succeeded_job_and_contents(
    emulator: Any, http: httpx.Client
) -> None:
    job = create(http)
    emulator.advance(1000)
    endpoint = get(http, job["name"])["tunedModel"]["endpoint"]
    bodies: list[dict[str, Any]] = [
        {},
        {"contents": []},
        {"contents": [{"role": "user"}]},
        {"contents": [{"role": "bot", "parts": [{"text": "x"}]}]},
    ]
    for body in bodies:
        r = http.post(f"/v1/{endpoint}:generateContent", json=body)
        error_of(r, 400, "INVALID_ARGUMENT")
    error_of(_generate(http, f"{PARENT}/endpoints/42"), 404, "NOT_FOUND")
    emulator.fail(name=job["name"])  # no longer SUCCEEDED: its endpoint is gone
    error_of(_generate(http, endpoint), 404, "NOT_FOUND")


# ----- admin routes ------------------------------------------------------------------------


def test_config_can_be_read_and_patched_but_not_with_unknown_fields(emulator: Any) -> None:
    config = emulator.admin.get("/_emulator/config").json()
    assert config["clock"] == "manual" and config["pending_seconds"] == 60
    assert emulator.configure(max_page_size=50)["max_page_size"] == 50
    for bad in ({"no_such_field": 1}, {"clock": "sundial"}, {"rate_503": 2}, {"max_page_size": 0}):
        r = emulator.admin.post("/_emulator/config", json=bad)
        assert next(iter(bad)) in error_of(r, 400, "INVALID_ARGUMENT")


def test_reset_clears_jobs_rules_and_stats_and_restores_the_config(
    emulator: Any, http: httpx.Client
) -> None:
    create(http)
    emulator.fail(labels={"team": "ml"})
    emulator.configure(pending_seconds=1, rate_503=0.0)
    assert emulator.admin.post("/_emulator/reset").json() == {}
    assert emulator.stats() == {
        "requests": {"create": 0, "get": 0, "list": 0, "cancel": 0, "generateContent": 0},
        "requests_by_parent": {},
        "faults": {"503": 0, "429": 0, "lost_create": 0, "quota_429": 0},
        "jobs": 0,
        "arrivals": [],
    }
    assert emulator.admin.get("/_emulator/config").json()["pending_seconds"] == 60
    job = create(http)
    arrived = emulator.stats()["arrivals"]
    assert len(arrived) == 1 and abs(arrived[0] - time.time()) < 60  # the create, by the wall clock
    emulator.advance(1000)
    assert get(http, job["name"])["state"] == "JOB_STATE_SUCCEEDED"  # the rule is gone


def test_seeded_jobs_in_a_fixed_state_do_not_move(emulator: Any, http: httpx.Client) -> None:
    where = {"project": "demo-project", "location": "us-central1"}
    names = emulator.seed(
        [
            {**where, "state": "JOB_STATE_RUNNING", "baseModel": "gemini-2.5-flash"},
            {**where, "state": "JOB_STATE_SUCCEEDED", "tunedModelDisplayName": "old"},
            {**where, "state": "JOB_STATE_FAILED", "error": {"code": 9, "message": "quota"}},
            {**where, "labels": {"team": "ml"}},
        ]
    )
    emulator.advance(100_000)
    running, succeeded, failed, moving = (get(http, name) for name in names)
    assert running["state"] == "JOB_STATE_RUNNING" and "startTime" in running
    assert succeeded["state"] == "JOB_STATE_SUCCEEDED" and "endpoint" in succeeded["tunedModel"]
    assert failed["error"] == {"code": 9, "message": "quota"}
    assert moving["state"] == "JOB_STATE_SUCCEEDED"
    assert http.post(f"/v1/{running['name']}:cancel").json() == {}
    for bad in (
        {**where, "state": "JOB_STATE_DREAMING"},
        {**where, "colour": "red"},
        {"location": "x"},
    ):
        error_of(
            emulator.admin.post("/_emulator/seed", json={"jobs": [bad]}), 400, "INVALID_ARGUMENT"
        )


def test_seeding_ten_thousand_jobs_lists_them_all(emulator: Any, http: httpx.Client) -> None:
    where = {"project": "demo-project", "location": "us-central1"}
    jobs = [
        {**where, "labels": {"n": str(i % 7)}, "baseModel": "gemini-2.5-flash"}
        for i in range(10_000)
    ]
    names = emulator.seed(jobs)  # how fast: bench/, not a timing assert
    assert len(set(names)) == 10_000
    listed = emulator.jobs()
    assert len(listed) == 10_000
    filtered = http.get(JOBS, params={"filter": "labels.n=3", "pageSize": "1000"}).json()
    assert len(filtered["tuningJobs"]) == 1000 and "nextPageToken" in filtered


def test_patch_merges_raw_fields_over_the_answer(emulator: Any, http: httpx.Client) -> None:
    job = create(http)
    emulator.patch(
        job["name"], {"state": "JOB_STATE_SOMETHING_NEW", "surprise": {"x": 1}, "labels": None}
    )
    patched = get(http, job["name"])
    assert patched["state"] == "JOB_STATE_SOMETHING_NEW"
    assert patched["surprise"] == {"x": 1}
    assert "labels" not in patched
    as_ints = http.get(f"/v1/{job['name']}", params={"$alt": "json;enum-encoding=int"}).json()
    assert as_ints["state"] == "JOB_STATE_SOMETHING_NEW"  # no number for an unknown name


def test_stats_count_requests_by_operation_and_parent(emulator: Any, http: httpx.Client) -> None:
    job = create(http)
    get(http, job["name"])
    http.get(JOBS)
    http.post(f"/v1/{job['name']}:cancel")
    http.get(f"/v1/{PARENT}/tuningJobs/12345")
    stats = emulator.stats()
    assert stats["requests"] == {
        "create": 1,
        "get": 2,
        "list": 1,
        "cancel": 1,
        "generateContent": 0,
    }
    number_parent = job["name"].rsplit("/tuningJobs/", 1)[0]
    assert stats["requests_by_parent"] == {PARENT: 3, number_parent: 2}
    assert stats["jobs"] == 1


def test_switching_to_the_real_clock_keeps_the_time(emulator: Any, http: httpx.Client) -> None:
    job = create(http)
    emulator.configure(clock="real")
    assert get(http, job["name"])["state"] == "JOB_STATE_PENDING"
    emulator.advance(60)
    assert get(http, job["name"])["state"] == "JOB_STATE_RUNNING"
    error_of(
        emulator.admin.post("/_emulator/advance", json={"seconds": -1}), 400, "INVALID_ARGUMENT"
    )


# ----- persistence -------------------------------------------------------------------------


def test_data_path_persists_jobs_clock_and_rules_across_restarts(tmp_path: Path) -> None:
    data = tmp_path / "state" / "emulator.json"
    config = EmulatorConfig(
        clock="manual",
        pending_seconds=10,
        running_seconds=100,
        submissions_per_minute=0,
        requests_per_minute=0,
        data_path=str(data),
    )
    with EmulatorServer(Backend(config)) as first, httpx.Client(base_url=first.url) as http:
        kept = create(http)
        cancelled = create(http)
        http.post(f"/v1/{cancelled['name']}:cancel")
        http.post("/_emulator/fail", json={"labels": {"team": "doomed"}})
        http.post("/_emulator/advance", json={"seconds": 50})
        assert get(http, kept["name"])["state"] == "JOB_STATE_RUNNING"
    assert json.loads(data.read_text())["jobs"]
    assert [p.name for p in data.parent.iterdir()] == ["emulator.json"]  # no temp files left

    with EmulatorServer(Backend(config)) as second, httpx.Client(base_url=second.url) as http:
        assert get(http, kept["name"])["state"] == "JOB_STATE_RUNNING"
        assert get(http, cancelled["name"])["state"] == "JOB_STATE_CANCELLED"
        doomed = create(http, job_body(labels={"team": "doomed"}))
        assert int(doomed["name"].rsplit("/", 1)[1]) > int(cancelled["name"].rsplit("/", 1)[1])
        http.post("/_emulator/advance", json={"seconds": 200})
        assert get(http, kept["name"])["state"] == "JOB_STATE_SUCCEEDED"
        assert get(http, doomed["name"])["state"] == "JOB_STATE_FAILED"


def test_an_unreadable_data_file_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "emulator.json"
    data.write_text("{}")
    with pytest.raises(ValueError, match="emulator data file"):
        Backend(EmulatorConfig(data_path=str(data)))


# ----- serving ------------------------------------------------------------------------------


def test_serve_prints_its_url_and_stops_quietly_on_ctrl_c() -> None:
    code = (
        "from reconciler.emulator.backend import Backend\n"
        "from reconciler.emulator.server import serve\n"
        "serve('127.0.0.1', 0, Backend())"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert match, line
        assert httpx.post(f"{match[0]}{JOBS}", json=job_body()).is_success
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
    finally:
        process.kill()
    assert (process.returncode, out, err) == (0, "", "")


def test_embedded_server_has_a_real_clock_and_keeps_its_jobs(tmp_path: Path) -> None:
    with start_embedded(tmp_path) as server, httpx.Client(base_url=server.url) as http:
        config = http.get("/_emulator/config").json()
        assert config["clock"] == "real"
        seconds = [config[f"{phase}_seconds"] for phase in ("pending", "running", "cancelling")]
        assert seconds == [2, 8, 1]
        job = create(http)
        http.post("/_emulator/advance", json={"seconds": 2})
        assert get(http, job["name"])["state"] == "JOB_STATE_RUNNING"
    assert (tmp_path / "emulator-state.json").is_file()
    with start_embedded(tmp_path) as server, httpx.Client(base_url=server.url) as http:
        assert get(http, job["name"])["state"] == "JOB_STATE_RUNNING"


# ----- continuous tuning, preference tuning, evaluation, checkpoints (issue 13) ----------------

EVALUATION = {
    "metrics": [{"pointwiseMetricSpec": {"metricPromptTemplate": "Rate it."}}],
    "outputConfig": {"gcsDestination": {"outputUriPrefix": "gs://bucket/eval/"}},
}


def succeeded(emulator: Any, http: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    job = create(http, body)
    emulator.advance(660)
    return get(http, job["name"])


def continuation(model: str, **fields: Any) -> dict[str, Any]:
    body = job_body(preTunedModel={"tunedModelName": model})
    del body["baseModel"], body["tunedModelDisplayName"]
    return {**body, **fields}


def test_continuous_tuning_makes_new_versions_of_the_parent_model(
    emulator: Any, http: httpx.Client
) -> None:
    parent = succeeded(emulator, http, job_body())
    model = parent["tunedModel"]["model"]
    assert model.endswith("@1")
    second = succeeded(emulator, http, continuation(model))
    assert "baseModel" not in second
    assert second["preTunedModel"] == {
        "tunedModelName": model,
        "baseModel": "gemini-3.1-flash-lite",
    }
    assert second["tunedModelDisplayName"] == "support-bot"  # the parent's, by default
    assert second["tunedModel"]["model"] == model.replace("@1", "@2")
    assert second["tunedModel"]["endpoint"] != parent["tunedModel"]["endpoint"]
    third = succeeded(emulator, http, continuation(model.removesuffix("@1") + "@2"))
    assert third["tunedModel"]["model"] == model.replace("@1", "@3")
    renamed = succeeded(emulator, http, continuation(model, tunedModelDisplayName="support-bot-v2"))
    assert renamed["tunedModel"]["model"].endswith("@1")
    assert renamed["tunedModel"]["model"].split("@")[0] != model.split("@")[0]


def test_continuous_tuning_needs_an_existing_model_and_checkpoint(
    emulator: Any, http: httpx.Client
) -> None:
    pending = create(http)
    parent = succeeded(emulator, http, job_body())
    model = parent["tunedModel"]["model"]
    missing = model.replace("@1", "@9")
    never = pending["name"].replace("tuningJobs", "models")
    for name in (missing, never, model.replace("us-central1", "europe-west4")):
        assert "not found" in error_of(http.post(JOBS, json=continuation(name)), 404, "NOT_FOUND")
    for bad in ("models/1", "projects/p/locations/us-central1/models/abc"):
        error_of(http.post(JOBS, json=continuation(bad)), 400, "INVALID_ARGUMENT")
    body = continuation(model)
    body["preTunedModel"]["checkpointId"] = "99"
    assert "checkpoint" in error_of(http.post(JOBS, json=body), 400, "INVALID_ARGUMENT")
    body["preTunedModel"]["checkpointId"] = "2"
    create(http, body)


def test_source_and_tuning_spec_are_oneofs(emulator: Any, http: httpx.Client) -> None:
    model = succeeded(emulator, http, job_body())["tunedModel"]["model"]
    both = job_body(preTunedModel={"tunedModelName": model})
    assert "pre_tuned_model" in error_of(http.post(JOBS, json=both), 400, "INVALID_ARGUMENT")
    neither = job_body()
    del neither["baseModel"]
    assert "base_model" in error_of(http.post(JOBS, json=neither), 400, "INVALID_ARGUMENT")
    two_specs = job_body(preferenceOptimizationSpec={"trainingDatasetUri": "gs://b/p.jsonl"})
    message = error_of(http.post(JOBS, json=two_specs), 400, "INVALID_ARGUMENT")
    assert "preference_optimization_spec" in message
    output_only = job_body()
    del output_only["baseModel"]
    output_only["preTunedModel"] = {"baseModel": "gemini-3.5-flash"}  # output only: ignored
    error_of(http.post(JOBS, json=output_only), 400, "INVALID_ARGUMENT")


def preference(model: str = "gemini-3.5-flash", **hyper_parameters: Any) -> dict[str, Any]:
    body = job_body(baseModel=model)
    del body["supervisedTuningSpec"]
    body["preferenceOptimizationSpec"] = {
        "trainingDatasetUri": "gs://bucket/prefs.jsonl",
        "hyperParameters": {"beta": 0.5, **hyper_parameters},
    }
    return body


def test_preference_tuning_is_validated_per_model(emulator: Any, http: httpx.Client) -> None:
    job = succeeded(emulator, http, preference(epochCount=2))
    assert job["preferenceOptimizationSpec"]["hyperParameters"] == {"epochCount": "2", "beta": 0.5}
    stats = job["tuningDataStats"]["preferenceOptimizationDataStats"]
    assert int(stats["tuningDatasetExampleCount"]) > 0
    assert [c["epoch"] for c in job["tunedModel"]["checkpoints"]] == ["1", "2"]
    emulator.configure(refuse_retired_models=False)
    where = "tuning_job.preference_optimization_spec"
    for body, field in (
        (preference("gemini-2.5-pro"), where),
        (preference(beta=-1), f"{where}.hyper_parameters.beta"),
        (
            preference(adapterSize="ADAPTER_SIZE_THIRTY_TWO"),
            f"{where}.hyper_parameters.adapter_size",
        ),
        (preference(epochCount=0), f"{where}.hyper_parameters.epoch_count"),
        (preference(foo=1), f"{where}.hyper_parameters"),
    ):
        r = http.post(JOBS, json=body)
        error_of(r, 400, "INVALID_ARGUMENT")
        fields = [v["field"] for v in r.json()["error"]["details"][0]["fieldViolations"]]
        assert any(f.startswith(field) for f in fields), (body, fields)
    dataset = preference()
    dataset["preferenceOptimizationSpec"]["trainingDatasetUri"] = (
        "projects/p/locations/l/datasets/1"
    )
    error_of(http.post(JOBS, json=dataset), 400, "INVALID_ARGUMENT")  # GCS JSONL only, per v1
    succeeded(emulator, http, preference("gemini-2.5-flash"))


def test_checkpoints_unless_only_the_last_is_exported(emulator: Any, http: httpx.Client) -> None:
    job = succeeded(emulator, http, job_body())
    checkpoints = job["tunedModel"]["checkpoints"]
    assert [(c["checkpointId"], c["epoch"]) for c in checkpoints] == [
        ("1", "1"),
        ("2", "2"),
        ("3", "3"),
    ]
    assert int(checkpoints[0]["step"]) < int(checkpoints[2]["step"])
    assert checkpoints[-1]["endpoint"] == job["tunedModel"]["endpoint"]
    assert len({c["endpoint"] for c in checkpoints}) == 3
    prompt = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    for checkpoint in checkpoints:
        r = http.post(f"/v1/{checkpoint['endpoint']}:generateContent", json=prompt)
        assert r.status_code == 200, r.text
    body = job_body()
    body["supervisedTuningSpec"]["exportLastCheckpointOnly"] = True
    assert "checkpoints" not in succeeded(emulator, http, body)["tunedModel"]


def test_evaluation_config_is_checked_and_gives_evaluation_runs(
    emulator: Any, http: httpx.Client
) -> None:
    body = job_body()
    body["supervisedTuningSpec"]["evaluationConfig"] = EVALUATION
    job = succeeded(emulator, http, body)
    assert job["supervisedTuningSpec"]["evaluationConfig"] == EVALUATION
    runs = job["evaluateDatasetRuns"]
    assert [run["checkpointId"] for run in runs] == ["1", "2", "3"]
    output = runs[0]["evaluateDatasetResponse"]["outputInfo"]["gcsOutputDirectory"]
    assert output.startswith("gs://bucket/eval/")
    where = "tuning_job.supervised_tuning_spec.evaluation_config"
    for config, field in (
        ({"outputConfig": EVALUATION["outputConfig"]}, f"{where}.metrics"),
        ({"metrics": EVALUATION["metrics"]}, f"{where}.output_config"),
        ({**EVALUATION, "autoraterConfig": {"samplingCount": 64}}, f"{where}.autorater_config"),
        ({**EVALUATION, "metrics": "all"}, f"{where}.metrics"),
        ({**EVALUATION, "surprise": 1}, where),
    ):
        body["supervisedTuningSpec"]["evaluationConfig"] = config
        r = http.post(JOBS, json=body)
        error_of(r, 400, "INVALID_ARGUMENT")
        fields = [v["field"] for v in r.json()["error"]["details"][0]["fieldViolations"]]
        assert any(f.startswith(field) for f in fields), (config, fields)


def test_a_cancel_may_lose_the_race_to_completion(emulator: Any, http: httpx.Client) -> None:
    emulator.configure(cancel_wins=False)
    job = create(http)
    emulator.advance(60)
    http.post(f"/v1/{job['name']}:cancel", json={}).raise_for_status()
    assert get(http, job["name"])["state"] == "JOB_STATE_CANCELLING"
    emulator.advance(30)
    done = get(http, job["name"])
    assert done["state"] == "JOB_STATE_SUCCEEDED"
    assert "error" not in done and done["tunedModel"]["endpoint"]
    emulator.fail(labels={"team": "doomed"})
    doomed = create(http, job_body(labels={"team": "doomed"}))
    http.post(f"/v1/{doomed['name']}:cancel", json={}).raise_for_status()
    emulator.advance(30)
    assert get(http, doomed["name"])["state"] == "JOB_STATE_FAILED"
