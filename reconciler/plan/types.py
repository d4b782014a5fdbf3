"""What a plan is made of: the closed set of actions, one change type per action, the `Plan`,
its fingerprint and the request id of a create intent. Pure.

`Change` is a discriminated union on `action`: each variant carries exactly the fields its action
needs (a create its request and request id, a cancel the jobs it cancels, a move its old name),
so the executor and the renderers dispatch with `match` and `assert_never` instead of asserting
which optional fields are set. On the wire (plan JSON, saved plans) every change still has every
documented field, absent ones as null or empty (docs/plan-format.md: fields are only added).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_serializer, model_validator

from reconciler import __version__
from reconciler.kinds import FieldChange as FieldChange
from reconciler.models import ObservedJob, canonical_json

PLAN_FORMAT_VERSION = 1


class Action(str, enum.Enum):
    """The closed set of actions. A new one is added here, as a `Change` variant below, in the
    executor's `match` and in render's `style()` — the type checker finds a missed one."""

    CREATE = "create"  # no job exists for the manifest
    REPLACE = "replace"  # the spec changed: a new job; the old one cancelled if running
    RECREATE = "recreate"  # the current spec's job was cancelled, or failed and may be retried
    MOVE = "move"  # a renamed manifest: the state entry moves, the job is adopted
    CANCEL = "cancel"  # a running job whose manifest is gone, superseded, or a duplicate
    FORGET = "forget"  # the manifest is gone and its jobs are finished: the entry leaves the state
    NOOP = "noop"  # nothing to do (notes say what cannot be applied)


ACTIONS: tuple[Action, ...] = tuple(Action)
CREATING: frozenset[Action] = frozenset({Action.CREATE, Action.REPLACE, Action.RECREATE})

# Every field a change has on the wire, in the documented order, with its value when absent.
WIRE_DEFAULTS: dict[str, Any] = {
    "parent": None, "job": None, "job_state": None, "spec_hash": None, "request": None, "request_id": None,
    "cancel_jobs": [], "moved_from": None, "adopt_jobs": {}, "diff": [], "notes": [], "error": None,
    "cost_usd": None, "cost_note": None,
}
# What apply acts on: the fingerprint covers these (reasons, notes and estimates only explain).
ACTED_ON = ("action", "name", "parent", "job", "spec_hash", "request", "request_id", "cancel_jobs",
            "moved_from", "adopt_jobs")


@dataclass(frozen=True)
class Observation:
    """What the API showed: the parents listed (all pages), every job found in them, and what
    the listing left out and why."""

    parents: tuple[str, ...]
    jobs: tuple[ObservedJob, ...]
    warnings: tuple[str, ...] = ()


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _ChangeBase(_Frozen):
    """Fields every change has."""

    name: str
    reason: str
    parent: str | None = None
    job: str | None = None  # the existing job it is about
    job_state: str | None = None
    notes: list[str] = Field(default_factory=list)
    error: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_wire(cls, data: Any) -> Any:
        """Accept the uniform wire form: a field another action has, at its absent value, is
        dropped; with any other value it is refused (extra fields are forbidden)."""
        if not isinstance(data, dict):
            return data
        return {k: v for k, v in data.items()
                if k in cls.model_fields or k == "action" or WIRE_DEFAULTS.get(k, object()) != v}

    @model_serializer(mode="wrap")
    def _to_wire(self, handler: Any) -> dict[str, Any]:
        own = handler(self)
        out = {"action": own.pop("action"), "name": own.pop("name"), "reason": own.pop("reason")}
        out.update({k: own.pop(k, default) for k, default in WIRE_DEFAULTS.items()})
        out.update(own)
        return out

    @property
    def jobs_to_cancel(self) -> list[str]:
        return []

    @property
    def key(self) -> dict[str, Any]:
        """Everything apply acts on (for the fingerprint)."""
        wire = self.model_dump()
        return {k: wire[k] for k in ACTED_ON}


class CreateJob(_ChangeBase):
    """create, replace or recreate: start a tuning job (and cancel what it supersedes)."""

    action: Literal[Action.CREATE, Action.REPLACE, Action.RECREATE]
    spec_hash: str
    request: dict[str, Any]
    request_id: str
    cancel_jobs: list[str] = Field(default_factory=list)
    diff: list[FieldChange] = Field(default_factory=list)
    cost_usd: float | None = None  # an estimate of the job's training cost
    cost_note: str | None = None  # how it was estimated, or why it could not be

    @property
    def jobs_to_cancel(self) -> list[str]:
        return self.cancel_jobs


class CancelJobs(_ChangeBase):
    action: Literal[Action.CANCEL]
    cancel_jobs: list[str] = Field(min_length=1)

    @property
    def jobs_to_cancel(self) -> list[str]:
        return self.cancel_jobs


class MoveEntry(_ChangeBase):
    """A renamed manifest: the old name's state entry moves, its jobs are adopted (job → hash)."""

    action: Literal[Action.MOVE]
    moved_from: str
    adopt_jobs: dict[str, str] = Field(default_factory=dict)
    spec_hash: str | None = None


