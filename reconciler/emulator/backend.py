"""Jobs, clock and rules of the emulated Vertex AI tuning-jobs service, with no HTTP in it.

`Backend` holds all state of one emulator instance behind one lock; its methods copy the API
operations (`create_tuning_job`, `get_tuning_job`, `list_tuning_jobs`, `cancel_tuning_job`,
`generate_content`) and the admin operations (`reset`, `configure`, `advance`, `seed`, `fail`,
`patch`, `stats`, `set_reply`). Failures raise `ApiError`.

A job's life is a timeline of (time, state) events fixed when it is created (or cancelled, or
failed by a rule); its state is read off the timeline at the backend clock's "now", so advancing
the clock moves every job, through several states at once if need be. The clock is virtual:
wall time plus an offset ("real") or a value that moves only by `advance` ("manual").
"""

from __future__ import annotations

import base64
import collections
import copy
import dataclasses
import datetime as dt
import hashlib
import json
import math
import os
import random
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from reconciler.emulator import wire
from reconciler.emulator.errors import (
    ERROR_INFO_TYPE,
    ApiError,
    GatewayError,
    invalid_argument,
    not_found,
    retry_info,
)
from reconciler.emulator.filtering import JobView, compile_filter

__all__ = ["ApiError", "Backend", "EmulatorConfig"]

QUEUED, PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLING, CANCELLED = (
    "JOB_STATE_QUEUED",
    "JOB_STATE_PENDING",
    "JOB_STATE_RUNNING",
    "JOB_STATE_SUCCEEDED",
    "JOB_STATE_FAILED",
    "JOB_STATE_CANCELLING",
    "JOB_STATE_CANCELLED",
)
_TERMINAL = frozenset(
    {SUCCEEDED, FAILED, CANCELLED, "JOB_STATE_EXPIRED", "JOB_STATE_PARTIALLY_SUCCEEDED"}
)
# A seeded job in a fixed state gets the states leading to it, all at its createTime.
_SEED_PATHS: Mapping[str, tuple[str, ...]] = {
    QUEUED: (),
    PENDING: (),
    RUNNING: (PENDING,),
    SUCCEEDED: (PENDING, RUNNING),
    FAILED: (PENDING, RUNNING),
    CANCELLING: (PENDING, RUNNING),
    CANCELLED: (PENDING, RUNNING, CANCELLING),
    "JOB_STATE_PAUSED": (PENDING, RUNNING),
    "JOB_STATE_EXPIRED": (PENDING,),
    "JOB_STATE_UPDATING": (PENDING, RUNNING),
    "JOB_STATE_PARTIALLY_SUCCEEDED": (PENDING, RUNNING),
}
_DEFAULT_ERRORS: Mapping[str, dict[str, Any]] = {
    FAILED: {"code": 13, "message": "Internal error encountered."},
    CANCELLED: {"code": 1, "message": "CANCELLED"},
}
_SEED_KEYS = frozenset({"project", "location", "state", "createTime", "error", "listedIn"})
_LOOP_TOKEN = "emulator-loop"
_ENDLESS_TOKEN = "emulator-endless-"
_FAIL_KEYS = frozenset({"name", "labels", "baseModel", "message"})
_OPERATIONS = ("create", "get", "list", "cancel", "generateContent")
_FAULTS = ("503", "429", "lost_create", "quota_429")
_FIRST_JOB_ID = 100_000_000_000_000
_MODEL_ID_BASE = 7 * 10**18  # model and endpoint ids are derived from the job id
_ENDPOINT_ID_BASE = 8 * 10**18
_CHECKPOINT_ENDPOINT_BASE = 9 * 10**18  # + job id * _MAX_CHECKPOINTS + epoch
_MAX_CHECKPOINTS = 1000
_DEFAULT_EPOCHS = 3  # when a job sets no epochCount (the service picks per model; undocumented)
_FILE_FORMAT = "vertex-tuning-emulator/1"
_PROJECT = r"[A-Za-z0-9][A-Za-z0-9._:-]*"
_LOCATION = r"[a-z0-9][a-z0-9-]*"
_PARENT = re.compile(rf"projects/({_PROJECT})/locations/({_LOCATION})")
_MODEL_NAME = re.compile(
    rf"projects/({_PROJECT})/locations/({_LOCATION})/models/(\d+)(?:@([A-Za-z0-9_-]+))?"
)
_TUNED_MODEL_NAME = "tuning_job.pre_tuned_model.tuned_model_name"


@dataclass
class EmulatorConfig:
    """Settings of an emulator; every field can be changed at run time (`configure`)."""

    pending_seconds: float = 5.0
    running_seconds: float = 60.0
    cancelling_seconds: float = 2.0
    clock: Literal["real", "manual"] = "real"
    default_page_size: int = 100
    max_page_size: int = 1000
    # Jobs per list page whatever pageSize asks (0: honour pageSize up to max_page_size): a server
    # that answers with more than asked, e.g. one page of 200,000 jobs for the client's bounds.
    forced_page_size: int = 0
    submissions_per_minute: int = 60  # create calls per project+region; 0 = unlimited
    requests_per_minute: int = 600  # all tuningJobs calls per project+region; 0 = unlimited
    latency_ms: float = 0.0
    rate_503: float = 0.0
    rate_429: float = 0.0
    retry_after_seconds: float = 1.0
    # A 429 says when to retry in a google.rpc.RetryInfo detail (`retryDelay`, as Google's APIs
    # do) and in a `Retry-After` header (whole seconds, rounded up); either can be left out.
    retry_info: bool = True
    retry_after_header: bool = True
    lost_create_rate: float = 0.0
    fault_seed: int | None = None
    data_path: str | None = None
    project_numbers: dict[str, str] = field(default_factory=dict)
    # A create is held this long (wall seconds, or until the next advance) before it is made; it
    # is made even if its client has gone meanwhile (a server finishing a create after a kill).
    create_delay_seconds: float = 0.0
    # "loop": every list answer carries the same next-page token again; "endless": a new token
    # on every answer, pages after the first empty. A broken server for the client's page bounds.
    page_tokens: Literal["normal", "loop", "endless"] = "normal"
    # A create on a base model closed to new tuning (a month before its retirement, on the
    # emulator's clock) is refused with 400 FAILED_PRECONDITION; false lets it through (seeded
    # jobs are never checked). `model_retirements` sets or moves retirement dates (model id ->
    # "YYYY-MM-DD"), e.g. to make a model retire in ten days.
    refuse_retired_models: bool = True
    model_retirements: dict[str, str] = field(default_factory=dict)
    # False: a cancelled job loses the race to its completion (CANCELLING -> SUCCEEDED), which the
    # API allows ("the job completed despite cancellation").
    cancel_wins: bool = True


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


