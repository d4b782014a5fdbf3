"""Jobs that completed although this state asked them to stop: the API documents that a job "may
complete despite cancellation". Nothing is planned for them (they are terminal), but whoever reads
the plan must know that a model they meant to stop serves. Pure."""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.models import StateClass
from reconciler.plan.ownership import OwnedJob
from reconciler.state.model import ModelEntry


def requested(entry: ModelEntry | None) -> set[str]:
    """Job ids (`location/id`) this state asked to cancel: the state may hold a job's resource
    name (with the project number) or the address it was cancelled at (with the project id)."""
    if entry is None:
        return set()
    return {_job_id(name) for name in entry.cancel_requested}


def completed_despite_cancel(jobs: Sequence[OwnedJob], entry: ModelEntry | None) -> list[OwnedJob]:
    asked = requested(entry)
    return [j for j in jobs if j.state_class is StateClass.SUCCEEDED and _job_id(j.name) in asked]


def warnings(name: str, jobs: Sequence[OwnedJob], entry: ModelEntry | None, *, has_manifest: bool) -> list[str]:
    out = []
    for job in completed_despite_cancel(jobs, entry):
        serves = f"its tuned model serves at {job.endpoint}" if job.endpoint else "its tuned model exists"
        then = ("; the state keeps the newest endpoint of the manifest's spec" if has_manifest else
                f"; forgetting {name} leaves it serving: undeploy it in Vertex AI, or restore the manifest")
        out.append(f"{name}: {job.name} completed despite its cancel (a cancel may lose the race to "
                   f"completion); {serves}{then}")
    return out


def _job_id(name: str) -> str:
    parts = name.split("/")
    return "/".join(parts[3:]) if len(parts) >= 6 else name
