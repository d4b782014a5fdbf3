"""Whose a job is, apart from what the API showed: observed jobs are never relabelled.

A job belongs to a model of this stack by its labels (`managed-by`, `reconciler-stack`,
`reconciler-name`), or because the state adopted it (`import`, a rename) — jobs cannot be
relabelled, so adoption lives in the state. `OwnedJob` pairs the observed job with that verdict:
the model it counts for, the spec hash it stands for, and whether this run may cancel it. Pure.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.models import LABEL_DATA, LABEL_PROTECT, LABEL_REQUEST, ObservedJob, StateClass
from reconciler.plan.types import Observation
from reconciler.state.model import ModelEntry, State


@dataclass(frozen=True)
class OwnedJob:
    """A job of one of the stack's models, with why it is ours."""

    job: ObservedJob
    model: str  # the manifest name it counts for
    spec_hash: str | None  # what it was made from (its label, or the adoption record)
    adopted: bool = False  # through the state (import or a rename), not by its own labels
    foreign: bool = False  # adopted without the reconciler's labels: never cancelled
    recorded: bool = True  # False: this state has no record of the job — not cancelled by default

    @property
    def cancellable(self) -> bool:
        return not self.foreign and self.recorded

    # The observed job's facts, read through (the planner and the state derivation use them).
    @property
    def name(self) -> str:
        return self.job.name

    @property
    def parent(self) -> str:
        return self.job.parent

    @property
    def address(self) -> str:
        """Where calls about the job go: the listed parent + its id (`ObservedJob.address`)."""
        return self.job.address

    @property
    def state(self) -> str:
        return self.job.state

    @property
    def state_class(self) -> StateClass:
        return self.job.state_class

    @property
    def sort_key(self) -> tuple[str, str]:
        return self.job.sort_key

    @property
    def labels(self) -> dict[str, str]:
        return self.job.labels

    @property
    def request_id(self) -> str | None:
        return self.job.labels.get(LABEL_REQUEST) if self.job.managed else None

    @property
    def data_hash(self) -> str | None:
        return self.job.labels.get(LABEL_DATA)

    @property
    def protected(self) -> bool:
        return self.job.labels.get(LABEL_PROTECT) == "true"

    @property
    def endpoint(self) -> str | None:
        return self.job.endpoint

    @property
    def tuned_model(self) -> str | None:
        return self.job.tuned_model

    @property
    def create_time(self) -> str:
        return self.job.create_time

    @property
    def end_time(self) -> str:
        return self.job.end_time

    @property
    def error_code(self) -> int | None:
        return self.job.error_code

    @property
    def error_message(self) -> str | None:
        return self.job.error_message

    def cosmetic(self) -> dict[str, Any]:
        return self.job.cosmetic()

    def tuning_spec(self, project: str, region: str) -> dict[str, Any]:
        return self.job.tuning_spec(project, region)


def jobs_by_name(observation: Observation, stack: str, state: State) -> dict[str, list[OwnedJob]]:
    """The jobs of each model of the stack: by their labels, plus the jobs the state says were
    adopted. A job of another stack is never taken, whatever the state says; an adopted job
    without the reconciler's own labels is foreign and never cancelled. Each job says whether
    this state has a record of it (`recorded_jobs`)."""
    adopted: dict[str, tuple[str, str]] = {}
    for owner, entry in sorted(state.models.items()):
        for job_name, h in entry.adopted.items():
            adopted.setdefault(job_name, (owner, h))  # adopted twice: the first name (the planner says so)
    by_name: dict[str, list[OwnedJob]] = defaultdict(list)
    for job in observation.jobs:
        if job.name in adopted and not (job.managed and job.stack != stack):
            name, h = adopted[job.name]
            by_name[name].append(OwnedJob(job, name, h, adopted=True, foreign=not job.managed))
        elif job.managed and job.stack == stack and job.model_name:
            by_name[job.model_name].append(OwnedJob(job, job.model_name, job.spec_hash))
    intents = frozenset(j.request_id for j in state.journal)
    return {name: recorded_jobs(jobs, state.models.get(name), intents) for name, jobs in by_name.items()}


def recorded_jobs(jobs: Sequence[OwnedJob], entry: ModelEntry | None,
                  intents: frozenset[str] = frozenset()) -> list[OwnedJob]:
    """The jobs of one model, each marked with whether this state has a record of it.

    Recorded: a job the entry lists (`ModelEntry.jobs`: made by this state's applies, or seen
    when the entry was first recorded), adopted through the state, or carrying the request id of
    one of this state's open create intents — and any job that shares a request id with one of
    those (the same create intent, made twice by a race or a retry: ours either way). An entry of
    an older version (no `jobs`) records every job of its model; no entry records none of them."""
    if entry is not None and entry.jobs is None:
        return [dataclasses.replace(j, recorded=True) for j in jobs]
    listed = set(entry.jobs or ()) if entry is not None else set()
    base = [j for j in jobs if j.adopted or j.name in listed or (j.request_id is not None and j.request_id in intents)]
    names = {j.name for j in base}
    requests = {j.request_id for j in base if j.request_id}
    return [dataclasses.replace(j, recorded=j.name in names or j.request_id in requests) for j in jobs]


def tracked(observation: Observation, stack: str, state: State) -> dict[str, list[OwnedJob]]:
    """The jobs this state follows, per model: its recorded jobs, without the younger jobs of a
    create request that has another (cancelled, never current). What `apply --wait` waits for
    and shows — never another checkout's job of the same stack."""
    out: dict[str, list[OwnedJob]] = {}
    for name, jobs in jobs_by_name(observation, stack, state).items():
        duplicates = request_duplicates(jobs)
        mine = [j for j in jobs if j.recorded and j.name not in duplicates]
        if mine:
            out[name] = mine
    return out


def newest(jobs: Sequence[OwnedJob]) -> OwnedJob | None:
    return max(jobs, key=lambda j: j.sort_key) if jobs else None


def request_duplicates(jobs: Iterable[OwnedJob]) -> dict[str, str]:
    """Jobs made for a create intent that already has a job: job → the job kept.

    Two jobs carry one request id when two runs raced (two checkouts, two state files) or a
    create the client gave up on was finished by the server after a retry. The oldest job of
    the intent that is running or succeeded is kept — it is the furthest on — and every other
    job of the intent is a duplicate: left out of the model's history, and cancelled, if it
    runs, by whichever run sees it."""
    groups: dict[str, list[OwnedJob]] = defaultdict(list)
    for job in jobs:
        if job.request_id:
            groups[job.request_id].append(job)
    out: dict[str, str] = {}
    for group in groups.values():
        if len(group) < 2:
            continue
        ordered = sorted(group, key=lambda j: j.sort_key)
        keep = next((j for j in ordered if j.state_class in (StateClass.LIVE, StateClass.SUCCEEDED)), None)
        if keep is not None:
            out.update({j.name: keep.name for j in ordered if j is not keep})
    return out


def all_recorded(jobs: Sequence[OwnedJob]) -> list[OwnedJob]:
    """The same jobs, every one counted as recorded (`--prune-unrecorded`)."""
    return [dataclasses.replace(j, recorded=True) for j in jobs]


def renamed(jobs: Sequence[OwnedJob], name: str) -> list[OwnedJob]:
    """The jobs of a renamed model, counted for its new name (adoption records it)."""
    return [dataclasses.replace(j, model=name) for j in jobs]
