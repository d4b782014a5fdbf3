"""Observation: list every job of each (project, region) once, all pages, in parallel.

One list per parent and no per-job request: a plan of an unchanged repo costs exactly the list
pages of the parents it touches. A listed job whose name is not directly under the parent that
was listed (another project, another region, a malformed name) is left out with a warning: nothing
is ever done at a path outside the parents this run reads. So is a job whose identity labels
(`reconciler-name`, `-stack`, `-spec`, `-request`) are not label values this program could have
written (lowercase letters, digits, `_`, `-`, at most 63): it is not ours, whatever it claims.

Every string of an observed job comes from the server: the transport cleans each answer
(`reconciler.http.redact.clean`: control characters escaped, credentials masked) and hands a
listed job over as its dump (`observed_from_dump`); `to_observed` cleans whatever `TuningJob` it
is given (one built elsewhere, a test's fake client), so no text of a job reaches the terminal, a
plan or the state with a control character or a token in it.

A listing converts each page as it arrives, while the next page's request is on its way
(`VertexClient.list_converted`). The plan package is imported only once the first requests have
left: its import is CPU the first request need not wait for.

Told which job names the state mentions (`keep`), a listing takes a job that carries no
reconciler label and is not named there as a `ListedJob`: its name, state, labels and creation
time are read at once (all ownership, identity and paths need), the rest — and the validation of
the whole job — when something first reads it (an import hint, a status row). In a shared
project most jobs are such, and a plan never reads more of them.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Container, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any

from reconciler import interrupt
from reconciler.errors import MalformedResponseError, ReconcilerError
from reconciler.http.redact import clean, clean_tree
from reconciler.kinds import kind_of_job
from reconciler.models import (
    LABEL_MANAGED,
    LABEL_NAME,
    LABEL_SPEC,
    LABEL_STACK,
    RESERVED_LABEL_PREFIX,
    DesiredModel,
    ObservedJob,
)
from reconciler.vertex.client import (
    REQUEST_LABEL,
    VertexClient,
    job_dump,
    job_place,
    parent_parts,
    place_in_parent,
    split_job_name,
)

if TYPE_CHECKING:
    from reconciler.plan import Observation
    from reconciler.state.model import State
    from reconciler.vertex.wire import TuningJob


def parents_to_observe(desired: Iterable[DesiredModel], state: State, extra: Iterable[str] = ()) -> list[str]:
    """The parents the manifests, the state and any extra names touch, each once."""
    parents = {d.parent for d in desired}
    for entry in state.models.values():
        parents.update(p for p in [entry.parent, *entry.parents] if p)
    parents.update(intent.parent for intent in state.journal)  # an interrupted create's job lives there
    parents.update(extra)
    return sorted(parents)


# The labels that say whose a job is and what it was made from: the reconciler writes only plain
# label values there (shared/reference: lowercase letters, digits, `_`, `-`; at most 63).
IDENTITY_LABELS = (LABEL_NAME, LABEL_STACK, LABEL_SPEC, REQUEST_LABEL)
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")


def _spec_fields(raw: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The job's kind and its spec as that kind reads it (REST names, manifest types): every field
    of the spec model, found by the model itself (reconciler.spec), none listed here."""
    kind = kind_of_job(raw)
    return kind.name, kind.read_observed(raw)


def to_observed(job: TuningJob, parent: str) -> ObservedJob:
    """Reduce a wire TuningJob to what planning needs; tolerant of absent fields. Every string
    is cleaned (`redact.clean`): one line, no control characters, no credentials (a listed job,
    already cleaned by the transport, goes through `observed_from_dump` instead)."""
    # known fields and the ones kept as extra
    return observed_from_dump(clean_tree(job.model_dump(by_alias=True, exclude_none=True)), parent)


def observed_from_dump(raw: dict[str, Any], parent: str) -> ObservedJob:
    """`to_observed` of a job given as its dump (`TuningJob.model_dump(by_alias=True,
    exclude_none=True)`, every string cleaned): what a listing hands over
    (`VertexClient.list_converted`)."""
    kind, spec = _spec_fields(raw)
    error: dict[str, Any] | None = raw.get("error")
    tuned: dict[str, Any] = raw.get("tunedModel") or {}
    return ObservedJob(
        name=raw.get("name") or "",
        parent=parent,
        state=raw.get("state") or "",
        labels=dict(raw.get("labels") or {}),
        create_time=raw.get("createTime") or "",
        end_time=raw.get("endTime") or "",
        spec=spec,
        kind_name=kind,
        error_code=error.get("code") if error is not None else None,
        error_message=error.get("message") if error is not None else None,
        tuned_model=tuned.get("model"),
        endpoint=tuned.get("endpoint"),
        start_time=raw.get("startTime") or "",
        tuning_data_stats=dict(raw.get("tuningDataStats") or {}),
        experiment=raw.get("experiment"),
        gcs_metrics_uri=raw.get("gcsMetricsUri"),
        checkpoints=tuple(_dicts(tuned.get("checkpoints"))),
        evaluations=tuple(_dicts(raw.get("evaluateDatasetRuns"))),
    )


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The objects of a list the API answered (checkpoints, evaluation runs); anything else left out."""
    return [dict(v) for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def bad_identity(job: TuningJob | ObservedJob) -> str | None:
    """The first identity label of `job` whose value the reconciler could not have written, or
    None: such a job is not ours (a forged or broken label), and is left out."""
    labels = job.labels or {}
    return next((key for key in IDENTITY_LABELS
                 if key in labels and not (isinstance(labels[key], str) and _LABEL_VALUE.fullmatch(labels[key]))),
                None)


# What a ListedJob reads at once; every other field of ObservedJob is read with the whole job.
_AT_ONCE = ("name", "parent", "state", "labels", "create_time")
_AT_ONCE_WIRE = ("name", "state", "labels", "createTime")


class _Deferred:
    """A field of a ListedJob read (with the whole job) when first used."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, job: ListedJob | None, owner: type | None = None) -> Any:
        if job is None:
            return self
        values = job.__dict__
        if self.name not in values:
            job.read_whole()
        return values[self.name]

    def __set__(self, job: ListedJob, value: Any) -> None:  # dataclasses.replace, and read_whole
        job.__dict__[self.name] = value


