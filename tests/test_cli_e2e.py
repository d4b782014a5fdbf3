"""End to end through the CLI against the emulator over HTTP: the proof of the declarative core."""

from __future__ import annotations

import json
import os

import pytest

from tests.clihelp import Cli

PARENT = "projects/demo-project/locations/us-central1"


def managed(emulator, location: str = "us-central1") -> list[dict]:
    return [j for j in emulator.jobs(location=location)
            if j.get("labels", {}).get("managed-by") == "vertex-tuning-reconciler"]


def live(jobs: list[dict]) -> list[dict]:
    return [j for j in jobs if j["state"] in ("JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_QUEUED")]


def test_first_apply_creates_one_job_each_then_plan_is_clean(cli: Cli, emulator):
    for name in ("alpha", "beta", "gamma"):
        cli.manifest(name)
    plan = cli("plan", "--detailed-exitcode")
    assert plan.code == 2 and "3 to create" in plan.out
    cli.ok("apply", "--auto-approve")
    jobs = managed(emulator)
    assert sorted(j["labels"]["reconciler-name"] for j in jobs) == ["alpha", "beta", "gamma"]
    assert all(j["labels"]["reconciler-stack"] == "test" for j in jobs)
    again = cli("plan", "--detailed-exitcode")
    assert again.code == 0, again.out + again.err
    assert "No changes" in again.out
    state = cli.state()
    assert set(state["models"]) == {"alpha", "beta", "gamma"} and state["serial"] >= 1
    assert emulator.stats()["requests"]["create"] == 3


def test_changed_epoch_count_replaces_only_that_model(cli: Cli, emulator):
    cli.manifest("alpha")
    cli.manifest("beta")
    cli.ok("apply", "--auto-approve")
    old = {j["labels"]["reconciler-name"]: j["name"] for j in managed(emulator)}
    cli.manifest("beta", epochs=5)
    plan = cli("plan", "--format", "json")
    body = plan.json()
    changed = [c for c in body["changes"] if c["action"] != "noop"]
    assert [(c["action"], c["name"]) for c in changed] == [("replace", "beta")]
    assert changed[0]["diff"] == [{"path": "supervisedTuningSpec.hyperParameters.epochCount", "kind": "changed", "old": 3, "new": 5}]
    assert body["summary"]["replace"] == 1 and body["summary"]["jobs_to_cancel"] == 1
    text = cli("plan").out
    assert "~ supervisedTuningSpec.hyperParameters.epochCount: 3 → 5" in text
    cli.ok("apply", "--auto-approve")
    jobs = {j["name"]: j for j in emulator.jobs()}
    assert jobs[old["beta"]]["state"] in ("JOB_STATE_CANCELLING", "JOB_STATE_CANCELLED")
    assert live([jobs[old["alpha"]]])  # untouched
    betas = [j for j in live(managed(emulator)) if j["labels"]["reconciler-name"] == "beta"]
    assert len(betas) == 1 and betas[0]["supervisedTuningSpec"]["hyperParameters"]["epochCount"] == "5"


def test_removed_manifest_cancels_only_its_running_job_and_unmanaged_stay(cli: Cli, emulator):
    [unmanaged] = emulator.seed([{"project": "demo-project", "location": "us-central1", "baseModel": "gemini-3.5-flash",
                                   "supervisedTuningSpec": {"trainingDatasetUri": "gs://other/t.jsonl"},
                                   "labels": {"reconciler-name": "alpha"}}])
    [other_stack] = emulator.seed([{"project": "demo-project", "location": "us-central1", "baseModel": "gemini-3.5-flash",
                                     "supervisedTuningSpec": {"trainingDatasetUri": "gs://other/t.jsonl"},
                                     "labels": {"managed-by": "vertex-tuning-reconciler", "reconciler-stack": "prod",
                                                "reconciler-name": "alpha", "reconciler-spec": "x"}}])
    path = cli.manifest("alpha")
    cli.manifest("beta")
    cli.ok("apply", "--auto-approve")
    path.unlink()
    plan = cli("plan", "--format", "json").json()
    assert [(c["action"], c["name"]) for c in plan["changes"] if c["action"] != "noop"] == [("cancel", "alpha"), ("forget", "alpha")]
    cli.ok("apply", "--auto-approve")
    jobs = {j["name"]: j for j in emulator.jobs()}
    states = {j["labels"].get("reconciler-name"): j["state"] for j in managed(emulator) if j["labels"].get("reconciler-stack") == "test"}
    assert states == {"alpha": "JOB_STATE_CANCELLING", "beta": "JOB_STATE_PENDING"}
    assert jobs[unmanaged]["state"] == "JOB_STATE_PENDING"
    assert jobs[other_stack]["state"] == "JOB_STATE_PENDING"
    # One apply removed it: cancelled and forgotten together (issue 14 item 12).
    assert set(cli.state()["models"]) == {"beta"} and "alpha" not in cli.ok("output").json()
    emulator.advance(60)  # the cancel settles; nothing is left to do
    assert cli("plan", "--detailed-exitcode").code == 0


