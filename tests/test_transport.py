"""The shared HTTP transport (reconciler.http) and the clients that take it, over httpx.MockTransport.

No emulator, no network and no real wait: the transport gets a fake clock whose `sleep` only
moves it forward, so back-off, `Retry-After`, the retry deadline and quota pacing are all
checked as numbers.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from reconciler import interrupt
from reconciler.config import Settings, load_settings
from reconciler.errors import (
    FailedPreconditionError,
    MalformedResponseError,
    NotFoundError,
    RequestNotSentError,
    ResourceExhaustedError,
    TransportError,
    UnavailableError,
)
from reconciler.http.redact import register_secret
from reconciler.http.retry import RetryPolicy
from reconciler.http.transport import Transport
from reconciler.storage import StorageClient, md5_base64
from reconciler.vertex.client import VertexClient

URL = "http://api.test/v1/projects/p/things"
PARENT = "projects/demo-project/locations/us-central1"
QUICK = RetryPolicy(initial=1, multiplier=2, maximum=8, deadline=100, max_attempts=5)
Handler = Callable[[httpx.Request], httpx.Response]


class FakeClock:
    """A monotonic clock that only moves when something sleeps on it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def answers(*responses: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    """A handler giving `responses` in turn (raising the exceptions), and the requests it saw."""
    queue = list(responses)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return handler, seen


def error(code: int, status: str, message: str, **headers: str) -> httpx.Response:
    return httpx.Response(code, headers=headers, json={"error": {"code": code, "status": status, "message": message}})


def transport(handler: Handler, retry: RetryPolicy = QUICK, *, service: str = "Vertex AI",
              requests_per_minute: int = 0) -> tuple[Transport, FakeClock]:
    """A Transport over `handler`, with a fake clock for every wait."""
    clock = FakeClock()
    http = httpx.Client(transport=httpx.MockTransport(handler))
    return Transport(http, retry, sleep=clock.sleep, clock=clock, seed=7, service=service,
                     requests_per_minute=requests_per_minute), clock


@pytest.fixture(autouse=True)
def _no_stop_request() -> Iterator[None]:
    interrupt.reset()
    yield
    interrupt.reset()


# -- retries ------------------------------------------------------------------------------------
@pytest.mark.parametrize("code, status", [(503, "UNAVAILABLE"), (429, "RESOURCE_EXHAUSTED"), (500, "INTERNAL"),
                                          (502, "UNAVAILABLE"), (504, "DEADLINE_EXCEEDED")])
def test_retryable_statuses_are_retried_until_an_answer(code: int, status: str) -> None:
    handler, seen = answers(error(code, status, "busy"), error(code, status, "busy"), httpx.Response(200, json={"ok": 1}))
    t, clock = transport(handler)
    assert t.send("GET", URL) == {"ok": 1}
    assert len(seen) == 3 and len(clock.sleeps) == 2
    assert t.counts["attempts"] == 3 and t.counts["retries"] == 2 and t.counts[f"http_{code}"] == 2


def test_back_off_grows_exponentially_with_jitter_and_a_cap() -> None:
    handler, _ = answers(*[error(503, "UNAVAILABLE", "down")] * 5)
    t, clock = transport(handler, RetryPolicy(initial=1, multiplier=2, maximum=4, deadline=1000, max_attempts=5))
    with pytest.raises(UnavailableError):
        t.send("GET", URL)
    bases = [1, 2, 4, 4]  # 'equal jitter': each wait is in [base/2, base]
    assert len(clock.sleeps) == 4
    assert all(base / 2 <= slept <= base for base, slept in zip(bases, clock.sleeps, strict=True))


def test_retry_after_is_a_floor_for_the_wait() -> None:
    handler, _ = answers(error(429, "RESOURCE_EXHAUSTED", "quota", **{"Retry-After": "7"}), httpx.Response(200, json={}))
    t, clock = transport(handler)
    assert t.send("GET", URL) == {}
    assert clock.sleeps[0] >= 7


def retry_info(delay: object) -> dict[str, object]:
    return {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}


def quota(*details: object, **headers: str) -> httpx.Response:
    body = {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "quota", "details": list(details)}}
    return httpx.Response(429, headers=headers, json=body)


@pytest.mark.parametrize("delay, seconds", [("3.500s", 3.5), ("3s", 3.0), ("0.250000000s", 0.25),
                                            ("12.25s", 12.25)])
