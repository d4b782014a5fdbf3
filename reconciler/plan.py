"""Plans: the closed set of actions, `Plan`, and `compute_plan()` — pure.

`compute_plan(desired, observation, state, ...)` reads only its arguments: no network, files,
clock or environment; the same inputs give the same plan. Change detection compares the spec
hash on each job's labels with the manifest's; deepdiff only *explains* a replacement.

Actions (each with a reason):
  create    no job exists for the manifest
  replace   the spec changed: create a new job, cancel the old one if still running; a succeeded
            old job keeps serving (in the state) until the new one succeeds
  recreate  the job for the current spec was cancelled outside the tool, or failed and a retry
            is allowed (retryPolicy.maxAttempts or --replace)
  move      a manifest was renamed and an existing job has exactly its spec: the state entry
            moves to the new name and the job is adopted; nothing is re-tuned (terraform's `moved`,
            detected from the spec hash)
  cancel    a managed job still running whose manifest is gone (or that a newer spec superseded)
  forget    the manifest is gone and its jobs are finished: the entry leaves the state
  noop      nothing to do (notes say what cannot be applied, e.g. a display-name change)
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from reconciler import __version__
from reconciler.catalog import ASSUMED_EPOCHS, BYTES_PER_TOKEN, TRAINING_PRICE_PER_MILLION, lookup
from reconciler.errors import PlanError
from reconciler.models import (
    LABEL_FOREIGN,
    LABEL_NAME,
    LABEL_REQUEST,
    DesiredModel,
    ObservedJob,
    StateClass,
    canonical_json,
    ownership_labels,
    short_state,
)
from reconciler.state.model import Endpoint, JobError, ModelEntry, State

ActionType = Literal["create", "replace", "recreate", "move", "cancel", "forget", "noop"]
ACTIONS: tuple[ActionType, ...] = ("create", "replace", "recreate", "move", "cancel", "forget", "noop")
CREATING: frozenset[str] = frozenset({"create", "replace", "recreate"})
PLAN_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Observation:
    """What the API showed: the parents listed (all pages) and every job found in them."""

    parents: tuple[str, ...]
    jobs: tuple[ObservedJob, ...]
    warnings: tuple[str, ...] = ()  # what the listing skipped and why (e.g. a job outside its parent)

    def managed(self, stack: str) -> list[ObservedJob]:
        return [j for j in self.jobs if j.managed and j.stack == stack and j.model_name]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FieldChange(_Frozen):
    path: str
    kind: Literal["changed", "added", "removed"]
    old: Any = None
    new: Any = None


class Change(_Frozen):
    """One planned action on one manifest name."""

    action: ActionType
    name: str
    reason: str
    parent: str | None = None
    job: str | None = None
    job_state: str | None = None
    spec_hash: str | None = None
    request: dict[str, Any] | None = None
    request_id: str | None = None
    cancel_jobs: list[str] = Field(default_factory=list)
    moved_from: str | None = None
    adopt_jobs: dict[str, str] = Field(default_factory=dict)  # job → spec hash (move)
    diff: list[FieldChange] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    error: str | None = None
    cost_usd: float | None = None  # an estimate, for changes that start a tuning job
    cost_note: str | None = None  # how it was estimated, or why it could not be

    @property
    def key(self) -> dict[str, Any]:
        """Everything apply acts on (for the fingerprint): the request it sends included, reasons,
        notes and cost estimates excluded (they explain, they are not sent)."""
        return {"action": self.action, "name": self.name, "parent": self.parent, "job": self.job,
                "spec_hash": self.spec_hash, "request": self.request, "request_id": self.request_id,
                "cancel_jobs": sorted(self.cancel_jobs), "moved_from": self.moved_from,
                "adopt_jobs": self.adopt_jobs}


class Plan(_Frozen):
    """A frozen, serialisable plan: what the renderer shows is exactly what apply runs."""

    format_version: int = PLAN_FORMAT_VERSION
    tool_version: str = __version__
    stack: str
    parents: list[str]
    targets: list[str] = Field(default_factory=list)
    replace: list[str] = Field(default_factory=list)
    state_lineage: str | None = None
    state_serial: int = 0
    prune: bool = True  # models whose manifest is gone are cancelled/forgotten (the whole set was read)
    prune_unrecorded: bool = False  # jobs of the stack this state has no record of may be cancelled
    changes: list[Change]
    warnings: list[str] = Field(default_factory=list)
    fingerprint: str
    desired: list[dict[str, Any]] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)

    @property
    def actionable(self) -> list[Change]:
        return [c for c in self.changes if c.action != "noop"]

    @property
    def has_changes(self) -> bool:
        return bool(self.actionable)

    @property
    def cancel_count(self) -> int:
        return sum(len(c.cancel_jobs) for c in self.changes)

    @property
    def estimated_cost(self) -> float:
        return round(sum(c.cost_usd or 0.0 for c in self.changes), 2)

    @property
    def cost_unknown(self) -> int:
        """Changes that start a tuning job but have no estimate."""
        return sum(1 for c in self.changes if c.action in CREATING and c.cost_usd is None)

    def summary(self) -> dict[str, Any]:
        counts: dict[str, Any] = {action: 0 for action in ACTIONS}
        for change in self.changes:
            counts[change.action] += 1
        counts["jobs_to_cancel"] = self.cancel_count
        counts["changes"] = len(self.actionable)
        counts["estimated_cost_usd"] = self.estimated_cost
        counts["cost_unknown"] = self.cost_unknown
        return counts


def fingerprint(plan: Plan | dict[str, Any]) -> str:
    """What a saved plan is checked against: every action with the request it sends, the models
    it was made from, its options and the state it read. Apply recomputes it over the saved file
    (an edited file is refused) and over a fresh plan (a stale one is refused)."""
    p = plan if isinstance(plan, dict) else plan.model_dump()
    changes = [Change.model_validate(c) if isinstance(c, dict) else c for c in p["changes"]]
    payload = canonical_json({
        "changes": sorted((c.key for c in changes if c.action != "noop"), key=canonical_json),
        "desired": sorted(p.get("desired") or [], key=lambda d: str(d.get("name"))),
        "stack": p["stack"], "targets": sorted(p.get("targets") or []), "replace": sorted(p.get("replace") or []),
        "prune": p.get("prune", True), "prune_unrecorded": p.get("prune_unrecorded", False),
        "lineage": p.get("state_lineage"), "serial": p.get("state_serial", 0),
    })
    return hashlib.sha256(payload.encode()).hexdigest()


def request_id(stack: str, name: str, hash_: str, existing: Iterable[str]) -> str:
    """Deterministic id of one create intent, from what it is and the jobs the name already has:
    the same intent re-planned from the same observation finds its own job, and a new attempt
    (one more job seen) gets a new id."""
    payload = canonical_json([stack, name, hash_, sorted(existing)])
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


# -- helpers ------------------------------------------------------------------------------------
def _newest(jobs: Sequence[ObservedJob]) -> ObservedJob | None:
    return max(jobs, key=lambda j: j.sort_key) if jobs else None


def _project_region(parent: str) -> tuple[str, str]:
    parts = parent.split("/")
    return parts[1], parts[3]


def explain_diff(old: dict[str, Any], new: dict[str, Any]) -> list[FieldChange]:
    """Field-level differences between two tuning specs (deepdiff), as dotted paths."""
    from deepdiff import DeepDiff

    tree = DeepDiff(old, new, view="tree")
    out: list[FieldChange] = []
    for report, items in tree.items():
        for item in items:
            path = ".".join(str(p) for p in item.path(output_format="list"))
            if report == "dictionary_item_added":
                out.append(FieldChange(path=path, kind="added", new=item.t2))
            elif report == "dictionary_item_removed":
                out.append(FieldChange(path=path, kind="removed", old=item.t1))
            else:
                out.append(FieldChange(path=path, kind="changed", old=item.t1, new=item.t2))
    return sorted(out, key=lambda f: f.path)


def _old_spec(job: ObservedJob, entry: ModelEntry | None, desired: DesiredModel) -> dict[str, Any]:
    """The spec a replaced job was made from: the state's copy when it matches, else read off
    the job."""
    if entry is not None and entry.spec is not None and entry.spec_hash == job.spec_hash:
        return entry.spec
    return spec_as_manifest_sees_it(job, desired)


def spec_as_manifest_sees_it(job: ObservedJob, desired: DesiredModel) -> dict[str, Any]:
    """A job's spec in the shape of `DesiredModel.tuning_spec`, without the hyperparameters the
    manifest leaves to the service (whatever the service chose is no difference)."""
    project, region = _project_region(job.parent)
    observed = job.tuning_spec(project, region)
    wanted_hp = desired.tuning_spec()["supervisedTuningSpec"].get("hyperParameters", {})
    sts = {k: v for k, v in (observed.get("supervisedTuningSpec") or {}).items() if k in _SPEC_FIELDS}
    # Hyperparameters the manifest leaves out are the service's choice: never a difference.
    hp = {k: v for k, v in (sts.pop("hyperParameters", None) or {}).items() if k in wanted_hp}
    if hp:
        sts["hyperParameters"] = hp
    observed["supervisedTuningSpec"] = sts
    return observed


_SPEC_FIELDS = ("trainingDatasetUri", "validationDatasetUri", "hyperParameters", "exportLastCheckpointOnly")


def _cosmetic_notes(
    desired: DesiredModel, job: ObservedJob, entry: ModelEntry | None
) -> list[str]:
    """Changes the job cannot take (jobs cannot be edited): reported, never re-tuned on their own."""
    want = desired.cosmetic()
    if entry is not None and entry.job == job.name and entry.cosmetic is not None:
        have = entry.cosmetic
        label_keys = set(want["labels"]) | set(have.get("labels", {}))
    else:
        have = job.cosmetic()
        label_keys = set(want["labels"])  # labels the service added are not ours to compare
    notes = []
    for key in ("tunedModelDisplayName", "description", "serviceAccount"):
        if key == "serviceAccount" and not desired.service_account:
            continue
        if (want.get(key) or "") != (have.get(key) or ""):
            notes.append(f"{key}: {have.get(key) or ''!r} → {want.get(key) or ''!r}")
    have_labels = {k: v for k, v in (have.get("labels") or {}).items() if k in label_keys}
    want_labels = {k: v for k, v in want["labels"].items() if k in label_keys}
    if have_labels != want_labels:
        notes.append(f"labels: {canonical_json(have_labels)} → {canonical_json(want_labels)}")
    if not notes:
        return []
    return [
        f"{n} — tuning jobs cannot be edited; the job keeps the old value "
        f"(--replace {desired.name} re-tunes to apply it)"
        for n in notes
    ]


def _failure(job: ObservedJob) -> str:
    msg = job.error_message or "no error message"
    code = f" (code {job.error_code})" if job.error_code is not None else ""
    return f"{msg}{code}"


# -- the planner --------------------------------------------------------------------------------
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
) -> Plan:
    """Decide, per manifest name, what apply must do. Pure.

    `prune`: the manifests are the stack's whole set, so a model without one is removed (its
    running job cancelled, its entry forgotten); a run over a subset leaves such models alone.
    `prune_unrecorded`: jobs of the stack that this state has no record of (another checkout's,
    or a state that is new) may be cancelled too; by default they are only reported.

    Problems that forbid applying (a protected model that would be replaced or cancelled, an
    unknown --target) raise PlanError; with `strict=False` they are returned in `errors` instead
    (for `status`, which reports rather than refuses)."""
    by_name = jobs_by_name(observation, stack, state)
    recorded = set(state.models) | {j.name for j in state.journal}
    desired_by_name = {d.name: d for d in desired}
    known = set(desired_by_name) | set(by_name) | set(state.models)
    owners: dict[str, list[str]] = defaultdict(list)
    for owner, owned in state.models.items():
        for adopted_job in owned.adopted:
            owners[adopted_job].append(owner)
    unknown_targets = sorted(set(targets) - known)
    unknown_replace = sorted(set(replace) - set(desired_by_name))
    problems: list[str] = []
    if unknown_targets:
        problems.append(f"--target names nothing in the manifests or the state: {', '.join(unknown_targets)}")
    if unknown_replace:
        problems.append(f"--replace needs a manifest of that name: {', '.join(unknown_replace)}")
    for adopted_job, names in sorted(owners.items()):
        if len(names) > 1:
            problems.append(f"the state adopts {adopted_job} under several names ({', '.join(sorted(names))}); "
                            "fix the state (reconciler state pull/push) so that one name adopts it")
    scope = set(targets) if targets else known
    changes: list[Change] = []
    warnings: list[str] = list(observation.warnings)
    moves = _detect_moves(desired_by_name, by_name, recorded, scope, set(replace))
    scope -= set(moves.values())
    if not prune:
        # A subset of the manifests: a model without a manifest here may well have one elsewhere.
        left = sorted(n for n in scope if n not in desired_by_name)
        scope -= set(left)
        if left:
            warnings.append(
                f"partial run: {len(left)} model(s) of stack {stack} have no manifest among those read "
                f"and are left alone ({', '.join(left[:10])}{', …' if len(left) > 10 else ''}); plan the "
                "whole manifest set, or pass --prune, to remove models whose manifest is gone")
        for name, old in sorted(moves.items()):
            del moves[name]
            by_name[old], by_name[name] = by_name.pop(name), []
            scope.discard(name)
            changes.append(Change(
                action="noop", name=name, parent=desired_by_name[name].parent,
                reason=f"looks renamed from {old} (its job has exactly this spec); not creating a second "
                       "job — plan the whole manifest set (or pass --prune) to move it"))
    for name in sorted(scope):
        jobs = sorted(by_name.get(name, []), key=lambda j: j.sort_key)
        entry = state.models.get(name)
        if name in moves:
            old = moves[name]
            keep = _newest([j for j in jobs if j.state_class in (StateClass.LIVE, StateClass.SUCCEEDED)])
            assert keep is not None
            changes.append(Change(
                action="move", name=name, moved_from=old, parent=desired_by_name[name].parent,
                reason=f"renamed from {old}: {keep.name} has exactly this spec; the state entry moves "
                       "and the job is adopted, nothing is re-tuned",
                job=keep.name, job_state=keep.state, spec_hash=keep.spec_hash,
                adopt_jobs={j.name: j.spec_hash or "" for j in jobs},
            ))
        else:
            jobs, duplicates = _without_request_duplicates(name, jobs)
            left_alone: list[Change] = []
            if name not in recorded and not prune_unrecorded:
                jobs, left_alone = _unrecorded(name, jobs, stack, name in desired_by_name, warnings)
            if name in desired_by_name:
                planned = _plan_desired(desired_by_name[name], jobs, entry, stack, name in replace, problems, warnings)
            else:
                planned = _plan_orphan(name, jobs, entry, problems, warnings)
            changes.extend(duplicates + (planned or left_alone))
    if problems and strict:
        raise PlanError("\n".join(problems))
    table = dict(TRAINING_PRICE_PER_MILLION) | dict(prices or {})
    changes = [_with_cost(c, desired_by_name[c.name], table) if c.action in CREATING else c for c in changes]
    plan = Plan(
        prune=prune,
        prune_unrecorded=prune_unrecorded,
        errors=problems,
        stack=stack,
        parents=sorted(observation.parents),
        targets=sorted(targets),
        replace=sorted(replace),
        state_lineage=state.lineage if state.serial else None,
        state_serial=state.serial,
        changes=changes,
        warnings=warnings,
        fingerprint="",
        desired=[d.to_dict() for d in desired if d.name in scope or d.name in moves],
    )
    return plan.model_copy(update={"fingerprint": fingerprint(plan)})


def request_duplicates(jobs: Iterable[ObservedJob]) -> dict[str, str]:
    """Jobs made for a create intent that already has a job: job → the job kept.

    Two jobs carry one request id when two runs raced (two checkouts, two state files) or a
    create the client gave up on was finished by the server after a retry. The oldest job of
    the intent that is running or succeeded is kept — it is the furthest on — and every other
    job of the intent is a duplicate: left out of the model's history, and cancelled, if it
    runs, by whichever run sees it."""
    groups: dict[str, list[ObservedJob]] = defaultdict(list)
    for job in jobs:
        rid = job.labels.get(LABEL_REQUEST) if job.managed else None
        if rid:
            groups[rid].append(job)
    out: dict[str, str] = {}
    for group in groups.values():
        if len(group) < 2:
            continue
        ordered = sorted(group, key=lambda j: j.sort_key)
        keep = next((j for j in ordered if j.state_class in (StateClass.LIVE, StateClass.SUCCEEDED)), None)
        if keep is None:
            continue
        out.update({j.name: keep.name for j in ordered if j is not keep})
    return out


def _without_request_duplicates(name: str, jobs: list[ObservedJob]) -> tuple[list[ObservedJob], list[Change]]:
    """The model's jobs without the duplicates of a create intent, and a cancel for each
    duplicate — even on a protected model: the intent keeps its older job."""
    dups = request_duplicates(jobs)
    cancels = [Change(action="cancel", name=name, parent=j.parent, job=j.name, job_state=j.state,
                      cancel_jobs=[j.name],
                      reason=f"duplicate of {dups[j.name]} (same create request "
                             f"{j.labels.get(LABEL_REQUEST)}; two runs raced): the younger is cancelled")
               for j in jobs if j.name in dups and j.state_class is StateClass.LIVE and not _foreign(j)]
    return [j for j in jobs if j.name not in dups], cancels


def _unrecorded(
    name: str, jobs: list[ObservedJob], stack: str, has_manifest: bool, warnings: list[str]
) -> tuple[list[ObservedJob], list[Change]]:
    """For a model this state has no record of: its running jobs are taken out of what may be
    cancelled, and said so with the commands that adopt or prune them."""
    running = [j for j in jobs if j.state_class is StateClass.LIVE and not _foreign(j)]
    if not running:
        return jobs, []
    if has_manifest:
        # With a manifest, the jobs are found and kept (a lost state never makes a duplicate);
        # only a cancel of one of them is withheld, by marking them as not ours to cancel.
        marked = [dataclasses.replace(j, labels={**j.labels, _UNRECORDED: "true"}) if j in running else j
                  for j in jobs]
        return marked, []
    listed = ", ".join(j.name for j in running)
    warnings.append(
        f"{name}: running job(s) {listed} of stack {stack} are not recorded in this state (another "
        f"checkout's, or a new or lost state); not cancelling them. Adopt with a manifest named {name} "
        f"(or `reconciler import JOB --name {name}`), or cancel with `apply --prune-unrecorded`")
    return [j for j in jobs if j not in running], [Change(
        action="noop", name=name, parent=running[-1].parent, job=running[-1].name, job_state=running[-1].state,
        reason="running job(s) not recorded in this state; left alone (see the warning)")]


def jobs_by_name(observation: Observation, stack: str, state: State) -> dict[str, list[ObservedJob]]:
    """The jobs of each model of the stack: by their labels, plus the jobs the state says were
    adopted (`import`, or a rename) — jobs cannot be relabelled, so adoption lives in the state.
    A job of another stack is never taken, whatever the state says; an adopted job without the
    reconciler's own labels is marked foreign (`reconciler-foreign`) and is never cancelled."""
    adopted: dict[str, tuple[str, str]] = {}
    for owner, entry in sorted(state.models.items()):
        for job_name, h in entry.adopted.items():
            adopted.setdefault(job_name, (owner, h))  # adopted twice: the first name (compute_plan says so)
    by_name: dict[str, list[ObservedJob]] = defaultdict(list)
    for job in observation.jobs:
        if job.name in adopted and not (job.managed and job.stack != stack):
            name, h = adopted[job.name]
            labels = {**job.labels, **ownership_labels(stack, name, h)}
            if not job.managed:
                labels[LABEL_FOREIGN] = "true"
            by_name[name].append(dataclasses.replace(job, labels=labels))
        elif job.managed and job.stack == stack and job.model_name:
            by_name[job.model_name].append(job)
    return by_name


