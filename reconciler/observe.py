"""Observation: list every job of each (project, region) once, all pages, in parallel.

One list per parent and no per-job request: a plan of an unchanged repo costs exactly the list
pages of the parents it touches.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from reconciler.models import DesiredModel, ObservedJob
from reconciler.plan import Observation
from reconciler.state.model import State
from reconciler.vertex.client import VertexClient
from reconciler.vertex.wire import TuningJob


def parents_to_observe(desired: Iterable[DesiredModel], state: State, extra: Iterable[str] = ()) -> list[str]:
    """The parents the manifests, the state and any extra names touch, each once."""
    parents = {d.parent for d in desired}
    for entry in state.models.values():
        parents.update(p for p in [entry.parent, *entry.parents] if p)
    parents.update(extra)
    return sorted(parents)


def to_observed(job: TuningJob, parent: str) -> ObservedJob:
    """Reduce a wire TuningJob to what planning needs; tolerant of absent fields."""
    sts = job.supervised_tuning_spec.to_wire() if job.supervised_tuning_spec else {}
    hp = sts.get("hyperParameters")
    if isinstance(hp, dict) and "epochCount" in hp:
        with contextlib.suppress(TypeError, ValueError):
            hp["epochCount"] = int(hp["epochCount"])
    if isinstance(hp, dict) and isinstance(hp.get("learningRateMultiplier"), int):
        hp["learningRateMultiplier"] = float(hp["learningRateMultiplier"])
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
        listed = list(pool.map(client.list_tuning_jobs, parent_list))
    seen: set[str] = set()
    jobs: list[ObservedJob] = []
    for parent, page in zip(parent_list, listed, strict=False):
        for job in page:
            if not job.name or job.name in seen:
                continue
            seen.add(job.name)
            jobs.append(to_observed(job, parent))
    return Observation(parents=tuple(parent_list), jobs=tuple(jobs))