def test_retry_info_in_the_error_details_sets_the_wait(delay: str, seconds: float) -> None:
    handler, _ = answers(quota({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMIT_EXCEEDED"},
                               retry_info(delay)), httpx.Response(200, json={}))
    t, clock = transport(handler, RetryPolicy(initial=0.001, multiplier=1, maximum=0.001, deadline=100))
    assert t.send("GET", URL) == {}
    assert clock.sleeps == [pytest.approx(seconds)]


def test_retry_info_comes_before_retry_after_which_is_the_fallback() -> None:
    policy = RetryPolicy(initial=0.001, multiplier=1, maximum=0.001, deadline=100)
    handler, _ = answers(quota(retry_info("2.500s"), **{"Retry-After": "9"}), httpx.Response(200, json={}))
    t, clock = transport(handler, policy)
    t.send("GET", URL)
    assert clock.sleeps == [2.5]
    handler, _ = answers(quota(retry_info("soon"), **{"Retry-After": "9"}), httpx.Response(200, json={}))
    t, clock = transport(handler, policy)
    t.send("GET", URL)
    assert clock.sleeps == [9]  # a RetryInfo that is no Duration is ignored


@pytest.mark.parametrize("delay", ["1.5", "1.5 s", "-1s", "1.1234567890s", "1e3s", 3, None])
def test_retry_delays_that_are_not_protobuf_durations_are_ignored(delay: object) -> None:
    handler, _ = answers(quota(retry_info(delay)), httpx.Response(200, json={}))
    t, clock = transport(handler, RetryPolicy(initial=1, multiplier=1, maximum=1, deadline=100))
    t.send("GET", URL)
    assert len(clock.sleeps) == 1 and clock.sleeps[0] <= 1


def test_a_503_with_retry_info_waits_as_told() -> None:
    body = {"error": {"code": 503, "status": "UNAVAILABLE", "message": "later", "details": [retry_info("4s")]}}
    handler, _ = answers(httpx.Response(503, json=body), httpx.Response(200, json={}))
    t, clock = transport(handler, RetryPolicy(initial=0.001, multiplier=1, maximum=0.001, deadline=100))
    t.send("GET", URL)
    assert clock.sleeps == [4]


def test_a_retry_info_beyond_the_deadline_gives_up_at_once() -> None:
    handler, seen = answers(quota(retry_info("300s")))
    t, clock = transport(handler, RetryPolicy(deadline=60))
    with pytest.raises(ResourceExhaustedError, match=r"gave up after 1 attempt"):
        t.send("GET", URL)
    assert len(seen) == 1 and clock.sleeps == []


def test_a_408_is_retried() -> None:
    handler, seen = answers(error(408, "", "Request Timeout"), httpx.Response(200, json={"ok": 1}))
    t, clock = transport(handler)
    assert t.send("GET", URL) == {"ok": 1}
    assert len(seen) == 2 and len(clock.sleeps) == 1 and t.counts["http_408"] == 1


def test_a_create_answered_408_looks_for_its_job_before_sending_again() -> None:
    job = {"name": f"{PARENT}/tuningJobs/1", "labels": {"reconciler-request": "r1"}, "baseModel": "gemini-3.5-flash"}
    handler, seen = answers(error(408, "", "Request Timeout"), httpx.Response(200, json={"tuningJobs": [job]}))
    t, _ = transport(handler)
    client = VertexClient(endpoint="http://vertex.test", transport=t)
    from reconciler.vertex.wire import TuningJob

    created = client.create_tuning_job(PARENT, TuningJob.model_validate({"baseModel": "gemini-3.5-flash"}), "r1")
    assert created.name == job["name"] and [r.method for r in seen] == ["POST", "GET"]


def test_a_create_whose_only_attempt_got_408_is_settled_by_the_lookup() -> None:
    job = {"name": f"{PARENT}/tuningJobs/1", "labels": {"reconciler-request": "r1"}, "baseModel": "gemini-3.5-flash"}
    handler, seen = answers(error(408, "", "Request Timeout"), httpx.Response(200, json={"tuningJobs": [job]}))
    t, _ = transport(handler, RetryPolicy(max_attempts=1))
    client = VertexClient(endpoint="http://vertex.test", transport=t)
    from reconciler.vertex.wire import TuningJob

    created = client.create_tuning_job(PARENT, TuningJob.model_validate({"baseModel": "gemini-3.5-flash"}), "r1")
    assert created.name == job["name"] and [r.method for r in seen] == ["POST", "GET"]


def test_a_retry_after_beyond_the_deadline_gives_up_at_once() -> None:
    handler, seen = answers(error(503, "UNAVAILABLE", "later", **{"Retry-After": "300"}))
    t, clock = transport(handler, RetryPolicy(deadline=60))
    with pytest.raises(UnavailableError) as caught:
        t.send("GET", URL + "?key=v")
    assert len(seen) == 1 and clock.sleeps == []
    assert str(caught.value) == (f"Vertex AI API error 503 UNAVAILABLE: later (GET {URL}) "
                                 "[gave up after 1 attempt in 0.0 s]")


def test_gives_up_after_the_last_attempt_and_says_how_many() -> None:
    handler, seen = answers(*[error(503, "UNAVAILABLE", "down")] * 3)
    t, _ = transport(handler, RetryPolicy(initial=1, maximum=1, deadline=100, max_attempts=3))
    with pytest.raises(UnavailableError, match=r"\[gave up after 3 attempts in \d+\.\d s\]$"):
        t.send("GET", URL)
    assert len(seen) == 3


@pytest.mark.parametrize("code, status, kind", [(400, "INVALID_ARGUMENT", "InvalidArgumentError"),
                                                (403, "PERMISSION_DENIED", "PermissionDeniedError"),
                                                (404, "NOT_FOUND", "NotFoundError"),
                                                (409, "ALREADY_EXISTS", "ConflictError")])
def test_a_client_error_is_raised_at_once_as_its_type(code: int, status: str, kind: str) -> None:
    handler, seen = answers(error(code, status, "no"))
    t, clock = transport(handler)
    with pytest.raises(Exception) as caught:
        t.send("POST", URL, body={})
    assert type(caught.value).__name__ == kind
    assert len(seen) == 1 and clock.sleeps == [] and t.counts["retries"] == 0
    assert str(caught.value) == f"Vertex AI API error {code} {status}: no (POST {URL})"


def test_the_error_names_the_service_it_came_from() -> None:
    handler, _ = answers(httpx.Response(412, text="Precondition Failed"))
    t, _ = transport(handler, service="Cloud Storage")
    with pytest.raises(FailedPreconditionError) as caught:
        t.send("DELETE", URL)
    assert str(caught.value) == f"Cloud Storage API error 412 FAILED_PRECONDITION: Precondition Failed (DELETE {URL})"


def test_connection_failures_are_retried_and_only_sent_ones_are_ambiguous() -> None:
    handler, _ = answers(httpx.ConnectError("refused"), httpx.ReadError("reset"), error(429, "RESOURCE_EXHAUSTED", "q"),
                         error(503, "UNAVAILABLE", "d"), httpx.Response(200, json={"done": True}))
    t, _ = transport(handler)
    flags: list[bool] = []
    assert t.send("POST", URL, before_retry=flags.append) == {"done": True}
    assert flags == [False, True, False, True]  # refused connect, reset read, 429, 503


def test_before_retry_can_settle_the_call() -> None:
    handler, seen = answers(httpx.ReadTimeout("slow"))
    t, _ = transport(handler)
    assert t.send("POST", URL, before_retry=lambda ambiguous: "found it" if ambiguous else None) == "found it"
    assert len(seen) == 1


def test_a_connection_that_never_comes_names_the_host() -> None:
    handler, _ = answers(*[httpx.ConnectError("refused")] * 2)
    t, _ = transport(handler, RetryPolicy(initial=1, max_attempts=2))
    with pytest.raises(TransportError, match=r"^cannot connect to api\.test:80: refused \[gave up after 2 attempts"):
        t.send("GET", URL)


def test_an_unreachable_host_is_given_up_after_three_connection_attempts() -> None:
    """A dead endpoint is not a busy one: three attempts, then the error (not the retry deadline)."""
    handler, _ = answers(*[httpx.ConnectError("refused")] * 10)
    t, clock = transport(handler, RetryPolicy(initial=1, max_attempts=10, deadline=120))
    with pytest.raises(TransportError, match=r"gave up after 3 attempts"):
        t.send("GET", URL)
    assert len(clock.sleeps) == 2


# -- pacing -------------------------------------------------------------------------------------
def test_quota_pacing_waits_for_the_window_on_the_injected_clock() -> None:
    handler, _ = answers(*[httpx.Response(200, json={})] * 3)
    t, clock = transport(handler, requests_per_minute=1)
    for _ in range(3):
        t.send("GET", URL, region="us-central1")
    assert clock.sleeps == [60.0, 60.0]


def test_time_waiting_for_the_quota_does_not_count_against_the_retry_deadline() -> None:
    handler, seen = answers(error(503, "UNAVAILABLE", "d"), error(503, "UNAVAILABLE", "d"), httpx.Response(200, json={}))
    t, clock = transport(handler, RetryPolicy(initial=1, maximum=1, deadline=5, max_attempts=5), requests_per_minute=1)
    assert t.send("GET", URL, region="us-central1") == {}
    assert len(seen) == 3 and sum(clock.sleeps) > 100  # two minutes paced, yet within a 5 s deadline


# -- bodies -------------------------------------------------------------------------------------
def test_bodies_empty_raw_and_malformed() -> None:
    handler, _ = answers(httpx.Response(200, content=b""), httpx.Response(200, content=b"\x00bytes"),
                         httpx.Response(200, content=b"<html>"), httpx.Response(200, content=b"[" * 100 + b"]" * 100))
    t, _ = transport(handler)
    assert t.send("DELETE", URL) == {}
    assert t.send("GET", URL, raw=True) == b"\x00bytes"
    with pytest.raises(MalformedResponseError, match=f"^GET {URL} returned 200 with a body that is not JSON$"):
        t.send("GET", URL + "?q=1")
    with pytest.raises(MalformedResponseError, match="nested deeper than 64 levels"):
        t.send("GET", URL)


# -- redaction and stop -------------------------------------------------------------------------
def test_errors_and_notices_never_show_a_token() -> None:
    secret = "transport-test-secret-0123456789"
    register_secret(secret)
    handler, _ = answers(httpx.ReadError(f"reset while sending 'Authorization: Bearer {secret}'"),
                         error(503, "UNAVAILABLE", f"token {secret} and ya29.a0-abc-def"),
                         error(503, "UNAVAILABLE", f"again {secret}"))
    t, _ = transport(handler, RetryPolicy(initial=12, multiplier=1, maximum=12, deadline=1000, max_attempts=3))
    told: list[str] = []
    t.notify = told.append
    with pytest.raises(UnavailableError) as caught:
        t.send("GET", URL)
    shown = [str(caught.value), *told]
    assert told and all(secret not in text and "ya29" not in text for text in shown), shown
    assert "<redacted>" in str(caught.value) and any("<redacted>" in text for text in told)


def test_an_unsendable_request_is_not_retried_and_not_shown() -> None:
    handler, seen = answers(httpx.LocalProtocolError("Illegal header value b'Bearer ya29.bad-token\\n'"))
    t, clock = transport(handler)
    with pytest.raises(RequestNotSentError) as caught:
        t.send("GET", URL)
    assert len(seen) == 1 and clock.sleeps == [] and "ya29" not in str(caught.value)
    assert str(caught.value).startswith(f"GET {URL} could not be sent: Illegal header value b'Bearer <redacted>")


def test_a_stop_request_ends_the_call_before_the_next_attempt() -> None:
    handler, seen = answers(*[error(503, "UNAVAILABLE", "d")] * 3)
    t, clock = transport(handler)

    def sleep_then_stop(seconds: float) -> None:
        clock.sleep(seconds)
        interrupt.request_stop()  # as the signal handler does while a wait runs

    t._sleep = sleep_then_stop
    with pytest.raises(KeyboardInterrupt):
        t.send("GET", URL)
    assert len(seen) == 1


# -- the clients, injected ----------------------------------------------------------------------
def test_storage_listing_follows_pages_and_stops_on_a_repeated_token() -> None:
    handler, seen = answers(httpx.Response(200, json={"items": [{"name": "a"}], "nextPageToken": "t1"}),
                            httpx.Response(200, json={"items": [{"name": "b"}]}),
                            httpx.Response(200, json={"items": [], "nextPageToken": "same"}),
                            httpx.Response(200, json={"items": [], "nextPageToken": "same"}))
    storage = StorageClient(endpoint="http://gcs.test", http=httpx.Client(transport=httpx.MockTransport(handler)))
    assert [o["name"] for o in storage.list("bkt", "state/")] == ["a", "b"]
    assert seen[1].url.params["pageToken"] == "t1"
    with pytest.raises(TransportError, match=r"^the listing of gs://bkt/x\* returned a page token twice \(page 3\)"):
        storage.list("bkt", "x")
    storage.close()


def test_storage_listing_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("reconciler.storage.MAX_LIST_PAGES", 4)
    pages = iter(range(100))

    def endless(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"items": [], "nextPageToken": f"t{next(pages)}"})

    storage = StorageClient(endpoint="http://gcs.test", http=httpx.Client(transport=httpx.MockTransport(endless)))
    with pytest.raises(TransportError, match="did not end after 4 pages"):
        storage.list("bkt", "p/")


