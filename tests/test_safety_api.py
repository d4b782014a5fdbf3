"""Safety of the API side under misuse and attack (issue 11, items 6, 7, 8, 10, 11, 12).

Through the CLI against the emulator (made able to list jobs outside the parent, to loop page
tokens and to finish a create after its client has gone) and against the second fake
(tests/vertexfake.py); the transport's redaction and stop handling also directly, over an httpx
MockTransport (a fake server, not a mock of our code).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler import interrupt
from reconciler.errors import ConfigError, ReconcilerError, RequestNotSentError, TransportError
from reconciler.http.clients import http_client, proxy_for_https
from reconciler.http.redact import clean, clean_tree, redact
from reconciler.http.retry import RetryPolicy
from reconciler.http.transport import Transport
from reconciler.storage import StorageClient, parse_gs_uri
from reconciler.vertex import client as vertex_client
from reconciler.vertex.auth import StaticTokenAuth, resolve_auth
from reconciler.vertex.client import VertexClient, split_job_name, valid_location, valid_project
from tests.clihelp import Cli, write_config
from tests.localserver import LocalServer
from tests.vertexfake import VertexFake

PARENT = "projects/demo-project/locations/us-central1"
OURS = {"managed-by": "vertex-tuning-reconciler", "reconciler-stack": "test"}


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _error_line(result: Any) -> str:
    """The one `Error: …` line of a failed run (and no traceback)."""
    assert result.code == 1, result.out + result.err
    assert "Traceback" not in result.err and "this is a bug" not in result.err, result.err
    errors = [line for line in _lines(result.err) if line.startswith("Error:")]
    assert len(errors) == 1, result.err
    return errors[0]


@pytest.fixture(autouse=True)
def _no_stop_left_over() -> Iterator[None]:
    interrupt.reset()
    yield
    interrupt.reset()


# -- the second fake ----------------------------------------------------------------------------
@pytest.fixture
def fake() -> Iterator[tuple[VertexFake, str]]:
    fake = VertexFake()
    with LocalServer(fake.app) as url:
        yield fake, url


@pytest.fixture
def fcli(fake: tuple[VertexFake, str], workdir: Path, monkeypatch: pytest.MonkeyPatch,
         capsys: pytest.CaptureFixture[str]) -> Cli:
    monkeypatch.setenv("RECONCILER_API_ENDPOINT", fake[1])
    write_config(workdir)
    return Cli(workdir, capsys)


# == 6. jobs outside the listed parent ==========================================================
def test_jobs_listed_outside_the_parent_are_ignored_reported_and_never_cancelled(cli: Cli, emulator: Any) -> None:
    cli.manifest("bot")
    cli.ok("apply", "--auto-approve")
    ours = {**OURS, "reconciler-name": "team-a-bot", "reconciler-spec": "0" * 16}
    victim, other_region = emulator.seed([
        {"project": "victim", "location": "europe-west4", "state": "JOB_STATE_RUNNING",
         "baseModel": "gemini-3.5-flash", "supervisedTuningSpec": {"trainingDatasetUri": "gs://v/t.jsonl"},
         "labels": ours, "listedIn": [PARENT]},
        {"project": "demo-project", "location": "europe-west4", "state": "JOB_STATE_RUNNING",
         "baseModel": "gemini-3.5-flash", "supervisedTuningSpec": {"trainingDatasetUri": "gs://v/t.jsonl"},
         "labels": {**ours, "reconciler-name": "bot"}, "listedIn": [PARENT]},
    ])
    assert {j["name"] for j in emulator.jobs()} >= {victim, other_region}  # the emulator does list them
    body = cli.ok("plan", "--format", "json").json()
    warning = next(w for w in body["warnings"] if victim in w)
    assert PARENT in warning and other_region in warning
    named = {c.get("job") for c in body["changes"]} | {j for c in body["changes"] for j in c.get("cancel_jobs", [])}
    assert victim not in named and other_region not in named
    text = cli.ok("plan")
    assert victim in text.out + text.err
    cli.ok("apply", "--auto-approve", "--prune-unrecorded") if "--prune-unrecorded" in cli("apply", "--help").out \
        else cli.ok("apply", "--auto-approve")
    states = {j["name"]: j["state"] for j in emulator.jobs("victim", "europe-west4")}
    states.update({j["name"]: j["state"] for j in emulator.jobs("demo-project", "europe-west4")})
    assert states[victim] == states[other_region] == "JOB_STATE_RUNNING"
    assert emulator.stats()["requests"]["cancel"] == 0


def test_other_fake_jobs_outside_the_parent_are_ignored_and_numbers_still_count(
        fcli: Cli, fake: tuple[VertexFake, str]) -> None:
    served, _ = fake
    fcli.manifest("alpha")
    fcli.ok("apply", "--auto-approve")
    [ours] = served.jobs.values()
    assert ours["name"].startswith("projects/428195617364/locations/us-central1/")  # by number: still ours
    stranger = {**ours, "name": "projects/victim/locations/us-central1/tuningJobs/77"}
    served.foreign_jobs.append(stranger)
    body = fcli.ok("plan", "--format", "json").json()
    assert [c["action"] for c in body["changes"]] == ["noop"]
    assert any(stranger["name"] in w and PARENT in w for w in body["warnings"])
    fcli.ok("apply", "--auto-approve")
    assert not served.ops("cancel")


def test_other_fake_jobs_under_two_project_numbers_stop_the_plan(fcli: Cli, fake: tuple[VertexFake, str]) -> None:
    served, _ = fake
    fcli.manifest("alpha")
    fcli.ok("apply", "--auto-approve")
    [ours] = served.jobs.values()
    served.foreign_jobs.append({**ours, "name": "projects/999999999999/locations/us-central1/tuningJobs/78"})
    line = _error_line(fcli("plan"))
    assert PARENT in line and "project numbers" in line


# == 7. the token: stripped, refused, redacted ==================================================
def test_a_token_with_surrounding_whitespace_is_stripped(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "ya29.a0Aws-pasted-token-0123456789"
    monkeypatch.setenv("RECONCILER_ACCESS_TOKEN", f"  {secret}\n")
    cli.manifest("bot")
    result = cli.ok("plan")
    assert secret not in result.out + result.err


@pytest.mark.parametrize("token", ["ya29.abc def-0123456789", "ya29.abc\ndef-0123456789", "ya29.abc\x07def0123456789", "ya29.abcdéf0123456789"])
def test_a_token_with_inner_whitespace_or_control_characters_is_a_settings_error(
        cli: Cli, monkeypatch: pytest.MonkeyPatch, token: str) -> None:
    monkeypatch.setenv("RECONCILER_ACCESS_TOKEN", token)
    cli.manifest("bot")
    result = cli("plan")
    line = _error_line(result)
    assert "RECONCILER_ACCESS_TOKEN" in line
    assert "def" not in result.err and "ya29" not in result.err
    with pytest.raises(ConfigError):
        resolve_auth(None, token)


def test_bearer_tokens_echoed_by_the_server_never_reach_the_user(
        workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    secret = "opaque-static-token-4242424242"
    google = "ya29.a0AfB_another-token-echoed"

    async def app(scope: Any, receive: Any, send: Any) -> None:  # a front end that echoes the header
        if scope["type"] != "http":
            return
        auth = dict(scope["headers"]).get(b"authorization", b"").decode()
        body = json.dumps({"error": {"code": 503, "status": "UNAVAILABLE",
                                     "message": f"backend rejected header Authorization: {auth} (also {google})"}})
        await send({"type": "http.response.start", "status": 503,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body.encode()})

    with LocalServer(app) as url:
        monkeypatch.setenv("RECONCILER_API_ENDPOINT", url)
        monkeypatch.setenv("RECONCILER_ACCESS_TOKEN", secret)
        write_config(workdir, retry={"initial": 0.01, "maximum": 0.02, "deadline": 5, "maxAttempts": 3})
        cli = Cli(workdir, capsys)
        cli.manifest("bot")
        result = cli("--debug", "plan")
    assert result.code == 1
    everything = result.out + result.err
    assert secret not in everything and google not in everything and "ya29" not in everything
    assert "<redacted>" in everything and "503" in everything


# -- server text: the token it may echo, the control characters it may carry (review 2) ---------
ECHOING_TOKEN = "Secrettoken-XYZ123456"
ECHO = ("denied for BEARER Secrettoken-XYZ123456 (raw Secrettoken-XYZ123456) … Bearer\u00a0Secr3tAAAAAAAA, "
        "bearer\tQwertyuiop-1234, Bearer\u200bZxcvbnm-98765 and ya29.a0-echoed-access-token")
LEAKED = ("Secrettoken-XYZ123456", "Secr3tAAAAAAAA", "Qwertyuiop-1234", "Zxcvbnm-98765", "ya29")


def _outputs(cli: Cli) -> dict[str, str]:
    """Everything the program shows or stores about the jobs: plan in every format, status, a
    saved plan, the state after refresh."""
    shown = {}
    for args in (("plan",), ("plan", "--format", "json"), ("plan", "--format", "markdown"), ("status",),
                 ("status", "--format", "json"), ("plan", "--out", "saved.json"), ("refresh",)):
        result = cli(*args)
        assert result.code == 0, (args, result.out, result.err)
        shown[" ".join(args)] = result.out + result.err
    shown["saved plan"] = (cli.workdir / "saved.json").read_text()
    shown["state"] = (cli.workdir / "reconciler.state.json").read_text()
    return shown


def test_a_server_message_that_echoes_the_token_is_masked_in_every_output_and_file(
        cli: Cli, emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILER_ACCESS_TOKEN", ECHOING_TOKEN)
    cli.manifest("bot")
    cli.ok("apply", "--auto-approve")
    emulator.fail(name=cli.state()["models"]["bot"]["job"], message=ECHO)
    emulator.advance(10_000)
    for where, text in _outputs(cli).items():
        assert not [leak for leak in LEAKED if leak in text], (where, text)
    assert "denied for BEARER <redacted> (raw <redacted>)" in cli.state()["models"]["bot"]["error"]["message"]


def test_server_text_never_puts_control_characters_on_the_terminal_or_in_files(
        cli: Cli, emulator: Any) -> None:
    """A failed job's message, a label and a description with newlines, ESC sequences and line
    separators: every output shows them escaped, on one line; no forged `Error:` line."""
    cli.manifest("bot")
    cli.ok("apply", "--auto-approve")
    name = cli.state()["models"]["bot"]["job"]
    forged = "boom\nError: fake line \u001b[31mRED\u2028Error: again\r\u009b2J"
    emulator.fail(name=name, message=forged)
    labels = {**emulator.jobs()[0]["labels"], "team": "a\nError: label"}
    emulator.patch(name, {"description": "d\nError: description \u001b[2J", "labels": labels})
    emulator.advance(10_000)
    for where, text in _outputs(cli).items():
        assert not any(c in text for c in "\x1b\x9b\u2028\r"), where
        assert not [line for line in text.splitlines() if line.lstrip().startswith("Error:")], (where, text)
    message = cli.state()["models"]["bot"]["error"]["message"]
    assert message == "boom\\nError: fake line \\x1b[31mRED\\u2028Error: again\\r\\x9b2J"


def test_a_job_whose_identity_labels_are_no_label_values_is_ignored_with_a_warning(cli: Cli, emulator: Any) -> None:
    """`reconciler-name: "mine\\nError: fake line \\x1b[31mRED"` forged lines into the plan; such a job
    is not one this program made (it writes plain label values), so it is left alone."""
    cli.manifest("bot")
    forged = {**OURS, "reconciler-name": "mine\nError: fake line \u001b[31mRED", "reconciler-spec": "x"}
    emulator.seed([{"project": "demo-project", "location": "us-central1", "baseModel": "gemini-3.5-flash",
                    "supervisedTuningSpec": {"trainingDatasetUri": "gs://bucket/x/train.jsonl"}, "labels": forged}])
    for args in (("plan",), ("plan", "--format", "json"), ("apply", "--auto-approve", "--prune-unrecorded")):
        result = cli.ok(*args)
        text = result.out + result.err
        assert "\x1b" not in text
        assert not [line for line in text.splitlines() if line.lstrip().startswith("Error:")], text
        # not a model of the plan: named in the warning only
        assert not [line for line in text.splitlines() if "mine" in line and "never writes" not in line], text
    assert "reconciler-name='mine\\\\nError: fake line \\\\x1b[31mRED'" in cli.ok("plan").out
    assert emulator.stats()["requests"].get("cancel", 0) == 0  # never cancelled, even with --prune-unrecorded


def test_redaction_catches_any_case_any_gap_and_the_token_in_use() -> None:
    StaticTokenAuth(ECHOING_TOKEN)
    cleaned = clean(ECHO + " bearer\nAbcdefgh-12345 and a Bearer token is required")
    assert not [leak for leak in (*LEAKED, "Abcdefgh") if leak in cleaned], cleaned
    assert cleaned.endswith("and a Bearer token is required")
    assert clean_tree({"k\n": ["x\u2029y", 1, None, {"z": "\x00"}]}) == {"k\\n": ["x\\u2029y", 1, None, {"z": "\\x00"}]}


@pytest.mark.parametrize("token", ["abc1234", "short-token", "  abcdefghijk\n"])
def test_a_short_token_is_a_settings_error_that_does_not_show_it(
        cli: Cli, monkeypatch: pytest.MonkeyPatch, token: str) -> None:
    monkeypatch.setenv("RECONCILER_ACCESS_TOKEN", token)
    cli.manifest("bot")
    result = cli("plan")
    line = _error_line(result)
    assert "RECONCILER_ACCESS_TOKEN is too short" in line
    assert token.strip() not in result.out + result.err
    with pytest.raises(ConfigError, match="too short"):
        resolve_auth(None, token)


def test_transport_redacts_exception_text_server_messages_and_retry_warnings() -> None:
    secret = "static-token-value-9876543210"
    StaticTokenAuth(secret)  # registers the value in use
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.ReadError(f"connection reset while sending 'Authorization: Bearer {secret}'")
        return httpx.Response(503, json={"error": {"code": 503, "status": "UNAVAILABLE",
                                                   "message": f"token {secret} and ya29.a0-zzzz-yyyy"}})

    told: list[str] = []
    transport = Transport(httpx.Client(transport=httpx.MockTransport(handler)),
                          RetryPolicy(initial=12, multiplier=1, maximum=12, deadline=1000, max_attempts=3),
                          sleep=lambda _s: None)
    transport.notify = told.append
    with pytest.raises(ReconcilerError) as caught:
        transport.send("GET", "http://127.0.0.1:9/v1/x")
    shown = [str(caught.value), *told]
    assert len(told) >= 1 and calls["n"] == 3
    assert all(secret not in text and "ya29" not in text for text in shown), shown
    assert any("<redacted>" in text for text in told)
    assert redact(f"Illegal header value b'Bearer {secret}\\n'") == "Illegal header value b'Bearer <redacted>'"
    assert redact("missing Bearer token for the basic tuning spec") == "missing Bearer token for the basic tuning spec"


def test_an_illegal_header_value_is_not_retried_and_not_shown() -> None:
    token = "ya29.illegal-token-0123456789\n"

    class RawAuth(httpx.Auth):  # what a token that bypassed the checks would do
        def auth_flow(self, request: httpx.Request) -> Any:
            request.headers["Authorization"] = f"Bearer {token}"
            yield request

    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        return httpx.Response(200, json={})

    with LocalServer(_ok_app()) as url:
        transport = Transport(http_client(auth=RawAuth()), RetryPolicy(initial=0.01, maximum=0.01, max_attempts=5))
        with pytest.raises(RequestNotSentError) as caught:
            transport.send("GET", f"{url}/v1/x")
    assert transport.counts["attempts"] == 1
    assert "ya29" not in str(caught.value) and "illegal-token" not in str(caught.value)


def _ok_app() -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


# == 8. proxies ================================================================================
class CapturingSocket:
    """A TCP listener on 127.0.0.1 that records every byte sent to it, then hangs up."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.received = b""
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._done.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                with contextlib.suppress(OSError):
                    self.received += conn.recv(65536)

    def close(self) -> None:
        self._done.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def capture() -> Iterator[CapturingSocket]:
    sock = CapturingSocket()
    yield sock
    sock.close()