class ListedJob(ObservedJob):
    """An ObservedJob taken from a page without being read whole: `name`, `state`, `labels` and
    `create_time` were read (and type-checked) off the listed job; any other field reads the
    whole job — validated as every listed job is (`job_dump`), a malformed one then the same
    one-line MalformedResponseError — and keeps it. Equal to the ObservedJob of the same job."""

    @classmethod
    def taken(cls, item: Any, parent: str, keep: Container[str]) -> ListedJob | None:
        """`item` (a decoded, cleaned job of `parent`'s listing) as a ListedJob, or None when it
        must be read whole now: a reconciler label (ours, another stack's, or forged), a name
        `keep` holds, or anything read at once not plainly of its type."""
        if type(item) is not dict:
            return None
        name, state, labels, created = (item.get(key) for key in _AT_ONCE_WIRE)
        if type(name) is not str or name in keep or "create_time" in item:  # (a Python name: pydantic's to read)
            return None
        if not (state is None or type(state) is str) or not (created is None or type(created) is str):
            return None
        if labels is None:
            labels = {}
        elif type(labels) is not dict or not _plain_labels(labels):
            return None
        job = cls.__new__(cls)
        job.__dict__.update(name=name, parent=parent, state=state or "", labels=dict(labels),
                            create_time=created or "", _listed=item)
        return job

    def read_whole(self) -> None:
        """Validate and read every field of the job (once; the listed form is then released)."""
        values = self.__dict__
        item = values.get("_listed")
        if item is None:
            return
        what = f"the list of tuning jobs of {self.parent} (job {_shown(self.name)})"
        whole = observed_from_dump(job_dump(item, what), self.parent)
        values.update(whole.__dict__)
        values.pop("_listed", None)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ObservedJob):
            return NotImplemented
        return _field_values(self) == _field_values(other)

    __hash__ = ObservedJob.__hash__


for _field in dataclasses.fields(ObservedJob):
    if _field.name not in _AT_ONCE:
        setattr(ListedJob, _field.name, _Deferred(_field.name))


def _field_values(job: ObservedJob) -> tuple[Any, ...]:
    return tuple(getattr(job, f.name) for f in dataclasses.fields(ObservedJob))


def _plain_labels(labels: dict[Any, Any]) -> bool:
    """Labels of strings, none of them the reconciler's (`managed-by`, `reconciler-…`)."""
    return all(type(key) is str and type(value) is str and key != LABEL_MANAGED
               and not key.startswith(RESERVED_LABEL_PREFIX) for key, value in labels.items())