def _foreign(job: ObservedJob) -> bool:
    return job.labels.get(LABEL_FOREIGN) == "true"


_UNRECORDED = "reconciler-unrecorded"  # never on a real job: a running job this state has no record of


def _withhold(name: str, jobs: list[tuple[ObservedJob, str]], warnings: list[str]) -> list[tuple[ObservedJob, str]]:
    """The cancels that may go ahead; the others (jobs adopted without our labels, jobs this state
    has no record of) are said in a warning, with what to do."""
    allowed = []
    for job, why in jobs:
        because = f" ({why})" if why else ""
        if _foreign(job):
            warnings.append(f"{name}: {job.name} was adopted without the reconciler's labels; not cancelling "
                            f"it{because} — cancel it yourself if intended")
        elif job.labels.get(_UNRECORDED) == "true":
            warnings.append(f"{name}: {job.name} is not recorded in this state (another checkout's, or a new "
                            f"or lost state); not cancelling it{because} — `apply --prune-unrecorded` would")
        else:
            allowed.append((job, why))
    return allowed


def _detect_moves(
    desired: dict[str, DesiredModel],
    by_name: dict[str, list[ObservedJob]],
    recorded: set[str],
    scope: set[str],
    forced: set[str],
) -> dict[str, str]:
    """Renames: a manifest with no job whose spec hash matches the live or succeeded job of
    exactly one orphan name (a name without a manifest) that this state has a record of — never
    another checkout's model. Returns new name → old name, and moves the old name's jobs to the
    new one in `by_name` (relabelled, as adoption will record)."""
    moves: dict[str, str] = {}
    # An old name may lie outside --target.
    orphans = {n for n in by_name if n not in desired and n in recorded}
    for name in sorted(n for n in desired if n in scope and n not in forced and not by_name.get(n)):
        h = desired[name].spec_hash
        matches = [o for o in sorted(orphans) if any(
            j.spec_hash == h and j.state_class in (StateClass.LIVE, StateClass.SUCCEEDED) for j in by_name[o])]
        if len(matches) != 1:
            continue
        old = matches[0]
        orphans.discard(old)
        moves[name] = old
        by_name[name] = [dataclasses.replace(j, labels={**j.labels, LABEL_NAME: name}) for j in by_name.pop(old)]
    return moves