def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def test_plain_http_to_the_emulator_never_goes_through_a_proxy(
        cli: Cli, capture: CapturingSocket, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_proxy_env(monkeypatch)
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, capture.url)
    monkeypatch.setenv("RECONCILER_ACCESS_TOKEN", "secret-token-for-proxy-test")
    cli.manifest("bot")
    cli.ok("plan")
    cli.ok("apply", "--auto-approve")
    assert capture.received == b""


def test_https_goes_through_a_proxy_only_when_one_is_named_for_https(
        workdir: Path, capture: CapturingSocket, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: a direct connection is refused
    _no_proxy_env(monkeypatch)
    monkeypatch.setenv("RECONCILER_API_ENDPOINT", f"https://127.0.0.1:{port}")
    monkeypatch.setenv("RECONCILER_ACCESS_TOKEN", "secret-token-for-proxy-test")
    write_config(workdir, retry={"initial": 0.01, "maximum": 0.01, "deadline": 5, "maxAttempts": 2})
    cli = Cli(workdir, capsys)
    cli.manifest("bot")

    monkeypatch.setenv("HTTP_PROXY", capture.url)  # a proxy for http only: not for https
    assert cli("plan").code == 1
    assert capture.received == b""

    monkeypatch.setenv("HTTPS_PROXY", capture.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # ... except for a NO_PROXY host
    assert cli("plan").code == 1
    assert capture.received == b""

    monkeypatch.delenv("NO_PROXY")
    assert cli("plan").code == 1
    assert capture.received.startswith(f"CONNECT 127.0.0.1:{port} ".encode())
    assert b"secret-token" not in capture.received  # the token travels inside the tunnel only


def test_proxy_settings_are_read_as_curl_reads_them() -> None:
    assert proxy_for_https({"HTTP_PROXY": "http://p:1"}) == (None, [])
    assert proxy_for_https({"ALL_PROXY": "p:3"}) == ("http://p:3", [])
    assert proxy_for_https({"HTTPS_PROXY": "http://a:1", "https_proxy": "http://b:2", "ALL_PROXY": "http://c:3",
                            "NO_PROXY": "x.com, 10.0.0.1"}) == ("http://b:2", ["x.com", "10.0.0.1"])


# == 10. full matches ===========================================================================
def test_names_with_a_trailing_newline_are_refused(cli: Cli) -> None:
    assert not valid_project("demo-project\n") and not valid_location("us-central1\n")
    with pytest.raises(Exception, match="not a tuning job resource name"):
        split_job_name(f"{PARENT}/tuningJobs/1\n")
    with pytest.raises(Exception, match="not a valid Cloud Storage object URI"):
        parse_gs_uri("gs://bucket\n/state.json")
    cli.manifest("bot")
    line = _error_line(cli("--region", "us-central1\n", "plan"))
    assert "us-central1" in line


# == 11. interruption and bounded page loops ===================================================
def test_page_tokens_that_repeat_end_the_list_with_an_error_naming_the_region(cli: Cli, emulator: Any) -> None:
    cli.manifest("bot")
    emulator.configure(page_tokens="loop")
    line = _error_line(cli("plan"))
    assert PARENT in line and "twice" in line


def test_page_tokens_that_never_end_are_bounded(cli: Cli, emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vertex_client, "MAX_LIST_PAGES", 10)  # 10,000 in earnest: the same loop, shorter
    cli.manifest("bot")
    emulator.configure(page_tokens="endless")
    line = _error_line(cli("plan"))
    assert PARENT in line and "10 pages" in line
    assert emulator.stats()["requests"]["list"] == 10


def test_endless_empty_pages_stop_within_seconds(cli: Cli, emulator: Any) -> None:
    """The 10,000-page bound, paced by the 600 requests/min quota, took ~17 minutes; 20 empty
    pages in a row that still carry a new token are a server that never ends its list."""
    cli.manifest("bot")
    emulator.seed([{"project": "demo-project", "location": "us-central1", "baseModel": "gemini-3.5-flash",
                    "supervisedTuningSpec": {"trainingDatasetUri": "gs://bucket/x/train.jsonl"}}])
    emulator.configure(page_tokens="endless")  # the first page holds the job, then empty pages for ever
    started = time.monotonic()
    line = _error_line(cli("plan"))
    assert time.monotonic() - started < 10
    assert PARENT in line and "keeps returning empty pages with new page tokens" in line, line
    assert "20 in a row" in line and "1 jobs" in line, line
    assert emulator.stats()["requests"]["list"] == 21


def test_a_listing_of_too_many_jobs_is_an_error_naming_the_parent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vertex_client, "MAX_LISTED_JOBS", 25)
    served = {"n": 0}

    def repeating(request: httpx.Request) -> httpx.Response:  # never empty, new tokens, the same jobs
        served["n"] += 1
        jobs = [{"name": f"{PARENT}/tuningJobs/{i}"} for i in range(10)]
        return httpx.Response(200, json={"tuningJobs": jobs, "nextPageToken": f"t{served['n']}"})

    client = VertexClient(endpoint="http://vertex.test", http=httpx.Client(transport=httpx.MockTransport(repeating)))
    with pytest.raises(TransportError, match=f"^the list of tuning jobs of {PARENT} returned more than 25 jobs"):
        client.list_tuning_jobs(PARENT)
    assert served["n"] == 3


def test_storage_listings_are_bounded_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("reconciler.storage.MAX_LIST_PAGES", 10)
    served = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        served["n"] += 1
        return httpx.Response(200, json={"items": [], "nextPageToken": f"t{served['n']}"})

    storage = StorageClient(endpoint="http://127.0.0.1:9")
    storage.transport.http = httpx.Client(transport=httpx.MockTransport(handler))
    with pytest.raises(TransportError, match="did not end after 10 pages"):
        storage.list("bucket", "prefix/")
    served["n"] = 0

    def looping(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"items": [], "nextPageToken": "same"})

    storage.transport.http = httpx.Client(transport=httpx.MockTransport(looping))
    with pytest.raises(TransportError, match="page token twice"):
        storage.list("bucket", "prefix/")


