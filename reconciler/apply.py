"""The executor: runs a plan's actions against the API and records progress in the state.

All side effects of apply live here. Each action is dispatched exhaustively on its type; the
state is written (atomically) after every action, and before each create an intent is journalled
so that a run killed half-way is settled by the next one, never repeated blindly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from typing_extensions import assert_never

from reconciler import interrupt
from reconciler.errors import (
    AmbiguousCreateError,
    ApiError,
    FailedPreconditionError,
    NotFoundError,
    ReconcilerError,
    WaitTimeoutError,
)
from reconciler.models import LABEL_REQUEST, DesiredModel, ObservedJob, StateClass
from reconciler.observe import to_observed
from reconciler.plan import (
    Action,
    CancelJobs,
    Change,
    CreateJob,
    ForgetEntry,
    MoveEntry,
    NoChange,
    Observation,
    OwnedJob,
    Plan,
    derive_models,
    jobs_by_name,
    request_duplicates,
    tracked,
)
from reconciler.probe import ContentApi, ProbeResult, gate_candidates, run_gates
from reconciler.state.codec import utc_now
from reconciler.state.model import JournalEntry, ModelEntry, State
from reconciler.state.recorder import Recorder
from reconciler.state.store import StateStore
from reconciler.vertex.wire import TuningJob


class TuningApi(ContentApi, Protocol):
    def create_tuning_job(self, parent: str, job: TuningJob, request_id: str) -> TuningJob: ...
    def cancel_tuning_job(self, name: str) -> None: ...
    def find_by_request(self, parent: str, request_id: str) -> TuningJob | None: ...


Observer = Callable[[Sequence[str]], Observation]


@dataclass
class Outcome:
    """What happened to one change."""

    change: Change
    ok: bool
    message: str
    job: str | None = None


@dataclass
class ApplyResult:
    outcomes: list[Outcome] = field(default_factory=list)
    state: State | None = None

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]


def apply_plan(
    plan: Plan,
    desired: Sequence[DesiredModel],
    api: TuningApi,
    store: StateStore,
    state: State,
    observe: Observer,
    *,
    concurrency: int = 8,
    on_outcome: Callable[[Outcome], None] = lambda _o: None,
    on_probe: Callable[[ProbeResult], None] = lambda _r: None,
    in_flight_window: float = 60.0,
    in_flight_poll: float = 1.0,
) -> ApplyResult:
    """Run every actionable change (bounded concurrency), then refresh the state from the API.

    `in_flight_window`: how long a create an interrupted run sent may still be in flight at the
    server (the client's request timeout). A rerun that finds no job for such an intent keeps
    looking for it (every `in_flight_poll` seconds) until the window since the intent started
    has passed, and only then creates: a create the server finishes after its client was killed
    is found, not duplicated."""
    recorder = Recorder(store, state)
    desired_by_name = {d.name: d for d in desired}
    result = ApplyResult()
    results_lock = threading.Lock()
    in_flight = _InFlight(in_flight_window, in_flight_poll)

    def run(change: Change) -> None:
        try:
            outcome = _execute(change, api, recorder, desired_by_name.get(change.name), in_flight)
        except ReconcilerError as exc:
            outcome = Outcome(change, False, str(exc))
        with results_lock:
            result.outcomes.append(outcome)
        on_outcome(outcome)

    actionable = plan.actionable
    try:
        if actionable:
            pool = ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(actionable))),
                                      initializer=interrupt.worker_thread)
            futures = [pool.submit(run, change) for change in actionable]
            try:
                for future in futures:
                    future.result()
            finally:  # interrupted (Ctrl-C, SIGTERM): start nothing more, let running calls end
                pool.shutdown(wait=True, cancel_futures=True)
        # The API is the truth: re-read it once and derive the entries of every name planned.
        names = {c.name for c in plan.changes}
        observation = observe(plan.parents)
        if plan.creates:
            for outcome in _cancel_duplicates(plan, observation, api, recorder):
                result.outcomes.append(outcome)
                on_outcome(outcome)
        result.state = refresh_state(recorder, desired, observation, stack=plan.stack, names=names,
                                     api=api, on_probe=on_probe)
    except BaseException:
        recorder.commit(lambda _draft: None)  # fold what was done into the state file, then fail
        raise
    return result


def refresh_state(
    recorder: Recorder | StateStore,
    desired: Sequence[DesiredModel],
    observation: Observation,
    *,
    stack: str,
    names: set[str] | None = None,
    state: State | None = None,
    api: ContentApi | None = None,
    on_probe: Callable[[ProbeResult], None] = lambda _r: None,
) -> State:
    """Recompute state entries from an observation and write them; settle journal entries.

    With `api`, new endpoints of models with a gating smokeTest are probed first, so that the
    state lets them serve only once they passed."""
    rec = Recorder.of(recorder, state or State(stack=stack))
    labels_seen = {j.labels.get(LABEL_REQUEST) for j in observation.jobs}
    in_scope = [d for d in desired if names is None or d.name in names]
    results = run_gates(api, gate_candidates(in_scope, observation, rec.state, stack)) if api else []
    for result in results:
        on_probe(result)

    parents = {d.name: d.parent for d in desired}

    def mutate(draft: State) -> None:
        for r in results:
            if r.job:  # a lost state has no entry yet: the record needs one to gate on
                entry = draft.models.get(r.name) or ModelEntry.model_validate({"parent": parents[r.name]})
                draft.models[r.name] = entry.model_copy(update={"smoke_tests": {**entry.smoke_tests, r.job: r.record()}})
        draft.models = derive_models(desired, observation, draft, stack=stack, names=names)
        draft.journal = [j for j in draft.journal if j.request_id not in labels_seen
                         and j.parent not in observation.parents]

    rec.commit(mutate)
    return rec.state


def _cancel_duplicates(plan: Plan, observation: Observation, api: TuningApi, recorder: Recorder) -> list[Outcome]:
    """Right after creating: a job of one of this run's create requests that another run (a
    second checkout, or the server finishing a create this client gave up on) made too is
    cancelled now — the younger of the two, minutes into its run rather than hours."""
    outcomes = []
    for name, job, kept in younger_duplicates(observation, plan.stack, recorder.state, plan.request_ids):
        change = _duplicate_cancel(name, job, kept)
        try:
            outcomes.append(Outcome(change, True, _cancel(api, recorder, name, job.address), job.name))
        except ReconcilerError as exc:
            outcomes.append(Outcome(change, False, str(exc), job.name))
    return outcomes


def younger_duplicates(observation: Observation, stack: str, state: State,
                       requests: Collection[str]) -> list[tuple[str, OwnedJob, str]]:
    """Running jobs of one of `requests` that another job of the same request makes a duplicate:
    (model, the job to cancel, the job kept)."""
    out = []
    for name, jobs in sorted(jobs_by_name(observation, stack, state).items()):
        duplicates = request_duplicates(jobs)
        out += [(name, job, duplicates[job.name]) for job in jobs
                if job.name in duplicates and job.state_class is StateClass.LIVE and job.request_id in requests]
    return out


def _duplicate_cancel(name: str, job: OwnedJob, kept: str) -> CancelJobs:
    return CancelJobs(action=Action.CANCEL, name=name, parent=job.parent, job=job.name, job_state=job.state,
                      cancel_jobs=[job.address], reason=f"duplicate of {kept} (same create request; two runs raced)")


def _execute(
    change: Change, api: TuningApi, recorder: Recorder, desired: DesiredModel | None, in_flight: _InFlight
) -> Outcome:
    """One change, dispatched on its type: the type checker sees every action handled."""
    match change:
        case CreateJob():
            return _create(change, api, recorder, desired, in_flight)
        case CancelJobs():
            messages = [_cancel(api, recorder, change.name, job) for job in change.cancel_jobs]
            return Outcome(change, True, "; ".join(messages), change.job)
        case MoveEntry():
            old = recorder.entry(change.moved_from) or ModelEntry.model_validate({"parent": change.parent})
            recorder.set_entry(change.name, old.model_copy(update={
                "parent": change.parent or old.parent, "adopted": {**old.adopted, **change.adopt_jobs}}))
            recorder.drop_entry(change.moved_from)
            return Outcome(change, True, f"state entry moved from {change.moved_from}; {change.job} adopted",
                           change.job)
        case ForgetEntry():
            recorder.drop_entry(change.name)
            return Outcome(change, True, "removed from the state", change.job)
        case NoChange():
            return Outcome(change, True, "no change", change.job)
        case _:
            assert_never(change)


@dataclass(frozen=True)
class _InFlight:
    """How long an interrupted run's create may still be on its way, and how often to look."""

    window: float
    poll: float

    def find(self, api: TuningApi, parent: str, intent: JournalEntry) -> TuningJob | None:
        """The job of an interrupted run's create intent. While the create may still be in flight
        (it started less than `window` ago), keep looking for it rather than create a second
        job that the server's late answer would duplicate; Ctrl-C ends the wait."""
        found = api.find_by_request(parent, intent.request_id)
        deadline = _epoch(intent.started) + self.window
        while found is None and time.time() < deadline:
            interrupt.sleep(max(0.0, min(self.poll, deadline - time.time())))
            found = api.find_by_request(parent, intent.request_id)
        return found


