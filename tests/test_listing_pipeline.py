"""The listing's fast path (issue 15): each page converted while the next is on its way, answers
decoded by pydantic-core and cleaned after one scan of their text — with the same results, errors
and bounds as the plain path. No timing is asserted.
"""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler import interrupt
from reconciler.errors import MalformedResponseError, ReconcilerError, TransportError
from reconciler.http.paging import Pager, next_token_in
from reconciler.http.redact import clean, clean_json, clean_tree, register_secret
from reconciler.http.transport import _loads
from reconciler.models import ObservedJob
from reconciler.observe import ListedJob, observe_parent, observed_from_dump, to_observed
from reconciler.vertex.client import VertexClient, job_dump
from reconciler.vertex.wire import TuningJob
from tests.test_fastdump import _model

PARENT = "projects/demo-project/locations/us-central1"
SECRET = "pipeline-test-secret-0123456789"


def _job(i: int, **extra: Any) -> dict[str, Any]:
    return {"name": f"{PARENT}/tuningJobs/{i}", "state": "JOB_STATE_SUCCEEDED", "baseModel": "gemini-3.5-flash",
            "supervisedTuningSpec": {"trainingDatasetUri": f"gs://b/{i}.jsonl",
                                     "hyperParameters": {"epochCount": str(i % 5 + 1)}},
            "labels": {"team": "a"}, **extra}