def test_a_stop_request_ends_retry_waits_in_every_thread_at_once() -> None:
    def unavailable(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"error": {"code": 503, "status": "UNAVAILABLE", "message": "down"}})

    client = VertexClient(endpoint="http://127.0.0.1:9", http=httpx.Client(transport=httpx.MockTransport(unavailable)),
                          retry=RetryPolicy(initial=30, maximum=60, deadline=600, max_attempts=50))
    outcome: list[BaseException] = []

    def listing() -> None:
        try:
            client.list_tuning_jobs(PARENT)
        except BaseException as exc:  # noqa: BLE001 (the outcome is what is tested)
            outcome.append(exc)

    worker = threading.Thread(target=listing)
    worker.start()
    while client.transport.counts["attempts"] < 1:
        time.sleep(0.01)
    started = time.monotonic()
    interrupt.request_stop()
    worker.join(10)
    assert not worker.is_alive() and time.monotonic() - started < 5
    assert len(outcome) == 1 and isinstance(outcome[0], KeyboardInterrupt)


def _run_cli_and_signal(workdir: Path, url: str, sig: int, seen: Any) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Start `reconciler plan` in a child process; once `seen()` says it is busy, send `sig`;
    return the seconds from the signal to the exit, and the outcome."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    env["RECONCILER_API_ENDPOINT"] = url
    proc = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "plan"], cwd=workdir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not seen() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        sent = time.monotonic()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=15)
        return time.monotonic() - sent, subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _endless_pages_app(served: dict[str, int]) -> Any:
    """A list route whose every page holds one new job and a new next-page token."""
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        served["n"] += 1
        number = served["n"]
        body = json.dumps({"tuningJobs": [{"name": f"{PARENT}/tuningJobs/{number}", "state": "JOB_STATE_SUCCEEDED"}],
                           "nextPageToken": f"page-{number}"})
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body.encode()})

    return app


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("fault", ["all-503", "endless-pages"])
def test_a_signal_ends_a_run_within_seconds_while_retrying_or_paging(
        workdir: Path, emulator: Any, sig: int, fault: str) -> None:
    # A long back-off (20-40 s before the first retry, 120 s deadline): a wait that does not end
    # at the stop request outlasts the bound below.
    write_config(workdir, retry={"initial": 40, "maximum": 60, "deadline": 120, "maxAttempts": 10})
    doc = {"apiVersion": "reconciler/v1", "kind": "TunedModel", "metadata": {"name": "bot"},
           "spec": {"baseModel": "gemini-3.5-flash", "supervisedTuningSpec": {"trainingDatasetUri": "gs://bucket/bot/train.jsonl"}}}
    (workdir / "manifests").mkdir()
    (workdir / "manifests" / "bot.yaml").write_text(json.dumps(doc))
    with contextlib.ExitStack() as stack:
        if fault == "all-503":
            emulator.configure(rate_503=1.0)
            url, seen = emulator.url, lambda: emulator.stats()["requests"]["list"] >= 1
        else:  # pages of jobs with new tokens for ever: only the signal (or 10,000 pages) ends it
            served = {"n": 0}
            url = stack.enter_context(LocalServer(_endless_pages_app(served)))
            seen = lambda: served["n"] >= 50  # noqa: E731
        took, done = _run_cli_and_signal(workdir, url, sig, seen)
    print(f"{fault} {signal.Signals(sig).name}: ended {took:.2f} s after the signal")
    assert took < 15, f"{took:.1f} s after the signal"
    assert done.returncode > 0, (done.returncode, done.stderr)  # ended by the CLI, not killed by the signal
    assert "Traceback" not in done.stderr, done.stderr


