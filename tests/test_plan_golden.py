"""Golden cases for the pure planner: manifests + observed jobs + last applied → actions.

One behaviour per test. The planner reads only its arguments, so these need no emulator.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest

from reconciler.errors import PlanError
from reconciler.models import DesiredModel, ObservedJob, ownership_labels
from reconciler.plan import Observation, compute_plan, derive_models
from reconciler.state.model import ModelEntry, State

STACK = "team"
PARENT = "projects/my-project/locations/us-central1"
NUM_PARENT = "projects/123456789012/locations/us-central1"


def desired(name: str = "bot", **kw: Any) -> DesiredModel:
    base: dict[str, Any] = dict(
        name=name, project="my-project", region="us-central1", base_model="gemini-3.5-flash",
        training_dataset_uri="gs://b/train.jsonl", source=f"m/{name}.yaml:1",
        hyper_parameters=(("epochCount", 3),),
    )
    base.update(kw)
    return DesiredModel(**base)


_ids = iter(range(1000, 100000))


def job(d: DesiredModel | None, state: str, *, name: str | None = None, hash_: str | None = None,
        stack: str = STACK, created: str = "2026-01-01T00:00:00Z", labels: dict[str, str] | None = None,
        **kw: Any) -> ObservedJob:
    jid = next(_ids)
    if labels is None:
        assert d is not None
        labels = {**dict(d.labels), **ownership_labels(stack, name or d.name, hash_ or d.spec_hash)}
    sts = {"trainingDatasetUri": d.training_dataset_uri,
           "hyperParameters": {"epochCount": 3, "adapterSize": "ADAPTER_SIZE_FOUR", "learningRateMultiplier": 1.0}} if d else {}
    fields: dict[str, Any] = dict(
        name=f"{NUM_PARENT}/tuningJobs/{jid}", parent=PARENT, state=f"JOB_STATE_{state}", labels=labels,
        create_time=created, base_model=d.base_model if d else "gemini-3.5-flash",
        display_name=d.effective_display_name if d else "x", supervised_tuning_spec=sts,
    )
    if state == "SUCCEEDED":
        fields.update(tuned_model=f"{NUM_PARENT}/models/{jid}@1", endpoint=f"{NUM_PARENT}/endpoints/{jid}")
    fields.update(kw)
    return ObservedJob(**fields)


def recorded_state(ds: list[DesiredModel], jobs: list[ObservedJob]) -> State:
    """A state that has a record of every model named by the manifests or the jobs: the usual
    case of a repository that applied before (a new state is tested on its own)."""
    names = {d.name for d in ds} | {j.model_name for j in jobs if j.model_name}
    return State(stack=STACK, serial=1, lineage="L", models={n: ModelEntry.model_validate({"parent": PARENT}) for n in sorted(names)})


def plan_for(ds: list[DesiredModel], jobs: list[ObservedJob], state: State | None = None, **kw: Any):
    obs = Observation(parents=(PARENT,), jobs=tuple(jobs))
    return compute_plan(ds, obs, state or recorded_state(ds, jobs), stack=STACK, **kw)


def actions(plan) -> list[tuple[str, str]]:
    return [(c.action, c.name) for c in plan.changes]


def test_no_job_creates_with_ownership_labels():
    d = desired()
    p = plan_for([d], [])
    (c,) = p.changes
    assert (c.action, c.reason) == ("create", "new model")
    labels = c.request["labels"]
    assert labels["managed-by"] == "vertex-tuning-reconciler"
    assert labels["reconciler-stack"] == STACK and labels["reconciler-name"] == "bot"
    assert labels["reconciler-spec"] == d.spec_hash
    assert c.request["supervisedTuningSpec"]["hyperParameters"]["epochCount"] == "3"


def test_running_job_of_same_spec_is_noop():
    d = desired()
    p = plan_for([d], [job(d, "RUNNING")])
    assert actions(p) == [("noop", "bot")] and "in progress" in p.changes[0].reason
    assert not p.has_changes


def test_succeeded_job_with_server_filled_defaults_is_noop():
    d = desired(hyper_parameters=())  # manifest leaves every hyperparameter to the service
    p = plan_for([d], [job(d, "SUCCEEDED")])  # the job echoes epochCount, adapter size, lr
    assert actions(p) == [("noop", "bot")] and p.changes[0].reason == "up to date"


def test_spec_change_replaces_and_keeps_succeeded_old_serving():
    old = desired()
    new = desired(hyper_parameters=(("epochCount", 5),))
    p = plan_for([new], [job(old, "SUCCEEDED")])
    (c,) = p.changes
    assert c.action == "replace" and c.cancel_jobs == []
    assert "keeps serving" in c.reason
    assert [(f.path, f.old, f.new) for f in c.diff] == [("supervisedTuningSpec.hyperParameters.epochCount", 3, 5)]


def test_spec_change_of_running_job_cancels_old():
    old_job = job(desired(), "RUNNING")
    p = plan_for([desired(hyper_parameters=(("epochCount", 5),))], [old_job])
    (c,) = p.changes
    assert c.action == "replace" and c.cancel_jobs == [old_job.address]
    assert p.cancel_count == 1


def test_diff_prefers_last_applied_spec_over_server_echo():
    old = desired(hyper_parameters=())
    old_job = job(old, "SUCCEEDED")
    state = State(stack=STACK, serial=1, models={"bot": ModelEntry(
        parent=PARENT, job=old_job.name, specHash=old.spec_hash, spec=old.tuning_spec())})
    new = desired(hyper_parameters=(("epochCount", 7),))
    (c,) = plan_for([new], [old_job], state).changes
    assert [(f.path, f.kind, f.new) for f in c.diff] == [("supervisedTuningSpec.hyperParameters", "added", {"epochCount": 7})]


def test_failed_job_is_reported_not_retuned():
    d = desired()
    failed = job(d, "FAILED", error_code=3, error_message="dataset has 0 examples")
    (c,) = plan_for([d], [failed]).changes
    assert c.action == "noop" and "--replace bot" in c.reason
    assert c.error == "dataset has 0 examples (code 3)"


def test_retry_policy_allows_bounded_retries():
    d = desired(max_attempts=2)
    first = job(d, "FAILED", error_message="internal", created="2026-01-01T00:00:00Z")
    (c,) = plan_for([d], [first]).changes
    assert c.action == "recreate" and "attempt 2 of 2" in c.reason
    second = job(d, "FAILED", error_message="internal", created="2026-01-02T00:00:00Z")
    (c2,) = plan_for([d], [first, second]).changes
    assert c2.action == "noop" and c2.error


def test_forced_replace_of_failed_job_is_a_recreate():
    d = desired()
    failed = job(d, "FAILED")
    (c,) = plan_for([d], [failed], replace=["bot"]).changes
    assert c.action == "recreate" and c.reason.startswith("forced by --replace") and "failed" in c.reason
    assert c.job == failed.name


def test_forced_replace_of_succeeded_job_is_a_replace():
    d = desired()
    (c,) = plan_for([d], [job(d, "SUCCEEDED")], replace=["bot"]).changes
    assert c.action == "replace" and c.reason == "forced by --replace"


def test_cancelled_outside_is_recreated():
    d = desired()
    (c,) = plan_for([d], [job(d, "CANCELLED")]).changes
    assert c.action == "recreate" and "was cancelled; tuning again" in c.reason


def test_cancelling_job_waits():
    d = desired()
    (c,) = plan_for([d], [job(d, "CANCELLING")]).changes
    assert c.action == "noop" and "being cancelled" in c.reason


def test_orphan_running_is_cancelled_and_finished_orphan_forgotten():
    gone = desired("gone")
    old = desired("old")
    state = State(stack=STACK, serial=3, models={"old": ModelEntry(parent=PARENT, job="x"),
                                                 "gone": ModelEntry(parent=PARENT)})
    running, finished = job(gone, "RUNNING"), job(old, "SUCCEEDED")
    p = plan_for([], [running, finished], state)
    assert actions(p) == [("cancel", "gone"), ("forget", "gone"), ("forget", "old")]
    assert p.changes[0].cancel_jobs == [running.address]


def test_finished_orphan_without_state_entry_needs_nothing():
    assert plan_for([], [job(desired("gone"), "SUCCEEDED")], State(stack=STACK)).changes == []


def test_unmanaged_and_other_stack_jobs_are_never_touched():
    d = desired()
    unmanaged = job(None, "RUNNING", labels={"team": "x"})
    other_stack = job(d, "RUNNING", stack="someone-else")
    forged = job(None, "RUNNING", labels={"reconciler-stack": STACK, "reconciler-name": "bot"})  # no marker
    p = plan_for([d], [unmanaged, other_stack, forged])
    assert actions(p) == [("create", "bot")]
    assert p.cancel_count == 0


def test_state_naming_an_unmanaged_job_does_not_make_it_cancellable():
    unmanaged = job(None, "RUNNING", labels={})
    state = State(stack=STACK, serial=1, models={"bot": ModelEntry(parent=PARENT, job=unmanaged.name)})
    p = plan_for([], [unmanaged], state)
    assert p.cancel_count == 0
    assert actions(p) == [("forget", "bot")]


def test_cosmetic_change_is_a_note_not_a_retune():
    d = desired(display_name="Old name")
    j = job(d, "SUCCEEDED")
    (c,) = plan_for([dataclasses.replace(d, display_name="New name", labels=(("team", "a"),))], [j]).changes
    assert c.action == "noop"
    assert any("tunedModelDisplayName" in n and "--replace bot" in n for n in c.notes)
    assert any(n.startswith("labels") for n in c.notes)


def test_labels_added_by_the_service_are_no_change():
    d = desired()
    j = job(d, "SUCCEEDED", labels={**ownership_labels(STACK, "bot", d.spec_hash), "mg-source": "sdk"})
    (c,) = plan_for([d], [j]).changes
    assert c.notes == []


def test_protect_blocks_replace_and_orphan_cancel():
    d = desired(protect=True)
    with pytest.raises(PlanError, match="protected"):
        plan_for([dataclasses.replace(d, hyper_parameters=(("epochCount", 9),))], [job(d, "SUCCEEDED")])
    with pytest.raises(PlanError, match="protected"):
        plan_for([d], [job(d, "RUNNING")], replace=["bot"])
    state = State(stack=STACK, serial=1, models={"bot": ModelEntry(parent=PARENT, protect=True)})
    with pytest.raises(PlanError, match="manifest is gone"):
        plan_for([], [job(d, "RUNNING")], state)


def test_unknown_state_is_never_acted_on():
    d = desired()
    p = plan_for([dataclasses.replace(d, hyper_parameters=(("epochCount", 9),))], [job(d, "SOMETHING_NEW")])
    assert actions(p) == [("noop", "bot")] and p.warnings
    orphan = plan_for([], [job(desired("gone"), "SOMETHING_NEW")])
    assert orphan.cancel_count == 0 and orphan.warnings


def test_duplicate_live_jobs_are_cut_to_one():
    d = desired()
    a = job(d, "RUNNING", created="2026-01-01T00:00:00Z")
    b = job(d, "RUNNING", created="2026-01-02T00:00:00Z")
    p = plan_for([d], [a, b])
    assert actions(p) == [("noop", "bot"), ("cancel", "bot")]
    assert p.changes[0].job == b.name and p.changes[1].cancel_jobs == [a.address]


def test_superseded_running_job_is_cancelled_once_new_exists():
    old, new = desired(), desired(hyper_parameters=(("epochCount", 5),))
    old_job, new_job = job(old, "RUNNING"), job(new, "PENDING")
    p = plan_for([new], [old_job, new_job])
    assert actions(p) == [("noop", "bot"), ("cancel", "bot")]
    assert p.changes[1].cancel_jobs == [old_job.address]


def test_target_limits_scope_and_unknown_target_errors():
    a, b = desired("a"), desired("b")
    p = plan_for([a, b], [], targets=["b"])
    assert actions(p) == [("create", "b")]
    with pytest.raises(PlanError, match="--target"):
        plan_for([a], [], targets=["nope"])


def test_plan_is_deterministic_and_request_ids_differ_per_attempt():
    d = desired()
    p1, p2 = plan_for([d], []), plan_for([d], [])
    assert p1 == p2 and p1.fingerprint == p2.fingerprint
    retry = plan_for([d], [job(d, "CANCELLED")]).changes[0]
    assert retry.request_id != p1.changes[0].request_id


def test_fingerprint_covers_state_serial():
    d = desired()
    s1 = State(stack=STACK, serial=1, lineage="L")
    s2 = State(stack=STACK, serial=2, lineage="L")
    assert plan_for([d], [], s1).fingerprint != plan_for([d], [], s2).fingerprint


def test_state_keeps_old_endpoint_until_replacement_succeeds():
    old, new = desired(), desired(hyper_parameters=(("epochCount", 5),))
    old_job = job(old, "SUCCEEDED", created="2026-01-01T00:00:00Z")
    new_job = job(new, "RUNNING", created="2026-01-02T00:00:00Z")
    obs = Observation(parents=(PARENT,), jobs=(old_job, new_job))
    entry = derive_models([new], obs, State(stack=STACK), stack=STACK)["bot"]
    assert entry.job == new_job.name and entry.serving_job == old_job.name
    assert entry.tuned_model.endpoint == old_job.endpoint
    done = dataclasses.replace(new_job, state="JOB_STATE_SUCCEEDED", endpoint=f"{NUM_PARENT}/endpoints/9")
    entry = derive_models([new], Observation((PARENT,), (old_job, done)), State(stack=STACK), stack=STACK)["bot"]
    assert entry.serving_job == done.name and entry.tuned_model.endpoint.endswith("/9")


def test_forced_replacement_in_progress_is_kept_while_the_old_job_serves():
    d = desired()
    old = job(d, "SUCCEEDED", created="2026-01-01T00:00:00Z")
    new = job(d, "RUNNING", created="2026-01-02T00:00:00Z")
    p = plan_for([d], [old, new])
    assert actions(p) == [("noop", "bot")] and p.cancel_count == 0
    assert p.changes[0].job == new.name and "keeps serving" in p.changes[0].reason


def test_failed_retune_is_reported_while_the_old_job_serves():
    d = desired()
    old = job(d, "SUCCEEDED", created="2026-01-01T00:00:00Z")
    failed = job(d, "FAILED", created="2026-01-02T00:00:00Z", error_message="bad data")
    (c,) = plan_for([d], [old, failed]).changes
    assert c.action == "noop" and c.job == old.name and c.error == "bad data"


def test_protect_label_guards_orphans_when_the_state_is_lost():
    d = desired(protect=True)
    running = job(d, "RUNNING", labels={**ownership_labels(STACK, "bot", d.spec_hash), "reconciler-protect": "true"})
    lost = plan_for([], [running], State(stack=STACK))  # no record: never cancelled, protected or not
    assert [(c.action, c.job) for c in lost.changes] == [("noop", running.name)]
    # The state, when present, is what the last apply said: protect: false was applied.
    state = State(stack=STACK, serial=1, models={"bot": ModelEntry(parent=PARENT, protect=False)})
    assert actions(plan_for([], [running], state)) == [("cancel", "bot"), ("forget", "bot")]


def test_protected_model_keeps_extra_running_jobs_with_a_warning():
    d = desired(protect=True)
    a = job(d, "RUNNING", created="2026-01-01T00:00:00Z")
    b = job(d, "RUNNING", created="2026-01-02T00:00:00Z")
    p = plan_for([d], [a, b])
    assert p.cancel_count == 0 and any("protected; not cancelling" in w for w in p.warnings)


def test_status_mode_collects_problems_instead_of_raising():
    d = desired(protect=True)
    p = plan_for([dataclasses.replace(d, hyper_parameters=(("epochCount", 9),))], [job(d, "SUCCEEDED")], strict=False)
    assert p.errors and "protected" in p.errors[0]


def test_replace_diff_without_state_shows_removed_fields_but_not_service_defaults():
    old = desired(validation_dataset_uri="gs://bucket/val.jsonl")
    new = desired()
    (c,) = plan_for([new], [job(old, "SUCCEEDED", supervised_tuning_spec={
        "trainingDatasetUri": "gs://b/train.jsonl", "validationDatasetUri": "gs://bucket/val.jsonl",
        "hyperParameters": {"epochCount": 3, "adapterSize": "ADAPTER_SIZE_FOUR"}})]).changes
    assert [(f.path, f.kind) for f in c.diff] == [("supervisedTuningSpec.validationDatasetUri", "removed")]


def test_creation_order_compares_times_not_strings():
    d = desired()
    earlier = job(d, "RUNNING", created="2026-01-01T00:00:01Z")
    later = job(d, "RUNNING", created="2026-01-01T00:00:01.500Z")
    p = plan_for([d], [later, earlier])
    assert p.changes[0].job == later.name and p.changes[1].cancel_jobs == [earlier.address]


def test_state_tracks_every_parent_that_still_matters():
    old = desired()
    moved = desired(region="europe-west4")
    old_job = job(old, "SUCCEEDED")
    new_job = dataclasses.replace(job(moved, "RUNNING", created="2026-02-01T00:00:00Z"),
                                  parent="projects/my-project/locations/europe-west4")
    obs = Observation(parents=(PARENT, new_job.parent), jobs=(old_job, new_job))
    entry = derive_models([moved], obs, State(stack=STACK), stack=STACK)["bot"]
    assert entry.parents == sorted([PARENT, new_job.parent]) and entry.serving_job == old_job.name


# -- issue 11: what this run has no business cancelling ------------------------------------------
def test_running_job_of_a_model_this_state_never_recorded_is_left_alone():
    """Another checkout's model in the same stack (or a new state): reported, not cancelled."""
    theirs = job(desired("team-a-bot"), "RUNNING")
    p = plan_for([desired("team-b-bot")], [theirs], State(stack=STACK))
    assert actions(p) == [("noop", "team-a-bot"), ("create", "team-b-bot")]
    assert p.cancel_count == 0
    assert any("team-a-bot" in w and "--prune-unrecorded" in w and "import" in w for w in p.warnings)
    pruned = plan_for([desired("team-b-bot")], [theirs], State(stack=STACK), prune_unrecorded=True)
    assert ("cancel", "team-a-bot") in actions(pruned)


