"""The state from what the API shows: each model's entry (its job, its endpoint in service)
derived from its jobs. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from reconciler.models import DesiredModel, StateClass, spec_hash
from reconciler.plan import cancelled
from reconciler.plan.continuation import resolved_models
from reconciler.plan.explain import project_region
from reconciler.plan.ownership import OwnedJob, jobs_by_name, newest, request_duplicates
from reconciler.plan.types import Observation
from reconciler.state.model import Endpoint, JobError, ModelEntry, State


def derive_entry(
    name: str,
    jobs: Sequence[OwnedJob],
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
    known = _known_jobs(jobs, previous)
    of_spec = [j for j in ordered if j.spec_hash == want]
    # The state's own job before another checkout's job of the same spec (the planner keeps it too).
    current = newest([j for j in of_spec if j.name in known]) or newest(of_spec) or newest(ordered)
    parent = desired.parent if desired else (previous.parent if previous else "")
    if current is None:
        return previous.model_copy(update={"parent": parent}) if previous is not None else None
    serving = _serving([j for j in ordered if j.name in known], current, desired, previous)
    spec, cosmetic = _made_from(current, parent, desired, previous)
    data_hashes, pins = _data(ordered, current, desired, previous)
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
        tunedModel=_endpoint(serving, desired) if serving else None,
        servingJob=serving.name if serving else None,
        protect=desired.protect if desired else (previous.protect if previous else False),
        cancelRequested=[j.name for j in ordered if j.state_class is StateClass.CANCELLING],
        completedDespiteCancel=sorted({*(previous.completed_despite_cancel if previous else []),
                                       *(j.name for j in cancelled.completed_despite_cancel(ordered, previous))}),
        parents=sorted(watched | ({parent} if parent else set())),
        adopted=previous.adopted if previous else {},
        jobs=sorted(known),
        dataHashes={k: v for k, v in data_hashes.items() if v},
        datasetPins=pins,
        smokeTests={k: v for k, v in (previous.smoke_tests if previous else {}).items()
                    if any(j.name == k for j in ordered)},
    )


def _endpoint(serving: OwnedJob, desired: DesiredModel | None) -> Endpoint:
    """What the state exports of the serving job: its tuned model and endpoint — the endpoint of
    the checkpoint the manifest picks (servingCheckpoint) when the API shows that checkpoint."""
    checkpoint = desired.serving_checkpoint if desired is not None else None
    at = serving.job.checkpoint_endpoint(checkpoint) if checkpoint else None
    if at is None:
        return Endpoint(model=serving.tuned_model, endpoint=serving.endpoint)
    return Endpoint.model_validate({"model": serving.tuned_model, "endpoint": at, "checkpointId": checkpoint})


def _known_jobs(jobs: Sequence[OwnedJob], previous: ModelEntry | None) -> set[str]:
    """The jobs the entry records (`ModelEntry.jobs`). An entry recorded for the first time (a new
    or lost state) or written by an older version knows every job of its model — a lost state
    must recover its jobs, never duplicate them; otherwise the entry keeps what it knew and adds
    the jobs recorded since (found by one of its create requests, adopted)."""
    if previous is None or previous.jobs is None:
        return {j.name for j in jobs}
    return set(previous.jobs) | {j.name for j in jobs if j.recorded}


def _serving(ordered: list[OwnedJob], current: OwnedJob, desired: DesiredModel | None,
             previous: ModelEntry | None) -> OwnedJob | None:
    """The succeeded job whose endpoint serves: the current one, else the newest succeeded (of
    the jobs the entry records: another checkout's endpoint never serves this state's model)."""
    succeeded = sorted((j for j in ordered if j.state_class is StateClass.SUCCEEDED),
                       key=lambda j: (j is current, j.sort_key), reverse=True)  # current first, then newest
    if desired is not None and desired.smoke_gate:
        # A new endpoint serves only once its smoke test passed; what served before keeps serving.
        def cleared(job: OwnedJob) -> bool:
            if previous is None:
                return False
            record = previous.smoke_tests.get(job.name)
            return previous.serving_job == job.name or (record is not None and record.passed)

        succeeded = [j for j in succeeded if cleared(j)]
    # A succeeded job the API shows without an endpoint (an incomplete answer) never displaces one
    # that has an endpoint: consumers of the state would lose a working endpoint.
    succeeded = [j for j in succeeded if j.endpoint] or succeeded
    return succeeded[0] if succeeded else None


def _made_from(current: OwnedJob, parent: str, desired: DesiredModel | None,
               previous: ModelEntry | None) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The spec and cosmetic fields the current job was made with (the diff base). A recorded
    spec counts only if it hashes to the job's label: what apply recorded at the create is the
    manifest as written, which for a continuation or another spelling is not what was sent."""
    if (previous is not None and previous.job == current.name and previous.spec is not None
            and (current.spec_hash is None or spec_hash(previous.spec) == current.spec_hash)):
        return previous.spec, previous.cosmetic
    if desired is not None and current.spec_hash == desired.spec_hash:
        # A job the state did not know (a lost state): what it was made with is on the job.
        cosmetic = current.cosmetic()
        cosmetic["labels"] = {k: v for k, v in cosmetic["labels"].items() if k in dict(desired.labels)}
        return desired.tuning_spec(), cosmetic
    project, region = project_region(parent or current.parent)
    return current.tuning_spec(project, region), current.cosmetic()


def _data(ordered: list[OwnedJob], current: OwnedJob, desired: DesiredModel | None,
          previous: ModelEntry | None) -> tuple[dict[str, str | None], dict[str, dict[str, str]]]:
    """Each job's pinned-data hash, and the pins of what the current job is tuned on."""
    data_hashes = {j.name: j.data_hash or (previous.data_hashes.get(j.name) if previous else None)
                   for j in ordered}
    pins = previous.dataset_pins if previous else {}
    if (desired is not None and desired.pin_datasets and current.spec_hash == desired.spec_hash
            and data_hashes.get(current.name) in (None, desired.data_hash)):
        data_hashes[current.name] = desired.data_hash  # the baseline: what it is tuned on
        pins = desired.pins()
    return data_hashes, pins


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
    # as the planner plans them: a continuation with its parent's tuned model, each model under
    # the spelling its jobs carry (plan/continuation.py)
    desired_by_name = resolved_models({d.name: d for d in desired}, by_name)
    all_names = set(desired_by_name) | set(by_name) | set(previous.models)
    chosen = set(names) if names is not None else all_names
    models = {k: v for k, v in previous.models.items() if k not in chosen}
    for name in sorted(chosen & all_names):
        entry = derive_entry(name, by_name.get(name, []), desired_by_name.get(name), previous.models.get(name))
        if entry is not None:
            models[name] = entry
    return dict(sorted(models.items()))