# == 12. malformed answers ======================================================================
@pytest.mark.slow
def test_a_signal_wakes_the_main_thread_whichever_thread_the_kernel_hands_it_to(workdir: Path) -> None:
    # Python runs signal handlers in the main thread only; a signal the kernel hands to a worker
    # busy in a socket read used to leave the main thread asleep on a future for ever (about one
    # run in ten on a loaded machine, one in twenty idle). Workers now block SIGINT/SIGTERM, so
    # every trial of this series ends at once.
    write_config(workdir, retry={"initial": 40, "maximum": 60, "deadline": 120, "maxAttempts": 10})
    (workdir / "manifests").mkdir()
    (workdir / "manifests" / "bot.yaml").write_text(json.dumps(
        {"apiVersion": "reconciler/v1", "kind": "TunedModel", "metadata": {"name": "bot"},
         "spec": {"baseModel": "gemini-3.5-flash", "supervisedTuningSpec": {"trainingDatasetUri": "gs://bucket/bot/train.jsonl"}}}))
    took = []
    for trial in range(12):
        served = {"n": 0}
        with LocalServer(_endless_pages_app(served)) as url:
            sig = (signal.SIGINT, signal.SIGTERM)[trial % 2]
            seconds, done = _run_cli_and_signal(workdir, url, sig, lambda s=served: s["n"] >= 30)
        assert done.returncode > 0 and "Traceback" not in done.stderr, (trial, done.returncode, done.stderr)
        took.append(seconds)
    print(f"12 signals while paging: slowest exit {max(took):.2f} s after its signal")
    assert max(took) < 15, took