def test_lost_state_finds_the_running_job_and_never_duplicates_it():
    d = desired()
    running = job(d, "RUNNING")
    p = plan_for([d], [running], State(stack=STACK))
    assert [(c.action, c.job) for c in p.changes] == [("noop", running.name)]


def test_replace_without_a_record_does_not_cancel_the_old_job():
    old = job(desired(), "RUNNING")
    p = plan_for([desired(hyper_parameters=(("epochCount", 5),))], [old], State(stack=STACK))
    (c,) = p.changes
    assert c.action == "replace" and c.cancel_jobs == []
    assert any(old.name in w and "not recorded" in w for w in p.warnings)


def test_a_subset_of_manifests_prunes_nothing():
    a, b = desired("a"), desired("b")
    ja, jb = job(a, "RUNNING"), job(b, "SUCCEEDED")
    partial = plan_for([a], [ja, jb], recorded_state([a, b], [ja, jb]), prune=False)
    assert actions(partial) == [("noop", "a")] and not partial.prune
    assert any("partial run" in w and "b" in w for w in partial.warnings)
    whole = plan_for([a], [ja, jb], recorded_state([a, b], [ja, jb]))
    assert ("forget", "b") in actions(whole)


def test_a_rename_seen_in_a_subset_neither_moves_nor_creates():
    old = desired("old")
    new = dataclasses.replace(old, name="new", source="m/new.yaml:1")
    j = job(old, "SUCCEEDED")
    p = plan_for([new], [j], recorded_state([old], [j]), prune=False)
    assert actions(p) == [("noop", "new")] and "renamed from old" in p.changes[0].reason