def test_storage_listing_stops_after_twenty_empty_pages_in_a_row() -> None:
    served = {"n": 0}

    def endless(request: httpx.Request) -> httpx.Response:  # five pages of objects, then empty ones for ever
        served["n"] += 1
        items = [{"name": f"o{served['n']}"}] if served["n"] <= 5 else []
        return httpx.Response(200, json={"items": items, "nextPageToken": f"t{served['n']}"})

    storage = StorageClient(endpoint="http://gcs.test", http=httpx.Client(transport=httpx.MockTransport(endless)))
    with pytest.raises(TransportError, match=r"^the listing of gs://bkt/p/\*: the server keeps returning empty "
                                             r"pages with new page tokens \(20 in a row, 25 pages, 5 objects\)"):
        storage.list("bkt", "p/")
    assert served["n"] == 25


def test_empty_pages_between_full_ones_are_fine() -> None:
    """AIP-158 allows short and empty pages: only a long run of them, all with new tokens, stops a list."""
    answers_ = [*[{"nextPageToken": f"e{n}"} for n in range(19)],
                {"tuningJobs": [{"name": f"{PARENT}/tuningJobs/1"}], "nextPageToken": "full"},
                *[{"nextPageToken": f"f{n}"} for n in range(19)], {}]
    handler, seen = answers(*[httpx.Response(200, json=a) for a in answers_])
    client = VertexClient(endpoint="http://vertex.test", http=httpx.Client(transport=httpx.MockTransport(handler)))
    assert [job.name for job in client.list_tuning_jobs(PARENT)] == [f"{PARENT}/tuningJobs/1"]
    assert len(seen) == 40


