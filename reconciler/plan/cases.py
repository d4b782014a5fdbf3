"""The planner: `compute_plan(desired, observation, state, ...)` — pure.

It reads only its arguments: no network, files, clock or environment; the same inputs give the
same plan. Change detection compares the spec hash on each job's labels (or its adoption record)
with the manifest's; deepdiff only *explains* a replacement.

Each model is first classified (`Case`), then planned by one small function per case; problems
that forbid applying and warnings are collected in one `Context`.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

from reconciler.catalog import Catalog
from reconciler.errors import PlanError
from reconciler.models import DesiredModel, StateClass, short_state
from reconciler.plan import cancelled
from reconciler.plan.continuation import plan_model
from reconciler.plan.cost import with_cost
from reconciler.plan.explain import cosmetic_notes, explain_diff, failure, old_spec
from reconciler.plan.lifecycle import review as review_lifecycle
from reconciler.plan.ownership import (
    OwnedJob,
    all_recorded,
    jobs_by_name,
    newest,
    renamed,
    request_duplicates,
)
from reconciler.plan.types import (
    Action,
    CancelJobs,
    Change,
    CreateJob,
    FieldChange,
    ForgetEntry,
    MoveEntry,
    NoChange,
    Observation,
    Plan,
    fingerprint,
    request_id,
)
from reconciler.state.model import ModelEntry, State

IN_USE = (StateClass.LIVE, StateClass.SUCCEEDED)
ORPHANED = "manifest removed"


@dataclass
class Context:
    """One planning run: its options, and what it found wrong (problems) or worth saying."""

    stack: str
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def cancellable(self, name: str, jobs: list[tuple[OwnedJob, str]]) -> list[tuple[OwnedJob, str]]:
        """The cancels that may go ahead; the others (jobs adopted without our labels, jobs this
        state has no record of) are said in a warning, with what to do."""
        allowed = []
        for job, why in jobs:
            because = f" ({why})" if why else ""
            if job.foreign and why == ORPHANED:
                self.warnings.append(f"{name}: {why}; {job.name} was adopted without the reconciler's labels and "
                                     "is not cancelled — cancel it yourself if intended")
            elif job.foreign:
                self.warnings.append(f"{name}: {job.name} was adopted without the reconciler's labels; not "
                                     f"cancelling it{because} — cancel it yourself if intended")
            elif not job.recorded:
                self.warnings.append(
                    f"{name}: running job {job.name} of stack {self.stack} is not recorded in this state "
                    f"(another checkout's, or a new or lost state); not cancelling it{because}. Adopt it with "
                    f"a manifest named {name} (or `reconciler import {job.name} --name {name}`), or cancel "
                    "it with `apply --prune-unrecorded`")
            else:
                allowed.append((job, why))
        return allowed


class Case(enum.Enum):
    """What a model with a manifest looks like, judged from its jobs (first match wins)."""

    UNKNOWN = "a job is in a state this version does not know"
    FORCED = "--replace"
    ALIVE = "a job of the current spec runs or has succeeded"
    CANCELLING = "the current spec's newest job is being cancelled"
    FAILED = "the current spec's newest job failed"
    CANCELLED = "the current spec's newest job was cancelled"
    CHANGED = "jobs exist, none of the current spec"
    NEW = "no job at all"


@dataclass(frozen=True)
class Model:
    """A model with a manifest, its jobs (oldest first) and what the state last recorded."""

    d: DesiredModel
    jobs: list[OwnedJob]
    entry: ModelEntry | None
    forced: bool
    stack: str

    def _data_of(self, job: OwnedJob) -> str | None:
        return job.data_hash or (self.entry.data_hashes.get(job.name) if self.entry else None)

    def _data_matches(self, job: OwnedJob) -> bool:
        if not self.d.pin_datasets:
            return True
        have = self._data_of(job)
        if have is not None:
            return have == self.d.data_hash
        # No record: pinned from now on, no re-tune — unless a newer job of the spec has a record
        # (then this older job's data are older still, not the data the manifest pins now).
        return not any(j.sort_key > job.sort_key and j.spec_hash == job.spec_hash and self._data_of(j) is not None
                       for j in self.jobs)

    @property
    def current(self) -> list[OwnedJob]:
        """The jobs of the manifest's spec (and pinned data)."""
        return [j for j in self.jobs if j.spec_hash == self.d.spec_hash and self._data_matches(j)]

    @property
    def live_other(self) -> list[OwnedJob]:
        current = {j.name for j in self.current}
        return [j for j in self.jobs if j.name not in current and j.state_class is StateClass.LIVE]

    @property
    def alive(self) -> list[OwnedJob]:
        return [j for j in self.current if j.state_class in IN_USE]

    def classify(self) -> Case:
        if any(j.state_class is StateClass.UNKNOWN for j in self.jobs):
            return Case.UNKNOWN
        if self.forced:
            return Case.FORCED
        if self.alive:
            return Case.ALIVE
        latest = newest(self.current)
        by_state = {StateClass.CANCELLING: Case.CANCELLING, StateClass.FAILED: Case.FAILED,
                    StateClass.CANCELLED: Case.CANCELLED}
        if latest is not None and latest.state_class in by_state:
            return by_state[latest.state_class]
        return Case.CHANGED if self.jobs else Case.NEW

    def noop(self, reason: str, job: OwnedJob | None = None, **extra: object) -> NoChange:
        return NoChange.model_validate({
            "action": Action.NOOP, "name": self.d.name, "reason": reason, "parent": self.d.parent,
            "job": job.name if job else None, "job_state": job.state if job else None,
            "spec_hash": self.d.spec_hash, **extra})

    def creating(self, ctx: Context, action: Action, reason: str, old: OwnedJob | None,
                 cancel: list[OwnedJob], diff: list[FieldChange] | None = None) -> CreateJob:
        d = self.d
        if d.protect and cancel:
            ctx.warnings.extend(f"{d.name}: protected; not cancelling {j.name}" for j in cancel)
            cancel = []
        allowed = ctx.cancellable(d.name, [(j, "") for j in cancel])
        return CreateJob(
            action=action, name=d.name, reason=reason, parent=d.parent,  # type: ignore[arg-type]
            job=old.name if old else None, job_state=old.state if old else None, spec_hash=d.spec_hash,
            request=d.request_body(self.stack),
            request_id=request_id(self.stack, d.name, d.spec_hash, [j.name for j in self.jobs]),
            cancel_jobs=[j.address for j, _ in allowed], diff=diff or [],
        )

    def cancels(self, ctx: Context, jobs: list[tuple[OwnedJob, str]]) -> list[Change]:
        """Cancel actions for extra running jobs (none for a protected model)."""
        allowed = ctx.cancellable(self.d.name, jobs)
        if self.d.protect:
            ctx.warnings.extend(f"{self.d.name}: protected; not cancelling {j.name} ({why})" for j, why in allowed)
            return []
        return [CancelJobs(action=Action.CANCEL, name=self.d.name, reason=why, parent=self.d.parent, job=j.name,
                           job_state=j.state, cancel_jobs=[j.address]) for j, why in allowed]

    def superseded(self, ctx: Context) -> list[Change]:
        return self.cancels(ctx, [(j, f"superseded by spec {self.d.spec_hash}") for j in self.live_other])