class ForgetEntry(_ChangeBase):
    action: Literal[Action.FORGET]


class NoChange(_ChangeBase):
    action: Literal[Action.NOOP]
    spec_hash: str | None = None


Change = Annotated[CreateJob | CancelJobs | MoveEntry | ForgetEntry | NoChange, Field(discriminator="action")]
_CHANGE = TypeAdapter(Change)


def parse_change(data: dict[str, Any]) -> Change:
    """A change from its wire form (a saved plan, or keyword data in tests)."""
    return _CHANGE.validate_python(data)


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
    environment: str | None = None  # --env: the environment of reconciler.yaml it was planned for
    changes: list[Change]
    warnings: list[str] = Field(default_factory=list)
    fingerprint: str
    desired: list[dict[str, Any]] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)

    @property
    def actionable(self) -> list[Change]:
        return [c for c in self.changes if c.action is not Action.NOOP]

    @property
    def has_changes(self) -> bool:
        return bool(self.actionable)

    @property
    def cancel_count(self) -> int:
        return sum(len(c.jobs_to_cancel) for c in self.changes)

    @property
    def creates(self) -> list[CreateJob]:
        return [c for c in self.changes if isinstance(c, CreateJob)]

    @property
    def watched_names(self) -> set[str]:
        """The models `apply --wait` follows: those with a manifest in the plan, and those with an
        action. Not a model only named by a `noop` without a manifest (another checkout's jobs,
        left alone): this run neither waits for nor shows them."""
        return {str(d.get("name")) for d in self.desired} | {c.name for c in self.actionable}

    @property
    def request_ids(self) -> set[str]:
        """The create requests of this plan: a second job carrying one of them is a duplicate the
        run that made it cancels (`apply --wait` too, while it polls)."""
        return {c.request_id for c in self.creates}

    @property
    def estimated_cost(self) -> float:
        return round(sum(c.cost_usd or 0.0 for c in self.creates), 2)

    @property
    def cost_unknown(self) -> int:
        """Changes that start a tuning job but have no estimate."""
        return sum(1 for c in self.creates if c.cost_usd is None)

    def summary(self) -> dict[str, Any]:
        counts: dict[str, Any] = {action.value: 0 for action in ACTIONS}
        for change in self.changes:
            counts[change.action.value] += 1
        counts["jobs_to_cancel"] = self.cancel_count
        counts["changes"] = len(self.actionable)
        counts["estimated_cost_usd"] = self.estimated_cost
        counts["cost_unknown"] = self.cost_unknown
        return counts


def fingerprint(plan: Plan | dict[str, Any]) -> str:
    """What a saved plan is checked against: every action with the request it sends, the models
    it was made from, its options, the parents it lists (apply lists them again, with the user's
    credentials) and the state it read. Apply recomputes it over the saved file
    (an edited file is refused) and over a fresh plan (a stale one is refused)."""
    if isinstance(plan, dict):
        field, stack = plan.get, plan["stack"]
        changes = [parse_change(c) if isinstance(c, dict) else c for c in plan["changes"]]
    else:  # a fresh plan: its own fields, without dumping and parsing every change again
        def field(name: str, default: Any = None) -> Any:
            return getattr(plan, name, default)
        stack, changes = plan.stack, list(plan.changes)
    payload = canonical_json({
        "changes": sorted((c.key for c in changes if c.action is not Action.NOOP), key=canonical_json),
        "desired": sorted(field("desired") or [], key=lambda d: str(d.get("name"))),
        "stack": stack, "targets": sorted(field("targets") or []),
        "replace": sorted(field("replace") or []),
        "prune": field("prune", True), "prune_unrecorded": field("prune_unrecorded", False),
        "lineage": field("state_lineage"), "serial": field("state_serial", 0),
        "parents": sorted(field("parents") or [], key=canonical_json),
    })
    return hashlib.sha256(payload.encode()).hexdigest()


def request_id(stack: str, name: str, hash_: str, existing: Iterable[str]) -> str:
    """Deterministic id of one create intent, from what it is and the jobs the name already has:
    the same intent re-planned from the same observation finds its own job, and a new attempt
    (one more job seen) gets a new id."""
    payload = canonical_json([stack, name, hash_, sorted(existing)])
    return hashlib.sha256(payload.encode()).hexdigest()[:24]