def _pages(jobs: list[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    pages = [{"tuningJobs": jobs[i:i + size]} for i in range(0, len(jobs), size)] or [{}]
    for number, page in enumerate(pages[:-1]):
        page["nextPageToken"] = f"t{number + 1}"
    return pages


class Server:
    """Pages by token, logging sends and conversions in order; `hold` keeps an answer back."""

    def __init__(self, pages: list[Any]) -> None:
        self.pages = pages
        self.log: list[str] = []
        self.hold: dict[int, threading.Event] = {}
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        token = request.url.params.get("pageToken", "")
        if token and not re.fullmatch(r"t[0-9]+", token):
            with self.lock:
                self.log.append(f"send {token}")
            return httpx.Response(400, json={"error": {"code": 400, "message": "invalid page token",
                                                       "status": "INVALID_ARGUMENT"}})
        number = int(token[1:]) if token else 0
        with self.lock:
            self.log.append(f"send {number}")
        if number in self.hold:
            self.hold[number].wait(10)
        body = self.pages[number]
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.Response(200, content=content)

    def client(self) -> VertexClient:
        return VertexClient(endpoint="http://api.test", http=httpx.Client(transport=httpx.MockTransport(self)))


@pytest.fixture(autouse=True)
def _no_stop_request() -> Any:
    interrupt.reset()
    yield
    interrupt.reset()


def test_the_next_request_leaves_before_the_page_is_converted() -> None:
    server = Server(_pages([_job(i) for i in range(7)], 3))

    def convert(job: dict[str, Any]) -> str:
        with server.lock:
            server.log.append(f"convert {job['name'].rsplit('/', 1)[1]}")
        return str(job["name"])

    with server.client() as client:
        names = client.list_converted(PARENT, convert)
    assert names == [f"{PARENT}/tuningJobs/{i}" for i in range(7)]
    assert server.log.index("send 1") < server.log.index("convert 0")
    assert server.log.index("send 2") < server.log.index("convert 3")
    assert server.log.count("send 0") == server.log.count("send 1") == server.log.count("send 2") == 1


def test_requests_equal_the_pages_and_listing_equals_the_plain_conversion() -> None:
    jobs = [_job(i, labels={"team": "a\nb", "x": f"Bearer {SECRET}"} if i == 4 else {"team": "a"}) for i in range(10)]
    register_secret(SECRET)
    server = Server(_pages(jobs, 4))
    with server.client() as client:
        observed = observe_parent(client, PARENT)
        plain = [to_observed(TuningJob.model_validate(j), PARENT) for j in jobs]
    assert [server.log.count(f"send {n}") for n in range(3)] == [1, 1, 1] and len(server.log) == 3
    assert list(observed.jobs) == plain
    assert observed.jobs[4].labels == {"team": "a\\nb", "x": "Bearer <redacted>"}


@pytest.mark.parametrize(("page", "expected"), [
    ({"tuningJobs": [{"name": f"{PARENT}/tuningJobs/1"}, {"name": 5}, {"labels": ["x"]}]},
     "tuningJobs.1.name: Input should be a valid string (and 1 more)"),
    ({"tuningJobs": "x"}, "tuningJobs: Input should be a valid list"),
    ({"tuningJobs": [], "nextPageToken": 7}, "nextPageToken: Input should be a valid string"),
    ([1, 2], "the body"),
])
def test_a_bad_page_is_the_same_one_line_error(page: Any, expected: str) -> None:
    with Server([page]).client() as client, pytest.raises(MalformedResponseError) as caught:
        client.list_tuning_jobs(PARENT)
    assert f"the list of tuning jobs of {PARENT} (page 1) with a malformed body: {expected}" in str(caught.value)


def test_a_bad_page_fails_while_the_request_sent_ahead_is_still_unanswered() -> None:
    server = Server([{"tuningJobs": [{"name": 5}], "nextPageToken": "t1"}, {}])
    server.hold[1] = threading.Event()
    with server.client() as client, pytest.raises(MalformedResponseError):
        client.list_tuning_jobs(PARENT)  # does not wait for page 2's answer
    server.hold[1].set()


def test_page_bounds_hold_with_requests_sent_ahead() -> None:
    looping = Server([{"tuningJobs": [_job(1)], "nextPageToken": "t1"}, {"tuningJobs": [_job(2)], "nextPageToken": "t1"}])
    with looping.client() as client, pytest.raises(TransportError, match="page token twice"):
        client.list_tuning_jobs(PARENT)
    assert len(looping.log) == 2  # the repeated token is never sent again
    pager = Pager("x", "jobs", max_pages=2, max_items=10)
    next(pager)
    pager.took(1, "a")
    assert pager.asks_again()
    next(pager)
    pager.took(1, "b")
    assert not pager.asks_again()  # the third page is refused before it is asked for
    with pytest.raises(TransportError, match="did not end after 2 pages"):
        next(pager)
    edge = Pager("x", "jobs", max_pages=10, max_items=25, max_empty=2)
    next(edge)
    assert edge.would_follow("a", 10)
    edge.took(10, "a")
    next(edge)
    assert edge.would_follow("b", 10) and not edge.would_follow("a", 10)  # a token seen is never guessed
    edge.took(10, "b")
    next(edge)
    assert not edge.would_follow("c", 10)  # the page at hand could pass the 25 items: nothing early
    edge.took(0, "c")
    next(edge)
    assert not edge.would_follow("d", 0)  # a second empty page would end the listing: nothing early


# -- cleaning after one scan of the text ---------------------------------------------------------
_PIECES = [*"abcBEARerBasic ya29.1/\\\"'é\u017f\u0131\n\t\x1b\x7f\u2028\u200b-", "bearer ", "ya29.", "1//", SECRET]
_TEXT = st.lists(st.sampled_from(_PIECES), max_size=12).map("".join)
_JSON = st.recursive(st.none() | st.booleans() | st.integers() | _TEXT,
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
                     max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(_JSON, st.booleans(), st.booleans())
def test_cleaning_after_a_scan_equals_cleaning_every_string(value: Any, ascii_only: bool, indent: bool) -> None:
    register_secret(SECRET)
    text = json.dumps(value, ensure_ascii=ascii_only, indent=2 if indent else None).encode()
    assert clean_json(_loads(text), text) == clean_tree(json.loads(text))


def test_plain_answers_are_not_copied_and_long_ones_are_scanned_across_chunks() -> None:
    plain = json.dumps({"tuningJobs": [_job(i) for i in range(3)]}, indent=2).encode()
    value = _loads(plain)
    assert clean_json(value, plain) is value
    for word in (b"bearer", b"\\u001b", SECRET.encode()):
        for cut in sorted({0, 1, len(word) // 2, len(word) - 1, len(word)}):  # across the first 1 MiB edge
            body = b'["' + b"x" * ((1 << 20) - 2 - cut) + word + b'"]'
            assert clean_json(_loads(body), body) == clean_tree(_loads(body))
            assert clean_json(_loads(body), body) is not _loads(body)


@pytest.mark.parametrize(("body", "reason"), [
    (b"\xef\xbb\xbf{}", None),  # a BOM: the standard library reads it, so does the transport
    (b'["\\ud800"]', None),  # a lone surrogate: likewise
    (b"[" * 300 + b"]" * 300, "nested too deeply"),
    (b"[" * 70 + b"]" * 70, "nested deeper than 64 levels"),
    (b"{} x", "not JSON"),
])
def test_decoding_accepts_and_refuses_what_the_standard_library_does(body: bytes, reason: str | None) -> None:
    server = Server([body])
    with server.client() as client:
        if reason is None:
            client.transport.send("GET", "http://api.test/v1/x")
        else:
            with pytest.raises(MalformedResponseError, match=reason):
                client.transport.send("GET", "http://api.test/v1/x")


# -- the next request sent on the token the page's bytes show, before it is decoded -------------

def _logged(server: Server, entry: str) -> bool:
    """Whether `entry` reaches the server's log within a few seconds (a request on its thread)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with server.lock:
            if entry in server.log:
                return True
        time.sleep(0.01)
    return False


def test_the_next_request_leaves_before_the_page_is_decoded() -> None:
    # A page that decodes but is malformed gives no token once decoded: page 2 can only have been
    # asked for from the bytes, before decoding.
    server = Server([{"tuningJobs": "x", "nextPageToken": "t1"}, {}])
    with server.client() as client, pytest.raises(MalformedResponseError, match="tuningJobs"):
        client.list_tuning_jobs(PARENT)
    assert _logged(server, "send 1")


def test_a_wrong_guess_costs_one_request_and_the_listing_follows_the_decoded_token() -> None:
    # The real token first, then a job holding a key of the same name: the bytes' last one is wrong.
    pages = [{"nextPageToken": "t1", "tuningJobs": [_job(0, nextPageToken="bogus")]},
             {"tuningJobs": [_job(1)]}]
    server = Server(pages)
    with server.client() as client:
        names = [job.name for job in client.list_tuning_jobs(PARENT)]
    assert names == [f"{PARENT}/tuningJobs/0", f"{PARENT}/tuningJobs/1"]
    assert _logged(server, "send bogus")  # answered 400 on its own thread, its answer dropped
    assert server.log.count("send 0") == server.log.count("send 1") == 1


@pytest.mark.parametrize(("tail", "early"), [
    (b'"t\\u0031"', True),  # an escaped token is read as JSON reads it (a server may write `=` as \\u003d)
    (b'"t1" ', True), (b'\n "t1"\n', True),  # spaces, pretty-printing
    (b'"t1\\u0007"', False),  # cleaning changes it (a control character): left to the decoded page
])
def test_tokens_written_otherwise_are_guessed_as_decoded_or_not_at_all(tail: bytes, early: bool) -> None:
    page0 = b'{"tuningJobs": [' + json.dumps(_job(0)).encode() + b'], "nextPageToken":' + tail + b"}"
    assert next_token_in(page0) == ("t1" if early else "")
    server = Server([page0, {"tuningJobs": [_job(1)], "nextPageToken": "t2"}, {}])
    with server.client() as client:
        if early:
            assert len(client.list_tuning_jobs(PARENT)) == 2
            assert server.log == ["send 0", "send 1", "send 2"]
        else:  # the decoded (cleaned) token is sent after decoding, and refused, as before
            with pytest.raises(ReconcilerError, match="invalid page token"):
                client.list_tuning_jobs(PARENT)
            assert server.log == ["send 0", "send t1\\x07"]


_TOKENS = st.text(st.characters(min_codepoint=0, max_codepoint=0x2FF), max_size=8)


@settings(max_examples=300, deadline=None)
@given(st.lists(_JSON | st.dictionaries(st.just("nextPageToken"), _TOKENS), max_size=4), _TOKENS,
       st.booleans(), st.booleans())
def test_the_guess_is_the_decoded_token_or_nothing(jobs: list[Any], token: str, ascii_only: bool,
                                                   indent: bool) -> None:
    """Whatever the jobs hold, a body whose token comes last (as the API's field order puts it)
    gives that token as the decoded and cleaned page will name it, or no guess when cleaning
    changes it."""
    body = json.dumps({"tuningJobs": jobs, "nextPageToken": token}, ensure_ascii=ascii_only,
                      indent=2 if indent else None).encode()
    assert next_token_in(body) == (token if clean(token) == token else "")


# -- jobs the plan has no reason to read (ListedJob) -------------------------------------------

def _whole(item: Any) -> ObservedJob | None:
    """What listing `item` gives read whole now: its ObservedJob, or None when it is malformed."""
    try:
        return observed_from_dump(job_dump(item, "a test"), PARENT)
    except MalformedResponseError:
        return None


_KEPT = f"{PARENT}/tuningJobs/kept"
_NAMES = st.sampled_from([f"{PARENT}/tuningJobs/7", _KEPT]) | st.text(max_size=6)
_LABELS = st.dictionaries(st.sampled_from(["team", "managed-by", "reconciler-name", "reconciler-x", "x"]),
                          st.text(max_size=3) | st.integers(), max_size=3)


_AT_ONCE = st.fixed_dictionaries({}, optional={  # type: ignore[arg-type]
    "name": _NAMES | st.none() | st.integers(), "labels": _LABELS | st.none() | st.just(["x"]),
    "state": st.sampled_from(["JOB_STATE_RUNNING", "", "x"]) | st.integers(0, 9) | st.none(),
    "createTime": st.sampled_from(["2026-01-01T00:00:00Z", ""]) | st.none() | st.integers(),
    "create_time": st.sampled_from(["2026-01-02T00:00:00Z"])})


@settings(max_examples=600, deadline=None)
@given(st.builds(_job, st.integers(0, 9)) | _model(TuningJob), _AT_ONCE)
def test_a_job_taken_unread_reads_as_the_whole_job_would(data: dict[str, Any], at_once: dict[str, Any]) -> None:
    """Whatever the job, `ListedJob.taken` either leaves it to be read now, or gives what reading
    it whole gives, field by field — its malformed parts refused when first read, as before."""
    item = {**data, **at_once}
    taken = ListedJob.taken(item, PARENT, keep=frozenset({_KEPT}))
    if taken is None:
        return
    assert item.get("name") != _KEPT
    assert not any(k == "managed-by" or k.startswith("reconciler-") for k in taken.labels)
    whole = _whole(item)
    at_once = (taken.name, taken.parent, taken.state, taken.labels, taken.create_time)
    assert all(type(v) is str for v in (taken.name, taken.state, taken.create_time, *taken.labels.values()))
    if whole is None:
        with pytest.raises(MalformedResponseError, match="malformed body"):
            taken.read_whole()
        return
    assert at_once == (whole.name, whole.parent, whole.state, whole.labels, whole.create_time)
    assert taken == whole and whole == taken and "_listed" not in taken.__dict__


def test_listing_with_keep_reads_whole_only_jobs_that_may_be_ours() -> None:
    ours = _job(1, labels={"managed-by": "reconciler", "reconciler-stack": "s", "reconciler-name": "a"})
    adopted, other = _job(2), _job(3)
    server = Server(_pages([ours, adopted, other], 2))
    with server.client() as client:
        observed = observe_parent(client, PARENT, keep=frozenset({adopted["name"]}))
    kinds = [type(j).__name__ for j in observed.jobs]
    assert kinds == ["ObservedJob", "ObservedJob", "ListedJob"]
    assert list(observed.jobs) == [to_observed(TuningJob.model_validate(j), PARENT) for j in (ours, adopted, other)]
    assert len(server.log) == 2


def test_a_malformed_job_nobody_reads_is_not_an_error_and_one_that_is_read_is() -> None:
    broken = _job(2, tuningDataStats=5)  # another team's job with a field of the wrong type
    server = Server(_pages([_job(1), broken], 5))
    with server.client() as client:
        observed = observe_parent(client, PARENT, keep=frozenset())
        with pytest.raises(MalformedResponseError) as caught:
            observe_parent(client, PARENT)  # read whole (status, refresh): refused as before
    assert "tuningJobs.1.tuningDataStats" in str(caught.value)
    job = observed.jobs[1]
    assert job.name == broken["name"] and job.state == "JOB_STATE_SUCCEEDED"  # read at once
    with pytest.raises(MalformedResponseError) as caught:
        job.spec  # noqa: B018  (read when something needs it: an import hint)
    assert f"(job {broken['name']}) with a malformed body: tuningDataStats" in str(caught.value)