# -- one function per case ----------------------------------------------------------------------
def _unknown(m: Model, ctx: Context) -> list[Change]:
    job = [j for j in m.jobs if j.state_class is StateClass.UNKNOWN][-1]
    ctx.warnings.append(f"{m.d.name}: job {job.name} is in state {job.state!r}, which this version does not "
                        "know; not acting on this model")
    return [m.noop(f"job in unknown state {short_state(job.state)}", job)]


def _forced(m: Model, ctx: Context) -> list[Change]:
    if m.d.protect and m.jobs:
        ctx.problems.append(f"{m.d.name} ({m.d.source}): protected (protect: true); --replace refused")
        return []
    live = [j for j in m.jobs if j.state_class is StateClass.LIVE]
    if not m.jobs:
        return [m.creating(ctx, Action.CREATE, "forced by --replace", None, live)]
    latest = newest(m.current)
    if latest is not None and not m.alive and latest.state_class in (StateClass.FAILED, StateClass.CANCELLED):
        # The spec has not changed and its job failed or was cancelled: a retry by request.
        what = "failed" if latest.state_class is StateClass.FAILED else "was cancelled"
        return [m.creating(ctx, Action.RECREATE, f"forced by --replace: {latest.name} {what}; tuning again",
                           latest, live)]
    return [m.creating(ctx, Action.REPLACE, "forced by --replace", newest(m.jobs), live)]


