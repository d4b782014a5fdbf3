"""The executor (`reconciler.apply`) against in-memory fakes of the TuningApi and observe
protocols: fast, no emulator, no files. Issue 11: a create an interrupted run sent and the
server finishes late is found, not duplicated; `--wait` cancels a late duplicate at once and
follows only this state's jobs; every cancel goes to the listed parent's path."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from reconciler import interrupt
from reconciler.apply import apply_plan, wait_for_jobs
from reconciler.errors import NotFoundError, ReconcilerError
from reconciler.models import DesiredModel, ownership_labels
from reconciler.observe import to_observed
from reconciler.plan import Observation, compute_plan
from reconciler.state.codec import utc_now
from reconciler.state.journal import JournalOp, apply_op
from reconciler.state.model import JournalEntry, ModelEntry, State
from reconciler.vertex.wire import TuningJob

STACK = "team"
PROJECT, NUMBER = "my-project", "123456789012"
PARENT = f"projects/{PROJECT}/locations/us-central1"


@pytest.fixture(autouse=True)
def _no_stop_request() -> Any:
    interrupt.reset()
    yield
    interrupt.reset()


def desired(name: str = "bot", uri: str = "gs://b/train.jsonl") -> DesiredModel:
    return DesiredModel(name=name, project=PROJECT, region="us-central1", base_model="gemini-3.5-flash",
                        training_dataset_uri=uri, source=f"m/{name}.yaml:1", hyper_parameters=(("epochCount", 3),))


class FakeVertex:
    """Tuning jobs in memory, named by project NUMBER like the service. A create can be held:
    it lands (becomes visible) only at a given monotonic time, as a create the server finishes
    after its client has gone. Calls are addressed like the service resolves them: a path with
    the project id or its number; another project's job answers 404."""

    def __init__(self) -> None:
        self.jobs: dict[str, TuningJob] = {}
        self.held: list[tuple[float, TuningJob]] = []
        self.calls: list[tuple[str, str]] = []
        self.next_id = 1

    def make(self, parent: str, body: TuningJob, request_id: str, *, project: str = NUMBER,
             state: str = "JOB_STATE_PENDING") -> TuningJob:
        jid, self.next_id = self.next_id, self.next_id + 1
        return body.model_copy(update={
            "name": f"projects/{project}/locations/us-central1/tuningJobs/{jid}", "state": state,
            "labels": {**(body.labels or {}), "reconciler-request": request_id},
            "create_time": f"2026-01-01T00:{jid // 60:02d}:{jid % 60:02d}Z"})

    def hold(self, job: TuningJob, seconds: float) -> None:
        self.held.append((time.monotonic() + seconds, job))

    def _land(self) -> None:
        now = time.monotonic()
        for at, job in [h for h in self.held if h[0] <= now]:
            self.held.remove((at, job))
            self.jobs[job.name or ""] = job

    def create_tuning_job(self, parent: str, job: TuningJob, request_id: str) -> TuningJob:
        self.calls.append(("create", parent))
        self._land()
        made = self.make(parent, job, request_id)
        self.jobs[made.name or ""] = made
        return made

    def cancel_tuning_job(self, name: str) -> None:
        self.calls.append(("cancel", name))
        self._land()
        project, _, location, _, jid = name.split("/")[1:6]
        found = next((j for j in self.jobs.values() if (j.name or "").endswith(f"/tuningJobs/{jid}")), None)
        if found is None or (found.name or "").split("/")[1] not in (project, NUMBER if project == PROJECT else project):
            raise NotFoundError(404, "NOT_FOUND", f"TuningJob {name} not found")
        self.jobs[found.name or ""] = found.model_copy(update={"state": "JOB_STATE_CANCELLING"})

    def find_by_request(self, parent: str, request_id: str) -> TuningJob | None:
        self.calls.append(("find", parent))
        self._land()
        return next((j for j in self.jobs.values() if (j.labels or {}).get("reconciler-request") == request_id), None)

    def generate_content(self, endpoint: str, prompt: str) -> dict[str, Any]:
        raise AssertionError("no smoke tests here")

    def observe(self, parents: Sequence[str]) -> Observation:
        self._land()
        jobs = [to_observed(j, PARENT) for j in self.jobs.values() if PARENT in parents]
        return Observation(parents=tuple(sorted(parents)), jobs=tuple(jobs))

    def count(self, op: str) -> int:
        return sum(1 for o, _ in self.calls if o == op)

    def live(self) -> list[str]:
        return sorted(n for n, j in self.jobs.items() if j.state in ("JOB_STATE_PENDING", "JOB_STATE_RUNNING"))