def _epoch(timestamp: str) -> float:
    """Seconds since the epoch of a state timestamp; 0 when unreadable (the window has passed)."""
    try:
        return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _create(change: CreateJob, api: TuningApi, recorder: Recorder, desired: DesiredModel | None,
            in_flight: _InFlight) -> Outcome:
    parent, rid = change.parent or "", change.request_id
    intent = next((j for j in recorder.state.journal if j.request_id == rid), None)
    if intent is not None:
        # An earlier run wrote this intent and did not record its outcome: look before creating.
        found = in_flight.find(api, parent, intent)
    else:
        found = None
        entry = JournalEntry(name=change.name, requestId=rid, parent=parent, specHash=change.spec_hash,
                             started=utc_now())
        recorder.open_intent(entry)
    try:
        job = found or api.create_tuning_job(parent, TuningJob.model_validate(change.request), rid)
    except AmbiguousCreateError:
        raise  # the journal entry stays: the next run settles it
    except ApiError:
        recorder.settle(rid)
        raise
    observed = to_observed(job, parent)

    recorder.modify(change.name, lambda previous: _entry_after_create(observed, parent, desired, previous))
    recorder.settle(rid)
    messages = [("found job created by an interrupted run: " if found else "created ") + observed.name]
    messages += [_cancel(api, recorder, change.name, old) for old in change.cancel_jobs]
    return Outcome(change, True, "; ".join(messages), observed.name)