_SECONDS = (lambda v: _is_number(v) and math.isfinite(v), "a number >= 0")
_RATE = (lambda v: _is_number(v) and v <= 1, "a number from 0 to 1")
_PAGE = (lambda v: _is_count(v) and v >= 1, "an integer >= 1")
_COUNT = (_is_count, "an integer >= 0")
_CONFIG_RULES: Mapping[str, tuple[Callable[[Any], bool], str]] = {
    "pending_seconds": _SECONDS,
    "running_seconds": _SECONDS,
    "cancelling_seconds": _SECONDS,
    "clock": (lambda v: v in ("real", "manual"), '"real" or "manual"'),
    "default_page_size": _PAGE,
    "max_page_size": _PAGE,
    "forced_page_size": _COUNT,
    "submissions_per_minute": _COUNT,
    "requests_per_minute": _COUNT,
    "latency_ms": _SECONDS,
    "rate_503": _RATE,
    "rate_429": _RATE,
    "retry_after_seconds": _SECONDS,
    "retry_info": (lambda v: isinstance(v, bool), "true or false"),
    "retry_after_header": (lambda v: isinstance(v, bool), "true or false"),
    "lost_create_rate": _RATE,
    "fault_seed": (
        lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)),
        "an integer or null",
    ),
    "data_path": (lambda v: v is None or (isinstance(v, str) and bool(v)), "a file path or null"),
    "create_delay_seconds": _SECONDS,
    "page_tokens": (lambda v: v in ("normal", "loop", "endless"), '"normal", "loop" or "endless"'),
    "refuse_retired_models": (lambda v: isinstance(v, bool), "true or false"),
    "model_retirements": (
        lambda v: isinstance(v, dict) and all(_is_date(d) for d in v.values()),
        'an object mapping model ids to dates ("YYYY-MM-DD")',
    ),
    "cancel_wins": (lambda v: isinstance(v, bool), "true or false"),
    "project_numbers": (
        lambda v: (
            isinstance(v, dict)
            and all(isinstance(k, str) and isinstance(n, str) and n.isdigit() for k, n in v.items())
        ),
        "an object mapping project ids to project numbers (digit strings)",
    ),
}


def _is_date(value: Any) -> bool:
    try:
        return isinstance(value, str) and bool(dt.date.fromisoformat(value))
    except ValueError:
        return False


def _check_config(changes: Mapping[str, Any]) -> None:
    problems = [f"unknown field {name!r}" for name in changes if name not in _CONFIG_RULES]
    problems += [
        f"{name} must be {rule[1]}, got {value!r}"
        for name, value in changes.items()
        if (rule := _CONFIG_RULES.get(name)) and not rule[0](value)
    ]
    if problems:
        raise invalid_argument("Invalid emulator config: " + "; ".join(problems) + ".")


def _wall_us() -> int:
    return time.time_ns() // 1000


def _seconds_us(seconds: float) -> int:
    return round(seconds * 1_000_000)


@dataclass
class _Job:
    id: int
    project: str  # project number
    location: str
    spec: dict[str, Any]  # the TuningJob input fields as canonical proto3 JSON
    events: list[tuple[int, str]]  # (time in microseconds, state), in time order
    errors: dict[str, dict[str, Any]] = field(default_factory=dict)  # state -> error
    extra: dict[str, Any] = field(default_factory=dict)  # raw fields patched over the output
    # Parents (project number form) whose lists also show this job, though its name lies elsewhere.
    listed_in: list[str] = field(default_factory=list)
    # The Model its tuned model becomes a version of (continuous tuning); 0: a model of its own.
    model_id: int = 0

    @property
    def own_model_id(self) -> int:
        return self.model_id or _MODEL_ID_BASE + self.id

    @property
    def base_model(self) -> str:
        """The base model tuned: `baseModel`, or the pre-tuned model's (continuous tuning)."""
        return str(
            self.spec.get("baseModel") or self.spec.get("preTunedModel", {}).get("baseModel", "")
        )

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"

    @property
    def name(self) -> str:
        return f"{self.parent}/tuningJobs/{self.id}"

    def history(self, now: int) -> list[tuple[int, str]]:
        """The events that have happened by `now` (at least the first one)."""
        return [event for event in self.events if event[0] <= now] or self.events[:1]

    def state(self, now: int) -> str:
        return self.history(now)[-1][1]

    def view(self, now: int) -> JobView:
        return JobView(self.state(now), self.spec.get("labels", {}), self.events[0][0])