class MemoryStore:
    """A StateStore in memory (full writes bump the serial, journal batches are replayed)."""

    journal_pending = False

    def __init__(self, state: State) -> None:
        self.state = state
        self.batches: list[JournalOp] = []

    def describe(self) -> str:
        return "memory"

    def read(self, *, stack: str) -> State:
        state = self.state.model_copy(deep=True)
        for op in self.batches:
            apply_op(state, op)
        return state

    def write(self, state: State) -> State:
        self.state, self.batches = state.model_copy(update={"serial": state.serial + 1}), []
        return self.state

    def append(self, ops: Sequence[JournalOp]) -> None:
        self.batches.extend(ops)

    def close(self) -> None: ...
    def lock(self, operation: str, *, timeout: float = 0.0, warn: Callable[[str], None] = lambda _m: None) -> str:
        return "id"

    def unlock(self, lock_id: str) -> None: ...
    def force_unlock(self, lock_id: str) -> None: ...
    def lock_info(self) -> dict[str, Any] | None:
        return None


def interrupted_create(api: FakeVertex, d: DesiredModel, started: str) -> tuple[State, Any]:
    """A state whose last run journalled a create intent and died; the plan that resumes it."""
    state = State(stack=STACK, serial=1, lineage="L")
    plan = compute_plan([d], api.observe([PARENT]), state, stack=STACK)
    (change,) = plan.creates
    state.journal.append(JournalEntry(name=d.name, requestId=change.request_id, parent=PARENT,
                                      specHash=d.spec_hash, started=started))
    return state, plan


def run(api: FakeVertex, plan: Any, d: DesiredModel, state: State, **kw: Any) -> Any:
    return apply_plan(plan, [d], api, MemoryStore(state), state, api.observe, **kw)


# -- 3 (item 4). an interrupted create that lands late --------------------------------------------
def test_a_create_still_in_flight_is_found_within_the_window_not_made_again():
    api, d = FakeVertex(), desired()
    state, plan = interrupted_create(api, d, utc_now())
    held = api.make(PARENT, TuningJob.model_validate(plan.creates[0].request), plan.creates[0].request_id)
    api.hold(held, 0.3)  # the killed run's create: the server finishes it 0.3 s from now
    result = run(api, plan, d, state, in_flight_window=10, in_flight_poll=0.05)
    assert api.count("create") == 0 and api.live() == [held.name]
    assert "found job created by an interrupted run" in result.outcomes[0].message
    assert result.state.models["bot"].job == held.name and result.state.models["bot"].jobs == [held.name]
    assert not result.state.journal