def test_state_holds_endpoints_after_jobs_succeed(cli: Cli, emulator):
    cli.manifest("alpha")
    cli.ok("apply", "--auto-approve")
    assert cli.state()["models"]["alpha"].get("tunedModel") is None
    emulator.advance(10_000)
    cli.ok("refresh")
    entry = cli.state()["models"]["alpha"]
    assert entry["state"] == "JOB_STATE_SUCCEEDED"
    assert entry["tunedModel"]["endpoint"].startswith("projects/") and "/endpoints/" in entry["tunedModel"]["endpoint"]
    out = cli.ok("output").json()
    assert out["alpha"]["endpoint"] == entry["tunedModel"]["endpoint"]
    env = cli.ok("output", "--format", "env").out
    assert f"ALPHA_ENDPOINT={entry['tunedModel']['endpoint']}" in env


def test_replaced_model_keeps_serving_until_new_job_succeeds(cli: Cli, emulator):
    cli.manifest("alpha")
    cli.ok("apply", "--auto-approve")
    emulator.advance(10_000)
    cli.ok("refresh")
    first = cli.state()["models"]["alpha"]["tunedModel"]["endpoint"]
    cli.manifest("alpha", epochs=4)
    cli.ok("apply", "--auto-approve")
    entry = cli.state()["models"]["alpha"]
    assert entry["state"] == "JOB_STATE_PENDING" and entry["tunedModel"]["endpoint"] == first
    emulator.advance(10_000)
    cli.ok("refresh")
    assert cli.state()["models"]["alpha"]["tunedModel"]["endpoint"] != first


def test_deleted_state_file_makes_no_duplicate(cli: Cli, emulator):
    cli.manifest("alpha")
    cli.manifest("beta")
    cli.ok("apply", "--auto-approve")
    (cli.workdir / "reconciler.state.json").unlink()
    plan = cli("plan", "--detailed-exitcode")
    assert plan.code == 0, plan.out
    cli.ok("apply", "--auto-approve")
    assert len(managed(emulator)) == 2
    assert set(cli.state()["models"]) == {"alpha", "beta"}


def test_saved_plan_applies_exactly_and_stale_plan_is_refused(cli: Cli, emulator):
    cli.manifest("alpha")
    cli.ok("plan", "--out", "tf.plan")
    cli.manifest("beta")  # manifests changed after the plan: the saved plan still creates only alpha
    cli.ok("apply", "tf.plan")  # a saved plan was reviewed already: no prompt, as terraform
    assert [j["labels"]["reconciler-name"] for j in managed(emulator)] == ["alpha"]
    stale = cli("apply", "--auto-approve", "tf.plan")
    assert stale.code == 1 and "stale" in stale.err
    assert len(managed(emulator)) == 1


def test_apply_refuses_without_tty_or_auto_approve(cli: Cli, emulator):
    cli.manifest("alpha")
    r = cli("apply")
    assert r.code == 1 and "--auto-approve" in r.err
    assert managed(emulator) == []


def test_max_cancel_refuses_large_cancellations(cli: Cli, emulator):
    paths = [cli.manifest(f"m{i}") for i in range(3)]
    cli.ok("apply", "--auto-approve")
    for p in paths:
        p.unlink()
    cli.manifest("keeper")
    r = cli("apply", "--auto-approve", "--max-cancel", "2")
    assert r.code == 1 and "cancels 3 running job(s), more than --max-cancel 2" in r.err
    assert len(live(managed(emulator))) == 3


