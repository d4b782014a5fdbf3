"""The Vertex AI tuning-jobs client: create, get, list (all pages), cancel, generateContent.

Every resource path is built from validated segments, each percent-encoded, so a project,
region or job name can never steer a request to another host or path.
"""

from __future__ import annotations

import re
import threading
from typing import Any
from urllib.parse import quote

import httpx

from reconciler import __version__
from reconciler.errors import (
    AmbiguousCreateError,
    ApiError,
    InvalidArgumentError,
    ReconcilerError,
    TransportError,
)
from reconciler.vertex.transport import RetryPolicy, Transport
from reconciler.vertex.wire import ListTuningJobsResponse, TuningJob

API_VERSION = "v1"
# AIP-158: values above the server's maximum are coerced down, so ask for the most we can use.
LIST_PAGE_SIZE = 1000
REQUEST_LABEL = "reconciler-request"

_PROJECT = re.compile(r"^(?:[a-z][a-z0-9.-]{0,62}:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$|^[0-9]{1,20}$")
_LOCATION = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+){0,4}$")
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}$")
_JOB_NAME = re.compile(r"^projects/([^/]+)/locations/([^/]+)/tuningJobs/([^/]+)$")
_ENDPOINT_NAME = re.compile(r"^projects/([^/]+)/locations/([^/]+)/endpoints/([^/]+)$")


def valid_project(project: str) -> bool:
    return bool(_PROJECT.match(project))


def valid_location(location: str) -> bool:
    return bool(_LOCATION.match(location)) and len(location) <= 63


def parent_path(project: str, location: str) -> str:
    """`projects/{project}/locations/{location}`, refusing anything that is not a plain id."""
    if not valid_project(project):
        raise ReconcilerError(f"invalid project id {project!r}")
    if not valid_location(location):
        raise ReconcilerError(f"invalid region {location!r}")
    return f"projects/{project}/locations/{location}"


def split_job_name(name: str) -> tuple[str, str, str]:
    """(project, location, id) of a tuning job resource name; raises on anything else."""
    m = _JOB_NAME.match(name)
    if not m or not all(_SEGMENT.match(part) for part in m.groups()):
        raise ReconcilerError(f"not a tuning job resource name: {name!r}")
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
        max_connections: int = 32,
        requests_per_minute: int = 0,
        creates_per_minute: int = 0,
    ) -> None:
        """`endpoint` overrides the regional hosts for every region (e.g. the emulator's URL)."""
        self.endpoint = endpoint.rstrip("/") if endpoint else None
        self._http = http or httpx.Client(
            auth=auth,
            timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            headers={"x-goog-api-client": f"vertex-tuning-reconciler/{__version__}",
                     "user-agent": f"vertex-tuning-reconciler/{__version__}"},
            follow_redirects=False,
        )
        self.transport = Transport(self._http, retry, requests_per_minute=requests_per_minute,
                                   creates_per_minute=creates_per_minute)
        self._lock = threading.Lock()

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
        """Every job of `parent` (all pages, largest page size), without a per-job GET."""
        _, location = _parent_parts(parent)
        url = self._url(location, parent + "/tuningJobs")
        jobs: list[TuningJob] = []
        token = ""
        seen_tokens: set[str] = set()
        while True:
            params = {"pageSize": str(LIST_PAGE_SIZE)}
            if filter:
                params["filter"] = filter
            if token:
                params["pageToken"] = token
            page = ListTuningJobsResponse.model_validate(
                self.transport.send("GET", url, params=params, region=location))
            jobs.extend(page.tuning_jobs)
            token = page.next_page_token or ""
            if not token:
                return jobs
            if token in seen_tokens:  # a server bug would otherwise loop for ever
                raise TransportError(f"list of {parent} returned a page token twice; stopping")
            seen_tokens.add(token)

    def get_tuning_job(self, name: str) -> TuningJob:
        _, location, _ = split_job_name(name)
        return TuningJob.model_validate(self.transport.send("GET", self._url(location, name), region=location))

    def cancel_tuning_job(self, name: str) -> None:
        """Request cancellation (asynchronous: the job goes through JOB_STATE_CANCELLING)."""
        _, location, _ = split_job_name(name)
        self.transport.send("POST", self._url(location, name, ":cancel"), body={}, region=location)

    def create_tuning_job(self, parent: str, job: TuningJob, request_id: str) -> TuningJob:
        """Create a job exactly once for `request_id`, which goes on the job as a label.

        After an ambiguous failure (5xx, timeout, dropped connection) the job may exist although
        no answer came back; before each new attempt the jobs of the parent are searched for the
        request label, and a found job is returned instead of creating a second one.
        """
        _, location = _parent_parts(parent)
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
            return TuningJob.model_validate(
                self.transport.send("POST", url, body=body, before_retry=settle, region=location, create=True))
        except (ApiError, TransportError) as exc:
            refused = isinstance(exc, ApiError) and exc.code < 500  # 4xx incl. 429: not processed
            if refused and not ambiguous_seen:
                raise  # every attempt was refused by the server: nothing was created
            try:
                found = self.find_by_request(parent, request_id)
            except (ApiError, TransportError):
                raise AmbiguousCreateError(
                    f"create in {parent} failed ({exc}) and whether the job exists could not be "
                    f"checked; the next plan finds it by its label {REQUEST_LABEL}={request_id}"
                ) from exc
            if found is not None:
                return found
            raise

    def find_by_request(self, parent: str, request_id: str) -> TuningJob | None:
        """The job of `parent` carrying `request_id`, or None (filtered on both ends).

        The label filter only narrows the search: its grammar for tuningJobs is not documented,
        so a server may read it differently (e.g. keep the quotes in the value) and answer with
        nothing. A "not found" is therefore confirmed on the full list, since a wrong one makes a
        second job.
        """
        def match(jobs: list[TuningJob]) -> TuningJob | None:
            return next((j for j in jobs if (j.labels or {}).get(REQUEST_LABEL) == request_id), None)

        try:
            found = match(self.list_tuning_jobs(parent, filter=f'labels.{REQUEST_LABEL}="{request_id}"'))
        except InvalidArgumentError:  # label filters on tuningJobs are not documented: list all
            found = None
        return found if found is not None else match(self.list_tuning_jobs(parent))

    # -- endpoints --------------------------------------------------------------------------
    def generate_content(self, endpoint: str, prompt: str) -> dict[str, Any]:
        """Send one user prompt to a tuned model's endpoint; return the raw response."""
        m = _ENDPOINT_NAME.match(endpoint)
        if not m or not all(_SEGMENT.match(part) for part in m.groups()):
            raise ReconcilerError(f"not an endpoint resource name: {endpoint!r}")
        body = {"contents": [{"role": "user", "parts": [{"text": prompt}]}]}
        result: dict[str, Any] = self.transport.send(
            "POST", self._url(m.group(2), endpoint, ":generateContent"), body=body
        )  # serving traffic, not a resource-management request: not paced
        return result


def _parent_parts(parent: str) -> tuple[str, str]:
    parts = parent.split("/")
    if len(parts) != 4 or parts[0] != "projects" or parts[2] != "locations":
        raise ReconcilerError(f"not a parent resource name: {parent!r}")
    parent_path(parts[1], parts[3])
    return parts[1], parts[3]
