"""The lifecycle of base models in the plan: closed to new tuning, retiring, retired. Pure.

`compute_plan` calls `review` once with the day it plans for and the catalog (the session passes
today's date and the merged catalog; a caller that passes neither, as the golden tests, sees no
lifecycle at all). The rules, from the model-versions page: new tuning closes one month before a
base model retires, and a tuned model stops serving when its base model retires.

- A create, replace or recreate whose request tunes a model closed to new tuning on `today` is a
  problem (apply refuses the plan), with the dates and the successor to move to.
- A model served by a job whose base model retires within `warning_days` is a warning (every plan
  format carries warnings), with the date and the successor if the catalog knows one; so is a
  new job of such a model.
- After the retirement date the served job is no longer serving: a warning, a note on the
  model's changes, and `no longer serving` in a no-op's reason (which `status` shows).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Protocol

from reconciler.catalog import BaseModelInfo, Catalog
from reconciler.models import DesiredModel, StateClass
from reconciler.plan.ownership import OwnedJob, newest
from reconciler.plan.types import Change, CreateJob, NoChange

DEFAULT_WARNING_DAYS = 30


class Findings(Protocol):
    """Where the planner collects what forbids applying (problems) and what is worth saying."""

    problems: list[str]
    warnings: list[str]


def review(changes: list[Change], desired: Mapping[str, DesiredModel], jobs: Mapping[str, Sequence[OwnedJob]],
           found: Findings, *, today: date | None, catalog: Catalog | None,
           warning_days: int = DEFAULT_WARNING_DAYS) -> list[Change]:
    """The changes with the lifecycle said; problems and warnings added to `found`."""
    if today is None or catalog is None:
        return changes
    rules = _Rules(catalog, today, warning_days, found)
    for change in changes:
        if isinstance(change, CreateJob):
            rules.check_create(change, base_of(change.name, desired))
    notes: dict[str, str] = {}
    for name in dict.fromkeys(c.name for c in changes):
        if name in desired:
            note = rules.check_serving(name, jobs.get(name, ()), desired[name])
            if note:
                notes[name] = note
    return [_annotated(c, notes[c.name]) if c.name in notes else c for c in changes]


def base_of(name: str, desired: Mapping[str, DesiredModel]) -> str | None:
    """The base model at the root of a chain of continuations (`preTunedModel: {model: NAME}`):
    a tuned model shares its base model's lifecycle. None when a link names a tuned model by
    resource, whose base model the manifests do not say."""
    seen: set[str] = set()
    d = desired.get(name)
    while d is not None and d.reference is not None and d.name not in seen:
        seen.add(d.name)
        d = desired.get(d.reference)
    return (d.base_model or None) if d is not None else None


def _served_base(job: OwnedJob) -> str | None:
    """A job's base model; a continuation's is `preTunedModel.baseModel`, which the service fills."""
    pre = job.job.spec.get("preTunedModel")
    from_pre = pre.get("baseModel") if isinstance(pre, dict) else None
    return job.job.base_model or (from_pre if isinstance(from_pre, str) else None)


def _annotated(change: Change, note: str) -> Change:
    update: dict[str, object] = {"notes": [*change.notes, note]}
    if isinstance(change, NoChange):
        update["reason"] = f"{change.reason}; {note}"
    return change.model_copy(update=update)


class _Rules:
    def __init__(self, catalog: Catalog, today: date, warning_days: int, found: Findings) -> None:
        self.catalog, self.today, self.warning_days, self.found = catalog, today, warning_days, found

    def successor(self, info: BaseModelInfo) -> str:
        nxt = self.catalog.successor(info.model_id, self.today)
        return f"successor {nxt}" if nxt else "no successor is known (`reconciler models` lists the models)"

    def retires(self, info: BaseModelInfo) -> str:
        if info.retirement_date is None:
            return "retired (no date known)"
        verb = "retired" if info.retired(self.today) else "retires"
        return f"{verb} {info.retirement_date.isoformat()}{' or later' if info.retirement_earliest else ''}"

    def days_left(self, info: BaseModelInfo) -> int | None:
        """Days until a retirement within the warning window (None: none within it, or passed)."""
        if info.retirement_date is None or info.retired(self.today):
            return None
        left = (info.retirement_date - self.today).days
        return left if left <= self.warning_days else None

    def check_create(self, change: CreateJob, root: str | None) -> None:
        base = change.request.get("baseModel") or root  # a continuation tunes its chain's base model
        info = self.catalog.lookup(base) if isinstance(base, str) else None
        if info is None:
            return  # a tuned model named by resource (its base unknown here), or a model the catalog does not know
        if info.closed(self.today):
            since = f" since {info.tuning_closes.isoformat()}" if info.tuning_closes else ""
            self.found.problems.append(
                f"{change.name}: {info.model_id} is closed to new tuning{since} ({self.retires(info)}); "
                f"{self.successor(info)} — set spec.baseModel to a model open to tuning")
            return
        left = self.days_left(info)
        if left is not None:
            self.found.warnings.append(
                f"{change.name}: the new job tunes {info.model_id}, which {self.retires(info)} (in {left} "
                f"day(s)); the tuned model stops serving then; {self.successor(info)}")

    def check_serving(self, name: str, jobs: Sequence[OwnedJob], d: DesiredModel) -> str | None:
        """A warning for the job serving `name` when its base model retires soon or has retired;
        returns the note for the model's changes when it no longer serves."""
        serving = newest([j for j in jobs if j.state_class is StateClass.SUCCEEDED])
        info = self.catalog.lookup(_served_base(serving) or "") if serving is not None else None
        if serving is None or info is None:
            return None
        moving = self.catalog.lookup(d.base_model or "")
        if moving is not None and moving.model_id != info.model_id:
            todo = f"the manifest already moves to {moving.model_id}"
        else:
            todo = f"{self.successor(info)}: change spec.baseModel and apply"
        if info.retired(self.today):
            self.found.warnings.append(
                f"{name}: {serving.name} is no longer serving — its base model {info.model_id} "
                f"{self.retires(info)} (a tuned model stops serving with its base model); {todo}")
            return f"no longer serving: base model {info.model_id} {self.retires(info)}"
        left = self.days_left(info)
        if left is not None:
            self.found.warnings.append(
                f"{name}: base model {info.model_id} {self.retires(info)} (in {left} day(s)); {serving.name} "
                f"stops serving then; {todo} (the old endpoint keeps serving until the new job has succeeded)")
        return None