def test_empty_manifest_set_is_refused(cli: Cli, emulator):
    cli.manifest("alpha")
    cli.ok("apply", "--auto-approve")
    (cli.workdir / "manifests" / "alpha.yaml").unlink()
    r = cli("apply", "--auto-approve")
    assert r.code == 1 and "--allow-empty" in r.err
    assert live(managed(emulator))
    plan = cli("plan", "--allow-empty", "--format", "json").json()
    assert plan["summary"]["cancel"] == 1


def test_failed_job_is_reported_and_replace_retunes(cli: Cli, emulator):
    cli.manifest("alpha")
    emulator.fail(labels={"reconciler-name": "alpha"}, message="Dataset has 0 valid examples.")
    cli.ok("apply", "--auto-approve")
    emulator.advance(10_000)
    plan = cli("plan", "--format", "json", "--detailed-exitcode")
    assert plan.code == 0
    (change,) = plan.json()["changes"]
    assert change["action"] == "noop" and "Dataset has 0 valid examples." in change["error"]
    cli.ok("apply", "--auto-approve", "--replace", "alpha")
    assert emulator.stats()["requests"]["create"] == 2


def test_protected_model_spec_change_fails_plan(cli: Cli, emulator):
    cli.manifest("alpha", spec={"protect": True})
    cli.ok("apply", "--auto-approve")
    cli.manifest("alpha", epochs=9, spec={"protect": True})
    r = cli("plan")
    assert r.code == 1 and "protected" in r.err


def test_cosmetic_change_is_noted_not_applied(cli: Cli, emulator):
    cli.manifest("alpha")
    cli.ok("apply", "--auto-approve")
    cli.manifest("alpha", spec={"tunedModelDisplayName": "Shiny new name"})
    r = cli("plan", "--detailed-exitcode")
    assert r.code == 0 and "tunedModelDisplayName" in r.out and "--replace alpha" in r.out


def test_markdown_plan_for_pull_requests(cli: Cli, emulator):
    cli.manifest("alpha")
    md = cli.ok("plan", "--format", "markdown").out
    assert md.startswith("### Tuning plan for stack `test`") and "| `alpha` |" in md


def test_target_limits_apply(cli: Cli, emulator):
    cli.manifest("alpha")
    cli.manifest("beta")
    cli.ok("apply", "--auto-approve", "--target", "beta")
    assert [j["labels"]["reconciler-name"] for j in managed(emulator)] == ["beta"]


def test_status_lists_models_and_unmanaged_jobs(cli: Cli, emulator):
    emulator.seed([{"project": "demo-project", "location": "us-central1", "baseModel": "gemini-3.5-flash",
                    "supervisedTuningSpec": {"trainingDatasetUri": "gs://x/t.jsonl"}}])
    cli.manifest("alpha")
    cli.ok("apply", "--auto-approve")
    body = cli.ok("status", "--format", "json").json()
    assert [m["name"] for m in body["models"]] == ["alpha"]
    assert len(body["unmanaged"]) == 1 and body["unmanaged"][0]["owner"] == "unmanaged"


def test_wait_follows_jobs_to_the_end(cli: Cli, emulator):
    emulator.configure(clock="real", pending_seconds=0.2, running_seconds=0.3)
    cli.manifest("alpha")
    cli.ok("apply", "--auto-approve", "--wait", "--poll-interval", "0.1", "--wait-timeout", "30")
    entry = cli.state()["models"]["alpha"]
    assert entry["state"] == "JOB_STATE_SUCCEEDED" and entry["tunedModel"]["endpoint"]


def test_plan_makes_one_list_per_parent_and_no_get(cli: Cli, emulator):
    cli.manifest("alpha")
    cli.manifest("beta", spec={"region": "europe-west4"})
    cli.ok("apply", "--auto-approve")
    before = emulator.stats()["requests"]
    cli.ok("plan")
    after = emulator.stats()["requests"]
    assert after.get("get", 0) == before.get("get", 0)
    assert after["list"] - before["list"] == 2