def test_vertex_listing_is_bounded_and_stops_on_a_repeated_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("reconciler.vertex.client.MAX_LIST_PAGES", 3)
    handler, seen = answers(*[httpx.Response(200, json={"tuningJobs": [], "nextPageToken": f"t{n}"}) for n in range(3)],
                            *[httpx.Response(200, json={"nextPageToken": "same"})] * 2)
    client = VertexClient(endpoint="http://vertex.test", http=httpx.Client(transport=httpx.MockTransport(handler)))
    with pytest.raises(TransportError, match=f"^the list of tuning jobs of {PARENT} did not end after 3 pages"):
        client.list_tuning_jobs(PARENT)
    assert seen[0].url.params["pageSize"] == "1000"
    with pytest.raises(TransportError, match="returned a page token twice"):
        client.list_tuning_jobs(PARENT)


def test_an_upload_whose_answer_was_lost_counts_as_written() -> None:
    data = b'{"serial": 1}'
    handler, seen = answers(error(503, "UNAVAILABLE", "lost"), httpx.Response(412, text="exists"),
                            httpx.Response(200, json={"name": "s.json", "generation": "5", "md5Hash": md5_base64(data)}))
    t, _ = transport(handler, service="Cloud Storage")
    storage = StorageClient(endpoint="http://gcs.test", transport=t)
    written = storage.upload("bkt", "s.json", data, if_generation_match=0)
    assert written["generation"] == "5"
    assert [r.method for r in seen] == ["POST", "POST", "GET"]