class Backend:
    """All state of one emulator: jobs, clock, fail rules, replies, quotas, faults, stats."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        config = config or EmulatorConfig()
        try:
            _check_config(dataclasses.asdict(config))
        except ApiError as exc:
            raise ValueError(exc.message) from None
        self._initial = copy.deepcopy(config)
        self.config = copy.deepcopy(config)
        self._lock = threading.RLock()
        self.advances = 0  # how many advances so far: a held create ends at the next one
        self._next_id = _FIRST_JOB_ID
        self._clear()
        if config.data_path and Path(config.data_path).exists():
            self._load(Path(config.data_path))

    def _clear(self) -> None:
        self._jobs: dict[int, _Job] = {}
        # Jobs that made a new version of another job's Model (continuous tuning), by Model id:
        # with the Model's own job, its versions, found without a scan of every job per render.
        self._continuations: collections.defaultdict[int, list[_Job]] = collections.defaultdict(list)
        self._rules: list[dict[str, Any]] = []
        self._replies: dict[str, str] = {}
        self._requests = dict.fromkeys(_OPERATIONS, 0)
        # when the latest requests arrived (wall clock): a benchmark tells a client's start-up
        # (spawn to its first request) and finish (its last request to its exit) from them
        self._arrivals: collections.deque[float] = collections.deque(maxlen=4096)
        self._by_parent: collections.Counter[str] = collections.Counter()
        self._faults = dict.fromkeys(_FAULTS, 0)
        self._windows: collections.defaultdict[tuple[str, ...], collections.deque[float]] = (
            collections.defaultdict(collections.deque)
        )
        self._rng = random.Random(self.config.fault_seed)
        self._offset = 0
        self._manual_now = _wall_us()

    # ----- API operations -------------------------------------------------------------

    def create_tuning_job(
        self, parent: str, body: Mapping[str, Any], enum_int: bool = False
    ) -> dict[str, Any]:
        """tuningJobs.create: validate the TuningJob, store it PENDING, return it."""
        with self._lock:
            self._admit("create", parent)
            project, location = self._parse_parent(parent)
            spec = wire.parse_message(body, wire.TUNING_JOB, "tuning_job")
            now = self._now()
            model_id, pre_tuned_base = 0, None
            pre_tuned = spec.get("preTunedModel", {})
            if pre_tuned.get("tunedModelName") and "baseModel" not in spec:
                model_id, source = self._pre_tuned_source(project, location, pre_tuned, now)
                pre_tuned_base = source.base_model
                spec["preTunedModel"] = {**pre_tuned, "baseModel": pre_tuned_base}
                # "For continuous tuning, tuned_model_display_name will by default use the same
                # display name as the pre-tuned model. If a new display name is provided, the
                # tuning job will create a new model instead of a new version."
                parent_display = self._model_display_name(model_id, now)
                display = spec.setdefault("tunedModelDisplayName", parent_display)
                if display != parent_display:
                    model_id = 0
                spec = {k: spec[k] for k in wire.TUNING_JOB.fields if k in spec}
            wire.check_tuning_job(spec, pre_tuned_base)
            self._check_lifecycle(wire.base_model_id(pre_tuned_base or spec["baseModel"]), now)
            job = self._add_job(project, location, spec, self._timeline(now), {})
            job.model_id = model_id
            if model_id:
                self._continuations[model_id].append(job)
            self._save()
            if self.config.lost_create_rate and self._rng.random() < self.config.lost_create_rate:
                self._faults["lost_create"] += 1
                if self._faults["lost_create"] % 2:
                    raise ApiError(
                        504,
                        "DEADLINE_EXCEEDED",
                        "Deadline expired before operation could complete.",
                    )
                raise GatewayError()
            return self._render(job, now, enum_int)

    def get_tuning_job(self, name: str, enum_int: bool = False) -> dict[str, Any]:
        """tuningJobs.get."""
        with self._lock:
            self._admit("get", name)
            return self._render(self._job(name), self._now(), enum_int)

    def list_tuning_jobs(
        self,
        parent: str,
        filter: str = "",
        page_size: int = 0,
        page_token: str = "",
        enum_int: bool = False,
    ) -> dict[str, Any]:
        """tuningJobs.list: newest first (createTime, then id), filtered, one page."""
        with self._lock:
            self._admit("list", parent)
            project, location = self._parse_parent(parent)
            if page_size < 0:
                raise invalid_argument(
                    f"page_size must not be negative, got {page_size}.",
                    [("page_size", "must not be negative")],
                )
            size = self.config.forced_page_size or min(
                page_size or self.config.default_page_size, self.config.max_page_size
            )
            matches = compile_filter(filter)
            mode = self.config.page_tokens
            if mode == "endless" and page_token.startswith(_ENDLESS_TOKEN):
                serial = page_token.removeprefix(_ENDLESS_TOKEN)
                return {
                    "nextPageToken": f"{_ENDLESS_TOKEN}{int(serial) + 1 if serial.isdigit() else 1}"
                }
            if mode == "loop" and page_token == _LOOP_TOKEN:
                page_token = ""  # the first page again, and the same token again
            scope = hashlib.sha256(f"{project}/{location}?{filter}".encode()).hexdigest()[:16]
            after = _decode_token(page_token, scope) if page_token else None
            now = self._now()
            listed = f"projects/{project}/locations/{location}"
            candidates = sorted(
                (
                    j
                    for j in self._jobs.values()
                    if (j.project, j.location) == (project, location) or listed in j.listed_in
                ),
                key=_sort_key,
            )
            page: list[_Job] = []
            more = False
            for job in candidates:
                if (after is None or _sort_key(job) > after) and matches(job.view(now)):
                    if len(page) == size:
                        more = True
                        break
                    page.append(job)
            out: dict[str, Any] = {}
            if page:
                out["tuningJobs"] = [self._render(job, now, enum_int) for job in page]
            if more:
                out["nextPageToken"] = _encode_token(_sort_key(page[-1]), scope)
            if mode == "loop":
                out["nextPageToken"] = _LOOP_TOKEN
            elif mode == "endless":
                out["nextPageToken"] = f"{_ENDLESS_TOKEN}1"
            return out

    def cancel_tuning_job(self, name: str) -> dict[str, Any]:
        """tuningJobs.cancel: a live job goes CANCELLING, then CANCELLED; returns `{}`."""
        with self._lock:
            self._admit("cancel", name)
            job = self._job(name)
            now = self._now()
            state = job.state(now)
            if state in _TERMINAL:
                raise ApiError(
                    400,
                    "FAILED_PRECONDITION",
                    f"TuningJob {job.name} is in state {state} and cannot be cancelled.",
                )
            if state != CANCELLING:
                done = now + _seconds_us(self.config.cancelling_seconds)
                # "The server makes a best effort to cancel the job, but success is not
                # guaranteed": with cancel_wins off the job ends as it would have (SUCCEEDED,
                # or FAILED by a fail rule), only sooner.
                end = CANCELLED if self.config.cancel_wins else job.events[-1][1]
                if end not in (SUCCEEDED, FAILED):
                    end = CANCELLED
                job.events = [*job.history(now), (now, CANCELLING), (done, end)]
                self._save()
            return {}

    def generate_content(self, endpoint: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """endpoints.generateContent on the endpoint of a SUCCEEDED job."""
        with self._lock:
            self._admit("generateContent", endpoint)
            canonical = self._endpoint_name(endpoint)
            endpoint_id = int(canonical.rsplit("/", 1)[1])
            if endpoint_id >= _CHECKPOINT_ENDPOINT_BASE:  # a checkpoint's endpoint
                job = self._jobs.get((endpoint_id - _CHECKPOINT_ENDPOINT_BASE) // _MAX_CHECKPOINTS)
                if job is not None and not any(
                    c["endpoint"] == canonical for c in _checkpoints(job, self._tuning_steps(job))
                ):
                    job = None
            else:
                job = self._jobs.get(endpoint_id - _ENDPOINT_ID_BASE)
            now = self._now()
            if (
                job is None
                or job.parent != canonical.rsplit("/endpoints/", 1)[0]
                or job.state(now) != SUCCEEDED
            ):
                raise not_found(f"Endpoint `{endpoint}` not found.")
            contents = body.get("contents")
            if not isinstance(contents, list) or not contents:
                raise invalid_argument(
                    "Unable to submit request because it has an empty contents field.",
                    [("contents", "required")],
                )
            for content in contents:
                if not isinstance(content, dict) or not content.get("parts"):
                    raise invalid_argument(
                        "Unable to submit request because it must include at least one parts "
                        "field, which describes the prompt input.",
                        [("contents.parts", "required")],
                    )
                if content.get("role") not in (None, "user", "model"):
                    raise invalid_argument("Please use a valid role: user, model.")
            prompt = " ".join(_texts(contents[-1]))
            display = job.spec.get("tunedModelDisplayName", job.name)
            reply = self._replies.get(
                canonical, self._replies.get("*", f"Tuned model {display} says: {prompt}")
            )
            prompt_tokens = sum(len(text.split()) for c in contents for text in _texts(c))
            reply_tokens = len(reply.split())
            serial = self._requests["generateContent"]
            response_id = hashlib.sha256(f"{job.name}/{now}/{serial}".encode()).digest()
            return {
                "candidates": [
                    {
                        "content": {"role": "model", "parts": [{"text": reply}]},
                        "finishReason": "STOP",
                        "index": 0,
                    }
                ],
                "usageMetadata": {
                    "promptTokenCount": prompt_tokens,
                    "candidatesTokenCount": reply_tokens,
                    "totalTokenCount": prompt_tokens + reply_tokens,
                },
                "modelVersion": wire.base_model_id(job.base_model),
                "createTime": wire.format_timestamp(now),
                "responseId": base64.urlsafe_b64encode(response_id[:15]).decode(),
            }

    # ----- admin operations -----------------------------------------------------------

    def reset(self) -> None:
        """Forget jobs, rules, replies, stats and quota windows; restore the starting config."""
        with self._lock:
            self.config = copy.deepcopy(self._initial)
            self._clear()
            self._save()

    def configure(self, changes: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Change config fields (400 for unknown fields or bad values); return the config."""
        with self._lock:
            changes = dict(changes or {})
            _check_config(changes)
            now = self._now()
            previous = self.config
            self.config = dataclasses.replace(previous, **copy.deepcopy(changes))
            if self.config.clock != previous.clock:  # keep "now" where it was
                self._manual_now = now
                self._offset = now - _wall_us()
            if "fault_seed" in changes:
                self._rng = random.Random(self.config.fault_seed)
            if changes:
                self._save()
            return dataclasses.asdict(self.config)

    def advance(self, seconds: Any) -> dict[str, Any]:
        """Move the clock forward by `seconds`; return the new time."""
        with self._lock:
            if not (_is_number(seconds) and math.isfinite(seconds)):
                raise invalid_argument(f"seconds must be a number >= 0, got {seconds!r}.")
            if self.config.clock == "manual":
                self._manual_now += _seconds_us(seconds)
            else:
                self._offset += _seconds_us(seconds)
            self.advances += 1
            self._save()
            return {"now": wire.format_timestamp(self._now())}

    def seed(self, jobs: Any) -> list[str]:
        """Store jobs as given (no quotas, faults or service rules); return their names.

        Each item has `project`, `location`, TuningJob input fields and optionally `createTime`,
        `state` (a fixed state that then does not move) and `error`.
        """
        with self._lock:
            if not isinstance(jobs, list):
                raise invalid_argument("jobs must be a list of job objects.")
            now = self._now()
            prepared = [self._seed_item(item, f"jobs[{i}]", now) for i, item in enumerate(jobs)]
            listed = [self._listed_in(item, f"jobs[{i}]") for i, item in enumerate(jobs)]
            added = [self._add_job(*args) for args in prepared]
            for job, parents in zip(added, listed, strict=True):
                job.listed_in = parents
            self._save()
            return [job.name for job in added]

    def _listed_in(self, item: dict[str, Any], where: str) -> list[str]:
        """`listedIn`: parents whose lists also show the job (as a broken or hostile server)."""
        parents = item.get("listedIn", [])
        if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
            raise invalid_argument(f"{where}.listedIn must be a list of parent names.")
        return [
            "projects/{}/locations/{}".format(*self._parse_parent(parent)) for parent in parents
        ]

    def _seed_item(self, item: Any, where: str, now: int) -> tuple[Any, ...]:
        if not isinstance(item, dict):
            raise invalid_argument(f"{where} must be an object.")
        unknown = set(item) - _SEED_KEYS - wire.TUNING_JOB_FIELDS
        if unknown:
            raise invalid_argument(f"{where}: unknown field(s) {', '.join(sorted(unknown))}.")
        project, location = self._parse_parent(
            f"projects/{item.get('project', '')}/locations/{item.get('location', '')}"
        )
        self._listed_in(item, where)  # refused before any job is added
        inputs = {k: v for k, v in item.items() if k in wire.TUNING_JOB_FIELDS}
        spec = wire.parse_message(inputs, wire.TUNING_JOB, where)
        try:
            created = wire.parse_timestamp(item["createTime"]) if "createTime" in item else now
        except (TypeError, ValueError) as exc:
            raise invalid_argument(f"{where}.createTime: {exc}") from None
        state = item.get("state")
        if state is None:
            events = self._timeline(created)
        elif state in _SEED_PATHS:
            events = [(created, s) for s in (*_SEED_PATHS[state], state)]
        else:
            raise invalid_argument(f"{where}.state: {state!r} is not a state a job can be in.")
        error = item.get("error")
        if error is not None and not isinstance(error, dict):
            raise invalid_argument(f"{where}.error must be a google.rpc.Status object.")
        errors = {state or FAILED: error} if error else {}
        return project, location, spec, events, errors

    def fail(self, rule: Mapping[str, Any]) -> list[str]:
        """Make jobs fail at the end of running: one by `name`, or all (existing and future)
        matching `labels` and/or `baseModel`; return the names of existing jobs affected."""
        with self._lock:
            unknown = set(rule) - _FAIL_KEYS
            message = rule.get("message", "Tuning job failed.")
            labels = rule.get("labels", {})
            if unknown or not isinstance(message, str) or not isinstance(labels, dict):
                raise invalid_argument(
                    "A fail rule is {name} or {labels, baseModel}, with an optional message."
                )
            error = {"code": 3, "message": message}
            now = self._now()
            if "name" in rule:
                job = self._job(str(rule["name"]))
                affected = [job] if self._fail_job(job, error, now, explicit=True) else []
            elif labels or rule.get("baseModel"):
                stored = {"labels": labels, "baseModel": rule.get("baseModel"), "error": error}
                self._rules.append(stored)
                affected = [
                    job
                    for job in self._jobs.values()
                    if _rule_matches(stored, job)
                    and self._fail_job(job, error, now, explicit=False)
                ]
            else:
                raise invalid_argument("A fail rule needs a name, labels or a baseModel.")
            self._save()
            return [job.name for job in affected]

    def patch(self, name: str, fields: Any) -> dict[str, Any]:
        """Merge raw fields over a job as the API returns it (`null` removes a field)."""
        with self._lock:
            job = self._job(name)
            if not isinstance(fields, dict):
                raise invalid_argument("fields must be an object.")
            job.extra.update(fields)
            self._save()
            return self._render(job, self._now(), enum_int=False)

    def set_reply(self, endpoint: str, text: Any) -> None:
        """The text generateContent answers on an endpoint (or on all, with `*`)."""
        with self._lock:
            if not isinstance(text, str):
                raise invalid_argument("text must be a string.")
            key = endpoint if endpoint == "*" else self._endpoint_name(endpoint)
            self._replies[key] = text
            self._save()

    def stats(self) -> dict[str, Any]:
        """Requests per operation and per parent, injected faults, number of jobs."""
        with self._lock:
            return {
                "requests": dict(self._requests),
                "requests_by_parent": dict(self._by_parent),
                "faults": dict(self._faults),
                "jobs": len(self._jobs),
                "arrivals": list(self._arrivals),
            }

    # ----- internals ------------------------------------------------------------------

    def _now(self) -> int:
        if self.config.clock == "manual":
            return self._manual_now
        return _wall_us() + self._offset

    def _project_number(self, project: str) -> str:
        if project.isdigit():
            return project
        if project in self.config.project_numbers:
            return self.config.project_numbers[project]
        digest = int.from_bytes(hashlib.sha256(project.encode()).digest()[:8], "big")
        return str(10**11 + digest % (9 * 10**11))

    def _parse_parent(self, parent: str) -> tuple[str, str]:
        match = _PARENT.fullmatch(parent)
        if not match:
            raise invalid_argument(
                f"Invalid parent {parent!r}: expected projects/{{project}}/locations/{{location}}.",
                [("parent", "must match projects/{project}/locations/{location}")],
            )
        return self._project_number(match[1]), match[2]

    def _parse_name(self, name: str, collection: str) -> tuple[str, str, str]:
        parent, sep, resource_id = name.rpartition(f"/{collection}/")
        if not (sep and _PARENT.fullmatch(parent) and re.fullmatch(r"[^/:]+", resource_id)):
            pattern = f"projects/{{project}}/locations/{{location}}/{collection}/{{id}}"
            raise invalid_argument(
                f"Invalid resource name {name!r}: expected {pattern}.",
                [("name", f"must match {pattern}")],
            )
        return (*self._parse_parent(parent), resource_id)

    def _job(self, name: str) -> _Job:
        project, location, job_id = self._parse_name(name, "tuningJobs")
        job = self._jobs.get(int(job_id)) if job_id.isdigit() else None
        if job is None or (job.project, job.location) != (project, location):
            raise not_found(f"TuningJob `{name}` not found.")
        return job

    def _endpoint_name(self, endpoint: str) -> str:
        project, location, endpoint_id = self._parse_name(endpoint, "endpoints")
        if not endpoint_id.isdigit():
            raise not_found(f"Endpoint `{endpoint}` not found.")
        return f"projects/{project}/locations/{location}/endpoints/{endpoint_id}"

    def _admit(self, operation: str, resource: str) -> None:
        """Count the request, then apply the injected faults and the per-minute quotas."""
        self._requests[operation] += 1
        self._arrivals.append(time.time())
        config = self.config
        if config.rate_503 and self._rng.random() < config.rate_503:
            self._faults["503"] += 1
            raise ApiError(503, "UNAVAILABLE", "The service is currently unavailable.")
        if config.rate_429 and self._rng.random() < config.rate_429:
            self._faults["429"] += 1
            raise ApiError(
                429,
                "RESOURCE_EXHAUSTED",
                "Resource exhausted. Please try again later.",
                *self._retry_hints(config.retry_after_seconds),
            )
        match = _PARENT.match(resource)
        if match is None:
            return  # the operation answers 400 for the malformed name
        self._by_parent[match[0]] += 1
        if operation != "generateContent":
            self._take_quota(operation, self._project_number(match[1]), match[2])

    def _retry_hints(self, seconds: float) -> tuple[list[dict[str, Any]], int | None]:
        """The details (a google.rpc.RetryInfo) and the `Retry-After` header of a 429."""
        details = [retry_info(seconds)] if self.config.retry_info else []
        header = max(1, math.ceil(seconds)) if self.config.retry_after_header else None
        return details, header

    def _take_quota(self, operation: str, project: str, location: str) -> None:
        quotas = [
            (
                "resource_management_requests",
                "Resource management (CRUD) requests",
                self.config.requests_per_minute,
            )
        ]
        if operation == "create":
            quotas.append(
                (
                    "job_submission_requests",
                    "Job or LRO submission requests",
                    self.config.submissions_per_minute,
                )
            )
        now = time.monotonic()
        windows = []
        for metric, title, limit in quotas:
            if not limit:
                continue
            window = self._windows[(metric, project, location)]
            while window and window[0] <= now - 60:
                window.popleft()
            if len(window) >= limit:
                self._faults["quota_429"] += 1
                wait = max(0.001, round(window[0] + 60 - now, 3))
                retry = max(1, math.ceil(wait))
                details, header = self._retry_hints(wait)
                raise ApiError(
                    429,
                    "RESOURCE_EXHAUSTED",
                    f"Quota exceeded for aiplatform.googleapis.com/{metric} per minute per region"
                    f" ({title} per minute per region): limit {limit} in region {location} for"
                    f" consumer 'projects/{project}'. Retry in {retry} s or request a quota"
                    " increase.",
                    [
                        {
                            "@type": ERROR_INFO_TYPE,
                            "reason": "RATE_LIMIT_EXCEEDED",
                            "domain": "googleapis.com",
                            "metadata": {
                                "service": "aiplatform.googleapis.com",
                                "consumer": f"projects/{project}",
                                "quota_metric": f"aiplatform.googleapis.com/{metric}",
                                "quota_location": location,
                                "quota_limit_value": str(limit),
                            },
                        },
                        *details,
                    ],
                    header,
                )
            windows.append(window)
        for window in windows:
            window.append(now)

    def _model_versions(self, model_id: int, now: int) -> list[_Job]:
        """The succeeded jobs whose tuned models are the versions of a Model, version 1 first."""
        origin = self._jobs.get(model_id - _MODEL_ID_BASE)
        own = [origin] if origin is not None and origin.own_model_id == model_id else []
        jobs = [job for job in own + self._continuations.get(model_id, []) if job.state(now) == SUCCEEDED]
        return sorted(jobs, key=lambda job: (job.history(now)[-1][0], job.id))

    def _model_display_name(self, model_id: int, now: int) -> str:
        origin = self._model_versions(model_id, now)[0]
        return str(origin.spec.get("tunedModelDisplayName", origin.name))

    def _pre_tuned_source(
        self, project: str, location: str, pre_tuned: Mapping[str, Any], now: int
    ) -> tuple[int, _Job]:
        """The Model id and the job of the model version that `preTunedModel` names.

        A model exists once a job making it has succeeded. Without a version (or with the
        `default` alias) the first version is meant: Model Registry gives the default alias to a
        model's first version and moves it only when told to.
        """
        name = pre_tuned["tunedModelName"]
        match = _MODEL_NAME.fullmatch(name)
        if match is None:
            pattern = "projects/{project}/locations/{location}/models/{model}[@{version}]"
            raise invalid_argument(
                f"pre_tuned_model.tuned_model_name {name!r} is not a model name: expected"
                f" {pattern}.",
                [(_TUNED_MODEL_NAME, f"must match {pattern}")],
            )
        model_id = int(match[3])
        versions = self._model_versions(model_id, now)
        if (self._project_number(match[1]), match[2]) != (project, location):
            versions = []  # a model of another project or region is not found here
        version = match[4] or "default"
        if version == "default" and versions:
            source = versions[0]
        elif version.isdigit() and 1 <= int(version) <= len(versions):
            source = versions[int(version) - 1]
        else:
            raise not_found(f"Model `{name}` not found.")
        checkpoint = pre_tuned.get("checkpointId")
        known = [c["checkpointId"] for c in _checkpoints(source, self._tuning_steps(source))]
        if checkpoint is not None and checkpoint not in known:
            have = f"its checkpoints are {', '.join(known)}" if known else "it has no checkpoints"
            raise invalid_argument(
                f"pre_tuned_model.checkpoint_id {checkpoint!r} is not a checkpoint of {name}:"
                f" {have}.",
                [("tuning_job.pre_tuned_model.checkpoint_id", "unknown checkpoint")],
            )
        return model_id, source

    def _tuning_steps(self, job: _Job) -> int:
        stats = _data_stats(job)
        return int(next(iter(stats.values()))["tuningStepCount"])

    def _check_lifecycle(self, model_id: str, now: int) -> None:
        """400 FAILED_PRECONDITION for a base model closed to new tuning on the clock's date.

        FAILED_PRECONDITION, not INVALID_ARGUMENT: the same request was valid before the date
        ("new access to the model is blocked ... one month before the retirement date"), so it
        is the system's state that refuses it (google.rpc.Code: INVALID_ARGUMENT is for arguments
        "problematic regardless of the state of the system").
        """
        model = wire.TUNABLE_MODELS.get(model_id)
        if model is None or not self.config.refuse_retired_models:
            return
        override = self.config.model_retirements.get(model_id)
        retires = dt.date.fromisoformat(override) if override else model.retires
        closes = model.tuning_closes(retires)
        today = (dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=now)).date()
        if closes is None or today < closes:
            return
        if retires is not None and today >= retires:
            when = f"was retired on {retires.isoformat()}"
        elif retires is not None:
            when = f"retires on {retires.isoformat()}"
        else:
            when = "is retired"
        raise ApiError(
            400,
            "FAILED_PRECONDITION",
            f"Base model {model_id} {when}; new tuning jobs have been refused since"
            f" {closes.isoformat()}. Tune a current model instead.",
            [
                {
                    "@type": ERROR_INFO_TYPE,
                    "reason": "MODEL_RETIRED",
                    "domain": "aiplatform.googleapis.com",
                    "metadata": {
                        "model": model_id,
                        "tuning_closed": closes.isoformat(),
                        **({"retirement": retires.isoformat()} if retires else {}),
                    },
                }
            ],
        )

    def _timeline(self, created: int) -> list[tuple[int, str]]:
        started = created + _seconds_us(self.config.pending_seconds)
        ended = started + _seconds_us(self.config.running_seconds)
        return [(created, PENDING), (started, RUNNING), (ended, SUCCEEDED)]

    def _add_job(
        self,
        project: str,
        location: str,
        spec: dict[str, Any],
        events: list[tuple[int, str]],
        errors: dict[str, dict[str, Any]],
    ) -> _Job:
        job = _Job(self._next_id, project, location, spec, events, errors)
        self._next_id += 1
        self._jobs[job.id] = job
        now = self._now()
        for rule in self._rules:
            if _rule_matches(rule, job) and self._fail_job(job, rule["error"], now, explicit=False):
                break
        return job

    def _fail_job(self, job: _Job, error: dict[str, Any], now: int, explicit: bool) -> bool:
        """Turn the job's coming success into failure; a job named explicitly fails now if it
        has no success coming. Returns whether the job changed."""
        end, final = job.events[-1]
        if final == SUCCEEDED and end > now:
            job.events[-1] = (end, FAILED)
        elif explicit and job.state(now) not in (FAILED, CANCELLING, CANCELLED):
            history = job.history(now)
            job.events = [*history, (max(now, history[-1][0]), FAILED)]
        else:
            return False
        job.errors[FAILED] = error
        return True

    def _render(self, job: _Job, now: int, enum_int: bool) -> dict[str, Any]:
        """The job as the API returns it at `now`."""
        history = job.history(now)
        updated, state = history[-1]
        ts = wire.format_timestamp
        out: dict[str, Any] = {
            "name": job.name,
            **job.spec,
            "state": state,
            "createTime": ts(job.events[0][0]),
            "updateTime": ts(updated),
        }
        started = next((t for t, s in history if s == RUNNING), None)
        if started is not None:
            out["startTime"] = ts(started)
            out["experiment"] = (
                f"{job.parent}/metadataStores/default/contexts/tuning-experiment-{job.id}"
            )
            out["gcsMetricsUri"] = (
                f"gs://vertex-tuning-{job.project}-{job.location}/{job.id}/metrics"
            )
            out["tuningDataStats"] = _data_stats(job)
        if state in _TERMINAL:
            out["endTime"] = ts(updated)
        error = job.errors.get(state) or _DEFAULT_ERRORS.get(state)
        if error:
            out["error"] = error
        if state == SUCCEEDED:
            versions = self._model_versions(job.own_model_id, now)
            version = versions.index(job) + 1 if job in versions else 1
            tuned: dict[str, Any] = {
                "model": f"{job.parent}/models/{job.own_model_id}@{version}",
                "endpoint": _endpoint(job),
            }
            checkpoints = _checkpoints(job, self._tuning_steps(job))
            if checkpoints:
                tuned["checkpoints"] = checkpoints
            out["tunedModel"] = tuned
            evaluation = job.spec.get("supervisedTuningSpec", {}).get("evaluationConfig")
            if evaluation is not None:
                out["evaluateDatasetRuns"] = _evaluation_runs(job, evaluation, checkpoints)
        ordered = {key: out[key] for key in wire.TUNING_JOB_ORDER if key in out}
        for key, value in job.extra.items():
            if value is None:
                ordered.pop(key, None)
            else:
                ordered[key] = value
        return wire.int_enums(ordered) if enum_int else ordered

    # ----- persistence ----------------------------------------------------------------

    def _save(self) -> None:
        """Write the state to data_path atomically (temp file, fsync, rename), if set."""
        if not self.config.data_path:
            return
        target = Path(self.config.data_path)
        state = {
            "format": _FILE_FORMAT,
            "next_id": self._next_id,
            "clock": {"offset_us": self._offset, "manual_now_us": self._manual_now},
            "jobs": [dataclasses.asdict(job) for job in self._jobs.values()],
            "fail_rules": self._rules,
            "replies": self._replies,
        }
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                json.dump(state, file, separators=(",", ":"))
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    def _load(self, path: Path) -> None:
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            if state.get("format") != _FILE_FORMAT:
                raise ValueError(f"format is {state.get('format')!r}, not {_FILE_FORMAT!r}")
            jobs = [
                _Job(**{**job, "events": [tuple(event) for event in job["events"]]})
                for job in state["jobs"]
            ]
            self._next_id = state["next_id"]
            self._offset = state["clock"]["offset_us"]
            self._manual_now = state["clock"]["manual_now_us"]
            self._rules = state["fail_rules"]
            self._replies = state["replies"]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path}: not a readable emulator data file: {exc}") from exc
        self._jobs = {job.id: job for job in jobs}
        self._continuations.clear()
        for job in jobs:
            if job.model_id:
                self._continuations[job.model_id].append(job)