def _plan_desired(
    d: DesiredModel,
    jobs: list[ObservedJob],
    entry: ModelEntry | None,
    stack: str,
    forced: bool,
    problems: list[str],
    warnings: list[str],
) -> list[Change]:
    h = d.spec_hash
    unknown = [j for j in jobs if j.state_class is StateClass.UNKNOWN]
    if unknown:
        job = unknown[-1]
        warnings.append(
            f"{d.name}: job {job.name} is in state {job.state!r}, which this version does not know; "
            "not acting on this model"
        )
        return [Change(action="noop", name=d.name, reason=f"job in unknown state {short_state(job.state)}",
                       parent=d.parent, job=job.name, job_state=job.state, spec_hash=h)]
    def data_matches(job: ObservedJob) -> bool:
        if not d.pin_datasets:
            return True
        have = job.data_hash or (entry.data_hashes.get(job.name) if entry else None)
        return have is None or have == d.data_hash  # no record: pinned from now on, no re-tune

    current = [j for j in jobs if j.spec_hash == h and data_matches(j)]
    live_other = [j for j in jobs if j not in current and j.state_class is StateClass.LIVE]
    rid = request_id(stack, d.name, h, [j.name for j in jobs])

    def creating(action: ActionType, reason: str, old: ObservedJob | None, cancel: list[ObservedJob],
                 diff: list[FieldChange] | None = None) -> Change:
        if d.protect and cancel:
            warnings.extend(f"{d.name}: protected; not cancelling {j.name}" for j in cancel)
            cancel = []
        cancel = [j for j, _ in _withhold(d.name, [(j, "") for j in cancel], warnings)]
        return Change(
            action=action, name=d.name, reason=reason, parent=d.parent,
            job=old.name if old else None, job_state=old.state if old else None, spec_hash=h,
            request=d.request_body(stack), request_id=rid,
            cancel_jobs=[j.name for j in cancel], diff=diff or [],
        )

    newest = _newest(jobs)
    if forced:
        if d.protect and jobs:
            problems.append(f"{d.name} ({d.source}): protected (protect: true); --replace refused")
            return []
        live = [j for j in jobs if j.state_class is StateClass.LIVE]
        if not jobs:
            return [creating("create", "forced by --replace", None, live)]
        latest_current = _newest(current)
        in_use = [j for j in current if j.state_class in (StateClass.LIVE, StateClass.SUCCEEDED)]
        if latest_current is not None and not in_use and latest_current.state_class in (
                StateClass.FAILED, StateClass.CANCELLED):
            # The spec has not changed and its job failed or was cancelled: a retry by request.
            what = "failed" if latest_current.state_class is StateClass.FAILED else "was cancelled"
            return [creating("recreate", f"forced by --replace: {latest_current.name} {what}; tuning again",
                             latest_current, live)]
        return [creating("replace", "forced by --replace", newest, live)]

    alive = [j for j in current if j.state_class in (StateClass.LIVE, StateClass.SUCCEEDED)]
    if alive:
        # The newest live-or-succeeded job of the spec is current: a live one newer than a
        # succeeded one is a re-tune in progress (--replace), the succeeded one serves meanwhile.
        keep = _newest(alive)
        assert keep is not None
        older_ok = _newest([j for j in alive if j is not keep and j.state_class is StateClass.SUCCEEDED])
        if keep.state_class is StateClass.SUCCEEDED:
            reason = "up to date"
        else:
            reason = f"tuning in progress ({short_state(keep.state)})"
            if older_ok is not None:
                reason += f"; {older_ok.name} keeps serving until it succeeds"
        newest_any = _newest(current)
        error = None
        if newest_any is not None and newest_any.state_class is StateClass.FAILED and newest_any.sort_key > keep.sort_key:
            reason += f"; the latest attempt {newest_any.name} failed"
            error = _failure(newest_any)
        notes = _cosmetic_notes(d, keep, entry)
        if d.pin_datasets and not (keep.data_hash or (entry and entry.data_hashes.get(keep.name))):
            notes.append("datasets pinned from now on: the data this job was tuned on is recorded at this "
                         "apply; a later upload of different data re-tunes")
        out = [Change(action="noop", name=d.name, reason=reason, parent=d.parent, job=keep.name,
                      job_state=keep.state, spec_hash=h, notes=notes, error=error)]
        duplicates = [j for j in alive if j is not keep and j.state_class is StateClass.LIVE]
        out += _cancels(d, [(j, f"duplicate job for the same spec (keeping {keep.name})") for j in duplicates]
                        + [(j, f"superseded by spec {h}") for j in live_other], warnings)
        return out

    latest = _newest(current)
    if latest is not None and latest.state_class is StateClass.CANCELLING:
        return [Change(action="noop", name=d.name, reason="job is being cancelled; the next run re-creates it",
                       parent=d.parent, job=latest.name, job_state=latest.state, spec_hash=h)] + _cancels(
            d, [(j, f"superseded by spec {h}") for j in live_other], warnings)
    if latest is not None and latest.state_class is StateClass.FAILED:
        failures = sum(1 for j in current if j.state_class is StateClass.FAILED)
        if failures < d.max_attempts:
            change = creating(
                "recreate",
                f"attempt {failures + 1} of {d.max_attempts} (retryPolicy) after failure: {_failure(latest)}",
                latest, live_other)
            return [change]
        return [Change(
            action="noop", name=d.name,
            reason=f"tuning failed ({short_state(latest.state)}); not re-tuned on its own — "
                   f"fix the cause, then run with --replace {d.name}",
            parent=d.parent, job=latest.name, job_state=latest.state, spec_hash=h, error=_failure(latest),
        )] + _cancels(d, [(j, f"superseded by spec {h}") for j in live_other], warnings)
    if latest is not None and latest.state_class is StateClass.CANCELLED:
        return [creating("recreate", f"the job of this spec, {latest.name}, was cancelled; tuning again", latest, live_other)]

    # No job for the current spec.
    if newest is not None:
        if d.protect:
            problems.append(
                f"{d.name} ({d.source}): protected (protect: true) but its spec changed; "
                "revert the change or remove protect first"
            )
            return []
        serving = _newest([j for j in jobs if j.state_class is StateClass.SUCCEEDED])
        if newest.spec_hash == h:  # same spec: only the pinned data differ
            old_pins = entry.dataset_pins if entry is not None else {}
            diff = explain_diff({"datasetPins": old_pins}, {"datasetPins": d.pins()}) if old_pins else []
            parts = {f.path.split(".")[1] for f in diff if f.path.count(".") >= 2}
            which = " and ".join(sorted({"validation data" if p.startswith("validation") else "training data"
                                         for p in parts})) or "training data"
            reason = f"{which} changed (a new upload to the same URI)"
        else:
            diff = explain_diff(_old_spec(newest, entry, d), d.tuning_spec())
            reason = "spec changed"
        if serving is not None:
            reason += f"; {serving.name} keeps serving until the new job succeeds"
        return [creating("replace", reason, newest, live_other, diff)]
    if entry is not None and entry.job:
        return [creating("create", f"job {entry.job} in the state was not found in the API", None, [])]
    return [creating("create", "new model", None, [])]


