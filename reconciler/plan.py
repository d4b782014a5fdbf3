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
    def key(self) -> tuple[Any, ...]:
        """What identifies the decision (for the stale-plan check): reasons and notes excluded."""
        return (self.action, self.name, self.job, self.spec_hash, self.request_id,
                tuple(sorted(self.cancel_jobs)), self.moved_from)


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


def fingerprint(changes: Iterable[Change], lineage: str | None, serial: int) -> str:
    keys = sorted(c.key for c in changes if c.action != "noop")
    payload = canonical_json({"changes": [list(k) for k in keys], "lineage": lineage, "serial": serial})
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
) -> Plan:
    """Decide, per manifest name, what apply must do. Pure.

    Problems that forbid applying (a protected model that would be replaced or cancelled, an
    unknown --target) raise PlanError; with `strict=False` they are returned in `errors` instead
    (for `status`, which reports rather than refuses)."""
    by_name = jobs_by_name(observation, stack, state)
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
    warnings: list[str] = []
    moves = _detect_moves(desired_by_name, by_name, state, scope, stack, set(replace))
    scope -= set(moves.values())
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
        elif name in desired_by_name:
            changes.extend(
                _plan_desired(desired_by_name[name], jobs, entry, stack, name in replace, problems, warnings)
            )
        else:
            changes.extend(_plan_orphan(name, jobs, entry, problems, warnings))
    if problems and strict:
        raise PlanError("\n".join(problems))
    table = dict(TRAINING_PRICE_PER_MILLION) | dict(prices or {})
    changes = [_with_cost(c, desired_by_name[c.name], table) if c.action in CREATING else c for c in changes]
    return Plan(
        errors=problems,
        stack=stack,
        parents=sorted(observation.parents),
        targets=sorted(targets),
        replace=sorted(replace),
        state_lineage=state.lineage if state.serial else None,
        state_serial=state.serial,
        changes=changes,
        warnings=warnings,
        fingerprint=fingerprint(changes, state.lineage if state.serial else None, state.serial),
        desired=[d.to_dict() for d in desired if d.name in scope],
    )


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


def _detect_moves(
    desired: dict[str, DesiredModel],
    by_name: dict[str, list[ObservedJob]],
    state: State,
    scope: set[str],
    stack: str,
    forced: set[str],
) -> dict[str, str]:
    """Renames: a manifest with no job whose spec hash matches the live or succeeded job of
    exactly one orphan name (a name without a manifest). Returns new name → old name, and moves
    the old name's jobs to the new one in `by_name` (relabelled, as adoption will record)."""
    moves: dict[str, str] = {}
    orphans = {n for n in by_name if n not in desired}  # an old name may lie outside --target
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
        warnings.extend(f"{d.name}: {j.name} was adopted without the reconciler's labels; not cancelling it "
                        "— cancel it yourself if intended" for j in cancel if _foreign(j))
        cancel = [j for j in cancel if not _foreign(j)]
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
    warnings.extend(f"{d.name}: {j.name} was adopted without the reconciler's labels; not cancelling it "
                    f"({why}) — cancel it yourself if intended" for j, why in jobs if _foreign(j))
    jobs = [(j, why) for j, why in jobs if not _foreign(j)]
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
    ordered = sorted(jobs, key=lambda j: j.sort_key)
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