def _sort_key(job: _Job) -> tuple[int, int]:
    """Newest first: createTime descending, then id descending."""
    return (-job.events[0][0], -job.id)


def _encode_token(key: tuple[int, int], scope: str) -> str:
    raw = json.dumps([*key, scope], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str, scope: str) -> tuple[int, int]:
    try:
        created, job_id, token_scope = json.loads(
            base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        )
        if token_scope == scope and isinstance(created, int) and isinstance(job_id, int):
            return created, job_id
    except (ValueError, TypeError):
        pass
    raise invalid_argument(
        f"Invalid page_token {token!r}: it does not come from a list call with this parent "
        "and filter.",
        [("page_token", "invalid")],
    )


def _rule_matches(rule: Mapping[str, Any], job: _Job) -> bool:
    labels = job.spec.get("labels", {})
    if any(labels.get(key) != value for key, value in rule["labels"].items()):
        return False
    wanted = rule["baseModel"]
    return not wanted or wire.base_model_id(job.base_model) == wire.base_model_id(wanted)


def _texts(content: Mapping[str, Any]) -> Iterable[str]:
    return (
        part["text"]
        for part in content.get("parts", [])
        if isinstance(part, dict) and isinstance(part.get("text"), str)
    )


def _endpoint(job: _Job) -> str:
    return f"{job.parent}/endpoints/{_ENDPOINT_ID_BASE + job.id}"


