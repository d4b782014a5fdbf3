"""The REST client against the emulator over HTTP: pagination, errors, retries, ambiguous creates."""

from __future__ import annotations

import uuid

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from reconciler.errors import (
    CredentialsError,
    EndpointError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    ReconcilerError,
    ResourceExhaustedError,
    UnavailableError,
)
from reconciler.http.retry import RetryPolicy
from reconciler.vertex.auth import (
    GoogleCredentialsAuth,
    StaticTokenAuth,
    check_endpoint,
    resolve_auth,
)
from reconciler.vertex.client import VertexClient
from reconciler.vertex.wire import TuningJob
from tests.localserver import LocalServer

PARENT = "projects/demo-project/locations/us-central1"
FAST = RetryPolicy(initial=0.005, maximum=0.02, deadline=30, max_attempts=25)


def job_body(i: int = 0) -> TuningJob:
    return TuningJob.model_validate({
        "baseModel": "gemini-3.5-flash",
        "supervisedTuningSpec": {"trainingDatasetUri": f"gs://bkt/{i}.jsonl", "hyperParameters": {"epochCount": 3}},
        "labels": {"team": "t"},
    })


@pytest.fixture
def client(emulator):
    with VertexClient(endpoint=emulator.url, retry=FAST) as c:
        yield c


def test_create_get_list_cancel_round_trip(client, emulator):
    created = client.create_tuning_job(PARENT, job_body(), "req-1")
    assert created.name.startswith("projects/") and created.name.split("/")[1].isdigit()
    assert created.state == "JOB_STATE_PENDING"
    assert created.labels["reconciler-request"] == "req-1"
    assert created.supervised_tuning_spec.hyper_parameters.epoch_count == 3
    got = client.get_tuning_job(created.name)
    assert got.name == created.name
    assert [j.name for j in client.list_tuning_jobs(PARENT)] == [created.name]
    client.cancel_tuning_job(created.name)
    assert client.get_tuning_job(created.name).state == "JOB_STATE_CANCELLING"
    emulator.advance(3600)
    done = client.get_tuning_job(created.name)
    assert done.state == "JOB_STATE_CANCELLED" and done.error.code == 1


def test_list_follows_every_page_without_gets(client, emulator):
    emulator.configure(max_page_size=100)
    names = emulator.seed([{"project": "demo-project", "location": "us-central1", "baseModel": "gemini-3.5-flash",
                            "supervisedTuningSpec": {"trainingDatasetUri": f"gs://bkt/{i}.jsonl"}} for i in range(1050)])
    before = emulator.stats()["requests"]
    listed = client.list_tuning_jobs(PARENT)
    after = emulator.stats()["requests"]
    assert sorted(j.name for j in listed) == sorted(names)
    assert after["list"] - before.get("list", 0) == 11  # ceil(1050 / 100)
    assert after.get("get", 0) == before.get("get", 0)


def test_api_errors_are_typed_and_keep_message_and_status(client, emulator):
    with pytest.raises(NotFoundError) as nf:
        client.get_tuning_job(f"{PARENT}/tuningJobs/424242")
    assert nf.value.status == "NOT_FOUND" and nf.value.code == 404
    bad = job_body().model_copy(update={"base_model": "not-a-model"})
    with pytest.raises(InvalidArgumentError) as ia:
        client.create_tuning_job(PARENT, bad, "req-bad")
    assert "not-a-model" in ia.value.message
    [finished] = emulator.seed([{"project": "demo-project", "location": "us-central1", "baseModel": "gemini-3.5-flash",
                                 "supervisedTuningSpec": {"trainingDatasetUri": "gs://bkt/x.jsonl"}, "state": "JOB_STATE_SUCCEEDED"}])
    with pytest.raises(FailedPreconditionError) as fp:
        client.cancel_tuning_job(finished)
    assert fp.value.status == "FAILED_PRECONDITION"


def test_thirty_percent_503_still_completes_every_call(client, emulator):
    emulator.configure(rate_503=0.3, fault_seed=7)
    made = [client.create_tuning_job(PARENT, job_body(i), f"r{i}") for i in range(15)]
    for job in made:
        client.get_tuning_job(job.name)
    assert len(client.list_tuning_jobs(PARENT)) == 15
    for job in made[:5]:
        client.cancel_tuning_job(job.name)
    assert emulator.stats()["faults"]["503"] > 0
    assert client.transport.counts["retries"] >= emulator.stats()["faults"]["503"]
    emulator.configure(rate_503=0.0)
    assert len(emulator.jobs()) == 15  # no duplicate from a retried create


