"""`reconciler import`: adopt an existing tuning job into a manifest's management.

Jobs cannot be relabelled, so an adopted job is recognised through the state: its entry's
`adopted` map holds the job and the spec hash it stands for. When the job matches the manifest
(every field the manifest sets has the same value on the job) that hash is the manifest's, and
plan shows no change; otherwise it is the job's own, and plan shows a replace with the diff.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from reconciler.apply import refresh_state
from reconciler.errors import ImportRefusedError
from reconciler.models import DesiredModel, spec_hash
from reconciler.observe import to_observed
from reconciler.plan import Observation, explain_diff, jobs_by_name
from reconciler.render import diff_line
from reconciler.state.model import ModelEntry, State
from reconciler.state.store import StateStore
from reconciler.vertex.client import VertexClient, split_job_name


def adopt_job(
    client: VertexClient,
    store: StateStore,
    state: State,
    desired: DesiredModel,
    job_name: str,
    *,
    stack: str,
    observe: Callable[[Sequence[str]], Observation],
) -> str:
    """Record `job_name` as adopted by `desired`; return a one-paragraph report."""
    _, location, _ = split_job_name(job_name)
    if location != desired.region:
        raise ImportRefusedError(f"{job_name} is in {location}, but {desired.name} wants region {desired.region}")
    wire = client.get_tuning_job(job_name)
    job = to_observed(wire, desired.parent)
    if job.managed:
        owner = f"stack {job.stack!r} as {job.model_name!r}"
        raise ImportRefusedError(f"{job.name} is already managed by the reconciler ({owner}); nothing to import")
    holders = sorted(n for n, e in state.models.items() if job.name in e.adopted)
    if holders:
        raise ImportRefusedError(f"{job.name} is already imported as {holders[0]!r}; one job serves one model")
    observation = observe([desired.parent])
    if all(j.name != job.name for j in observation.jobs):
        raise ImportRefusedError(f"{job.name} is not among the jobs of {desired.parent} ({desired.name}'s project "
                              "and region); import it into a manifest of its own project and region")
    owned = jobs_by_name(observation, stack, state)
    if owned.get(desired.name):
        have = ", ".join(j.name for j in owned[desired.name])
        raise ImportRefusedError(f"{desired.name} already has job(s) {have}; import only adopts into a model without jobs")
    theirs = desired.seen_on(job)
    mine = desired.tuning_spec()
    diff = explain_diff(theirs, mine)
    h = desired.spec_hash if not diff else spec_hash(theirs)
    draft = state.model_copy(deep=True)
    entry = draft.models.get(desired.name) or ModelEntry.model_validate({"parent": desired.parent})
    draft.models[desired.name] = entry.model_copy(update={"adopted": {**entry.adopted, job.name: h}})
    written = store.write(draft)  # the adoption first, then the entry as the API shows it
    refresh_state(store, [desired], observation, stack=stack, names={desired.name}, state=written)
    if not diff:
        return f"Imported {job.name} as {desired.name}: it matches the manifest, so plan shows no change."
    lines = "\n".join("  " + diff_line(f) for f in diff)
    return (f"Imported {job.name} as {desired.name}. It differs from the manifest, so the next plan "
            f"replaces it:\n{lines}")
