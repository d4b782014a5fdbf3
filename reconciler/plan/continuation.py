"""Continuations and spellings: what a manifest means against the jobs there are. Pure.

Two things are settled here before a model is planned (`plan_model`, called by
`cases._plan_name`):

- **Continuous tuning on another manifest** (`preTunedModel: {model: NAME}`). The planner puts
  the parent's tuned model in the request as `preTunedModel.tunedModelName`, so the child is
  the same spec as one that named that Model resource itself: same hash, same request. The
  tuned model is that of the parent's newest *succeeded* job of its *current* spec; until
  there is one (the parent is new, re-tuning or failed) the child is not created — it is a
  noop that says what it waits for, and its running or succeeded job stays. Since the hash
  covers the resolved name, a parent that is re-tuned gives the child a new spec: once the
  parent's new job succeeds, the child is replaced, and the reason says the parent changed.
- **Spellings the service cannot tell apart** (a proto3 `bool` that is `false` or unset). The
  hash keeps what the manifest wrote (recorded hashes must not move), so a job made from the
  other spelling carries another hash: the model is planned under the spelling its jobs carry
  (`spelled_as_jobs`), and adding `exportLastCheckpointOnly: false` to an applied manifest
  changes nothing.

Chains (a continuation of a continuation) resolve from the root; cycles and unknown names are
refused when the manifests are loaded (`manifest.reference_problems`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from reconciler.models import DesiredModel, StateClass, short_state
from reconciler.plan.ownership import OwnedJob, newest
from reconciler.plan.types import Action, Change, CreateJob
from reconciler.spec import as_data

WAITING = "waits for"  # how a held continuation's reason begins


class _Model(Protocol):
    """What this module needs of `cases.Model` (imported the other way round)."""

    @property
    def d(self) -> DesiredModel: ...

    @property
    def jobs(self) -> list[OwnedJob]: ...

    def noop(self, reason: str, job: OwnedJob | None = None, **extra: object) -> Any: ...


class _Inputs(Protocol):
    @property
    def desired(self) -> dict[str, DesiredModel]: ...

    @property
    def by_name(self) -> dict[str, list[OwnedJob]]: ...


def spelled_as_jobs(d: DesiredModel, jobs: Sequence[OwnedJob]) -> DesiredModel:
    """`d` under the spelling of its spec that its jobs carry (the newest such job's), when no
    job carries its own: a `false` bool and an unset one are the same spec to the service."""
    hashes = {j.spec_hash for j in jobs}
    if d.spec_hash in hashes or not jobs:
        return d
    equivalents = d.equivalents()
    carried = [j for j in jobs if j.spec_hash in equivalents]
    latest = newest(carried)
    return equivalents[latest.spec_hash] if latest is not None and latest.spec_hash else d


def resolve(d: DesiredModel, desired: Mapping[str, DesiredModel], by_name: Mapping[str, Sequence[OwnedJob]],
            seen: frozenset[str] = frozenset()) -> tuple[DesiredModel | None, str]:
    """`d` with its `preTunedModel.model` replaced by the parent's tuned model, and the
    spelling its jobs carry; or None and what it waits for."""
    if d.reference is None:
        return spelled_as_jobs(d, by_name.get(d.name, ())), ""
    parent = desired.get(d.reference)
    if parent is None or d.name in seen:
        return None, f"{WAITING} {d.reference}, which has no manifest among those read"
    resolved_parent, why = resolve(parent, desired, by_name, seen | {d.name})
    if resolved_parent is None:
        return None, f"{WAITING} {parent.name} ({why})"
    jobs = by_name.get(parent.name, ())
    source = _tuned_model_of(resolved_parent, jobs)
    if source is None:
        return None, f"{WAITING} {parent.name}: {_not_ready(resolved_parent, jobs)}"
    data = as_data(d.spec)
    checkpoint = (data.get("preTunedModel") or {}).get("checkpointId")
    data["preTunedModel"] = {"tunedModelName": source, **({"checkpointId": checkpoint} if checkpoint else {})}
    child = dataclasses.replace(d, spec=d.kind.from_data(data))
    return spelled_as_jobs(child, by_name.get(d.name, ())), ""


def _current_jobs(parent: DesiredModel, jobs: Sequence[OwnedJob]) -> list[OwnedJob]:
    return [j for j in jobs if j.spec_hash == parent.spec_hash]


def _tuned_model_of(parent: DesiredModel, jobs: Sequence[OwnedJob]) -> str | None:
    """The tuned model (Model resource name) of the parent's newest succeeded job of its current
    spec — a job this state recorded first, as the planner keeps it."""
    done = [j for j in _current_jobs(parent, jobs) if j.state_class is StateClass.SUCCEEDED and j.tuned_model]
    job = newest([j for j in done if j.recorded]) or newest(done)
    return job.tuned_model if job is not None else None


def _not_ready(parent: DesiredModel, jobs: Sequence[OwnedJob]) -> str:
    latest = newest(_current_jobs(parent, jobs))
    if latest is None:
        return "its current spec has no job yet; created once it has succeeded (a later apply, or apply --wait)"
    if latest.state_class is StateClass.SUCCEEDED:
        return f"its job {latest.name} succeeded without a tuned model in the API's answer"
    if latest.state_class in (StateClass.FAILED, StateClass.CANCELLED):
        return f"its job {latest.name} ended {short_state(latest.state)}; nothing to continue from"
    return (f"its job {latest.name} is {short_state(latest.state)}; created once it has succeeded (a later "
            "apply, or apply --wait)")


def plan_model(m: Any, inputs: _Inputs, ctx: Any, plan: Callable[[Any, Any], list[Change]]) -> list[Change]:
    """Plan one model with a manifest (`plan(model, ctx)` is `cases.plan_desired`), after
    resolving its continuation and spelling; a continuation whose parent has no tuned model yet
    is held: a noop saying what it waits for (its jobs stay as they are)."""
    d, reason = resolve(m.d, inputs.desired, inputs.by_name)
    if d is None:
        return [_held(m, reason)]
    changes = plan(dataclasses.replace(m, d=d), ctx)
    return [_said(c, m.d) for c in changes] if m.d.reference else changes


def _held(m: _Model, reason: str) -> Any:
    serving = newest([j for j in m.jobs if j.state_class in (StateClass.LIVE, StateClass.SUCCEEDED)])
    if serving is not None:
        reason += f"; {serving.name} stays as it is meanwhile"
    return m.noop(reason, serving)


def _said(change: Change, d: DesiredModel) -> Change:
    """A continuation re-tuned because its parent was: the reason says so."""
    if not isinstance(change, CreateJob) or change.action is not Action.REPLACE:
        return change
    moved = [f for f in change.diff if f.path.startswith("preTunedModel")]
    if not moved:
        return change
    now = (change.request or {}).get("preTunedModel", {}).get("tunedModelName")
    return change.model_copy(update={
        "reason": f"{d.reference} was re-tuned: continuing from its new tuned model {now}; {change.reason}"})


def waiting(changes: Sequence[Change]) -> list[str]:
    """The models a plan holds until their parent has a tuned model (what apply --wait may plan
    again once the parents' jobs have succeeded)."""
    return [c.name for c in changes if c.action is Action.NOOP and (c.reason or "").startswith(WAITING)]


def resolved_models(desired: Mapping[str, DesiredModel],
                    by_name: Mapping[str, Sequence[OwnedJob]]) -> dict[str, DesiredModel]:
    """Every model as the planner plans it (a held continuation as written)."""
    return {name: resolve(d, desired, by_name)[0] or d for name, d in desired.items()}