def _alive(m: Model, ctx: Context, entry: ModelEntry | None) -> list[Change]:
    # The newest live-or-succeeded job of the spec is current: a live one newer than a succeeded
    # one is a re-tune in progress (--replace), the succeeded one serves meanwhile.
    running = [j for j in m.alive if j.state_class is StateClass.LIVE]
    # A job this state recorded is kept before another checkout's of the same spec: never give
    # up our own job for one this state may not cancel or follow.
    keep = newest([j for j in m.alive if j.recorded]) or newest(m.alive)
    assert keep is not None
    succeeded = newest([j for j in m.alive if j.state_class is StateClass.SUCCEEDED and j is not keep])
    if keep.state_class is StateClass.SUCCEEDED:
        reason = "up to date"
    else:
        reason = f"tuning in progress ({short_state(keep.state)})"
        if succeeded is not None:
            reason += f"; {succeeded.name} keeps serving until it succeeds"
    error = None
    latest = newest(m.current)
    if latest is not None and latest.state_class is StateClass.FAILED and latest.sort_key > keep.sort_key:
        reason += f"; the latest attempt {latest.name} failed"
        error = failure(latest)
    notes = cosmetic_notes(m.d, keep, entry)
    if m.d.pin_datasets and not (keep.data_hash or (entry and entry.data_hashes.get(keep.name))):
        notes.append("datasets pinned from now on: the data this job was tuned on is recorded at this "
                     "apply; a later upload of different data re-tunes")
    duplicates = [(j, f"duplicate job for the same spec (keeping {keep.name})") for j in running if j is not keep]
    return [m.noop(reason, keep, notes=notes, error=error), *m.cancels(ctx, duplicates), *m.superseded(ctx)]


def _cancelling(m: Model, ctx: Context) -> list[Change]:
    return [m.noop("job is being cancelled; the next run re-creates it", newest(m.current)), *m.superseded(ctx)]


def _failed(m: Model, ctx: Context) -> list[Change]:
    latest = newest(m.current)
    assert latest is not None
    failures = sum(1 for j in m.current if j.state_class is StateClass.FAILED)
    if failures < m.d.max_attempts:
        reason = f"attempt {failures + 1} of {m.d.max_attempts} (retryPolicy) after failure: {failure(latest)}"
        return [m.creating(ctx, Action.RECREATE, reason, latest, m.live_other)]
    reason = (f"tuning failed ({short_state(latest.state)}); not re-tuned on its own — fix the cause, then run "
              f"with --replace {m.d.name}")
    return [m.noop(reason, latest, error=failure(latest)), *m.superseded(ctx)]


def _cancelled(m: Model, ctx: Context) -> list[Change]:
    latest = newest(m.current)
    assert latest is not None
    return [m.creating(ctx, Action.RECREATE, f"the job of this spec, {latest.name}, was cancelled; tuning again",
                       latest, m.live_other)]


def _changed(m: Model, ctx: Context) -> list[Change]:
    d, last = m.d, newest(m.jobs)
    assert last is not None
    if d.protect:
        problem = (f"{d.name} ({d.source}): protected (protect: true) but its spec changed; revert the change "
                   "or remove protect first")
        ctx.problems.append(problem)
        # Still a row (status reports rather than refuses): the model must not vanish from it.
        return [m.noop("protected: its spec changed, and it is not re-tuned", last, error=problem)]
    if last.spec_hash == d.spec_hash:  # same spec: only the pinned data differ
        old_pins = m.entry.dataset_pins if m.entry is not None else {}
        diff = explain_diff({"datasetPins": old_pins}, {"datasetPins": d.pins()}) if old_pins else []
        parts = {f.path.split(".")[1] for f in diff if f.path.count(".") >= 2}
        which = " and ".join(sorted({"validation data" if p.startswith("validation") else "training data"
                                     for p in parts})) or "training data"
        reason = f"{which} changed (a new upload to the same URI)"
    else:
        diff = explain_diff(old_spec(last, m.entry, d), d.tuning_spec())
        reason = "spec changed"
    serving = newest([j for j in m.jobs if j.state_class is StateClass.SUCCEEDED])
    if serving is not None:
        reason += f"; {serving.name} keeps serving until the new job succeeds"
    return [m.creating(ctx, Action.REPLACE, reason, last, m.live_other, diff)]