def test_two_jobs_of_one_create_request_keep_the_older():
    d = desired()
    labels = {**ownership_labels(STACK, "bot", d.spec_hash), "reconciler-request": "r1"}
    older = job(d, "RUNNING", labels=labels, created="2026-01-01T00:00:00Z")
    younger = job(d, "PENDING", labels=labels, created="2026-01-01T00:00:05Z")
    p = plan_for([d], [younger, older])
    assert [c.cancel_jobs for c in p.changes if c.action == "cancel"] == [[younger.address]]
    assert [c.job for c in p.changes if c.action == "noop"] == [older.name]
    protected = desired(protect=True)
    p = plan_for([protected], [younger, older])
    assert [c.cancel_jobs for c in p.changes if c.action == "cancel"] == [[younger.address]]
    entry = derive_models([d], Observation(parents=(PARENT,), jobs=(older, younger)), State(stack=STACK), stack=STACK)
    assert entry["bot"].job == older.name


def test_fingerprint_covers_the_request_and_the_models():
    d = desired()
    p = plan_for([d], [])
    from reconciler.plan import fingerprint

    assert fingerprint(p) == p.fingerprint
    body = p.model_dump()
    body["changes"][0]["request"]["supervisedTuningSpec"]["trainingDatasetUri"] = "gs://evil/x.jsonl"
    assert fingerprint(body) != p.fingerprint
    body = p.model_dump()
    body["desired"][0]["service_account"] = "evil@x.iam.gserviceaccount.com"
    assert fingerprint(body) != p.fingerprint