@pytest.mark.slow
def test_a_signal_at_the_first_request_ends_the_run_even_inside_an_import(workdir: Path, emulator: Any) -> None:
    # The signal handler runs in the main thread at its next bytecode, wherever that is. At the
    # first request the main thread is still importing; a KeyboardInterrupt raised inside
    # importlib's own critical section (a module lock's weakref callback holding the global import
    # lock) was swallowed and left the lock held: the listing thread's next import (a retry's
    # warning imports rich) blocked for ever, and the main thread waited on it (2 runs in 20 under
    # load, 2026-12-04). The handler now only requests the stop while the import lock is held.
    # Trials under CPU load, the signal sent as the first list request arrives.
    write_config(workdir, retry={"initial": 40, "maximum": 60, "deadline": 120, "maxAttempts": 10})
    (workdir / "manifests").mkdir()
    (workdir / "manifests" / "bot.yaml").write_text(json.dumps(
        {"apiVersion": "reconciler/v1", "kind": "TunedModel", "metadata": {"name": "bot"},
         "spec": {"baseModel": "gemini-3.5-flash", "supervisedTuningSpec": {"trainingDatasetUri": "gs://bucket/bot/train.jsonl"}}}))
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    took = []
    try:
        emulator.configure(rate_503=1.0)
        for trial in range(16):
            before = emulator.stats()["requests"].get("list", 0)
            sig = (signal.SIGTERM, signal.SIGINT)[trial % 2]
            seconds, done = _run_cli_and_signal(workdir, emulator.url, sig,
                                                lambda b=before: emulator.stats()["requests"].get("list", 0) > b)
            assert done.returncode > 0 and "Traceback" not in done.stderr, (trial, done.returncode, done.stderr)
            took.append(seconds)
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    print(f"16 signals at the first request: slowest exit {max(took):.2f} s after its signal")
    assert max(took) < 15, took