def _with_cost(change: Change, d: DesiredModel, prices: Mapping[str, float]) -> Change:
    """The change with an estimate of what its tuning job will cost (training tokens only)."""
    if d.training_bytes is None:
        return change.model_copy(update={"cost_note": "dataset size unknown (pinDatasets or --estimate-cost reads it)"})
    info = lookup(d.base_model)
    price = prices.get(info.model_id if info else d.base_model)
    if price is None:
        return change.model_copy(update={"cost_note": f"no price for {d.base_model} (set prices: in reconciler.yaml)"})
    hp = dict(d.hyper_parameters)
    epochs = int(hp.get("epochCount", ASSUMED_EPOCHS))
    tokens = d.training_bytes / BYTES_PER_TOKEN
    cost = round(tokens * epochs / 1_000_000 * price, 2)
    assumed = "" if "epochCount" in hp else " (epochs assumed)"
    note = f"≈ {tokens:,.0f} tokens × {epochs} epochs{assumed} × ${price:.2f} per 1M"
    return change.model_copy(update={"cost_usd": cost, "cost_note": note})


def _cancels(d: DesiredModel, jobs: list[tuple[ObservedJob, str]], warnings: list[str]) -> list[Change]:
    """Cancel actions for extra running jobs of a model (none for a protected model, and never
    for a foreign job: one adopted without the reconciler's labels)."""
    jobs = _withhold(d.name, jobs, warnings)
    if d.protect:
        warnings.extend(f"{d.name}: protected; not cancelling {j.name} ({why})" for j, why in jobs)
        return []
    return [Change(action="cancel", name=d.name, reason=why, parent=d.parent, job=j.name,
                   job_state=j.state, cancel_jobs=[j.name]) for j, why in jobs]