# -- issue 11 again: records per job, addresses, sealed parents ---------------------------------
def entry_with_jobs(*jobs: ObservedJob, **kw: Any) -> ModelEntry:
    return ModelEntry.model_validate({"parent": PARENT, "jobs": [j.name for j in jobs], **kw})


def test_another_checkouts_job_of_a_recorded_model_is_not_cancelled_as_superseded():
    """r2 applied `delta` (job A); r3, with its own state, applied `delta` with another training
    URI (job B). r2's plan must not cancel B: the model is recorded, B is not."""
    mine, theirs = desired("delta"), desired("delta", training_dataset_uri="gs://b/other.jsonl")
    a = job(mine, "RUNNING", created="2026-01-01T00:00:00Z")
    b = job(theirs, "RUNNING", created="2026-01-02T00:00:00Z")
    state = State(stack=STACK, serial=2, lineage="L", models={"delta": entry_with_jobs(a)})
    p = plan_for([mine], [a, b], state)
    assert [(c.action, c.job) for c in p.changes] == [("noop", a.name)] and p.cancel_count == 0
    assert any(b.name in w and "not recorded" in w and "--prune-unrecorded" in w for w in p.warnings)
    # And r3's plan does not cancel A either.
    theirs_state = State(stack=STACK, serial=2, lineage="M", models={"delta": entry_with_jobs(b)})
    p3 = plan_for([theirs], [a, b], theirs_state)
    assert [(c.action, c.job) for c in p3.changes] == [("noop", b.name)] and p3.cancel_count == 0
    # Explicitly pruned, it is.
    pruned = plan_for([mine], [a, b], state, prune_unrecorded=True)
    assert [c.cancel_jobs for c in pruned.changes if c.action == "cancel"] == [[b.address]]