def test_ambiguous_creates_never_make_two_jobs(client, emulator):
    emulator.configure(lost_create_rate=0.5, rate_503=0.2, fault_seed=3)
    made = [client.create_tuning_job(PARENT, job_body(i), uuid.uuid4().hex) for i in range(20)]
    stats = emulator.stats()["faults"]
    assert stats["lost_create"] > 0
    emulator.configure(lost_create_rate=0.0, rate_503=0.0)
    jobs = emulator.jobs()
    assert len(jobs) == 20
    assert sorted(j["name"] for j in jobs) == sorted(j.name for j in made)


def test_429_honours_retry_after(emulator):
    emulator.configure(rate_429=1.0, retry_after_seconds=0.2, fault_seed=1)
    sleeps: list[float] = []
    with VertexClient(endpoint=emulator.url, retry=RetryPolicy(initial=0.001, maximum=0.01, deadline=1.5, max_attempts=4)) as c:
        c.transport._sleep = sleeps.append  # record instead of sleeping; the policy is what is tested
        with pytest.raises(ResourceExhaustedError) as exc:
            c.list_tuning_jobs(PARENT)
    assert "gave up after 4 attempts" in str(exc.value)
    assert len(sleeps) == 3 and all(s >= 0.2 for s in sleeps)


def test_retries_are_bounded_by_total_time(emulator):
    emulator.configure(rate_503=1.0)
    policy = RetryPolicy(initial=0.05, maximum=0.1, deadline=0.5, max_attempts=100)
    with VertexClient(endpoint=emulator.url, retry=policy) as c, pytest.raises(UnavailableError, match="gave up after"):
        c.list_tuning_jobs(PARENT)


def test_unknown_fields_and_states_are_kept_not_fatal(client, emulator):
    created = client.create_tuning_job(PARENT, job_body(), "req-x")
    emulator.patch(created.name, {"state": "JOB_STATE_SOMETHING_NEW", "brandNewField": {"a": 1}})
    [job] = client.list_tuning_jobs(PARENT)
    assert job.state == "JOB_STATE_SOMETHING_NEW"
    assert job.model_extra["brandNewField"] == {"a": 1}


def test_int_enums_map_to_names():
    job = TuningJob.model_validate({"state": 4, "supervisedTuningSpec": {"hyperParameters": {"adapterSize": 6, "epochCount": "7"}}})
    assert job.state == "JOB_STATE_SUCCEEDED"
    assert job.supervised_tuning_spec.hyper_parameters.adapter_size == "ADAPTER_SIZE_TWO"
    assert job.supervised_tuning_spec.hyper_parameters.epoch_count == 7
    assert job.to_wire()["supervisedTuningSpec"]["hyperParameters"]["epochCount"] == "7"


@pytest.mark.parametrize("project,location", [("../x", "us-central1"), ("demo-project", "us-central1/../../x"),
                                              ("demo-project?x=1", "us-central1"), ("evil.com/", "us")])
def test_path_segments_cannot_steer_requests(client, project, location):
    with pytest.raises(ReconcilerError):
        client.list_tuning_jobs(f"projects/{project}/locations/{location}")


def test_job_names_from_outside_are_checked(client):
    for name in ("projects/p/locations/l/tuningJobs/1/../../x", "https://evil/x", "projects/p/locations/l/tuningJobs/a b"):
        with pytest.raises(ReconcilerError):
            client.get_tuning_job(name)


def test_endpoint_rules():
    assert check_endpoint("http://127.0.0.1:8080/v1/") == "http://127.0.0.1:8080"
    assert check_endpoint("http://localhost:1") == "http://localhost:1"
    assert check_endpoint("https://europe-west4-aiplatform.googleapis.com") == "https://europe-west4-aiplatform.googleapis.com"
    with pytest.raises(EndpointError, match="--allow-insecure-http"):
        check_endpoint("http://10.0.0.5:8080")
    assert check_endpoint("http://10.0.0.5:8080", allow_insecure_http=True) == "http://10.0.0.5:8080"
    with pytest.raises(EndpointError):
        check_endpoint("ftp://x")


def test_regional_urls_by_default():
    c = VertexClient()
    assert c._url("europe-west4", "projects/p/locations/europe-west4/tuningJobs").startswith(
        "https://europe-west4-aiplatform.googleapis.com/v1/projects/p/")
    c.close()


