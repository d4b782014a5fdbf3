"""The Vertex AI tuning-jobs client: create, get, list (all pages), cancel, generateContent.

Every resource path is built from validated segments, each percent-encoded, so a project,
region or job name can never steer a request to another host or path.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from reconciler import interrupt
from reconciler.errors import (
    AmbiguousCreateError,
    ApiError,
    InvalidArgumentError,
    InvalidNameError,
    MalformedResponseError,
    ReconcilerError,
    RequestNotSentError,
    TransportError,
)
from reconciler.http.clients import USER_AGENT, http_client
from reconciler.http.paging import Pager, next_token_in
from reconciler.http.retry import RetryPolicy
from reconciler.http.transport import Answer, Transport
from reconciler.models import LABEL_REQUEST
from reconciler.vertex.fastdump import dump
from reconciler.vertex.wire import ListTuningJobsResponse, TuningJob

API_VERSION = "v1"
# AIP-158: values above the server's maximum are coerced down, so ask for the most we can use.
LIST_PAGE_SIZE = 1000
REQUEST_LABEL = LABEL_REQUEST
# A list of more pages than this is a server that never stops (a fresh token on every page).
MAX_LIST_PAGES = 10_000
# More jobs than this in one project and region is a server repeating itself, not a listing.
MAX_LISTED_JOBS = 100_000
# How long a listing waits for its next page's request to be written before decoding the page at
# hand (~1 ms when the request goes at once; longer only when it is paced or retried).
SEND_WAIT_S = 0.05

# Used with fullmatch only (`$` would accept a trailing newline).
_PROJECT = re.compile(r"(?:[a-z][a-z0-9.-]{0,62}:)?[a-z][a-z0-9-]{4,28}[a-z0-9]|[0-9]{1,20}")
_LOCATION = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+){0,4}")
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}")
_JOB_NAME = re.compile(r"projects/([^/]+)/locations/([^/]+)/tuningJobs/([^/]+)")
_ENDPOINT_NAME = re.compile(r"projects/([^/]+)/locations/([^/]+)/endpoints/([^/]+)")


def valid_project(project: str) -> bool:
    return bool(_PROJECT.fullmatch(project))


def valid_location(location: str) -> bool:
    return bool(_LOCATION.fullmatch(location)) and len(location) <= 63


def parent_path(project: str, location: str) -> str:
    """`projects/{project}/locations/{location}`, refusing anything that is not a plain id."""
    if not valid_project(project):
        raise InvalidNameError(f"invalid project id {project!r}")
    if not valid_location(location):
        raise InvalidNameError(f"invalid region {location!r}")
    return f"projects/{project}/locations/{location}"


def split_job_name(name: str) -> tuple[str, str, str]:
    """(project, location, id) of a tuning job resource name; raises on anything else."""
    m = _JOB_NAME.fullmatch(name) if isinstance(name, str) else None
    if not m or not all(_SEGMENT.fullmatch(part) for part in m.groups()):
        raise InvalidNameError(f"not a tuning job resource name: {name!r}")
    return m.group(1), m.group(2), m.group(3)


def _encode(path: str) -> str:
    return "/".join(quote(part, safe="-_.~@") for part in path.split("/"))


class VertexClient:
    """Calls the v1 tuningJobs API. One instance serves every region (regional base URLs)."""

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        auth: httpx.Auth | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 60.0,
        http: httpx.Client | None = None,
        transport: Transport | None = None,
        max_connections: int = 32,
        requests_per_minute: int = 0,
        creates_per_minute: int = 0,
    ) -> None:
        """`endpoint` overrides the regional hosts for every region (e.g. the emulator's URL).

        Injection points: `http`, the httpx.Client to send through (e.g. one over
        httpx.MockTransport), or `transport`, a ready `Transport` (its client, retry policy,
        pacing, sleep and clock; `auth`, `retry`, `timeout` and the limits are then unused).
        Either is closed by `close`."""
        if http is not None and transport is not None:
            raise TypeError("give http or transport, not both")
        self.endpoint = endpoint.rstrip("/") if endpoint else None
        if transport is None:
            http = http or http_client(
                auth=auth,
                timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
                limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
                headers={"x-goog-api-client": USER_AGENT, "user-agent": USER_AGENT},
                follow_redirects=False,
            )
            transport = Transport(http, retry, requests_per_minute=requests_per_minute,
                                  creates_per_minute=creates_per_minute)
        self.transport = transport
        self._http = transport.http

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> VertexClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- URLs -------------------------------------------------------------------------------
    def _root(self, location: str) -> str:
        if self.endpoint:
            return self.endpoint
        if location == "global":
            return "https://aiplatform.googleapis.com"
        return f"https://{location}-aiplatform.googleapis.com"

    def _url(self, location: str, path: str, verb: str = "") -> str:
        return f"{self._root(location)}/{API_VERSION}/{_encode(path)}{verb}"

    # -- tuningJobs -------------------------------------------------------------------------
    def list_tuning_jobs(self, parent: str, filter: str | None = None) -> list[TuningJob]:
        """Every job of `parent` (all pages, largest page size), without a per-job GET.

        Bounded (reconciler.http.paging), each bound an error naming the parent: a page token
        seen before, 20 empty pages in a row that still carry a next token, more than
        MAX_LIST_PAGES pages or MAX_LISTED_JOBS jobs."""
        return self.list_converted(parent, TuningJob.model_validate, filter)

    def list_converted(self, parent: str, convert: Callable[[dict[str, Any]], _T], filter: str | None = None,
                       brief: Callable[[Any], _T | None] | None = None) -> list[_T]:
        """`list_tuning_jobs`, each job validated and passed through `convert` as its page is
        read (as its dump: `TuningJob.model_dump(by_alias=True, exclude_none=True)`), while the
        next page is already on its way: pages of one parent are sequential (each needs the
        previous token), so the next request leaves as soon as the token is known — read from
        the page's bytes before they are decoded, and confirmed by the decoded page — and the work
        on a page overlaps the wait for the next. A page's decoded jobs are released one by one as
        they are converted: at most one page is held twice.

        `brief`, when given, sees each decoded job first: what it returns (not None) stands for
        the job, unvalidated and unconverted (it validates later what it reads later, with
        `job_dump`)."""
        _, location = parent_parts(parent)
        url = self._url(location, parent + "/tuningJobs")
        what = f"the list of tuning jobs of {parent}"
        pager = Pager(what, "jobs", max_pages=MAX_LIST_PAGES, max_items=MAX_LISTED_JOBS)
        out: list[_T] = []
        ahead: _Ahead | None = None
        for number in pager:
            answer = ahead.result() if ahead is not None else self._list_page(url, location, filter, pager.token)
            # The next request leaves before this page is decoded, on the token its bytes show; the
            # decoded page confirms it (else that request is dropped and the right one sent).
            guess = next_token_in(answer.content)
            guessed = self._page_ahead(url, location, filter, guess) if pager.would_follow(guess, LIST_PAGE_SIZE) else None
            jobs, token = _page_parts(answer.decoded(), f"{what} (page {number})")
            pager.took(len(jobs), token)
            ahead = None
            if pager.asks_again():
                ahead = guessed if guessed is not None and guess == token else self._page_ahead(
                    url, location, filter, token, wait=False)
            out.extend(_convert_page(jobs, convert, f"{what} (page {number})", brief))
        return out

    def _list_page(self, url: str, location: str, filter: str | None, token: str,
                   sent: threading.Event | None = None) -> Answer:
        """One page's answer (decoded and cleaned when asked for)."""
        interrupt.check()
        params = {"pageSize": str(LIST_PAGE_SIZE)}
        if filter:
            params["filter"] = filter
        if token:
            params["pageToken"] = token
        answer: Answer = self.transport.send("GET", url, params=params, region=location, lazy=True, sent=sent)
        return answer

    def _page_ahead(self, url: str, location: str, filter: str | None, token: str, *, wait: bool = True) -> _Ahead:
        """The page of `token` asked for on a thread of its own. With `wait`, returns once that
        request is written (at most SEND_WAIT_S): decoding a page holds the GIL for up to tens of
        milliseconds, which would otherwise keep the request from leaving."""
        sent = threading.Event()
        ahead = _Ahead(partial(self._list_page, url, location, filter, token, sent))
        if wait:
            sent.wait(SEND_WAIT_S)
        return ahead

    def get_tuning_job(self, name: str) -> TuningJob:
        _, location, _ = split_job_name(name)
        return _parse(TuningJob, self.transport.send("GET", self._url(location, name), region=location),
                      f"tuning job {name}")

    def cancel_tuning_job(self, name: str) -> None:
        """Request cancellation (asynchronous: the job goes through JOB_STATE_CANCELLING)."""
        _, location, _ = split_job_name(name)
        self.transport.send("POST", self._url(location, name, ":cancel"), body={}, region=location)

    def create_tuning_job(self, parent: str, job: TuningJob, request_id: str) -> TuningJob:
        """Create a job exactly once for `request_id`, which goes on the job as a label.

        After an ambiguous failure (408, 5xx, timeout, dropped connection) the job may exist although
        no answer came back; before each new attempt the jobs of the parent are searched for the
        request label, and a found job is returned instead of creating a second one.
        """
        _, location = parent_parts(parent)
        labels = dict(job.labels or {})
        labels[REQUEST_LABEL] = request_id
        body = job.model_copy(update={"labels": labels}).to_wire()
        url = self._url(location, parent + "/tuningJobs")

        ambiguous_seen = False

        def settle(ambiguous: bool) -> TuningJob | None:
            nonlocal ambiguous_seen
            if not ambiguous:
                return None
            ambiguous_seen = True
            return self.find_by_request(parent, request_id)

        try:
            answer = self.transport.send("POST", url, body=body, before_retry=settle, region=location, create=True)
            if isinstance(answer, TuningJob):  # settled by find_by_request
                return answer
            created = _parse(TuningJob, answer, f"the create in {parent}")
            if not job_in_parent(created.name, parent):
                # Whether a job was made is unknown: a 2xx says yes, the body says nothing. The
                # lookup by request id below settles it; a wrong "created" would lose the job.
                raise MalformedResponseError(
                    f"the create in {parent} was answered without the name of a job in {parent} "
                    f"(name: {_show(created.name)})")
            return created
        except (ApiError, TransportError) as exc:
            # 4xx incl. 429: not processed; but a 408 (request timeout) may come after the server
            # acted, so it is settled by the lookup like a 5xx.
            refused = isinstance(exc, ApiError) and exc.code < 500 and exc.code != 408
            if (refused or isinstance(exc, RequestNotSentError)) and not ambiguous_seen:
                raise  # every attempt was refused by the server or never sent: nothing was created
            try:
                found = self.find_by_request(parent, request_id)
            except (ApiError, TransportError):
                raise AmbiguousCreateError(
                    f"create in {parent} failed ({exc}) and whether the job exists could not be "
                    f"checked; the next plan finds it by its label {REQUEST_LABEL}={request_id}"
                ) from exc
            if found is not None:
                return found
            if isinstance(exc, MalformedResponseError):
                raise MalformedResponseError(
                    f"{exc}; no job of {parent} carries its label {REQUEST_LABEL}={request_id} (yet): "
                    "the next plan looks for it again before creating anything") from None
            raise

    def find_by_request(self, parent: str, request_id: str) -> TuningJob | None:
        """The job of `parent` carrying `request_id`, or None (filtered on both ends).

        The label filter only narrows the search: its grammar for tuningJobs is not documented,
        so a server may read it differently (e.g. keep the quotes in the value) and answer with
        nothing. A "not found" is therefore confirmed on the full list, since a wrong one makes a
        second job.
        """
        def match(jobs: list[TuningJob]) -> TuningJob | None:
            return next((j for j in jobs if (j.labels or {}).get(REQUEST_LABEL) == request_id
                         and job_in_parent(j.name, parent)), None)

        try:
            found = match(self.list_tuning_jobs(parent, filter=f'labels.{REQUEST_LABEL}="{request_id}"'))
        except InvalidArgumentError:  # label filters on tuningJobs are not documented: list all
            found = None
        return found if found is not None else match(self.list_tuning_jobs(parent))

    # -- endpoints --------------------------------------------------------------------------
    def generate_content(self, endpoint: str, prompt: str) -> dict[str, Any]:
        """Send one user prompt to a tuned model's endpoint; return the raw response."""
        m = _ENDPOINT_NAME.fullmatch(endpoint)
        if not m or not all(_SEGMENT.fullmatch(part) for part in m.groups()):
            raise InvalidNameError(f"not an endpoint resource name: {endpoint!r}")
        body = {"contents": [{"role": "user", "parts": [{"text": prompt}]}]}
        result = self.transport.send(
            "POST", self._url(m.group(2), endpoint, ":generateContent"), body=body
        )  # serving traffic, not a resource-management request: not paced
        if not isinstance(result, dict):
            raise MalformedResponseError(f"generateContent of {endpoint} answered with a JSON "
                                         f"{type(result).__name__}, not an object")
        return result


_Model = TypeVar("_Model", bound=BaseModel)
_T = TypeVar("_T")


class _Ahead:
    """One call made on a thread of its own, its result collected later. A daemon thread: a
    page request left behind (its listing failed on the page before) never holds up the exit."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self._done = threading.Event()
        self._result: Any = None
        self._error: BaseException | None = None
        threading.Thread(target=self._run, args=(call,), name="reconciler-next-page", daemon=True).start()

    def _run(self, call: Callable[[], Any]) -> None:
        interrupt.worker_thread()
        try:
            self._result = call()
        except BaseException as exc:  # handed to the caller, in its thread
            self._error = exc
        finally:
            self._done.set()

    def result(self) -> Any:
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._result


def _page_parts(answer: Any, what: str) -> tuple[list[Any], str]:
    """A list answer's jobs (undecoded) and next-page token; a body of the wrong shape is the
    MalformedResponseError `_parse` gives for it."""
    if isinstance(answer, dict):
        jobs = answer.get("tuningJobs", [])
        token = answer.get("nextPageToken")
        if isinstance(jobs, list) and (token is None or isinstance(token, str)):
            return jobs, token or ""
    _parse(ListTuningJobsResponse, answer, what)  # raises, naming the first bad field
    raise MalformedResponseError(f"Vertex AI answered {what} with a malformed body")  # pragma: no cover


def _convert_page(jobs: list[Any], convert: Callable[[dict[str, Any]], _T], what: str,
                  brief: Callable[[Any], _T | None] | None = None) -> list[_T]:
    """Each job of a page validated and converted (or taken by `brief`), its decoded form
    released as soon as it is (the list is emptied as it goes). A bad job is the error `_parse`
    gives for the whole page: the first bad field, with the count of the others."""
    out: list[_T] = []
    for index, item in enumerate(jobs):
        taken = brief(item) if brief is not None else None
        if taken is not None:
            jobs[index] = None
            out.append(taken)
            continue
        try:
            raw = job_dump(item, what)
        except MalformedResponseError:  # named as the page's first bad field, with the count of the others
            _parse(ListTuningJobsResponse, {"tuningJobs": [{}] * index + jobs[index:]}, what)
            raise
        jobs[index] = None
        out.append(convert(raw))
    return out


def job_dump(item: Any, what: str) -> dict[str, Any]:
    """A listed job validated, as its model's dump (`TuningJob.model_dump(by_alias=True,
    exclude_none=True)`): `fastdump` gives it without building the model when it is sure of the
    data (nearly always: ~3x faster), else pydantic validates it. A bad job is a one-line
    MalformedResponseError naming `what` and its first bad field."""
    raw = dump(TuningJob, item)
    if raw is not None:
        return raw
    try:
        return TuningJob.model_validate(item).model_dump(by_alias=True, exclude_none=True)
    except ValidationError:
        _parse(TuningJob, item, what)
        raise
    except RecursionError:
        raise MalformedResponseError(f"Vertex AI answered {what} with a body nested too deeply") from None


def _parse(model: type[_Model], data: Any, what: str) -> _Model:
    """`data` as `model`; a body of the wrong shape is a one-line MalformedResponseError naming
    the call and the first bad field (pydantic's own error never leaves this package)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        first = errors[0] if errors else {"loc": (), "msg": str(exc)}
        where = ".".join(str(part) for part in first["loc"]) or "the body"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise MalformedResponseError(
            f"Vertex AI answered {what} with a malformed body: {where}: {first['msg']}{more}") from None
    except RecursionError:
        raise MalformedResponseError(f"Vertex AI answered {what} with a body nested too deeply") from None


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "…"


def job_in_parent(name: object, parent: str, number: str | None = None) -> bool:
    """Whether `name` is a tuning job resource name directly under `parent`, compared exactly.

    The service names jobs by project NUMBER whatever the parent said, so a parent given by
    project id also takes a name whose project is all digits — `number` when it is known (the
    caller checks that one listing uses one number), else any number."""
    return place_in_parent(job_place(name), parent_parts(parent), number)


def job_place(name: object) -> tuple[str, str] | None:
    """(project, location) of a tuning job resource name; None for anything else."""
    if not isinstance(name, str):
        return None
    try:
        project, location, _ = split_job_name(name)
    except ReconcilerError:
        return None
    return project, location


def place_in_parent(place: tuple[str, str] | None, parent: tuple[str, str], number: str | None = None) -> bool:
    """`job_in_parent` of a name split by `job_place`, the parent split as (project, location)."""
    if place is None or place[1] != parent[1]:
        return False
    project, want_project = place[0], parent[0]
    if project == want_project:
        return True
    return not want_project.isdigit() and project.isdigit() and (number is None or project == number)


def parent_parts(parent: str) -> tuple[str, str]:
    """(project, location) of a parent resource name; InvalidNameError for anything else."""
    parts = parent.split("/")
    if len(parts) != 4 or parts[0] != "projects" or parts[2] != "locations":
        raise InvalidNameError(f"not a parent resource name: {parent!r}")
    parent_path(parts[1], parts[3])
    return parts[1], parts[3]
