"""Plans: the closed set of actions, `Plan`, and `compute_plan()` — pure.

Modules: `types` (actions, one `Change` variant per action, `Plan`, fingerprint), `ownership`
(`OwnedJob`: whose a job is, apart from the observed data), `cases` (the planner: classify each
model, one function per case), `explain` (diffs and notes), `cost` (estimates), `derive` (state
entries from jobs). The names below are the package's public surface.

Actions (each with a reason):
  create    no job exists for the manifest
  replace   the spec changed: create a new job, cancel the old one if still running; a succeeded
            old job keeps serving (in the state) until the new one succeeds
  recreate  the job for the current spec was cancelled outside the tool, or failed and a retry
            is allowed (retryPolicy.maxAttempts or --replace)
  move      a manifest was renamed and an existing job has exactly its spec: the state entry
            moves to the new name and the job is adopted; nothing is re-tuned (terraform's `moved`,
            detected from the spec hash)
  cancel    a managed job still running whose manifest is gone, that a newer spec superseded, or
            a duplicate of a create request
  forget    the manifest is gone and its jobs are finished: the entry leaves the state
  noop      nothing to do (notes say what cannot be applied, e.g. a display-name change)
"""

from reconciler.plan.cases import compute_plan
from reconciler.plan.derive import derive_entry, derive_models
from reconciler.plan.explain import explain_diff
from reconciler.plan.ownership import (
    OwnedJob,
    jobs_by_name,
    recorded_jobs,
    request_duplicates,
    tracked,
)
from reconciler.plan.types import (
    ACTIONS,
    CREATING,
    PLAN_FORMAT_VERSION,
    Action,
    CancelJobs,
    Change,
    CreateJob,
    FieldChange,
    ForgetEntry,
    MoveEntry,
    NoChange,
    Observation,
    Plan,
    fingerprint,
    parse_change,
    request_id,
)

__all__ = [
    "ACTIONS", "CREATING", "PLAN_FORMAT_VERSION", "Action", "CancelJobs", "Change", "CreateJob", "FieldChange",
    "ForgetEntry", "MoveEntry", "NoChange", "Observation", "OwnedJob", "Plan", "compute_plan", "derive_entry",
    "derive_models", "explain_diff", "fingerprint", "jobs_by_name", "parse_change", "recorded_jobs",
    "request_duplicates", "request_id", "tracked",
]