def test_a_recorded_job_is_kept_before_a_newer_unrecorded_one_of_the_same_spec():
    d = desired()
    mine = job(d, "RUNNING", created="2026-01-01T00:00:00Z")
    theirs = job(d, "RUNNING", created="2026-01-02T00:00:00Z")
    state = State(stack=STACK, serial=2, lineage="L", models={"bot": entry_with_jobs(mine)})
    p = plan_for([d], [mine, theirs], state)
    assert [(c.action, c.job) for c in p.changes] == [("noop", mine.name)] and p.cancel_count == 0
    entry = derive_models([d], Observation((PARENT,), (mine, theirs)), state, stack=STACK)["bot"]
    assert entry.job == mine.name and entry.jobs == [mine.name]


def test_a_replace_cancels_only_the_recorded_old_job():
    old, new = desired(), desired(hyper_parameters=(("epochCount", 5),))
    mine = job(old, "RUNNING", created="2026-01-01T00:00:00Z")
    theirs = job(desired(training_dataset_uri="gs://b/x.jsonl"), "RUNNING", created="2026-01-02T00:00:00Z")
    state = State(stack=STACK, serial=2, lineage="L", models={"bot": entry_with_jobs(mine)})
    (c,) = plan_for([new], [mine, theirs], state).changes
    assert c.action == "replace" and c.cancel_jobs == [mine.address]


