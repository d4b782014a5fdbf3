"""API answers that lack every optional field (no createTime, spec or tunedModel): plan, apply
and the state cope, through the CLI against the emulator."""

from __future__ import annotations

from tests.clihelp import OWNED, Cli, clean
from tests.conftest import Emulator


# -- 2. API answers without optional fields --------------------------------------------------------
def seed_minimal(emulator: Emulator, state: str, labels: dict[str, str]) -> str:
    """A job the API returns as only name, state and (if any) labels."""
    [name] = emulator.seed([{"project": "demo-project", "location": "us-central1", "state": state, "labels": labels}])
    [job] = [j for j in emulator.jobs() if j["name"] == name]
    emulator.patch(name, {k: None for k in job if k not in ("name", "state", "labels")})
    [job] = [j for j in emulator.jobs() if j["name"] == name]
    assert set(job) <= {"name", "state", "labels"}, job
    return name


def test_jobs_with_only_name_state_and_labels_are_handled(cli: Cli, emulator):
    for name in ("alpha", "beta", "gamma", "delta"):
        cli.manifest(name)
    hashes = {c["name"]: c["spec_hash"] for c in clean(cli("plan", "--format", "json")).json()["changes"]}
    alpha = {**OWNED, "reconciler-name": "alpha", "reconciler-spec": hashes["alpha"]}
    older = seed_minimal(emulator, "JOB_STATE_FAILED", alpha)
    done = seed_minimal(emulator, "JOB_STATE_SUCCEEDED", alpha)  # newer: by its id, as no createTime says
    running = seed_minimal(emulator, "JOB_STATE_RUNNING",
                           {**OWNED, "reconciler-name": "beta", "reconciler-spec": "0" * 20})
    failed = seed_minimal(emulator, "JOB_STATE_FAILED", {**OWNED, "reconciler-name": "gamma"})
    foreign = seed_minimal(emulator, "JOB_STATE_SUCCEEDED", {})

    # No state yet: beta's running job is not recorded, so only --prune-unrecorded may cancel it.
    body = clean(cli("plan", "--format", "json", "--prune-unrecorded")).json()
    actions = {c["name"]: (c["action"], c["job"]) for c in body["changes"]}
    assert actions == {"alpha": ("noop", done), "beta": ("replace", running), "gamma": ("replace", failed),
                       "delta": ("create", None)}
    [beta] = [c for c in body["changes"] if c["name"] == "beta"]
    # Cancels are addressed through the listed parent and the job's id (issue 11).
    assert beta["cancel_jobs"] == ["projects/demo-project/locations/us-central1/tuningJobs/" + running.rsplit("/", 1)[1]]
    assert {d["path"] for d in beta["diff"]} >= {"baseModel", "supervisedTuningSpec"}
    text = clean(cli("--no-color", "plan", "--detailed-exitcode"), 2).out
    assert "2 to replace" in text and "1 to create" in text and "~ baseModel:" in text
    assert "| `beta` | spec changed |" in clean(cli("plan", "--format", "markdown")).out

    status = clean(cli("status", "--format", "json")).json()
    rows = {m["name"]: m for m in status["models"]}
    assert rows["alpha"]["state"] == "JOB_STATE_SUCCEEDED" and rows["alpha"]["endpoint"] is None
    assert rows["beta"]["state"] == "JOB_STATE_RUNNING" and rows["beta"]["action"] == "replace"
    assert [(u["job"], u["owner"]) for u in status["unmanaged"]] == [(foreign, "unmanaged")]
    table = clean(cli("--no-color", "status")).out
    assert "(unmanaged)" in table and "SUCCEEDED" in table and "RUNNING" in table
    [detail] = clean(cli("status", "alpha", "--format", "json")).json()
    assert [j["job"] for j in detail["jobs"]] == [done, older] and detail["endpoint"] is None
    assert detail["tuning_data_stats"] is None
    text = clean(cli("--no-color", "status", "gamma")).out
    assert "FAILED" in text and "jobs, newest first" in text

    clean(cli("refresh"))
    models = cli.state()["models"]
    assert models["alpha"]["job"] == done and models["alpha"]["state"] == "JOB_STATE_SUCCEEDED"
    assert models["beta"]["state"] == "JOB_STATE_RUNNING"
    out = clean(cli("output")).json()
    assert out["alpha"] == {"endpoint": None, "model": None, "job": done, "state": "JOB_STATE_SUCCEEDED",
                            "latest_job": done, "latest_state": "JOB_STATE_SUCCEEDED"}
    env = clean(cli("output", "--format", "env")).out
    assert "ALPHA_ENDPOINT=\n" in env and "DELTA_ENDPOINT" not in env
    probe = clean(cli("probe", "alpha", "--format", "json"), 1).json()
    assert probe[0]["passed"] is False and probe[0]["error"] == "no endpoint in service"

    # Importing such a job names what differs instead of failing on the missing spec.
    r = clean(cli("import", foreign, "--name", "delta"))
    assert f"Imported {foreign} as delta" in r.err and "~ supervisedTuningSpec:" in r.err


def test_a_replacement_succeeded_without_an_endpoint_does_not_unpublish_the_old_one(cli: Cli, emulator):
    cli.manifest("alpha")
    cli.ok("apply", "--auto-approve")
    emulator.advance(10_000)
    cli.ok("refresh")
    first = cli.state()["models"]["alpha"]["tunedModel"]["endpoint"]
    cli.manifest("alpha", epochs=4)
    cli.ok("apply", "--auto-approve")
    emulator.advance(10_000)
    new = cli.state()["models"]["alpha"]["job"]
    emulator.patch(new, {"tunedModel": None})  # SUCCEEDED, but the answer names no model or endpoint
    clean(cli("refresh"))
    assert cli.state()["models"]["alpha"]["state"] == "JOB_STATE_SUCCEEDED"
    assert clean(cli("output")).json()["alpha"]["endpoint"] == first


