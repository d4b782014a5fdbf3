"""Google's own clients, pointed at the emulator, work as they do against Vertex AI.

google-genai (`client.tunings`, `client.models.generate_content`), google-api-python-client
(the discovery client, with `list_next`), and requests shaped exactly as the GAPIC REST
transport of google-cloud-aiplatform sends them (int enums, int64 as strings,
`$alt=json;enum-encoding=int`), which is not installed here.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from google import genai
from google.auth.credentials import AnonymousCredentials
from google.genai import errors, types
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

PROJECT, LOCATION = "demo-project", "us-central1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"


@pytest.fixture
def client(emulator: Any) -> Iterator[genai.Client]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the SDK's tuning implementation is experimental"
        yield genai.Client(
            vertexai=True,
            project=PROJECT,
            location=LOCATION,
            credentials=Credentials(token="fake"),
            http_options=types.HttpOptions(base_url=emulator.url, api_version="v1"),
        )


def tune(client: genai.Client, team: str = "ml") -> types.TuningJob:
    return client.tunings.tune(
        base_model="gemini-3.1-flash-lite",
        training_dataset=types.TuningDataset(gcs_uri="gs://bucket/train.jsonl"),
        config=types.CreateTuningJobConfig(
            validation_dataset=types.TuningValidationDataset(gcs_uri="gs://bucket/val.jsonl"),
            epoch_count=3,
            learning_rate_multiplier=1.0,
            adapter_size=types.AdapterSize.ADAPTER_SIZE_FOUR,
            export_last_checkpoint_only=True,
            tuned_model_display_name="support-bot",
            description="Answers support tickets.",
            labels={"team": team, "managed-by": "reconciler"},
        ),
    )


# ----- google-genai ------------------------------------------------------------------------


def test_genai_tunes_gets_and_cancels_a_job(emulator: Any, client: genai.Client) -> None:
    job = tune(client)
    assert job.name and job.name.startswith("projects/") and "/tuningJobs/" in job.name
    assert job.state == types.JobState.JOB_STATE_PENDING
    assert job.supervised_tuning_spec and job.supervised_tuning_spec.hyper_parameters
    assert job.supervised_tuning_spec.hyper_parameters.epoch_count == 3
    assert job.supervised_tuning_spec.hyper_parameters.adapter_size == "ADAPTER_SIZE_FOUR"
    emulator.advance(60)
    running = client.tunings.get(name=job.name)
    assert running.state == types.JobState.JOB_STATE_RUNNING and running.start_time
    assert running.tuning_data_stats and running.tuning_data_stats.supervised_tuning_data_stats
    client.tunings.cancel(name=job.name)
    assert client.tunings.get(name=job.name).state == types.JobState.JOB_STATE_CANCELLING
    emulator.advance(30)
    cancelled = client.tunings.get(name=job.name)
    assert cancelled.state == types.JobState.JOB_STATE_CANCELLED
    assert cancelled.error and cancelled.error.code == 1 and cancelled.end_time


def test_genai_lists_across_pages_with_a_labels_filter(emulator: Any, client: genai.Client) -> None:
    mine = {tune(client, team="ml").name for _ in range(5)}
    tune(client, team="ops")
    config = types.ListTuningJobsConfig(page_size=2, filter="labels.team=ml")
    assert {job.name for job in client.tunings.list(config=config)} == mine
    assert emulator.stats()["requests"]["list"] == 3


def test_genai_sees_unknown_jobs_as_not_found(client: genai.Client) -> None:
    with pytest.raises(errors.ClientError) as caught:
        client.tunings.get(name=f"{PARENT}/tuningJobs/404")
    assert (caught.value.code, caught.value.status) == (404, "NOT_FOUND")


def test_genai_generates_content_with_a_tuned_model(emulator: Any, client: genai.Client) -> None:
    job = tune(client)
    emulator.advance(1000)
    succeeded = client.tunings.get(name=job.name or "")
    assert succeeded.tuned_model and succeeded.tuned_model.endpoint
    assert (succeeded.tuned_model.model or "").endswith("@1")
    answer = client.models.generate_content(model=succeeded.tuned_model.endpoint, contents="Hi")
    assert answer.text == "Tuned model support-bot says: Hi"
    assert answer.usage_metadata and answer.usage_metadata.total_token_count


# ----- google-api-python-client ------------------------------------------------------------


@pytest.fixture
def jobs(emulator: Any) -> Any:
    service = build(
        "aiplatform",
        "v1",
        credentials=AnonymousCredentials(),
        static_discovery=True,
        client_options={"api_endpoint": emulator.url},
    )
    return service.projects().locations().tuningJobs()


def discovery_body(team: str = "ml") -> dict[str, Any]:
    return {
        "baseModel": "gemini-3.5-flash",
        "supervisedTuningSpec": {
            "trainingDatasetUri": "gs://bucket/train.jsonl",
            "hyperParameters": {"epochCount": "2", "adapterSize": "ADAPTER_SIZE_TWO"},
        },
        "labels": {"team": team},
    }


def test_discovery_client_creates_gets_lists_and_cancels(emulator: Any, jobs: Any) -> None:
    created = jobs.create(parent=PARENT, body=discovery_body()).execute()
    assert created["state"] == "JOB_STATE_PENDING"
    assert jobs.get(name=created["name"]).execute() == created
    mine = {created["name"]} | {
        jobs.create(parent=PARENT, body=discovery_body()).execute()["name"] for _ in range(4)
    }
    jobs.create(parent=PARENT, body=discovery_body(team="ops")).execute()
    seen: list[str] = []
    request = jobs.list(parent=PARENT, pageSize=2, filter="labels.team=ml")
    while request is not None:
        page = request.execute()
        seen += [job["name"] for job in page.get("tuningJobs", [])]
        request = jobs.list_next(request, page)
    assert sorted(seen) == sorted(mine)
    assert jobs.cancel(name=created["name"], body={}).execute() == {}
    emulator.advance(30)
    assert jobs.get(name=created["name"]).execute()["state"] == "JOB_STATE_CANCELLED"


def test_discovery_client_raises_http_errors_with_google_status(emulator: Any, jobs: Any) -> None:
    with pytest.raises(HttpError) as missing:
        jobs.get(name=f"{PARENT}/tuningJobs/404").execute()
    assert missing.value.status_code == 404
    assert json.loads(missing.value.content)["error"]["status"] == "NOT_FOUND"
    done = jobs.create(parent=PARENT, body=discovery_body()).execute()
    emulator.advance(1000)
    with pytest.raises(HttpError) as finished:
        jobs.cancel(name=done["name"], body={}).execute()
    assert finished.value.status_code == 400
    assert json.loads(finished.value.content)["error"]["status"] == "FAILED_PRECONDITION"


# ----- requests shaped as the GAPIC REST transport sends them -------------------------------

GAPIC_QUERY = "$alt=json;enum-encoding=int"
GAPIC_HEADERS = {
    "content-type": "application/json",
    "x-goog-api-client": "gl-python/3.11.7 grpc/1.85.3 gax/2.44.0 gapic/2.7.0 pb/7.36.2",
}
GAPIC_CREATE_BODY = (
    '{"tunedModelDisplayName":"my-tuned","description":"d","baseModel":"gemini-3.1-flash-lite",'
    '"supervisedTuningSpec":{"trainingDatasetUri":"gs://b/train.jsonl",'
    '"validationDatasetUri":"gs://b/val.jsonl","hyperParameters":{"epochCount":"3",'
    '"learningRateMultiplier":1.0,"adapterSize":2}},"labels":{"team":"ml"}}'
)


def test_gapic_rest_requests_get_int_enums_back(emulator: Any) -> None:
    with httpx.Client(base_url=emulator.url, headers=GAPIC_HEADERS) as gapic:
        created = gapic.post(
            f"/v1/{PARENT}/tuningJobs?{GAPIC_QUERY}",
            content=GAPIC_CREATE_BODY,
            headers={"x-goog-request-params": f"parent={PARENT.replace('/', '%2F')}"},
        )
        assert created.status_code == 200, created.text
        job = created.json()
        assert job["state"] == 2  # JOB_STATE_PENDING
        assert job["supervisedTuningSpec"]["hyperParameters"] == {
            "epochCount": "3",
            "learningRateMultiplier": 1.0,
            "adapterSize": 2,  # ADAPTER_SIZE_FOUR
        }
        name_header = {"x-goog-request-params": f"name={job['name'].replace('/', '%2F')}"}
        emulator.advance(60)
        got = gapic.get(f"/v1/{job['name']}?{GAPIC_QUERY}", headers=name_header).json()
        assert got["state"] == 3  # JOB_STATE_RUNNING
        listed = gapic.get(
            f"/v1/{PARENT}/tuningJobs?{GAPIC_QUERY}&pageSize=10&filter=labels.team%3Dml"
        ).json()
        assert [j["state"] for j in listed["tuningJobs"]] == [3]
        cancel = gapic.post(f"/v1/{job['name']}:cancel?{GAPIC_QUERY}", content="{}")
        assert (cancel.status_code, cancel.json()) == (200, {})
        emulator.advance(30)
        assert gapic.get(f"/v1/{job['name']}?{GAPIC_QUERY}").json()["state"] == 7  # CANCELLED