def _plan_orphan(
    name: str, jobs: list[ObservedJob], entry: ModelEntry | None, problems: list[str], warnings: list[str]
) -> list[Change]:
    parent = entry.parent if entry else (jobs[-1].parent if jobs else None)
    if any(j.state_class is StateClass.UNKNOWN for j in jobs):
        warnings.append(f"{name}: a job is in a state this version does not know; not acting on it")
        return [Change(action="noop", name=name, reason="job in unknown state", parent=parent)]
    foreign = [j for j in jobs if j.state_class is StateClass.LIVE and _foreign(j)]
    warnings.extend(f"{name}: manifest removed; {j.name} was adopted without the reconciler's labels and is "
                    "not cancelled — cancel it yourself if intended" for j in foreign)
    live = [j for j in jobs if j.state_class is StateClass.LIVE and not _foreign(j)]
    if live:
        # The state says whether the model is protected; without a state entry, the jobs' label.
        protected = entry.protect if entry is not None else any(j.protected for j in live)
        if protected:
            problems.append(
                f"{name}: protected (protect: true) but its manifest is gone; restore the manifest, "
                "set protect: false and apply before removing it"
            )
            return []
        return [Change(action="cancel", name=name, reason="manifest removed; job still running",
                       parent=parent, job=j.name, job_state=j.state, cancel_jobs=[j.name]) for j in live]
    if any(j.state_class is StateClass.CANCELLING for j in jobs):
        return [Change(action="noop", name=name, reason="manifest removed; cancel in progress", parent=parent)]
    if entry is not None:
        last = jobs[-1] if jobs else None
        reason = "manifest removed; its jobs have finished" if not foreign else "manifest removed; adopted job left running"
        return [Change(action="forget", name=name, reason=reason,
                       parent=parent, job=last.name if last else entry.job,
                       job_state=last.state if last else entry.state)]
    return []