def test_an_intent_older_than_the_window_is_looked_up_once_then_created():
    api, d = FakeVertex(), desired()
    old = (datetime.now(timezone.utc) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    state, plan = interrupted_create(api, d, old)
    start = time.monotonic()
    run(api, plan, d, state, in_flight_window=60, in_flight_poll=0.05)
    assert time.monotonic() - start < 5
    assert api.count("find") == 1 and api.count("create") == 1


def test_a_create_landing_after_the_window_is_cancelled_by_the_wait_at_its_first_poll():
    api, d = FakeVertex(), desired()
    state, plan = interrupted_create(api, d, utc_now())
    request = plan.creates[0].request_id
    held = api.make(PARENT, TuningJob.model_validate(plan.creates[0].request), request)
    held = held.model_copy(update={  # the late one is the younger
        "name": f"projects/{NUMBER}/locations/us-central1/tuningJobs/100", "create_time": "2026-01-01T01:00:00Z"})
    api.hold(held, 0.6)
    result = run(api, plan, d, state, in_flight_window=0.2, in_flight_poll=0.05)
    assert api.count("create") == 1 and held.name not in api.jobs  # made again once the window passed
    mine = result.state.models["bot"].job
    seen: list[str] = []

    def poll(_obs: Observation) -> None:
        if held.name in api.jobs and api.jobs[held.name].state == "JOB_STATE_CANCELLING":
            # The duplicate is cancelled; the kept job finishes, so the wait can end.
            api.jobs[mine] = api.jobs[mine].model_copy(update={"state": "JOB_STATE_SUCCEEDED"})

    wait_for_jobs(api.observe, [PARENT], STACK, plan.watched_names, result.state, poll_interval=0.3, timeout=20,
                  on_poll=poll, api=api, requests=plan.request_ids, on_outcome=lambda o: seen.append(o.message))
    assert api.calls.count(("cancel", f"{PARENT}/tuningJobs/100")) == 1  # at once, once, at the listed path
    assert api.jobs[held.name].state == "JOB_STATE_CANCELLING" and seen == [f"cancel requested for {PARENT}/tuningJobs/100"]


# -- 2. --wait follows this state's jobs only --------------------------------------------------------
def test_wait_ignores_another_checkouts_job_and_the_younger_duplicate():
    api, d = FakeVertex(), desired()
    body = TuningJob.model_validate({"baseModel": "gemini-3.5-flash", "labels": ownership_labels(STACK, "bot", d.spec_hash)})
    mine = api.make(PARENT, body, "r1", state="JOB_STATE_SUCCEEDED")
    twin = api.make(PARENT, body, "r1", state="JOB_STATE_CANCELLING")  # younger job of our request
    other = TuningJob.model_validate({"baseModel": "gemini-3.5-flash",
                                      "labels": ownership_labels(STACK, "team-a-bot", "h")})
    theirs = api.make(PARENT, other, "r9", state="JOB_STATE_RUNNING")
    stranger = api.make(PARENT, body.model_copy(update={"labels": ownership_labels(STACK, "bot", "x" * 20)}), "r8",
                        state="JOB_STATE_RUNNING")  # another checkout's job of the same model
    for j in (mine, twin, theirs, stranger):
        api.jobs[j.name or ""] = j
    state = State(stack=STACK, serial=3, lineage="L",
                  models={"bot": ModelEntry.model_validate({"parent": PARENT, "jobs": [mine.name]})})
    plan = compute_plan([d], api.observe([PARENT]), state, stack=STACK)
    assert plan.watched_names == {"bot"} and {c.name for c in plan.changes} == {"bot", "team-a-bot"}
    sleeps: list[float] = []
    wait_for_jobs(api.observe, [PARENT], STACK, {c.name for c in plan.changes}, state, poll_interval=1,
                  timeout=5, sleep=sleeps.append)
    assert sleeps == []  # nothing of ours runs: done at the first poll


def test_wait_still_waits_for_this_states_own_job():
    api, d = FakeVertex(), desired()
    body = TuningJob.model_validate({"baseModel": "gemini-3.5-flash", "labels": ownership_labels(STACK, "bot", d.spec_hash)})
    mine = api.make(PARENT, body, "r1", state="JOB_STATE_RUNNING")
    api.jobs[mine.name or ""] = mine
    state = State(stack=STACK, serial=3, models={"bot": ModelEntry.model_validate({"parent": PARENT, "jobs": [mine.name]})})
    with pytest.raises(ReconcilerError, match="--wait gave up"):
        wait_for_jobs(api.observe, [PARENT], STACK, {"bot"}, state, poll_interval=1, timeout=2, sleep=lambda _s: None)


# -- 1 and 4. recorded jobs; the listed parent's path ------------------------------------------------
def test_a_create_records_its_job_and_only_it():
    api = FakeVertex()
    theirs_spec = desired(uri="gs://b/theirs.jsonl")
    body = TuningJob.model_validate({"baseModel": "gemini-3.5-flash",
                                     "labels": ownership_labels(STACK, "bot", theirs_spec.spec_hash)})
    theirs = api.make(PARENT, body, "r9", state="JOB_STATE_RUNNING")
    api.jobs[theirs.name or ""] = theirs
    d = desired()
    state = State(stack=STACK)  # a new state: the other checkout's job is not recorded
    plan = compute_plan([d], api.observe([PARENT]), state, stack=STACK)
    assert [(c.action, c.cancel_jobs) for c in plan.changes] == [("replace", [])]
    result = run(api, plan, d, state)
    entry = result.state.models["bot"]
    assert entry.jobs == [entry.job] and theirs.name not in entry.jobs and api.count("cancel") == 0
    again = compute_plan([d], api.observe([PARENT]), result.state, stack=STACK)
    assert again.cancel_count == 0 and not again.has_changes


def test_a_job_named_by_another_projects_number_is_cancelled_only_at_the_listed_path():
    api = FakeVertex()
    d = desired()
    body = TuningJob.model_validate({"baseModel": "gemini-3.5-flash", "labels": ownership_labels(STACK, "bot", d.spec_hash)})
    victim = api.make(PARENT, body, "r1", project="374143254140", state="JOB_STATE_RUNNING")
    api.jobs[victim.name or ""] = victim
    state = State(stack=STACK, serial=1, models={"bot": ModelEntry.model_validate({"parent": PARENT})})
    plan = compute_plan([], api.observe([PARENT]), state, stack=STACK)
    change, forget = plan.changes
    assert forget.action == "forget"
    assert change.cancel_jobs == [f"{PARENT}/tuningJobs/{victim.name.rsplit('/', 1)[1]}"]
    result = apply_plan(plan, [], api, MemoryStore(state), state, api.observe)
    assert api.calls[0] == ("cancel", change.cancel_jobs[0]) and "no longer exists" in result.outcomes[0].message
    assert api.jobs[victim.name].state == "JOB_STATE_RUNNING"
