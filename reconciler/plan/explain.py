"""Explaining a change in words: the diff base of a replace, the notes of what a job cannot take
(jobs cannot be edited), a failure. Pure. What a spec field means is the kind's business
(reconciler.kinds); this module only picks what to compare."""

from __future__ import annotations

from typing import Any

from reconciler.kinds import FieldChange, explain_diff
from reconciler.models import DesiredModel
from reconciler.plan.ownership import OwnedJob
from reconciler.state.model import ModelEntry

__all__ = ["FieldChange", "cosmetic_notes", "explain_diff", "failure", "old_spec", "project_region"]


def project_region(parent: str) -> tuple[str, str]:
    parts = parent.split("/")
    return parts[1], parts[3]


def old_spec(job: OwnedJob, entry: ModelEntry | None, desired: DesiredModel) -> dict[str, Any]:
    """The spec a replaced job was made from: the state's copy when it matches, else read off
    the job."""
    if entry is not None and entry.spec is not None and entry.spec_hash == job.spec_hash:
        return entry.spec
    return desired.seen_on(job.job)


def cosmetic_notes(desired: DesiredModel, job: OwnedJob, entry: ModelEntry | None) -> list[str]:
    """Changes the job cannot take (jobs cannot be edited): reported, never re-tuned on their own."""
    recorded = entry.cosmetic if entry is not None and entry.job == job.name else None
    return desired.cosmetic_notes(job.job, recorded)


def failure(job: OwnedJob) -> str:
    msg = job.error_message or "no error message"
    code = f" (code {job.error_code})" if job.error_code is not None else ""
    return f"{msg}{code}"