def test_a_retried_create_finds_the_job_the_lost_answer_made() -> None:
    job = {"name": f"{PARENT}/tuningJobs/1", "labels": {"reconciler-request": "r1"}, "baseModel": "gemini-3.1-flash-lite"}
    handler, seen = answers(error(503, "UNAVAILABLE", "lost"), httpx.Response(200, json={"tuningJobs": [job]}))
    t, _ = transport(handler)
    client = VertexClient(endpoint="http://vertex.test", transport=t)
    from reconciler.vertex.wire import TuningJob

    created = client.create_tuning_job(PARENT, TuningJob.model_validate({"baseModel": "gemini-3.1-flash-lite"}), "r1")
    assert created.name == job["name"] and [r.method for r in seen] == ["POST", "GET"]


def test_a_client_takes_an_http_client_or_a_transport_not_both() -> None:
    t, _ = transport(answers()[0])
    with pytest.raises(TypeError):
        StorageClient(http=t.http, transport=t)
    with pytest.raises(TypeError):
        VertexClient(http=t.http, transport=t)
    assert StorageClient(transport=t).transport is t and VertexClient(transport=t).transport is t


def test_a_client_is_not_found_without_a_retry() -> None:
    handler, seen = answers(error(404, "NOT_FOUND", "gone"))
    storage = StorageClient(endpoint="http://gcs.test", http=httpx.Client(transport=httpx.MockTransport(handler)))
    assert storage.metadata("bkt", "missing.json") is None and len(seen) == 1
    with pytest.raises(NotFoundError):
        VertexClient(endpoint="http://v.test", http=httpx.Client(transport=httpx.MockTransport(
            answers(error(404, "NOT_FOUND", "gone"))[0]))).get_tuning_job(f"{PARENT}/tuningJobs/9")