def state_job_names(state: State) -> frozenset[str]:
    """Every job name the state mentions, wherever (adopted, recorded, serving, the journal): a
    listed job so named is read whole, whatever its labels."""
    names: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str):
            if "/tuningJobs/" in value:
                names.add(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(key)
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    walk(state.model_dump())
    return frozenset(names)


class StateNames(Container[str]):
    """`state_job_names` of a state read after the listings began (plan sends its first request as
    soon as one manifest is valid; the state's import and validation are CPU that request need not
    wait for). A page converted before the names are known waits for them. Once the run gives up
    (the state or a manifest is wrong, Ctrl-C: `abandon`), a listing ends at the next job it
    converts instead of reading its parent to the end for nobody."""

    def __init__(self) -> None:
        self._names: frozenset[str] = frozenset()
        self._abandoned = False
        self._known = threading.Event()

    def know(self, state: State) -> None:
        self._names = state_job_names(state)
        self._known.set()

    def abandon(self) -> None:
        self._abandoned = True
        self._known.set()

    def __contains__(self, name: object) -> bool:
        if not self._known.is_set():
            self._known.wait()
        if self._abandoned:
            raise ListingAbandoned
        return name in self._names


class ListingAbandoned(Exception):
    """A listing ended early because the run it served has failed (`StateNames.abandon`)."""


def list_observed(client: VertexClient, parent: str, keep: Container[str] | None = None) -> list[ObservedJob]:
    """Every job of `parent`, converted as its page arrives (the transport has cleaned it); with
    `keep`, the jobs the plan has no reason to read are `ListedJob`s. A client without
    `list_converted` (a test's fake) lists first, and each job is cleaned here."""
    each = getattr(client, "list_converted", None)
    if each is None:
        return [to_observed(job, parent) for job in client.list_tuning_jobs(parent)]
    brief = None if keep is None else partial(ListedJob.taken, parent=parent, keep=keep)
    listed: list[ObservedJob] = each(parent, partial(observed_from_dump, parent=parent), brief=brief)
    return listed


def observe(client: VertexClient, parents: Iterable[str], *, workers: int = 8) -> Observation:
    """List all jobs of every parent concurrently. A job listed twice (the same project by id
    and by number) counts once.

    Ctrl-C or SIGTERM while the lists run asks every worker to stop (`interrupt.request_stop`):
    each ends at its next wait or page, and this does not wait for the calls still retrying."""
    from reconciler.plan import Observation

    parent_list = sorted(set(parents))
    if not parent_list:
        return Observation(parents=(), jobs=())
    pool = ThreadPoolExecutor(max_workers=max(1, min(workers, len(parent_list))), initializer=interrupt.worker_thread)
    try:
        futures = [pool.submit(observe_parent, client, parent) for parent in parent_list]
        return merge(future.result() for future in futures)
    except KeyboardInterrupt:
        interrupt.request_stop()  # the workers see it at their next wait or page
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def observe_parent(client: VertexClient, parent: str, keep: Container[str] | None = None) -> Observation:
    """Every job of one parent (all pages), converted as it arrives (`keep`: `list_observed`);
    jobs not directly under `parent` are left out and named in the observation's warnings."""
    listed = list_observed(client, parent, keep)
    # imported once the first requests have left: plan's import is CPU they need not wait for
    from reconciler.plan import Observation

    # The service names jobs by project NUMBER even when the parent gave the project id: a
    # listing of one project must then use one number (the project's). Jobs under two numbers
    # cannot be told apart — which are ours? — so the listing is refused rather than guessed at.
    want = parent_parts(parent)
    places = [job_place(job.name) for job in listed]  # each name split once
    numbers = sorted({place[0] for place in places if place is not None and place_in_parent(place, want)}
                     - {want[0]})
    if len(numbers) > 1:
        raise MalformedResponseError(
            f"the list of tuning jobs of {parent} returned jobs under {len(numbers)} project numbers "
            f"({', '.join(numbers[:5])}): one project has one number, so which jobs are this project's "
            "cannot be told; nothing was planned")
    number = numbers[0] if numbers else None
    jobs: list[ObservedJob] = []
    skipped: list[str] = []
    forged: list[str] = []
    for job, place in zip(listed, places, strict=True):
        if not place_in_parent(place, want, number):
            skipped.append(_shown(job.name))
        elif (key := bad_identity(job)) is not None:
            forged.append(f"{job.name} ({key}={_cut(repr(clean(job.labels[key])))})")
        else:
            jobs.append(job)
    warnings: list[str] = []
    if skipped:
        warnings.append(f"the list of {parent} returned {len(skipped)} job(s) not under {parent}; ignored, "
                        f"never changed by this run: {_some(skipped)}")
    if forged:
        warnings.append(f"{len(forged)} job(s) of {parent} carry a reconciler label whose value this program "
                        f"never writes (not lowercase letters, digits, '_', '-'); ignored, never changed by "
                        f"this run: {_some(forged)}")
    return Observation(parents=(parent,), jobs=tuple(jobs), warnings=tuple(warnings))


def _some(items: list[str]) -> str:
    return ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")


def _cut(text: str) -> str:
    return text if len(text) <= 80 else text[:80] + "…"


def _shown(name: str | None) -> str:
    """A listed name for a warning: as it is when well-formed, else quoted and cut (it comes
    from the server: no control characters or screenfuls reach the terminal)."""
    if not name:
        return "(a job without a name)"
    try:
        split_job_name(name)
    except ReconcilerError:
        text = repr(clean(name))
        return text if len(text) <= 120 else text[:120] + "…"
    return name


def merge(observations: Iterable[Observation]) -> Observation:
    """One observation of several; a job listed twice (the same project by id and by number)
    counts once; the warnings of all are kept."""
    from reconciler.plan import Observation

    parents: list[str] = []
    seen: set[str] = set()
    jobs: list[ObservedJob] = []
    warnings: list[str] = []
    for observation in observations:
        parents.extend(observation.parents)
        warnings.extend(observation.warnings)
        for job in observation.jobs:
            if job.name not in seen:
                seen.add(job.name)
                jobs.append(job)
    return Observation(parents=tuple(sorted(set(parents))), jobs=tuple(jobs), warnings=tuple(warnings))