def _new(m: Model, ctx: Context) -> list[Change]:
    if m.entry is not None and m.entry.job:
        return [m.creating(ctx, Action.CREATE, f"job {m.entry.job} in the state was not found in the API", None, [])]
    return [m.creating(ctx, Action.CREATE, "new model", None, [])]


def plan_desired(m: Model, ctx: Context) -> list[Change]:
    case = m.classify()
    if case is Case.UNKNOWN:
        return _unknown(m, ctx)
    if case is Case.FORCED:
        return _forced(m, ctx)
    if case is Case.ALIVE:
        return _alive(m, ctx, m.entry)
    if case is Case.CANCELLING:
        return _cancelling(m, ctx)
    if case is Case.FAILED:
        return _failed(m, ctx)
    if case is Case.CANCELLED:
        return _cancelled(m, ctx)
    return _changed(m, ctx) if case is Case.CHANGED else _new(m, ctx)


# -- models without a manifest ------------------------------------------------------------------
def _forget_now(name: str, entry: ModelEntry | None, parent: str | None, why: str) -> list[Change]:
    if entry is None:
        return []
    return [ForgetEntry(action=Action.FORGET, name=name, parent=parent, job=entry.job, job_state=entry.state,
                        reason=f"manifest removed; {why}, and the entry leaves the state now")]


def plan_orphan(name: str, jobs: list[OwnedJob], entry: ModelEntry | None, ctx: Context) -> list[Change]:
    parent = entry.parent if entry else (jobs[-1].parent if jobs else None)
    if any(j.state_class is StateClass.UNKNOWN for j in jobs):
        ctx.warnings.append(f"{name}: a job is in a state this version does not know; not acting on it")
        return [NoChange(action=Action.NOOP, name=name, reason="job in unknown state", parent=parent)]
    running = [j for j in jobs if j.state_class is StateClass.LIVE]
    live = [j for j, _ in ctx.cancellable(name, [(j, ORPHANED) for j in running])]
    if live:
        # The state says whether the model is protected; without a state entry, the jobs' label.
        if entry.protect if entry is not None else any(j.protected for j in live):
            ctx.problems.append(f"{name}: protected (protect: true) but its manifest is gone; restore the "
                                "manifest, set protect: false and apply before removing it")
            return []
        cancels: list[Change] = [
            CancelJobs(action=Action.CANCEL, name=name, reason="manifest removed; job still running", parent=parent,
                       job=j.name, job_state=j.state, cancel_jobs=[j.address]) for j in live]
        # One apply removes the model: its entry goes with the cancel request, so `output` stops
        # exporting it now rather than at a second apply once the jobs have ended.
        return cancels + _forget_now(name, entry, parent, "its running job(s) are cancelled")
    if any(j.state_class is StateClass.CANCELLING for j in jobs):
        if entry is not None:
            return _forget_now(name, entry, parent, "its cancel is in progress")
        return [NoChange(action=Action.NOOP, name=name, reason="manifest removed; cancel in progress", parent=parent)]
    if entry is not None and entry.protect and entry.tuned_model is not None:
        ctx.problems.append(f"{name}: protected (protect: true) but its manifest is gone; forgetting it would drop "
                            "its endpoint from the state and `output`. Restore the manifest, set protect: false "
                            "and apply before removing it")
        return [NoChange(action=Action.NOOP, name=name, parent=parent, job=entry.serving_job,
                         reason="protected; manifest removed, endpoint kept", error="protected: not forgotten")]
    if entry is not None:
        last = jobs[-1] if jobs else None
        reason = ("manifest removed; its jobs have finished" if not running else
                  "manifest removed; adopted job left running" if any(j.foreign for j in running) else
                  "manifest removed; running job(s) not recorded in this state left alone (see the warning)")
        return [ForgetEntry(action=Action.FORGET, name=name, reason=reason, parent=parent,
                            job=last.name if last else entry.job, job_state=last.state if last else entry.state)]
    if running:
        return [NoChange(action=Action.NOOP, name=name, parent=running[-1].parent, job=running[-1].name,
                         job_state=running[-1].state,
                         reason="running job(s) not recorded in this state; left alone (see the warning)")]
    return []