def test_an_orphan_cancels_its_recorded_job_only():
    d = desired("gone")
    mine = job(d, "RUNNING", created="2026-01-01T00:00:00Z")
    theirs = job(d, "RUNNING", created="2026-01-02T00:00:00Z", hash_="f" * 20)
    state = State(stack=STACK, serial=2, lineage="L", models={"gone": entry_with_jobs(mine)})
    p = plan_for([], [mine, theirs], state)
    assert [(c.action, c.jobs_to_cancel) for c in p.changes] == [("cancel", [mine.address]), ("forget", [])]
    finished = dataclasses.replace(mine, state="JOB_STATE_CANCELLED")
    (c,) = plan_for([], [finished, theirs], state).changes
    assert c.action == "forget" and "not recorded" in c.reason


def test_a_job_of_an_open_intent_and_its_request_twins_are_recorded():
    d = desired()
    labels = {**ownership_labels(STACK, "bot", d.spec_hash), "reconciler-request": "r1"}
    made = job(d, "RUNNING", labels=labels, created="2026-01-01T00:00:00Z")
    from reconciler.state.model import JournalEntry

    intent = JournalEntry(name="bot", requestId="r1", parent=PARENT, specHash=d.spec_hash, started="2026-01-01T00:00:00Z")
    state = State(stack=STACK, serial=2, lineage="L", journal=[intent])
    new = desired(hyper_parameters=(("epochCount", 5),))
    (c,) = plan_for([new], [made], state).changes
    assert c.cancel_jobs == [made.address]  # no entry, but this state's own create
    # A twin of a recorded job (one request, made twice) is recorded with it.
    twin = job(d, "PENDING", labels=labels, created="2026-01-01T00:00:05Z")
    entry = derive_models([d], Observation((PARENT,), (made, twin)),
                          State(stack=STACK, serial=2, models={"bot": entry_with_jobs(made)}), stack=STACK)["bot"]
    assert entry.jobs == sorted([made.name, twin.name]) and entry.job == made.name


def test_an_entry_records_every_job_when_first_recorded_and_legacy_entries_are_filled():
    d = desired()
    a = job(d, "SUCCEEDED", created="2026-01-01T00:00:00Z")
    b = job(d, "RUNNING", created="2026-01-02T00:00:00Z")
    obs = Observation((PARENT,), (a, b))
    lost = derive_models([d], obs, State(stack=STACK), stack=STACK)["bot"]
    assert lost.jobs == sorted([a.name, b.name])  # a lost state recovers its jobs
    legacy = State(stack=STACK, serial=1, models={"bot": ModelEntry(parent=PARENT)})
    assert legacy.models["bot"].jobs is None
    assert derive_models([d], obs, legacy, stack=STACK)["bot"].jobs == sorted([a.name, b.name])
    known = State(stack=STACK, serial=1, models={"bot": entry_with_jobs(a)})
    assert derive_models([d], obs, known, stack=STACK)["bot"].jobs == [a.name]