def test_validate_reports_every_problem_with_file_and_line(cli: Cli):
    bad = cli.workdir / "manifests" / "bad.yaml"
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_text(
        "apiVersion: reconciler/v1\nkind: TunedModel\nmetadata:\n  name: Bad\nspec:\n  baseModel: gemini-3.5-flash\n"
        "  colour: blue\n  supervisedTuningSpec:\n    trainingDatasetUri: s3://x/y\n    hyperParameters:\n      epochCount: 0\n"
    )
    r = cli("validate")
    assert r.code == 1
    assert "bad.yaml:4: metadata.name" in r.err
    assert "bad.yaml:7: spec.colour: unknown field" in r.err
    assert "bad.yaml:9: spec.supervisedTuningSpec.trainingDatasetUri" in r.err
    assert "bad.yaml:11: spec.supervisedTuningSpec.hyperParameters.epochCount" in r.err
    assert "Traceback" not in r.err


def test_duplicate_names_name_both_files(cli: Cli):
    cli.manifest("alpha")
    cli.manifest("alpha", folder="manifests/other")
    r = cli("validate")
    assert r.code == 1 and "duplicate name 'alpha'" in r.err
    # Both at the line of their metadata.name (issue 14 item 9), not the document's first line.
    assert "manifests/alpha.yaml:4" in r.err and "manifests/other/alpha.yaml:4" in r.err


def test_schema_is_json_schema(cli: Cli):
    schema = json.loads(cli.ok("schema").out)
    assert schema["properties"]["apiVersion"] and "spec" in schema["required"]


def test_region_move_keeps_old_endpoint_and_watches_the_old_region(cli: Cli, emulator):
    cli.manifest("alpha")
    cli.ok("apply", "--auto-approve")
    emulator.advance(10_000)
    cli.ok("refresh")
    first = cli.state()["models"]["alpha"]["tunedModel"]["endpoint"]
    cli.manifest("alpha", spec={"region": "europe-west4"})
    cli.ok("apply", "--auto-approve")
    cli.ok("apply", "--auto-approve")  # a second run must still see the old region's job
    entry = cli.state()["models"]["alpha"]
    assert entry["tunedModel"]["endpoint"] == first and "europe-west4" in entry["job"]
    assert "projects/demo-project/locations/us-central1" in entry["parents"]
    emulator.advance(10_000)
    cli.ok("refresh")
    entry = cli.state()["models"]["alpha"]
    assert "europe-west4" in entry["tunedModel"]["endpoint"]
    assert entry["parents"] == ["projects/demo-project/locations/europe-west4"]


def test_wait_exits_nonzero_when_tuning_fails(cli: Cli, emulator):
    emulator.configure(clock="real", pending_seconds=0.1, running_seconds=0.2)
    emulator.fail(labels={"reconciler-name": "alpha"}, message="bad rows")
    cli.manifest("alpha")
    r = cli("apply", "--auto-approve", "--wait", "--poll-interval", "0.1", "--wait-timeout", "30")
    assert r.code == 1 and "Tuning did not succeed for: alpha" in r.err


def test_machine_output_is_literal(cli: Cli):
    cli.manifest("alpha", spec={"description": "Launch :rocket: [bold]now[/bold]"})
    body = cli.ok("plan", "--format", "json").json()
    assert body["changes"][0]["request"]["description"] == "Launch :rocket: [bold]now[/bold]"
    cli.ok("apply", "--auto-approve")
    cli.manifest("alpha", spec={"description": "Launch :rocket: [bold]now[/bold]", "tunedModelDisplayName": "x :smile: [red]y"})
    assert "x :smile: [red]y" in cli.ok("plan").out
    assert "x :smile: [red]y" in cli.ok("plan", "--format", "markdown").out


def test_yaml_merge_keys_may_be_overridden(cli: Cli):
    path = cli.workdir / "manifests" / "merged.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "apiVersion: reconciler/v1\nkind: TunedModel\nmetadata: {name: merged}\nspec:\n"
        "  baseModel: gemini-3.1-flash-lite\n  supervisedTuningSpec:\n    trainingDatasetUri: gs://bkt/t.jsonl\n"
        "    hyperParameters: {<<: {epochCount: 3, adapterSize: ADAPTER_SIZE_FOUR}, epochCount: 5}\n")
    body = cli.ok("plan", "--format", "json").json()
    assert body["changes"][0]["request"]["supervisedTuningSpec"]["hyperParameters"] == {
        "epochCount": "5", "adapterSize": "ADAPTER_SIZE_FOUR"}