@pytest.mark.parametrize(("answer", "expected"), [
    ({"tuningJobs": "x"}, "tuningJobs"),
    ({"tuningJobs": [{"name": 5}]}, "tuningJobs.0.name"),
    ({"tuningJobs": [{"name": f"{PARENT}/tuningJobs/1", "labels": ["x"]}]}, "labels"),
    ([1, 2], "body"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b"{" + b'"a":{' * 70 + b"}" * 71, "nested"),
    (b"not json", "not JSON"),
], ids=["jobs-a-string", "name-a-number", "labels-a-list", "a-list", "deep-array", "deep-object", "not-json"])
def test_a_malformed_list_page_is_a_one_line_error_naming_the_call(
        fcli: Cli, fake: tuple[VertexFake, str], answer: Any, expected: str) -> None:
    served, _ = fake
    fcli.manifest("alpha")
    served.raw_answers.append(("list", answer, False))
    line = _error_line(fcli("plan"))
    assert expected in line and PARENT in line and "tuning" in line.lower(), line


def test_a_create_answered_with_an_empty_body_is_settled_by_its_request_id(
        fcli: Cli, fake: tuple[VertexFake, str]) -> None:
    served, _ = fake
    fcli.manifest("alpha")
    served.raw_answers.append(("create", {}, True))  # the job is made, the answer says nothing
    result = fcli.ok("apply", "--auto-approve")
    [job] = served.jobs.values()
    assert fcli.state()["models"]["alpha"]["job"] == job["name"]
    assert len(served.ops("create")) == 1
    assert fcli("plan", "--detailed-exitcode").code == 0, result.out