# -- the whole plan -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Inputs:
    """What one plan is computed from, indexed."""

    desired: dict[str, DesiredModel]
    by_name: dict[str, list[OwnedJob]]
    state: State
    recorded: frozenset[str]  # models this state has a record of (an entry, or an open intent)


def compute_plan(
    desired: Sequence[DesiredModel],
    observation: Observation,
    state: State,
    *,
    stack: str,
    targets: Sequence[str] = (),
    replace: Sequence[str] = (),
    strict: bool = True,
    prices: Mapping[str, float] | None = None,
    prune: bool = True,
    prune_unrecorded: bool = False,
    today: date | None = None,
    catalog: Catalog | None = None,
    retirement_warning_days: int = 30,
) -> Plan:
    """Decide, per manifest name, what apply must do. Pure.

    `prune`: the manifests are the stack's whole set, so a model without one is removed (its
    running job cancelled, its entry forgotten); a run over a subset leaves such models alone.
    `prune_unrecorded`: jobs of the stack that this state has no record of (another checkout's,
    or a state that is new) may be cancelled too; by default they are only reported.

    Problems that forbid applying (a protected model that would be replaced or cancelled, an
    unknown --target) raise PlanError; with `strict=False` they are returned in `errors` instead
    (for `status`, which reports rather than refuses).

    `today` and `catalog`: the day planned for and the model catalog — base models closed to new
    tuning, retiring or retired (plan/lifecycle.py), and prices (`prices` overrides the catalog's)."""
    ctx = Context(stack, warnings=list(observation.warnings))
    inputs = Inputs({d.name: d for d in desired}, jobs_by_name(observation, stack, state), state,
                    frozenset(state.models) | {j.name for j in state.journal})
    _check_options(inputs, targets, replace, ctx)
    scope = set(targets) if targets else set(inputs.desired) | set(inputs.by_name) | set(state.models)
    moves = _detect_moves(inputs, scope, set(replace))
    scope -= set(moves.values())
    changes: list[Change] = []
    if not prune:
        changes += _partial(inputs, scope, moves, ctx)
    for name in sorted(scope):
        if name in moves:
            changes.append(_move(name, moves[name], inputs))
        else:
            changes += _plan_name(name, inputs, name in replace, prune_unrecorded, ctx)
    changes = review_lifecycle(changes, inputs.desired, inputs.by_name, ctx, today=today, catalog=catalog,
                               warning_days=retirement_warning_days)
    if ctx.problems and strict:
        raise PlanError("\n".join(ctx.problems))
    changes = [with_cost(c, inputs.desired[c.name], catalog, prices) if isinstance(c, CreateJob) else c
               for c in changes]
    plan = Plan(
        prune=prune, prune_unrecorded=prune_unrecorded, errors=ctx.problems, stack=stack,
        parents=sorted(observation.parents), targets=sorted(targets), replace=sorted(replace),
        state_lineage=state.lineage if state.serial else None, state_serial=state.serial,
        changes=changes, warnings=ctx.warnings, fingerprint="",
        desired=[d.to_dict() for d in desired if d.name in scope],
    )
    return plan.model_copy(update={"fingerprint": fingerprint(plan)})


def _check_options(inputs: Inputs, targets: Sequence[str], replace: Sequence[str], ctx: Context) -> None:
    known = set(inputs.desired) | set(inputs.by_name) | set(inputs.state.models)
    unknown_targets = sorted(set(targets) - known)
    unknown_replace = sorted(set(replace) - set(inputs.desired))
    if unknown_targets:
        ctx.problems.append(f"--target names nothing in the manifests or the state: {', '.join(unknown_targets)}")
    if unknown_replace:
        ctx.problems.append(f"--replace needs a manifest of that name: {', '.join(unknown_replace)}")
    owners: dict[str, list[str]] = defaultdict(list)
    for owner, owned in inputs.state.models.items():
        for adopted_job in owned.adopted:
            owners[adopted_job].append(owner)
    for adopted_job, names in sorted(owners.items()):
        if len(names) > 1:
            ctx.problems.append(f"the state adopts {adopted_job} under several names ({', '.join(sorted(names))}); "
                                "fix the state (reconciler state pull/push) so that one name adopts it")