def test_status_reports_even_when_apply_would_refuse(cli: Cli, emulator):
    cli.manifest("alpha", spec={"protect": True})
    cli.manifest("beta")
    cli.ok("apply", "--auto-approve")
    cli.manifest("alpha", epochs=8, spec={"protect": True})
    body = cli.ok("status", "--format", "json").json()
    # Every model has its row (issue 14 item 2: the protected one was hidden), with the problem.
    assert [m["name"] for m in body["models"]] == ["alpha", "beta"] and "protected" in body["errors"][0]
    assert "protected" in body["models"][0]["error"]
    detail = cli.ok("status", "alpha").out
    assert "None" not in detail.splitlines()[0] and "protected" in detail.splitlines()[0]


def seed_unmanaged(emulator, epochs: int = 3, **extra) -> str:
    [name] = emulator.seed([{"project": "demo-project", "location": "us-central1", "baseModel": "gemini-3.5-flash",
                             "supervisedTuningSpec": {"trainingDatasetUri": "gs://bucket/alpha/train.jsonl",
                                                      "hyperParameters": {"epochCount": epochs, "adapterSize": "ADAPTER_SIZE_FOUR"}},
                             "tunedModelDisplayName": "alpha", **extra}])
    return name


def test_import_adopts_a_matching_job_without_retuning(cli: Cli, emulator):
    job = seed_unmanaged(emulator, state="JOB_STATE_SUCCEEDED")
    cli.manifest("alpha")
    r = cli.ok("import", job, "--name", "alpha")
    assert "matches the manifest" in r.err
    plan = cli("plan", "--detailed-exitcode")
    assert plan.code == 0, plan.out
    cli.ok("apply", "--auto-approve")
    entry = cli.state()["models"]["alpha"]
    assert entry["job"] == job and entry["tunedModel"]["endpoint"] and entry["adopted"] == {job: entry["specHash"]}
    assert emulator.stats()["requests"].get("create", 0) == 0
    # A later spec change replaces the adopted job like any other.
    cli.manifest("alpha", epochs=6)
    body = cli("plan", "--format", "json").json()
    [change] = [c for c in body["changes"] if c["action"] != "noop"]
    assert change["action"] == "replace" and change["job"] == job


def test_import_of_a_differing_job_plans_a_replace_with_the_diff(cli: Cli, emulator):
    job = seed_unmanaged(emulator, epochs=2)
    cli.manifest("alpha")
    r = cli.ok("import", job, "--name", "alpha")
    assert "~ supervisedTuningSpec.hyperParameters.epochCount: 2 → 3" in r.err
    body = cli("plan", "--format", "json").json()
    [change] = body["changes"]
    # An imported job carries none of the reconciler's labels: it is never cancelled, only reported.
    assert change["action"] == "replace" and change["cancel_jobs"] == []
    assert any("adopted without the reconciler's labels; not cancelling" in w for w in body["warnings"])


def test_import_refuses_managed_jobs_and_unknown_names(cli: Cli, emulator):
    cli.manifest("alpha")
    cli.ok("apply", "--auto-approve")
    [managed_job] = managed(emulator)
    r = cli("import", managed_job["name"], "--name", "alpha")
    assert r.code == 1 and "already managed" in r.err
    r = cli("import", managed_job["name"], "--name", "nope")
    # No manifest named nope: one would be written from the job, but the job is managed, so the
    # import is refused and the manifest it wrote is gone again.
    assert r.code == 1 and "already managed" in r.err
    assert not (cli.workdir / "manifests" / "nope.yaml").exists()


def test_renamed_manifest_moves_the_state_entry_instead_of_retuning(cli: Cli, emulator):
    old_path = cli.manifest("support-bot")
    cli.ok("apply", "--auto-approve")
    emulator.advance(10_000)
    cli.ok("refresh")
    endpoint = cli.state()["models"]["support-bot"]["tunedModel"]["endpoint"]
    text = old_path.read_text().replace("name: support-bot", "name: helpdesk-bot")
    old_path.unlink()
    (cli.workdir / "manifests" / "helpdesk-bot.yaml").write_text(text)
    body = cli("plan", "--format", "json").json()
    assert [(c["action"], c["name"], c["moved_from"]) for c in body["changes"]] == [("move", "helpdesk-bot", "support-bot")]
    assert body["summary"]["jobs_to_cancel"] == 0
    cli.ok("apply", "--auto-approve")
    state = cli.state()["models"]
    assert list(state) == ["helpdesk-bot"] and state["helpdesk-bot"]["tunedModel"]["endpoint"] == endpoint
    assert cli("plan", "--detailed-exitcode").code == 0
    assert emulator.stats()["requests"]["create"] == 1 and emulator.stats()["requests"].get("cancel", 0) == 0