@pytest.mark.parametrize("answer", [{}, {"name": ""}, {"name": "projects/victim/locations/us-central1/tuningJobs/1"},
                                    {"name": 5}, []], ids=["empty", "blank", "elsewhere", "number", "list"])
def test_a_create_answered_without_a_job_name_is_never_reported_created(
        fcli: Cli, fake: tuple[VertexFake, str], answer: Any) -> None:
    served, _ = fake
    fcli.manifest("alpha")
    served.raw_answers.append(("create", answer, False))  # nothing made, and an answer of no use
    result = fcli("apply", "--auto-approve")
    assert result.code == 1, result.out + result.err
    assert "Traceback" not in result.err and "this is a bug" not in result.err
    assert "without the name of a job" in result.out + result.err or "malformed" in result.out + result.err
    assert not served.jobs
    state = fcli.state() if (fcli.workdir / "reconciler.state.json").exists() else {"models": {}}
    assert not (state["models"].get("alpha") or {}).get("job")
    fcli.ok("apply", "--auto-approve")  # the next run makes the job, once
    assert len(served.jobs) == 1


# == emulator fault modes ======================================================================
def test_a_held_create_is_made_even_after_its_client_has_gone(emulator: Any) -> None:
    emulator.configure(create_delay_seconds=300)
    body = {"baseModel": "gemini-3.5-flash", "supervisedTuningSpec": {"trainingDatasetUri": "gs://b/t.jsonl"},
            "labels": {"reconciler-request": "r1"}}
    with httpx.Client(base_url=emulator.url, timeout=0.3) as impatient, pytest.raises(httpx.ReadTimeout):
        impatient.post(f"/v1/{PARENT}/tuningJobs", json=body)
    assert emulator.jobs() == []  # still held
    emulator.advance(0)  # releases it; answers once it is made
    [job] = emulator.jobs()
    assert job["labels"] == {"reconciler-request": "r1"}