def _plan_name(name: str, inputs: Inputs, forced: bool, prune_unrecorded: bool, ctx: Context) -> list[Change]:
    jobs = sorted(inputs.by_name.get(name, []), key=lambda j: j.sort_key)
    duplicates = request_duplicates(jobs)
    cancels: list[Change] = [
        CancelJobs(action=Action.CANCEL, name=name, parent=j.parent, job=j.name, job_state=j.state,
                   cancel_jobs=[j.address], reason=f"duplicate of {duplicates[j.name]} (same create request "
                                                f"{j.request_id}; two runs raced): the younger is cancelled")
        for j in jobs if j.name in duplicates and j.state_class is StateClass.LIVE and not j.foreign]
    jobs = [j for j in jobs if j.name not in duplicates]
    if prune_unrecorded:
        jobs = all_recorded(jobs)
    entry = inputs.state.models.get(name)
    d = inputs.desired.get(name)
    ctx.warnings.extend(cancelled.warnings(name, jobs, entry, has_manifest=d is not None))
    if d is not None:
        return cancels + plan_model(Model(d, jobs, entry, forced, ctx.stack), inputs, ctx, plan_desired)
    return cancels + plan_orphan(name, jobs, entry, ctx)


def _move(name: str, old: str, inputs: Inputs) -> Change:
    jobs = inputs.by_name.get(name, [])
    keep = newest([j for j in jobs if j.state_class in IN_USE])
    assert keep is not None  # _detect_moves matched on such a job
    return MoveEntry(
        action=Action.MOVE, name=name, moved_from=old, parent=inputs.desired[name].parent,
        reason=f"renamed from {old}: {keep.name} has exactly this spec; the state entry moves and the job is "
               "adopted, nothing is re-tuned",
        job=keep.name, job_state=keep.state, spec_hash=keep.spec_hash,
        adopt_jobs={j.name: j.spec_hash or "" for j in jobs},
    )


def _detect_moves(inputs: Inputs, scope: set[str], forced: set[str]) -> dict[str, str]:
    """Renames: a manifest with no job whose spec hash matches the live or succeeded job of
    exactly one orphan name (a name without a manifest) that this state has a record of — never
    another checkout's model. Returns new name → old name, and counts the old name's jobs for the
    new one in `inputs.by_name` (adoption will record it)."""
    by_name, desired = inputs.by_name, inputs.desired
    moves: dict[str, str] = {}
    # An old name may lie outside --target.
    orphans = {n for n in by_name if n not in desired and n in inputs.recorded}
    for name in sorted(n for n in desired if n in scope and n not in forced and not by_name.get(n)):
        h = desired[name].spec_hash
        matches = [o for o in sorted(orphans)
                   if any(j.spec_hash == h and j.state_class in IN_USE for j in by_name[o])]
        if len(matches) == 1:
            old = matches[0]
            orphans.discard(old)
            moves[name] = old
            by_name[name] = renamed(by_name.pop(old), name)
    return moves


def _partial(inputs: Inputs, scope: set[str], moves: dict[str, str], ctx: Context) -> list[Change]:
    """A subset of the manifests: a model without a manifest here may well have one elsewhere, so
    it is left alone, and a rename cannot be told from a copy. Narrows `scope` and `moves`."""
    left = sorted(n for n in scope if n not in inputs.desired)
    scope.difference_update(left)
    if left:
        ctx.warnings.append(
            f"partial run: {len(left)} model(s) of stack {ctx.stack} have no manifest among those read and are "
            f"left alone ({', '.join(left[:10])}{', …' if len(left) > 10 else ''}); plan the whole manifest set, "
            "or pass --prune, to remove models whose manifest is gone")
    out: list[Change] = []
    for name, old in sorted(moves.items()):
        del moves[name]
        inputs.by_name[old], inputs.by_name[name] = renamed(inputs.by_name.pop(name), old), []
        scope.discard(name)
        out.append(NoChange(
            action=Action.NOOP, name=name, parent=inputs.desired[name].parent,
            reason=f"looks renamed from {old} (its job has exactly this spec); not creating a second job — plan "
                   "the whole manifest set (or pass --prune) to move it"))
    return out