def test_probe_reports_each_model_in_service(cli: Cli, emulator):
    cli.manifest("alpha", spec={"smokeTest": {"prompt": "hello there", "expectContains": "says", "gate": False}})
    cli.manifest("beta")
    cli.ok("apply", "--auto-approve")
    emulator.advance(10_000)
    cli.ok("refresh")
    results = {r["name"]: r for r in cli.ok("probe", "--format", "json").json()}
    assert results["alpha"]["passed"] and "hello there" in results["alpha"]["reply"]
    assert results["beta"]["passed"]
    emulator.admin.post("/_emulator/replies", json={"endpoint": "*", "text": "I cannot help with that."}).raise_for_status()
    r = cli("probe", "alpha")
    assert r.code == 1 and "FAIL" in r.out
    [result] = cli("probe", "alpha", "--format", "json").json()
    assert not result["passed"] and result["error"] == "reply does not contain 'says'"


def test_gating_smoke_test_keeps_old_endpoint_until_the_new_one_passes(cli: Cli, emulator):
    smoke = {"smokeTest": {"prompt": "Classify: refund please", "expectContains": "refund"}}
    cli.manifest("alpha", spec=smoke)
    cli.ok("apply", "--auto-approve")
    emulator.advance(10_000)
    r = cli.ok("refresh")
    assert "smoke test alpha" in r.err and "passed" in r.err
    first = cli.state()["models"]["alpha"]["tunedModel"]["endpoint"]
    cli.manifest("alpha", epochs=5, spec=smoke)
    cli.ok("apply", "--auto-approve")
    emulator.advance(10_000)
    emulator.admin.post("/_emulator/replies", json={"endpoint": "*", "text": "Sorry?"}).raise_for_status()
    r = cli.ok("refresh")
    assert "failed" in r.err and "previous endpoint keeps serving" in r.err
    entry = cli.state()["models"]["alpha"]
    assert entry["state"] == "JOB_STATE_SUCCEEDED" and entry["tunedModel"]["endpoint"] == first
    emulator.admin.post("/_emulator/replies", json={"endpoint": "*", "text": "refund: yes"}).raise_for_status()
    cli.ok("refresh")
    assert cli.state()["models"]["alpha"]["tunedModel"]["endpoint"] != first


def test_status_name_shows_jobs_over_time_and_tuning_data(cli: Cli, emulator):
    cli.manifest("alpha")
    cli.ok("apply", "--auto-approve")
    emulator.advance(10_000)
    cli.manifest("alpha", epochs=4)
    cli.ok("apply", "--auto-approve")
    emulator.advance(100)  # the new job is running: stats appear
    [detail] = cli.ok("status", "alpha", "--format", "json").json()
    assert [j["state"] for j in detail["jobs"]] == ["JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED"]
    assert detail["endpoint"] and detail["serving_job"] == detail["jobs"][1]["job"]
    assert detail["tuning_data_stats"]["supervisedTuningDataStats"]["tuningDatasetExampleCount"]
    text = cli.ok("--no-color", "status", "alpha").out
    assert "examples" in text and "tuning steps" in text and "jobs, newest first" in text
    assert "gs://" in text  # where the metrics live


def test_status_watch_follows_until_jobs_finish(cli: Cli, emulator):
    emulator.configure(clock="real", pending_seconds=0.1, running_seconds=1.5)
    cli.manifest("alpha")
    cli.ok("apply", "--auto-approve")
    r = cli.ok("status", "--watch", "--interval", "0.1", "--format", "json")
    snapshots = [json.loads(line) for line in r.out.splitlines()]  # JSON Lines: one snapshot a line
    assert snapshots[-1]["models"][0]["state"] == "JOB_STATE_SUCCEEDED"
    assert len(snapshots) >= 2


def test_status_watch_log_shows_progress_and_time(cli: Cli, emulator):
    emulator.configure(clock="real", pending_seconds=0.1, running_seconds=0.3)
    cli.manifest("alpha")
    cli.manifest("beta")
    cli.ok("apply", "--auto-approve")
    out = cli.ok("status", "--watch", "--interval", "0.1").out  # no TTY: a log of the changes
    heads = [line for line in out.splitlines() if line.startswith("[0:00:")]
    assert heads[0].endswith("0/2 model(s) final") and heads[-1].endswith("2/2 model(s) final")