def test_emulator_lists_jobs_outside_the_parent_and_loops_page_tokens(emulator: Any) -> None:
    [name] = emulator.seed([{"project": "victim", "location": "europe-west4", "baseModel": "gemini-3.5-flash",
                             "supervisedTuningSpec": {"trainingDatasetUri": "gs://v/t.jsonl"}, "listedIn": [PARENT]}])
    assert [j["name"] for j in emulator.jobs()] == [name] and "/locations/europe-west4/" in name
    http = emulator.admin
    emulator.configure(page_tokens="loop")
    first = http.get(f"/v1/{PARENT}/tuningJobs").json()
    again = http.get(f"/v1/{PARENT}/tuningJobs", params={"pageToken": first["nextPageToken"]}).json()
    assert again == first
    emulator.configure(page_tokens="endless")
    tokens = [http.get(f"/v1/{PARENT}/tuningJobs").json()["nextPageToken"]]
    for _ in range(3):
        page = http.get(f"/v1/{PARENT}/tuningJobs", params={"pageToken": tokens[-1]}).json()
        assert "tuningJobs" not in page
        tokens.append(page["nextPageToken"])
    assert len(set(tokens)) == 4
    bad = http.post("/_emulator/config", json={"page_tokens": "sometimes"})
    assert bad.status_code == 400
    bad = http.post("/_emulator/seed", json={"jobs": [{"project": "p-1234", "location": "us-central1",
                                                        "listedIn": "nope"}]})
    assert bad.status_code == 400