def test_every_cancel_is_addressed_through_the_listed_parent():
    """A list of a fresh project naming a job by another project's NUMBER: the cancel goes to
    the listed project's path with the job's id, never to the number the server put in the name."""
    d = desired("gone", project="fresh-proj1")
    fresh = "projects/fresh-proj1/locations/us-central1"
    victim = dataclasses.replace(job(d, "RUNNING"), name="projects/374143254140/locations/us-central1/tuningJobs/11",
                                 parent=fresh)
    state = State(stack=STACK, serial=1, models={"gone": ModelEntry(parent=fresh)})
    p = compute_plan([], Observation((fresh,), (victim,)), state, stack=STACK)
    c, _forget = p.changes
    assert c.cancel_jobs == [f"{fresh}/tuningJobs/11"] and c.job == victim.name


def test_fingerprint_covers_the_parents():
    p = plan_for([desired()], [])
    from reconciler.plan import fingerprint

    body = p.model_dump()
    body["parents"].append("projects/victim/locations/us-central1")
    assert fingerprint(body) != p.fingerprint


def test_watched_names_and_tracked_jobs_leave_out_other_checkouts_and_duplicates():
    from reconciler.plan import tracked

    d = desired()
    labels = {**ownership_labels(STACK, "bot", d.spec_hash), "reconciler-request": "r1"}
    older = job(d, "RUNNING", labels=labels, created="2026-01-01T00:00:00Z")
    younger = job(d, "RUNNING", labels=labels, created="2026-01-01T00:00:05Z")
    theirs = job(desired("team-a-bot"), "RUNNING")
    stranger = job(d, "RUNNING", hash_="e" * 20)
    state = State(stack=STACK, serial=2, lineage="L", models={"bot": entry_with_jobs(older)})
    obs = Observation((PARENT,), (older, younger, theirs, stranger))
    p = compute_plan([d], obs, state, stack=STACK)
    assert ("noop", "team-a-bot") in actions(p) and p.watched_names == {"bot"}
    assert {n: [j.name for j in js] for n, js in tracked(obs, STACK, state).items()} == {"bot": [older.name]}


# -- base-model lifecycle (plan/lifecycle.py): a fixed day and catalog, never the wall clock -------
LIFE_DAY = datetime.date(2026, 12, 3)


def catalog_with(model: str, **values: Any) -> Any:
    """The shipped catalog with one `models:` override, as reconciler.yaml would give it."""
    from reconciler.catalog import ModelSettings, Override, shipped

    return shipped().merged({model: Override(ModelSettings.model_validate(values))})


def test_lifecycle_is_not_judged_without_a_day():
    d = desired(base_model="gemini-2.0-flash-001")
    from reconciler.catalog import shipped

    assert actions(plan_for([d], [])) == [("create", "bot")]
    assert actions(plan_for([d], [], catalog=shipped())) == [("create", "bot")]  # a catalog, no day


def test_create_on_a_model_closed_to_new_tuning_is_an_error_with_its_dates():
    from reconciler.catalog import shipped

    d = desired(name="support-bot", base_model="gemini-2.0-flash-001")
    with pytest.raises(PlanError) as err:
        plan_for([d], [], today=LIFE_DAY, catalog=shipped())
    assert str(err.value).startswith("support-bot: gemini-2.0-flash-001 is closed to new tuning since 2026-01-05 "
                                     "(retired 2026-02-05); successor gemini-3.5-flash-lite")
    p = plan_for([d], [], today=LIFE_DAY, catalog=shipped(), strict=False)  # status reports it
    assert p.errors and "closed to new tuning" in p.errors[0]


def test_recreate_after_failure_on_a_closed_model_is_an_error():
    d = desired(max_attempts=2)
    cat = catalog_with("gemini-3.5-flash", **{"tuningClosesDate": "2026-12-01"})
    with pytest.raises(PlanError, match="bot: gemini-3.5-flash is closed to new tuning since 2026-12-01 "
                                        r"\(retires 2027-05-19 or later\); no successor is known"):
        plan_for([d], [job(d, "FAILED")], today=LIFE_DAY, catalog=cat)


def test_current_model_plans_without_lifecycle_warnings():
    from reconciler.catalog import shipped

    d = desired()
    p = plan_for([d], [job(d, "SUCCEEDED")], today=LIFE_DAY, catalog=shipped())
    assert p.warnings == [] and p.changes[0].reason == "up to date"


def test_serving_model_whose_base_retires_within_the_window_is_warned_about():
    d = desired()
    serving = job(d, "SUCCEEDED")
    cat = catalog_with("gemini-3.5-flash", **{"retirementDate": "2026-12-13", "successor": "gemini-3.1-flash-lite"})
    p = plan_for([d], [serving], today=LIFE_DAY, catalog=cat)
    assert actions(p) == [("noop", "bot")]
    assert p.warnings == [f"bot: base model gemini-3.5-flash retires 2026-12-13 (in 10 day(s)); {serving.name} stops "
                          "serving then; successor gemini-3.1-flash-lite: change spec.baseModel and apply (the old "
                          "endpoint keeps serving until the new job has succeeded)"]
    assert plan_for([d], [serving], today=LIFE_DAY, catalog=cat, retirement_warning_days=9).warnings == []