def test_status_watch_on_a_terminal_is_a_live_table_with_progress_and_elapsed_time(cli: Cli, emulator):
    """The manual clock: the job finishes only when the test has seen the first frame, however
    slowly a loaded machine starts the process."""
    import pty
    import select
    import subprocess
    import sys
    import time

    cli.manifest("alpha")
    cli.ok("apply", "--auto-approve")
    controller, terminal = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "status", "--watch", "--interval", "0.2"],
                            cwd=cli.workdir, stdin=terminal, stdout=terminal, stderr=terminal, close_fds=True)
    os.close(terminal)
    chunks: list[bytes] = []
    advanced = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal closed: the process ended
                break
            if not chunk:
                break
            chunks.append(chunk)
        if not advanced and b"0/1 model(s) final" in b"".join(chunks):
            emulator.advance(10_000)  # now the job succeeds
            advanced = True
    os.close(controller)
    assert proc.wait(timeout=60) == 0
    screen = b"".join(chunks).decode(errors="replace")
    assert "0/1 model(s) final" in screen and "1/1 model(s) final" in screen and "elapsed · done" in screen
    assert "\x1b[" in screen  # drawn as a live display, not a log


def test_a_job_cannot_be_imported_twice(cli: Cli, emulator):
    job = seed_unmanaged(emulator, state="JOB_STATE_SUCCEEDED")
    cli.manifest("alpha")
    cli.manifest("beta", spec={"supervisedTuningSpec": {"trainingDatasetUri": "gs://bucket/alpha/train.jsonl",
                                                        "hyperParameters": {"epochCount": 3}}})
    cli.ok("import", job, "--name", "alpha")
    r = cli("import", job, "--name", "beta")
    assert r.code == 1 and "already imported as 'alpha'" in r.err


def test_a_job_adopted_twice_in_a_hand_edited_state_stops_the_plan(cli: Cli, emulator):
    job = seed_unmanaged(emulator, state="JOB_STATE_SUCCEEDED")
    cli.manifest("alpha")
    cli.ok("import", job, "--name", "alpha")
    state = cli.state()
    state["models"]["beta"] = {**state["models"]["alpha"]}
    (cli.workdir / "reconciler.state.json").write_text(json.dumps(state))
    cli.manifest("beta")
    r = cli("apply", "--auto-approve")
    assert r.code == 1 and "adopts" in r.err and "several names" in r.err
    assert emulator.stats()["requests"].get("create", 0) == 0


def test_rename_is_detected_under_target_of_the_new_name(cli: Cli, emulator):
    old = cli.manifest("support-bot")
    cli.ok("apply", "--auto-approve")
    (cli.workdir / "manifests" / "helpdesk-bot.yaml").write_text(old.read_text().replace("name: support-bot", "name: helpdesk-bot"))
    old.unlink()
    body = cli("plan", "--format", "json", "--target", "helpdesk-bot").json()
    assert [(c["action"], c["moved_from"]) for c in body["changes"]] == [("move", "support-bot")]


def test_an_adopted_job_without_our_labels_is_never_cancelled(cli: Cli, emulator):
    foreign = seed_unmanaged(emulator)  # running, no labels of ours
    cli.manifest("keeper")
    cli.ok("apply", "--auto-approve")
    state = cli.state()
    state["models"]["alpha"] = {"parent": "projects/demo-project/locations/us-central1", "adopted": {foreign: "x"}}
    (cli.workdir / "reconciler.state.json").write_text(json.dumps(state))
    r = cli("apply", "--auto-approve")
    assert r.code == 0 and "not cancelled" in r.out + r.err
    assert emulator.stats()["requests"].get("cancel", 0) == 0
    assert next(j for j in emulator.jobs() if j["name"] == foreign)["state"] == "JOB_STATE_PENDING"
    assert "alpha" not in cli.state()["models"]  # forgotten, not cancelled