# -- one retry policy type -----------------------------------------------------------------------
def test_the_settings_hold_the_transports_retry_policy(tmp_path: Path) -> None:
    assert Settings().retry == RetryPolicy()
    (tmp_path / "reconciler.yaml").write_text("retry: {initial: 2, maxAttempts: 3}\n")
    settings = load_settings(config_file=None, cwd=tmp_path, env={}, flags={})
    assert settings.retry == RetryPolicy(initial=2, max_attempts=3)
    assert isinstance(settings.retry, RetryPolicy)


def test_settings_and_the_retry_policy_import_no_http_library() -> None:
    code = "import sys, reconciler.config, reconciler.http.retry; print(sorted(m for m in ('httpx', 'google.auth') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_resource_exhausted_is_the_type_of_a_final_429() -> None:
    handler, _ = answers(*[error(429, "RESOURCE_EXHAUSTED", "quota")] * 2)
    t, _ = transport(handler, RetryPolicy(initial=1, max_attempts=2))
    with pytest.raises(ResourceExhaustedError):
        t.send("GET", URL)


# -- through the CLI against the emulator: RetryInfo paces the retries -------------------------
def test_the_cli_waits_as_the_emulators_retry_info_says(workdir: Path, emulator, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from tests.clihelp import Cli, write_config

    monkeypatch.setenv("RECONCILER_API_ENDPOINT", emulator.url)
    write_config(workdir, retry={"initial": 0.01, "maximum": 0.05, "deadline": 2, "maxAttempts": 12})
    cli = Cli(workdir, capsys)
    cli.manifest("alpha")
    # Every call is refused with a RetryInfo of 30 s and no Retry-After header: a client that
    # honours RetryInfo sees the wait is past its 2 s deadline and gives up after one attempt;
    # one that does not would retry 12 times, 0.05 s apart.
    emulator.configure(rate_429=1.0, retry_after_seconds=30, retry_after_header=False, fault_seed=1)
    r = cli("plan")
    assert r.code == 1 and "RESOURCE_EXHAUSTED" in r.err and "gave up after 1 attempt" in r.err, r.err
    assert emulator.stats()["faults"]["429"] == 1
    # A short RetryInfo is waited out and the call goes through.
    emulator.configure(rate_429=0.5, retry_after_seconds=0.02, fault_seed=3)
    assert cli("plan").code == 0
    assert emulator.stats()["faults"]["429"] > 1


def test_the_shared_tls_context_follows_ssl_cert_file(monkeypatch, tmp_path):
    """One TLS context per process (issue 15), but a new one when SSL_CERT_FILE or SSL_CERT_DIR
    says other certificates: a missing file is an error, as httpx's own context would be."""
    import certifi

    from reconciler.http.clients import http_client, tls_context

    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    default = tls_context()
    assert tls_context() is default
    monkeypatch.setenv("SSL_CERT_FILE", certifi.where())
    own = tls_context()
    assert own is not default and tls_context() is own
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    with pytest.raises(OSError):
        http_client()