def _entry_after_create(
    job: ObservedJob, parent: str, desired: DesiredModel | None, previous: ModelEntry | None
) -> ModelEntry:
    update: dict[str, Any] = {
        "parent": parent,
        "job": job.name,
        "state": job.state,
        "spec_hash": job.spec_hash,
        "spec": desired.tuning_spec() if desired else None,
        "cosmetic": desired.cosmetic() if desired else None,
        "create_time": job.create_time or None,
        "end_time": None,
        "error": None,
        "protect": desired.protect if desired else False,
        "parents": sorted({parent, *(previous.parents if previous else [])}),
        # This state made (or found by its request id) the job: it is recorded as its own.
        "jobs": None if previous is not None and previous.jobs is None
        else sorted({job.name, *(previous.jobs or [] if previous else [])}),
    }
    if previous is None:
        return ModelEntry.model_validate({"parent": parent}).model_copy(update=update)
    return previous.model_copy(update=update)


def _request_cancel(api: TuningApi, job: str) -> str:
    """Cancel the job at `job` (an address: the listed parent + the job's id)."""
    try:
        api.cancel_tuning_job(job)
        return f"cancel requested for {job}"
    except FailedPreconditionError:
        return f"{job} had already finished"
    except NotFoundError:
        return f"{job} no longer exists"


def _cancel(api: TuningApi, recorder: Recorder, name: str, job: str) -> str:
    message = _request_cancel(api, job)

    def requested(entry: ModelEntry | None) -> ModelEntry | None:
        if entry is None or job in entry.cancel_requested:
            return None
        return entry.model_copy(update={"cancel_requested": [*entry.cancel_requested, job]})

    recorder.modify(name, requested)
    return message


def wait_for_jobs(
    observe: Observer,
    parents: Sequence[str],
    stack: str,
    names: set[str],
    state: State,
    *,
    poll_interval: float,
    timeout: float | None,
    on_poll: Callable[[Observation], None] = lambda _o: None,
    sleep: Callable[[float], None] = time.sleep,
    api: TuningApi | None = None,
    requests: Collection[str] = (),
    on_outcome: Callable[[Outcome], None] = lambda _o: None,
) -> Observation:
    """Poll (one list per parent) until no job this state tracks (`plan.tracked`: its recorded
    jobs, not another checkout's, not the younger job of a duplicated create) of `names` is live
    or cancelling.

    With `api` and `requests` (the plan's create request ids), a second job of one of those
    requests that appears meanwhile — a create the server finished after its client gave up —
    is cancelled at the poll that first shows it."""
    start = time.monotonic()
    cancelled: set[str] = set()
    while True:
        observation = observe(parents)
        on_poll(observation)
        if api is not None and requests:
            for outcome in _cancel_late_duplicates(observation, stack, state, requests, api, cancelled):
                on_outcome(outcome)
        owned = tracked(observation, stack, state)
        busy = [
            j for name in names for j in owned.get(name, [])
            if j.state_class in (StateClass.LIVE, StateClass.CANCELLING)
        ]
        if not busy:
            return observation
        if timeout is not None and time.monotonic() - start + poll_interval > timeout:
            raise WaitTimeoutError(
                f"--wait gave up after {timeout:.0f} s with {len(busy)} job(s) still running; "
                "the jobs go on: run `reconciler refresh` or `apply --wait` later"
            )
        sleep(poll_interval)


def _cancel_late_duplicates(observation: Observation, stack: str, state: State, requests: Collection[str],
                            api: TuningApi, cancelled: set[str]) -> list[Outcome]:
    """Cancel, once each, the younger jobs of this run's create requests (the state records the
    cancel at the refresh that ends the wait)."""
    outcomes = []
    for name, job, kept in younger_duplicates(observation, stack, state, requests):
        if job.name in cancelled:
            continue
        cancelled.add(job.name)
        change = _duplicate_cancel(name, job, kept)
        try:
            outcomes.append(Outcome(change, True, _request_cancel(api, job.address), job.name))
        except ReconcilerError as exc:
            outcomes.append(Outcome(change, False, str(exc), job.name))
    return outcomes