def _epochs(job: _Job) -> int:
    spec = job.spec.get(wire.tuning_spec_key(job.spec), {})
    return max(1, int(spec.get("hyperParameters", {}).get("epochCount", _DEFAULT_EPOCHS)))


def _checkpoints(job: _Job, steps: int) -> list[dict[str, Any]]:
    """One checkpoint per epoch unless `exportLastCheckpointOnly`; the last one is the tuned
    model's own endpoint, the others have endpoints of their own."""
    spec = job.spec.get(wire.tuning_spec_key(job.spec), {})
    if spec.get("exportLastCheckpointOnly"):
        return []
    epochs = min(_epochs(job), _MAX_CHECKPOINTS - 1)
    return [
        {
            "checkpointId": str(epoch),
            "epoch": str(epoch),
            "step": str(steps * epoch // epochs),
            "endpoint": _endpoint(job)
            if epoch == epochs
            else f"{job.parent}/endpoints/"
            f"{_CHECKPOINT_ENDPOINT_BASE + job.id * _MAX_CHECKPOINTS + epoch}",
        }
        for epoch in range(1, epochs + 1)
    ]


def _evaluation_runs(
    job: _Job, config: Mapping[str, Any], checkpoints: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """One evaluation run per checkpoint (or one for the model), with made-up scores."""
    prefix = config["outputConfig"]["gcsDestination"]["outputUriPrefix"].rstrip("/")
    runs = []
    points: list[dict[str, Any] | None] = [*checkpoints] or [None]
    for i, checkpoint in enumerate(points):
        digest = hashlib.sha256(f"{job.id}/{i}".encode()).digest()
        run: dict[str, Any] = {}
        if checkpoint is not None:
            run["checkpointId"] = checkpoint["checkpointId"]
        run["evaluationRun"] = f"{job.parent}/evaluationRuns/{job.id * _MAX_CHECKPOINTS + i}"
        run["evaluateDatasetResponse"] = {
            "aggregationOutput": {
                "aggregationResults": [
                    {
                        "aggregationMetric": "AVERAGE",
                        "pointwiseMetricResult": {"score": round(2 + digest[0] / 85, 3)},
                    }
                ]
            },
            "outputInfo": {"gcsOutputDirectory": f"{prefix}/tuning-evaluation-{job.id}-{i}/"},
        }
        runs.append(run)
    return runs


def _data_stats(job: _Job) -> dict[str, Any]:
    """Plausible tuning data statistics (supervised or preference), derived from the training
    dataset URI."""
    key = wire.tuning_spec_key(job.spec)
    spec = job.spec.get(key, {})
    digest = hashlib.sha256(spec.get("trainingDatasetUri", job.name).encode()).digest()
    examples = 100 + int.from_bytes(digest[:3], "big") % 9900
    input_mean, output_mean = 40 + digest[3], 20 + digest[4] // 2
    epochs = _epochs(job)
    if key == "preferenceOptimizationSpec":
        # Billable tokens per example: 2 x prompt + completion (preference-tuning page).
        return {
            "preferenceOptimizationDataStats": {
                "tuningDatasetExampleCount": str(examples),
                "totalBillableTokenCount": str(examples * (2 * input_mean + output_mean) * epochs),
                "tuningStepCount": str(math.ceil(examples * epochs / 16)),
                "userInputTokenDistribution": _preference_distribution(examples, input_mean),
                "userOutputTokenDistribution": _preference_distribution(examples, output_mean),
                "scoresDistribution": _preference_distribution(examples, 3),
            }
        }
    tokens = examples * (input_mean + output_mean)
    return {
        "supervisedTuningDataStats": {
            "tuningDatasetExampleCount": str(examples),
            "totalTuningCharacterCount": str(4 * tokens),
            "totalBillableTokenCount": str(tokens * epochs),
            "tuningStepCount": str(math.ceil(examples * epochs / 16)),
            "userInputTokenDistribution": _distribution(examples, input_mean),
            "userOutputTokenDistribution": _distribution(examples, output_mean),
            "userMessagePerExampleDistribution": _distribution(examples, 2 + digest[5] % 4),
        }
    }


def _distribution(count: int, mean: int) -> dict[str, Any]:
    low, high = max(1, mean // 4), mean * 3
    return {
        "sum": str(count * mean),
        "billableSum": str(count * mean),
        "min": float(low),
        "max": float(high),
        "mean": float(mean),
        "median": float(mean),
        "p5": float(max(low, mean // 2)),
        "p95": float(mean * 2),
        "buckets": [
            {"count": float(count // 2), "left": float(low), "right": float(mean)},
            {
                "count": float(count - count // 2 - count // 10),
                "left": float(mean),
                "right": float(2 * mean),
            },
            {"count": float(count // 10), "left": float(2 * mean), "right": float(high)},
        ],
    }


def _preference_distribution(count: int, mean: int) -> dict[str, Any]:
    """A DatasetDistribution: unlike the supervised one, `sum` is a double, bucket counts int64."""
    low, high = max(1, mean // 4), mean * 3
    return {
        "sum": float(count * mean),
        "min": float(low),
        "max": float(high),
        "mean": float(mean),
        "median": float(mean),
        "p5": float(max(low, mean // 2)),
        "p95": float(mean * 2),
        "buckets": [
            {"count": str(count // 2), "left": float(low), "right": float(mean)},
            {"count": str(count - count // 2), "left": float(mean), "right": float(high)},
        ],
    }
