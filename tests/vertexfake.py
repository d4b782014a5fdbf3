"""A second, independent fake of the Vertex AI REST v1 tuningJobs API (plus generateContent).

Written from the reference documents only, never from reconciler/ (it imports nothing from it),
and deliberately different from our emulator wherever the documents leave room:
- small server page size (max 7, default 5); larger pageSize values are coerced down (AIP-158);
  the first page holds no jobs, a full last page still has a token (the next page is `{}`),
  tokens are standard base64 (`+`, `=`), and the last page alternates between
  `"nextPageToken": ""` and no token at all; an empty list is `{}`;
- jobs are listed oldest first; ids are random 19-digit numbers (they do not grow);
- names carry the project NUMBER, whatever the parent said; both forms are accepted in paths;
- int64 as strings, enums as names, createTime with nanoseconds, unknown extra fields;
- the server fills hyperparameter defaults the request left out;
- `filter` is rejected (400 INVALID_ARGUMENT), silently ignored, or read literally, per `filter_mode`;
- cancel answers `{}` and the job is CANCELLED at once; cancel of a finished job is
  400 FAILED_PRECONDITION; unknown request fields and query parameters are 400 INVALID_ARGUMENT;
- labels are checked against the documented rules; request fields against the discovery document;
- faults on demand: 503 with an HTML body, 429 with `Retry-After` as an HTTP date, a create
  that stores the job but answers 503 (optionally followed by an outage), a job that finishes
  just before its cancel arrives, a cancel that is accepted but never happens;
- a broken or hostile server on demand: `foreign_jobs` shown in every list whatever the parent
  (jobs named under another project or region), `raw_answers` that replace the next answer to an
  operation by any JSON value or raw bytes (a create can still store its job first).
Jobs move on only when the test calls `advance()` (or, with `auto_advance`, on each list).
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import importlib.resources
import json
import math
import random
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

Fault = Literal["html503", "429date", "lost-create", "lost-create-outage", "finish-first", "cancel-ignored"]
GLOBAL_PARAMS = {"$.xgafv", "access_token", "alt", "callback", "fields", "key", "oauth_token", "prettyPrint",
                 "quotaUser", "uploadType", "upload_protocol", "$alt"}
_COLLECTION = re.compile(r"^/v1/projects/([^/]+)/locations/([^/]+)/tuningJobs$")
_JOB = re.compile(r"^/v1/projects/([^/]+)/locations/([^/]+)/tuningJobs/([^/:]+)(:cancel)?$")
_GENERATE = re.compile(r"^/v1/projects/([^/]+)/locations/([^/]+)/endpoints/([^/:]+):generateContent$")
_LIVE = ("JOB_STATE_PENDING", "JOB_STATE_RUNNING")
_STATUS_CODES = {"INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "NOT_FOUND": 404, "UNAVAILABLE": 503,
                 "RESOURCE_EXHAUSTED": 429}
_GFE_503 = "<!DOCTYPE html><html><head><title>Error 503 (Server Error)!!1</title></head><body><p><b>503.</b> " \
           "<ins>That's an error.</ins></p><p>The service is currently unavailable.</p></body></html>"


def _discovery_schemas() -> dict[str, Any]:
    path = importlib.resources.files("googleapiclient") / "discovery_cache" / "documents" / "aiplatform.v1.json"
    schemas: dict[str, Any] = json.loads(path.read_text())["schemas"]
    return schemas


SCHEMAS = _discovery_schemas()


class FakeError(Exception):
    def __init__(self, status: str, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.details = status, message, details or []

    def response(self) -> JSONResponse:
        code = _STATUS_CODES[self.status]
        return JSONResponse({"error": {"code": code, "message": self.message, "status": self.status,
                                       "details": self.details}}, code)


def _unknown_fields(value: Any, schema: dict[str, Any], where: str) -> list[str]:
    """Field names of `value` that the discovery schema does not know (as proto JSON parsing refuses)."""
    if "$ref" in schema:
        schema = SCHEMAS[schema["$ref"]]
    if isinstance(value, dict) and "properties" in schema:
        out: list[str] = []
        for key, item in value.items():
            if key not in schema["properties"]:
                out.append(f"{where}.{key}" if where else key)
            else:
                out += _unknown_fields(item, schema["properties"][key], f"{where}.{key}" if where else key)
        return out
    if isinstance(value, list) and "items" in schema:
        return [bad for item in value for bad in _unknown_fields(item, schema["items"], where)]
    return []


def _operation(method: str, m_col: re.Match[str] | None, m_job: re.Match[str] | None,
               m_gen: re.Match[str] | None) -> str:
    if m_col:
        return "create" if method == "POST" else "list"
    if m_job and method == "POST" and m_job[4]:
        return "cancel"
    if m_job and method == "GET" and not m_job[4]:
        return "get"
    return "generate" if m_gen and method == "POST" else "unknown"


def _timestamp(moment: datetime, nanos: int) -> str:
    """RFC 3339 with 0, 3, 6 or 9 fractional digits, as proto3 JSON writes Timestamps."""
    base = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if nanos == 0:
        return base + "Z"
    digits = 3 if nanos % 1_000_000 == 0 else 6 if nanos % 1000 == 0 else 9
    return f"{base}.{str(nanos).rjust(9, '0')[:digits]}Z"


@dataclass
class VertexFake:
    """The fake's state and knobs; `app` serves it. Thread-safe (the server runs in a thread)."""

    # reject: 400 to any filter; ignore: list everything; literal: only `labels.KEY=VALUE`, the form of
    # the documented example, the value taken verbatim (so `"v"` with quotes matches only `"v"`).
    filter_mode: Literal["reject", "ignore", "literal"] = "reject"
    max_page_size: int = 7
    default_page_size: int = 5
    project_numbers: dict[str, str] = field(default_factory=lambda: {"demo-project": "428195617364"})
    faults: list[tuple[str, Fault]] = field(default_factory=list)  # (operation or "*", fault), used in order
    auto_advance: bool = False  # each list (first page) moves the jobs one state on first
    empty_first_page: bool = True  # AIP-158 allows a page of zero jobs with a next token: lists start with one
    outage: bool = False  # every request answers an HTML 503 (set by the fault lost-create-outage)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)  # id → job; dicts keep creation order
    requests: list[tuple[str, str, dict[str, str], float]] = field(default_factory=list)  # (op, path, query, time)
    retry_dates: list[tuple[int, float]] = field(default_factory=list)  # (request index, Retry-After date as epoch s)
    foreign_jobs: list[dict[str, Any]] = field(default_factory=list)  # listed under every parent, names as given
    # (operation, body, store): the next answer to `operation` is `body` (a JSON value, or bytes sent as
    # they are) with status 200; with `store`, a create makes its job first. Used in order, once each.
    raw_answers: list[tuple[str, Any, bool]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(7)
        self._nanos = 0  # nanoseconds after 2026-11-25T10:00:00Z; moves on at every event
        self._lists = 0
        self.app = Starlette(routes=[Route("/{path:path}", self._dispatch, methods=["GET", "POST"])])

    # -- test-side helpers ------------------------------------------------------------------
    def number(self, project: str) -> str:
        if project.isdigit():
            return project
        return self.project_numbers.get(project) or str(int(hashlib.sha256(project.encode()).hexdigest(), 16))[:12]

    def ops(self, op: str) -> list[tuple[str, str, dict[str, str], float]]:
        return [r for r in self.requests if r[0] == op]

    def advance(self, steps: int = 1) -> None:
        """Move every live job `steps` states on: PENDING → RUNNING → SUCCEEDED."""
        with self._lock:
            for _ in range(steps):
                for job in self.jobs.values():
                    self._step(job)

    def seed(self, project: str, location: str, body: dict[str, Any], **output: Any) -> str:
        """A job made by someone else; `output` sets output-only fields (e.g. state)."""
        with self._lock:
            job = self._create(project, location, body)
            job.update(output)
            return str(job["name"])

    # -- internals --------------------------------------------------------------------------
    def _now(self) -> str:
        """Steps from 7 ns to a minute, some landing on a whole second or millisecond, so that
        times of one second carry 0, 3, 6 or 9 fraction digits (`…:05Z` < `…:05.5Z` in time, not as text)."""
        step = self._rng.choice([7, 1_000, 250_000_000, 10**9 - self._nanos % 10**9, 61 * 10**9 + 123_456_789])
        self._nanos += step
        seconds, nanos = divmod(self._nanos, 10**9)
        return _timestamp(datetime(2026, 11, 25, 10, tzinfo=timezone.utc) + timedelta(seconds=seconds), nanos)

    def _stats(self) -> dict[str, Any]:
        return {"supervisedTuningDataStats": {
            "tuningDatasetExampleCount": "1200", "totalBillableTokenCount": "987654", "tuningStepCount": "300",
            "userInputTokenDistribution": {"sum": "500000", "mean": 416.6, "max": 2048.0, "buckets": [
                {"count": 1200.0, "left": 1.0, "right": 2048.0}]},
            "someFutureStat": {"nested": ["1"]}}}

    def _step(self, job: dict[str, Any]) -> None:
        if job["state"] == "JOB_STATE_RUNNING":
            self._succeed(job)
        elif job["state"] == "JOB_STATE_PENDING":
            job.update(state="JOB_STATE_RUNNING", startTime=self._now(), updateTime=self._now(),
                       tuningDataStats=self._stats())

    def _succeed(self, job: dict[str, Any]) -> None:
        project, location, jid = job["name"].split("/")[1::2]
        endpoint = f"projects/{project}/locations/{location}/endpoints/{int(jid) % 10**12 + 5 * 10**17}"
        job.update(state="JOB_STATE_SUCCEEDED", endTime=self._now(), updateTime=self._now(),
                   tunedModel={"model": f"projects/{project}/locations/{location}/models/{jid[-9:]}@1",
                               "endpoint": endpoint, "someNewField": 1},
                   experiment=f"projects/{project}/locations/{location}/metadataStores/default/contexts/"
                              f"tuning-experiment-{jid}",
                   gcsMetricsUri=f"gs://fake-tuning-metrics-{project}/{jid}/")

    def _create(self, project: str, location: str, body: dict[str, Any]) -> dict[str, Any]:
        unknown = _unknown_fields(body, {"$ref": "GoogleCloudAiplatformV1TuningJob"}, "")
        if unknown:
            raise FakeError("INVALID_ARGUMENT", f'Invalid JSON payload received. Unknown name "{unknown[0]}" at '
                            "'tuning_job': Cannot find field.")
        spec = body.get("supervisedTuningSpec")
        if not (body.get("baseModel") or body.get("preTunedModel")) or not (
                (spec or {}).get("trainingDatasetUri") or body.get("preferenceOptimizationSpec")):
            raise FakeError("INVALID_ARGUMENT", "A base model and a tuning spec with a training dataset are required.")
        for key, value in (body.get("labels") or {}).items():
            if not (0 < len(key) <= 63 and len(value) <= 63 and key[0].isalpha() and (key + value).lower() == key + value
                    and all(c.isalnum() or c in "_-" for c in key + value)):
                raise FakeError("INVALID_ARGUMENT", f"Invalid label {key!r}: {value!r}.")
        out = {**body}
        if spec is not None:
            hp = {"epochCount": "10", "learningRateMultiplier": 1, "adapterSize": "ADAPTER_SIZE_FOUR",
                  **(spec.get("hyperParameters") or {})}
            hp["epochCount"] = str(int(hp["epochCount"]))  # int64: a string on the way out, whatever came in
            out["supervisedTuningSpec"] = {**spec, "hyperParameters": hp}
        jid = str(self._rng.randrange(10**18, 10**19))
        now = self._now()
        job = {"name": f"projects/{self.number(project)}/locations/{location}/tuningJobs/{jid}",
               "someNewField": 1, **out, "state": "JOB_STATE_PENDING", "createTime": now, "updateTime": now}
        self.jobs[jid] = job
        return job

    def _list(self, project: str, location: str, query: dict[str, str]) -> dict[str, Any]:
        wanted = re.fullmatch(r"labels\.([^=\s]+)=(\S+)", query.get("filter", ""))
        if query.get("filter") and (self.filter_mode == "reject" or (self.filter_mode == "literal" and not wanted)):
            raise FakeError("INVALID_ARGUMENT", "Unsupported filter: filtering is not supported for tuning jobs.",
                            [{"@type": "type.googleapis.com/google.rpc.BadRequest",
                              "fieldViolations": [{"field": "filter", "description": "not supported"}]}])
        try:
            size = int(query.get("pageSize") or 0)
            start = int(base64.b64decode(query["pageToken"]).decode().split("+/")[1]) if query.get("pageToken") else 0
        except (ValueError, IndexError, UnicodeDecodeError) as exc:
            raise FakeError("INVALID_ARGUMENT", f"Invalid pageSize or pageToken: {exc}") from exc
        if size < 0:
            raise FakeError("INVALID_ARGUMENT", "page_size must not be negative")
        if self.auto_advance and not start:
            for job in self.jobs.values():
                self._step(job)
        size = min(size or self.default_page_size, self.max_page_size)
        prefix = f"projects/{self.number(project)}/locations/{location}/"
        mine = [j for j in [*self.jobs.values(), *self.foreign_jobs] if (
            j["name"].startswith(prefix) or any(j is f for f in self.foreign_jobs)) and not (
            self.filter_mode == "literal" and wanted and (j.get("labels") or {}).get(wanted[1]) != wanted[2])]
        if self.empty_first_page and not query.get("pageToken"):
            size = 0
        page = mine[start:start + size]
        out: dict[str, Any] = {}
        if page:
            out["tuningJobs"] = page
        self._lists += 1
        if len(page) == size:  # a full page (or the empty first one): maybe more, maybe an empty page next
            out["nextPageToken"] = base64.b64encode(f"~>>?+/{start + size}".encode()).decode()
        elif self._lists % 2:
            out["nextPageToken"] = ""
        return out

    def _cancel(self, job: dict[str, Any]) -> dict[str, Any]:
        if job["state"] not in _LIVE:
            raise FakeError("FAILED_PRECONDITION", f"Cannot cancel tuning job {job['name']} in state {job['state']}.")
        now = self._now()
        job.update(state="JOB_STATE_CANCELLED", endTime=now, updateTime=now,
                   error={"code": 1, "message": "CANCELLED", "details": []})
        return {}

    def _fault(self, op: str, query: dict[str, str]) -> Fault | None:
        """The first queued fault for `op` ("list-next": a list page after the first; "*": any)."""
        for i, (target, fault) in enumerate(self.faults):
            if target in ("*", op) or (target == "list-next" and op == "list" and query.get("pageToken")):
                del self.faults[i]
                return fault
        return None

    async def _dispatch(self, request: Request) -> Response:
        path, method = request.url.path, request.method
        query = dict(request.query_params)
        raw = await request.body()
        with self._lock:
            m_col, m_job, m_gen = _COLLECTION.match(path), _JOB.match(path), _GENERATE.match(path)
            op = _operation(method, m_col, m_job, m_gen)
            self.requests.append((op, path, query, time.time()))
            fault = self._fault(op, query)
            raw_answer = next((a for a in self.raw_answers if a[0] == op), None)
            if raw_answer is not None:
                self.raw_answers.remove(raw_answer)
                _, answer, store = raw_answer
                if store and op == "create" and m_col:
                    self._create(m_col[1], m_col[2], json.loads(raw) if raw.strip() else {})
                if isinstance(answer, bytes):
                    return Response(answer, 200, media_type="application/json")
                return JSONResponse(answer)
            if fault == "html503" or self.outage:
                return HTMLResponse(_GFE_503, 503)
            if fault == "429date":
                when = math.ceil(time.time() + 0.3)
                self.retry_dates.append((len(self.requests) - 1, when))
                return JSONResponse({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message":
                                               "Quota exceeded for aiplatform.googleapis.com/resource_management_requests"}},
                                    429, headers={"Retry-After": email.utils.formatdate(when, usegmt=True)})
            try:
                allowed = GLOBAL_PARAMS | ({"filter", "pageSize", "pageToken"} if op == "list" else set())
                if set(query) - allowed:
                    raise FakeError("INVALID_ARGUMENT", f"Invalid JSON payload received. Unknown name "
                                    f'"{sorted(set(query) - allowed)[0]}": Cannot bind query parameter.')
                body = json.loads(raw) if raw.strip() else {}
                if op == "create" and m_col:
                    job = self._create(m_col[1], m_col[2], body)
                    self.outage = fault == "lost-create-outage"
                    if fault in ("lost-create", "lost-create-outage"):
                        return JSONResponse({"error": {"code": 503, "message": "The service is currently unavailable.",
                                                       "status": "UNAVAILABLE"}}, 503)
                    return JSONResponse(job)
                if op == "list" and m_col:
                    return JSONResponse(self._list(m_col[1], m_col[2], query))
                if op in ("get", "cancel") and m_job:
                    found = self.jobs.get(m_job[3])
                    if found is None or not found["name"].startswith(f"projects/{self.number(m_job[1])}/locations/{m_job[2]}/"):
                        raise FakeError("NOT_FOUND", f'The TuningJob "{path[4:].removesuffix(":cancel")}" does not exist.')
                    if fault == "finish-first":  # the job ends just before the cancel arrives
                        self._step(found)
                        self._step(found)
                    if fault == "cancel-ignored" and op == "cancel":  # "success is not guaranteed"
                        return JSONResponse({})
                    return JSONResponse(self._cancel(found) if op == "cancel" else found)
                if op == "generate" and m_gen:
                    return JSONResponse(self._generate(m_gen[1], m_gen[2], m_gen[3], body))
                raise FakeError("NOT_FOUND", f"The requested URL {path} was not found on this server.")
            except json.JSONDecodeError as exc:
                return FakeError("INVALID_ARGUMENT", f"Invalid JSON payload received. {exc}").response()
            except FakeError as exc:
                return exc.response()

    def _generate(self, project: str, location: str, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        name = f"projects/{self.number(project)}/locations/{location}/endpoints/{endpoint}"
        if not any((j.get("tunedModel") or {}).get("endpoint") == name for j in self.jobs.values()):
            raise FakeError("NOT_FOUND", f"Endpoint {name} not found.")
        prompt = "".join(p.get("text", "") for c in body.get("contents", []) for p in c.get("parts", []))
        return {"candidates": [{"content": {"role": "model", "parts": [{"text": "Fake says: "}, {"text": prompt}]},
                                "finishReason": "STOP", "avgLogprobs": -0.1}],
                "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 7, "totalTokenCount": 12},
                "modelVersion": "gemini-3.5-flash", "createTime": self._now(), "responseId": "fake-1"}