# -- state derivation ---------------------------------------------------------------------------
def derive_entry(
    name: str,
    jobs: Sequence[ObservedJob],
    desired: DesiredModel | None,
    previous: ModelEntry | None,
) -> ModelEntry | None:
    """The state entry of one name from the jobs the API shows (pure).

    `job` is the newest job of the desired spec (or the newest job); the endpoint in service is
    that job's when it succeeded, else the newest succeeded job's: a replaced model keeps serving
    until its replacement succeeds.
    """
    if desired is None and previous is None:
        return None  # orphans are not adopted into the state; leaving it is the forget action's job
    duplicates = request_duplicates(jobs)  # other jobs of one create request: cancelled, never current
    ordered = sorted((j for j in jobs if j.name not in duplicates), key=lambda j: j.sort_key)
    want = desired.spec_hash if desired else (previous.spec_hash if previous else None)
    current = _newest([j for j in ordered if j.spec_hash == want]) or _newest(ordered)
    parent = desired.parent if desired else (previous.parent if previous else "")
    if current is None:
        if previous is None:
            return None
        return previous.model_copy(update={"parent": parent})
    succeeded = sorted((j for j in ordered if j.state_class is StateClass.SUCCEEDED),
                       key=lambda j: (j is current, j.sort_key), reverse=True)  # current first, then newest
    if desired is not None and desired.smoke_gate:
        # A new endpoint serves only once its smoke test passed; what served before keeps serving.
        def cleared(job: ObservedJob) -> bool:
            if previous is None:
                return False
            record = previous.smoke_tests.get(job.name)
            return previous.serving_job == job.name or (record is not None and record.passed)

        succeeded = [j for j in succeeded if cleared(j)]
    # A succeeded job the API shows without an endpoint (an incomplete answer) never displaces one
    # that has an endpoint: consumers of the state would lose a working endpoint.
    succeeded = [j for j in succeeded if j.endpoint] or succeeded
    serving = succeeded[0] if succeeded else None
    if previous is not None and previous.job == current.name and previous.spec is not None:
        spec, cosmetic = previous.spec, previous.cosmetic
    elif desired is not None and current.spec_hash == desired.spec_hash:
        # A job the state did not know (a lost state): what it was made with is on the job.
        cosmetic = current.cosmetic()
        cosmetic["labels"] = {k: v for k, v in cosmetic["labels"].items() if k in dict(desired.labels)}
        spec = desired.tuning_spec()
    else:
        project, region = _project_region(parent or current.parent)
        spec, cosmetic = current.tuning_spec(project, region), current.cosmetic()
    data_hashes = {j.name: j.data_hash or (previous.data_hashes.get(j.name) if previous else None)
                   for j in ordered}
    pins = previous.dataset_pins if previous else {}
    if (desired is not None and desired.pin_datasets and current.spec_hash == desired.spec_hash
            and data_hashes.get(current.name) in (None, desired.data_hash)):
        data_hashes[current.name] = desired.data_hash  # the baseline: what it is tuned on
        pins = desired.pins()
    cancelling = [j.name for j in ordered if j.state_class is StateClass.CANCELLING]
    busy = (StateClass.LIVE, StateClass.CANCELLING, StateClass.UNKNOWN)
    watched = {j.parent for j in ordered if j.state_class in busy or j is current or j is serving}
    return ModelEntry(
        parent=parent,
        job=current.name,
        state=current.state,
        specHash=current.spec_hash,
        spec=spec,
        cosmetic=cosmetic,
        createTime=current.create_time or None,
        endTime=current.end_time or None,
        error=JobError(code=current.error_code, message=current.error_message)
        if current.error_message or current.error_code else None,
        tunedModel=Endpoint(model=serving.tuned_model, endpoint=serving.endpoint) if serving else None,
        servingJob=serving.name if serving else None,
        protect=desired.protect if desired else (previous.protect if previous else False),
        cancelRequested=cancelling,
        parents=sorted(watched | ({parent} if parent else set())),
        adopted=previous.adopted if previous else {},
        dataHashes={k: v for k, v in data_hashes.items() if v},
        datasetPins=pins,
        smokeTests={k: v for k, v in (previous.smoke_tests if previous else {}).items()
                    if any(j.name == k for j in ordered)},
    )


def derive_models(
    desired: Sequence[DesiredModel],
    observation: Observation,
    previous: State,
    *,
    stack: str,
    names: Iterable[str] | None = None,
) -> dict[str, ModelEntry]:
    """Every state entry, recomputed from an observation (for `names`, or all)."""
    by_name = jobs_by_name(observation, stack, previous)
    desired_by_name = {d.name: d for d in desired}
    all_names = set(desired_by_name) | set(by_name) | set(previous.models)
    chosen = set(names) if names is not None else all_names
    models = {k: v for k, v in previous.models.items() if k not in chosen}
    for name in sorted(chosen & all_names):
        entry = derive_entry(name, by_name.get(name, []), desired_by_name.get(name), previous.models.get(name))
        if entry is not None:
            models[name] = entry
    return dict(sorted(models.items()))