def test_gated_endpoint_is_published_by_one_apply_after_the_state_was_lost(cli: Cli, emulator):
    cli.manifest("alpha", spec={"smokeTest": {"prompt": "hi", "expectContains": "says"}})
    cli.ok("apply", "--auto-approve")
    emulator.advance(10_000)
    (cli.workdir / "reconciler.state.json").unlink()
    r = cli.ok("apply", "--auto-approve")
    assert "passed" in r.err
    assert cli.ok("output", "--format", "env").out.startswith("ALPHA_ENDPOINT=projects/")


def test_an_interrupted_create_in_a_region_nothing_else_names_is_still_seen(cli: Cli, emulator):
    cli.manifest("alpha", spec={"region": "europe-west4"})
    cli.ok("apply", "--auto-approve")
    [job] = managed(emulator, location="europe-west4")
    # As left by a run killed between its create and recording it; then the manifest is deleted.
    state = cli.state()
    state["models"] = {}
    state["journal"] = [{"name": "alpha", "requestId": job["labels"]["reconciler-request"],
                         "parent": "projects/demo-project/locations/europe-west4", "specHash": "x",
                         "started": "2026-01-01T00:00:00Z"}]
    (cli.workdir / "reconciler.state.json").write_text(json.dumps(state))
    (cli.workdir / "manifests" / "alpha.yaml").unlink()
    cli.manifest("other")
    r = cli("plan", "--format", "json")
    assert any("interrupted run" in w and "its job exists" in w for w in r.json()["warnings"])
    assert "its job exists" in cli("plan", "--format", "markdown").out  # the PR comment says so too
    assert [(c["action"], c["name"]) for c in r.json()["changes"] if c["action"] != "noop"] == [
        ("cancel", "alpha"), ("create", "other")]


def test_max_cost_must_be_a_real_amount(cli: Cli, emulator):
    cli.manifest("alpha")
    r = cli("apply", "--auto-approve", "--max-cost", "nan")
    assert r.code == 1 and "Invalid value for '--max-cost': nan is not a finite number" in r.err
    assert emulator.stats()["requests"].get("create", 0) == 0


def test_state_push_refuses_a_diverged_state_of_the_same_serial(cli: Cli, emulator):
    cli.manifest("alpha")
    cli.ok("apply", "--auto-approve")
    state = cli.state()
    state["models"]["alpha"]["protect"] = True
    (cli.workdir / "diverged.json").write_text(json.dumps(state))
    r = cli("state", "push", "diverged.json")
    assert r.code == 1 and "diverged" in r.err


@pytest.mark.parametrize(("args", "message"), [
    (["plan", "--bogus"], "No such option: --bogus"),
    (["plan", "--detailed-exitcode", "--taget", "x"], "No such option: --taget"),
    (["nosuch"], "No such command 'nosuch'"),
    (["emulator", "--port", "99999"], "Invalid value for '--port'"),
])
def test_usage_errors_exit_1_in_two_lines(cli: Cli, args: list[str], message: str):
    r = cli(*args)
    lines = r.err.strip().splitlines()
    # 1, not click's 2: under `plan --detailed-exitcode` a 2 would read as "changes".
    assert r.code == 1 and message in lines[0] and lines[0].startswith("Error: ")
    assert len(lines) == 2 and "--help' for help." in lines[1] and "Traceback" not in r.err


def test_no_command_shows_the_help(cli: Cli):
    r = cli()
    assert r.code == 1 and "Usage: reconciler" in r.err and "Error" not in r.err


def test_version_needs_no_command(cli: Cli):
    from reconciler import __version__

    assert cli.ok("--version").out.strip() == f"vertex-tuning-reconciler {__version__}"


def test_probe_works_from_the_state_alone(cli: Cli, emulator):
    cli.manifest("alpha")
    cli.ok("apply", "--auto-approve")
    emulator.advance(10_000)
    cli.ok("refresh")
    import shutil

    shutil.rmtree(cli.workdir / "manifests")  # e.g. a deploy job that only has the state
    r = cli.ok("probe", "--format", "json")
    assert [p["name"] for p in r.json()] == ["alpha"] and r.json()[0]["passed"]


def test_a_malformed_gs_state_uri_is_named_before_credentials_are_sought(cli: Cli, monkeypatch):
    monkeypatch.delenv("RECONCILER_ACCESS_TOKEN", raising=False)
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    cli.manifest("alpha")
    r = cli("--state", "gs://bad_bucket!/x", "plan")
    assert r.code == 1 and "not a valid Cloud Storage object URI" in r.err and "credentials" not in r.err.lower()