def test_credentials_resolution(monkeypatch):
    assert resolve_auth("http://127.0.0.1:9", None) is None
    token_auth = resolve_auth(None, "tok-1234567890")
    assert isinstance(token_auth, StaticTokenAuth) and "tok-1234567890" not in repr(token_auth)
    with pytest.raises(CredentialsError, match="gcloud auth application-default login"):
        resolve_auth(None, None)


class _TokenAndEcho:
    """A tiny OAuth token endpoint plus an API that echoes the Authorization header."""

    def __init__(self) -> None:
        self.refreshes = 0

        async def token(request: Request) -> JSONResponse:
            self.refreshes += 1
            return JSONResponse({"access_token": f"fresh-{self.refreshes}", "expires_in": 3600, "token_type": "Bearer"})

        async def echo(request: Request) -> JSONResponse:
            return JSONResponse({"tuningJobs": [], "auth": request.headers.get("authorization")})

        app = Starlette(routes=[Route("/token", token, methods=["POST"]),
                                Route("/v1/projects/p-roject/locations/us-central1/tuningJobs", echo)])
        self.app = app

    def __enter__(self) -> str:
        self._server = LocalServer(self.app)
        return self._server.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._server.__exit__(*exc)


def test_google_credentials_refresh_over_httpx():
    from google.oauth2.credentials import Credentials

    fake = _TokenAndEcho()
    with fake as url:
        creds = Credentials(token=None, refresh_token="r", token_uri=f"{url}/token", client_id="c", client_secret="s")
        auth = GoogleCredentialsAuth(creds)
        with httpx.Client(auth=auth) as http:
            body = http.get(f"{url}/v1/projects/p-roject/locations/us-central1/tuningJobs").json()
            assert body["auth"] == "Bearer fresh-1"
            http.get(f"{url}/v1/projects/p-roject/locations/us-central1/tuningJobs")
    assert fake.refreshes == 1  # refreshed once, reused while valid


class _FilterlessFake:
    """Another fake of the API: loses the first create's response and rejects list filters."""

    def __init__(self) -> None:
        self.jobs: list[dict] = []
        self.creates = 0

        async def collection(request: Request) -> JSONResponse:
            if request.method == "POST":
                self.creates += 1
                body = await request.json()
                self.jobs.append({**body, "name": f"projects/1/locations/us-central1/tuningJobs/{len(self.jobs) + 1}",
                                  "state": "JOB_STATE_PENDING"})
                if self.creates == 1:
                    return JSONResponse({"error": {"code": 504, "message": "deadline", "status": "DEADLINE_EXCEEDED"}}, 504)
                return JSONResponse(self.jobs[-1])
            if "filter" in request.query_params:
                return JSONResponse({"error": {"code": 400, "message": "filter not supported", "status": "INVALID_ARGUMENT"}}, 400)
            return JSONResponse({"tuningJobs": self.jobs} if self.jobs else {})

        app = Starlette(routes=[Route("/v1/projects/demo-project/locations/us-central1/tuningJobs", collection,
                                      methods=["GET", "POST"])])
        self.app = app

    def __enter__(self) -> str:
        self._server = LocalServer(self.app)
        return self._server.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._server.__exit__(*exc)


def test_ambiguous_create_is_settled_without_server_side_filters():
    fake = _FilterlessFake()
    with fake as url, VertexClient(endpoint=url, retry=FAST) as c:
        job = c.create_tuning_job(PARENT, job_body(), "req-lost")
    assert fake.creates == 1 and len(fake.jobs) == 1
    assert job.name == fake.jobs[0]["name"]


def test_waiting_for_the_quota_window_does_not_use_up_the_retry_deadline(emulator):
    from reconciler.http.ratelimit import SlidingWindowLimiter

    emulator.configure(rate_503=1.0)
    policy = RetryPolicy(initial=0.001, maximum=0.002, deadline=0.3, max_attempts=4)
    with VertexClient(endpoint=emulator.url, retry=policy) as c, pytest.raises(UnavailableError) as exc:
        c.transport.request_limiter = SlidingWindowLimiter(1, window=0.25)  # one request per 0.25 s
        c.list_tuning_jobs(PARENT)
    # Each attempt waited ~0.25 s for the window, far past the 0.3 s deadline in all, yet every
    # attempt the policy allows was made: only time spent retrying counts against the deadline.
    assert "gave up after 4 attempts" in str(exc.value)