def test_serving_model_after_its_base_retired_is_no_longer_serving():
    d = desired()
    serving = job(d, "SUCCEEDED")
    cat = catalog_with("gemini-3.5-flash", **{"retirementDate": "2026-12-01"})
    p = plan_for([d], [serving], today=LIFE_DAY, catalog=cat)
    (c,) = p.changes
    gone = "no longer serving: base model gemini-3.5-flash retired 2026-12-01"
    assert c.action == "noop" and c.reason == f"up to date; {gone}" and c.notes == [gone]
    assert p.warnings == [f"bot: {serving.name} is no longer serving — its base model gemini-3.5-flash retired "
                          "2026-12-01 (a tuned model stops serving with its base model); no successor is known "
                          "(`reconciler models` lists the models): change spec.baseModel and apply"]
    assert not p.has_changes


def test_base_model_bump_replaces_and_keeps_the_old_job_serving():
    from reconciler.catalog import shipped

    old = desired(base_model="gemini-3.1-flash-lite")
    old_job = job(old, "SUCCEEDED")
    p = plan_for([desired()], [old_job], today=LIFE_DAY, catalog=shipped())
    (c,) = p.changes
    assert c.action == "replace" and c.cancel_jobs == [] and p.cancel_count == 0
    assert c.reason == f"spec changed; {old_job.name} keeps serving until the new job succeeds"
    assert [(f.path, f.old, f.new) for f in c.diff] == [("baseModel", "gemini-3.1-flash-lite", "gemini-3.5-flash")]
    assert c.request["baseModel"] == "gemini-3.5-flash" and p.warnings == []


def test_a_bump_away_from_a_retiring_model_says_the_manifest_already_moves():
    old = desired(base_model="gemini-3.1-flash-lite")
    old_job = job(old, "SUCCEEDED")
    cat = catalog_with("gemini-3.1-flash-lite", **{"retirementDate": "2026-12-20"})
    p = plan_for([desired()], [old_job], today=LIFE_DAY, catalog=cat)
    assert actions(p) == [("replace", "bot")]
    [warning] = p.warnings
    assert "retires 2026-12-20 (in 17 day(s))" in warning and "the manifest already moves to gemini-3.5-flash" in warning


def test_cost_comes_from_the_catalog_and_reads_epochs_from_the_request():
    d = desired(training_bytes=4_000_000, hyper_parameters=(("epochCount", 2),))
    cat = catalog_with("gemini-3.5-flash", **{"price": 2.0})
    (c,) = plan_for([d], [], catalog=cat).changes
    assert c.cost_usd == round(1_000_000 * 2 / 1e6 * 2.0, 2) and "× 2 epochs ×" in c.cost_note
    (c,) = plan_for([d], []).changes  # the shipped catalog has no price
    assert c.cost_usd is None and "no price for gemini-3.5-flash" in c.cost_note
    (c,) = plan_for([d], [], catalog=cat, prices={"gemini-3.5-flash": 1.0}).changes  # prices= wins
    assert c.cost_usd == 2.0


def test_a_data_re_upload_is_a_replace_even_after_an_older_cancelled_job():
    """pinDatasets: a job without a data record older than one with a record is not the current
    data's job — a new upload is a replace that says the data changed, not a recreate of the old
    cancelled job (issue 14 item 4)."""
    from reconciler.models import pins_tuple

    old_pins = pins_tuple({"trainingDatasetUri": {"generation": "1", "md5Hash": "a"}})
    new_pins = pins_tuple({"trainingDatasetUri": {"generation": "2", "md5Hash": "b"}})
    before = desired(pin_datasets=True, dataset_pins=old_pins)
    now = desired(pin_datasets=True, dataset_pins=new_pins)
    cancelled = job(before, "CANCELLED", created="2026-01-01T00:00:00Z")  # made before pinning: no record
    done = job(before, "SUCCEEDED", created="2026-01-02T00:00:00Z",
               labels={**ownership_labels(STACK, "bot", before.spec_hash), "reconciler-data": before.data_hash})
    state = recorded_state([now], [cancelled, done])
    state.models["bot"] = state.models["bot"].model_copy(update={"dataset_pins": before.pins()})
    (c,) = plan_for([now], [cancelled, done], state).changes
    assert c.action == "replace" and c.reason.startswith("training data changed"), c.reason
    assert {f.path for f in c.diff} >= {"datasetPins.trainingDatasetUri.generation"}
