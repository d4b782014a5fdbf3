"""Observation: list every job of each (project, region) once, all pages, in parallel.

One list per parent and no per-job request: a plan of an unchanged repo costs exactly the list
pages of the parents it touches.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from reconciler.models import DesiredModel, ObservedJob
from reconciler.plan import Observation
from reconciler.state.model import State
from reconciler.vertex.client import VertexClient
from reconciler.vertex.wire import SupervisedTuningSpec, TuningJob


def parents_to_observe(desired: Iterable[DesiredModel], state: State, extra: Iterable[str] = ()) -> list[str]:
    """The parents the manifests, the state and any extra names touch, each once."""
    parents = {d.parent for d in desired}
    for entry in state.models.values():
        parents.update(p for p in [entry.parent, *entry.parents] if p)
    parents.update(intent.parent for intent in state.journal)  # an interrupted create's job lives there
    parents.update(extra)
    return sorted(parents)


def _spec_fields(spec: SupervisedTuningSpec | None) -> dict[str, Any]:
    """The spec fields a manifest can set, in manifest types (epochCount an int, the rate a float)."""
    if spec is None:
        return {}
    out: dict[str, Any] = {}
    if spec.training_dataset_uri is not None:
        out["trainingDatasetUri"] = spec.training_dataset_uri
    if spec.validation_dataset_uri is not None:
        out["validationDatasetUri"] = spec.validation_dataset_uri
    if spec.export_last_checkpoint_only is not None:
        out["exportLastCheckpointOnly"] = spec.export_last_checkpoint_only
    hp = spec.hyper_parameters
    if hp is not None:
        values: dict[str, Any] = {}
        if hp.epoch_count is not None:
            values["epochCount"] = hp.epoch_count
        if hp.learning_rate_multiplier is not None:
            values["learningRateMultiplier"] = float(hp.learning_rate_multiplier)
        if hp.adapter_size is not None:
            values["adapterSize"] = hp.adapter_size
        if values:
            out["hyperParameters"] = values
    return out


def to_observed(job: TuningJob, parent: str) -> ObservedJob:
    """Reduce a wire TuningJob to what planning needs; tolerant of absent fields."""
    sts = _spec_fields(job.supervised_tuning_spec)
    extra = job.model_extra or {}
    encryption = extra.get("encryptionSpec")
    kms = encryption.get("kmsKeyName") if isinstance(encryption, dict) else None
    return ObservedJob(
        name=job.name or "",
        parent=parent,
        state=job.state or "",
        labels=dict(job.labels or {}),
        create_time=job.create_time or "",
        end_time=job.end_time or "",
        base_model=job.base_model or "",
        display_name=job.tuned_model_display_name or "",
        description=job.description or "",
        service_account=job.service_account or "",
        supervised_tuning_spec=sts,
        kms_key_name=kms if isinstance(kms, str) else None,
        error_code=job.error.code if job.error else None,
        error_message=job.error.message if job.error else None,
        tuned_model=job.tuned_model.model if job.tuned_model else None,
        endpoint=job.tuned_model.endpoint if job.tuned_model else None,
        start_time=job.start_time or "",
        tuning_data_stats=dict(job.tuning_data_stats or {}),
        experiment=job.experiment,
        gcs_metrics_uri=job.gcs_metrics_uri,
    )


def observe(client: VertexClient, parents: Iterable[str], *, workers: int = 8) -> Observation:
    """List all jobs of every parent concurrently. A job listed twice (the same project by id
    and by number) counts once."""
    parent_list = sorted(set(parents))
    if not parent_list:
        return Observation(parents=(), jobs=())
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(parent_list)))) as pool:
        return merge(pool.map(lambda parent: observe_parent(client, parent), parent_list))


def observe_parent(client: VertexClient, parent: str) -> Observation:
    """Every job of one parent (all pages), converted as it arrives."""
    jobs = tuple(to_observed(job, parent) for job in client.list_tuning_jobs(parent) if job.name)
    return Observation(parents=(parent,), jobs=jobs)


def merge(observations: Iterable[Observation]) -> Observation:
    """One observation of several; a job listed twice (the same project by id and by number)
    counts once."""
    parents: list[str] = []
    seen: set[str] = set()
    jobs: list[ObservedJob] = []
    for observation in observations:
        parents.extend(observation.parents)
        for job in observation.jobs:
            if job.name not in seen:
                seen.add(job.name)
                jobs.append(job)
    return Observation(parents=tuple(sorted(set(parents))), jobs=tuple(jobs))
