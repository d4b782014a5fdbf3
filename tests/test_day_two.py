"""Day-two workflows a terraform user reaches for (issue 14): show a saved plan, inspect and edit
the state, destroy — through the CLI against the emulator."""

from __future__ import annotations

import json

from tests.clihelp import Cli

LIVE = ("JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_QUEUED")


def live_names(emulator) -> list[str]:
    return sorted(j["labels"]["reconciler-name"] for j in emulator.jobs()
                  if j["state"] in LIVE and j.get("labels", {}).get("reconciler-stack") == "test")


def test_show_prints_a_saved_plan_and_apply_prints_what_it_runs(cli: Cli, emulator):
    cli.manifest("alpha")
    cli.ok("plan", "--out", "plan.json")
    shown = cli.ok("show", "plan.json")
    assert "1 to create" in shown.out and "alpha" in shown.out
    assert json.loads(cli.ok("show", "--format", "json", "plan.json").out)["summary"]["create"] == 1
    assert "Tuning plan for stack `test`" in cli.ok("show", "--format", "markdown", "plan.json").out
    assert not emulator.jobs()  # show calls nothing
    applied = cli.ok("apply", "plan.json")
    assert "1 to create" in applied.out
    r = cli("show", "manifests/alpha.yaml")
    assert r.code == 1 and "is not a saved plan" in r.err


def test_state_list_show_rm_and_mv(cli: Cli, emulator):
    for name in ("alpha", "beta"):
        cli.manifest(name)
    cli.ok("apply", "--auto-approve")
    listed = cli.ok("state", "list").out.splitlines()
    assert [line.split("\t")[0] for line in listed] == ["alpha", "beta"]
    assert set(json.loads(cli.ok("state", "list", "--format", "json").out)) == {"alpha", "beta"}
    assert json.loads(cli.ok("state", "show", "alpha").out)["state"] == "JOB_STATE_PENDING"
    assert cli("state", "show", "nope").code == 1

    # rm: the state forgets beta; its job runs on and is not cancelled by the next plan.
    (cli.workdir / "manifests" / "beta.yaml").unlink()
    cli.ok("state", "rm", "beta")
    assert "beta" not in cli.state()["models"]
    assert cli.ok("plan", "--format", "json").json()["summary"]["cancel"] == 0
    assert live_names(emulator) == ["alpha", "beta"]

    # mv: a manifest renamed alpha → gamma keeps its job; nothing is re-tuned.
    text = (cli.workdir / "manifests" / "alpha.yaml").read_text().replace("name: alpha", "name: gamma")
    (cli.workdir / "manifests" / "alpha.yaml").unlink()
    (cli.workdir / "manifests" / "gamma.yaml").write_text(text)
    cli.ok("state", "mv", "alpha", "gamma")
    assert set(cli.state()["models"]) == {"gamma"}
    plan = cli.ok("plan", "--format", "json").json()
    assert plan["summary"]["changes"] == 0, plan["changes"]
    assert cli("state", "mv", "gamma", "Not_A_Name").code == 1


def test_destroy_cancels_running_jobs_forgets_entries_and_respects_protect(cli: Cli, emulator):
    cli.manifest("alpha")
    cli.manifest("beta")
    cli.manifest("keep", spec={"protect": True})
    cli.ok("apply", "--auto-approve")
    r = cli("plan", "--destroy")
    assert r.code == 1 and "keep: protected" in r.err  # a protected model refuses destroy
    (cli.workdir / "manifests" / "keep.yaml").write_text(
        (cli.workdir / "manifests" / "keep.yaml").read_text().replace("protect: true", "protect: false"))
    cli.ok("apply", "--auto-approve")
    plan = cli.ok("plan", "--destroy", "--format", "json").json()
    assert plan["summary"]["cancel"] == 3 and any("destroy:" in w for w in plan["warnings"])
    assert cli("apply", "--destroy", "--auto-approve", "--max-cancel", "2").code == 1
    assert live_names(emulator) == ["alpha", "beta", "keep"]
    cli.ok("apply", "--destroy", "--auto-approve")
    assert live_names(emulator) == []
    emulator.advance(10_000)
    cli.ok("apply", "--destroy", "--auto-approve")  # the jobs have ended: the entries are forgotten
    assert cli.state()["models"] == {}


def test_readme_against_vertex_ai_steps_run_verbatim(cli: Cli, emulator, tmp_path):
    """The README's "Against Vertex AI" block, run line by line in a copy of the repository's
    manifests and settings, against the emulator instead of Google (gcloud skipped): the jobs go
    to the project the steps name, and output prints their endpoints."""
    import os
    import re
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    block = readme.split("## Against Vertex AI", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    lines = [line for line in block.strip().splitlines() if not line.startswith("gcloud ")]
    work = tmp_path / "repo"
    shutil.copytree(root / "manifests", work / "manifests")
    shutil.copy(root / "reconciler.yaml", work / "reconciler.yaml")
    bindir = Path(sys.executable).parent
    env = {**os.environ, "RECONCILER_API_ENDPOINT": emulator.url, "PATH": f"{bindir}:{os.environ['PATH']}"}
    script = "set -e\n" + "\n".join(lines) + "\n"
    r = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    jobs = emulator.jobs(project="my-project")
    assert jobs and all(j["labels"]["reconciler-stack"] == "prod" for j in jobs)
    assert not emulator.jobs(project="demo-project")
    assert re.search(r"^SUPPORT_BOT_ENDPOINT=", r.stdout, re.M)


def seed_unmanaged(emulator, **extra) -> str:
    [name] = emulator.seed([{"project": "demo-project", "location": "us-central1", "baseModel": "gemini-3.5-flash",
                             "supervisedTuningSpec": {"trainingDatasetUri": "gs://bucket/alpha/train.jsonl",
                                                      "hyperParameters": {"epochCount": 3}},
                             "tunedModelDisplayName": "Alpha bot", "labels": {"team": "a"},
                             "state": "JOB_STATE_SUCCEEDED", **extra}])
    return name


def test_import_without_a_manifest_writes_one_and_adopts_the_job(cli: Cli, emulator):
    job = seed_unmanaged(emulator)
    r = cli.ok("import", job, "--name", "alpha")
    written = cli.workdir / "manifests" / "alpha.yaml"
    assert f"Wrote {written.relative_to(cli.workdir)}" in r.err or "Wrote" in r.err
    assert "matches the manifest" in r.err
    text = written.read_text()
    assert "trainingDatasetUri: gs://bucket/alpha/train.jsonl" in text and "team: a" in text
    cli.ok("validate")
    plan = cli("plan", "--detailed-exitcode")
    assert plan.code == 0, plan.out + plan.err  # adopted as it is: nothing to re-tune
    again = cli("import", job, "--name", "beta")
    assert again.code == 1 and not (cli.workdir / "manifests" / "beta.yaml").exists()  # already imported


def test_plan_hints_import_when_an_unmanaged_job_has_the_manifests_spec(cli: Cli, emulator):
    job = seed_unmanaged(emulator)
    cli.manifest("alpha")
    body = cli.ok("plan", "--format", "json").json()
    assert [c["action"] for c in body["changes"]] == ["create"]
    assert any(f"reconciler import {job} --name alpha" in w for w in body["warnings"])


def test_status_and_plan_tell_the_truth_of_the_last_observation(cli: Cli, emulator):
    """Jobs succeed after apply: status shows their endpoints at once (not `-` until a refresh),
    and a plan with no changes says that the state is behind and apply records it."""
    cli.manifest("alpha")
    cli.ok("apply", "--auto-approve")
    emulator.advance(10_000)
    rows = json.loads(cli.ok("status", "--format", "json").out)["models"]
    assert rows[0]["endpoint"] and rows[0]["endpoint"].startswith("projects/")
    plan = cli.ok("plan", "--format", "json").json()
    assert plan["summary"]["changes"] == 0
    assert any("the state is behind the API for alpha" in w for w in plan["warnings"])
    cli.ok("apply", "--auto-approve")
    assert not any("behind" in w for w in cli.ok("plan", "--format", "json").json()["warnings"])


def test_output_during_a_replace_pairs_the_serving_job_with_its_own_state(cli: Cli, emulator):
    cli.manifest("alpha")
    cli.ok("apply", "--auto-approve")
    emulator.advance(10_000)
    cli.ok("refresh")
    cli.manifest("alpha", epochs=5)
    cli.ok("apply", "--auto-approve")
    out = cli.ok("output", "alpha").json()["alpha"]
    assert out["state"] == "JOB_STATE_SUCCEEDED" and out["endpoint"]
    assert out["latest_state"] == "JOB_STATE_PENDING" and out["latest_job"] != out["job"]


def test_a_broken_credentials_file_is_named_with_its_problem(cli: Cli, tmp_path, monkeypatch):
    """GOOGLE_APPLICATION_CREDENTIALS pointing at a missing or malformed file says so, instead of
    'no credentials found … set GOOGLE_APPLICATION_CREDENTIALS' (issue 14 item 5)."""
    cli.manifest("alpha")
    monkeypatch.delenv("RECONCILER_API_ENDPOINT", raising=False)  # the real endpoints: credentials needed
    missing = tmp_path / "nowhere.json"
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(missing))
    r = cli("plan")
    assert r.code == 1 and f"File {missing} was not found" in r.err and "valid key file" in r.err, r.err
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(broken))
    r = cli("plan")
    assert r.code == 1 and "is not a valid json file" in r.err and len(r.err.strip().splitlines()) == 1, r.err


def test_protect_also_refuses_forgetting_a_finished_model(cli: Cli, emulator):
    """Deleting the manifest of a protected, finished model would drop its endpoint from the state
    and from `output`: refused like a cancel (issue 14 item 3)."""
    path = cli.manifest("alpha", spec={"protect": True})
    cli.ok("apply", "--auto-approve")
    emulator.advance(10_000)
    cli.ok("refresh")
    endpoint = cli.ok("output", "alpha").json()["alpha"]["endpoint"]
    path.unlink()
    r = cli("apply", "--auto-approve", "--allow-empty")
    assert r.code == 1 and "protected" in r.err and "endpoint" in r.err
    assert cli.ok("output", "alpha").json()["alpha"]["endpoint"] == endpoint


def test_a_dead_endpoint_fails_after_three_connection_attempts_naming_host_and_port(cli: Cli, monkeypatch):
    """Retries are for answers that say "try again": a port nobody listens on is refused at once,
    so the run ends after three attempts (seconds, not the 120 s retry deadline) and names
    host:port (issue 14 item 6)."""
    import socket

    with socket.socket() as s:  # a port that is free now: nobody listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("RECONCILER_API_ENDPOINT", f"http://127.0.0.1:{port}")
    cli.manifest("alpha")
    r = cli("plan")
    assert r.code == 1 and f"cannot connect to 127.0.0.1:{port}" in r.err and "gave up after 3 attempts" in r.err, r.err


def test_apply_json_is_json_lines_events_for_ci_tooling(cli: Cli, emulator):
    """`apply --wait --json`: every stdout line is one JSON event — the plan, each outcome, the
    apply's summary, each change of the jobs' states, and the end (issue 14, missing #6)."""
    emulator.configure(clock="real", pending_seconds=0.05, running_seconds=0.3)
    cli.manifest("alpha")
    cli.manifest("beta")
    r = cli("apply", "--auto-approve", "--wait", "--poll-interval", "0.1", "--json")
    assert r.code == 0, r.err
    events = [json.loads(line) for line in r.out.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "plan" and events[0]["summary"]["create"] == 2
    assert kinds.count("outcome") == 2 and all(e["ok"] for e in events if e["event"] == "outcome")
    assert "applied" in kinds and "poll" in kinds and kinds[-1] == "done"
    assert events[-1]["failed"] == []
    polls = [e for e in events if e["event"] == "poll"]
    assert polls[-1]["final"] == polls[-1]["total"] == 2


def test_status_watch_json_is_json_lines(cli: Cli, emulator):
    emulator.configure(clock="real", pending_seconds=0.05, running_seconds=1.0)
    cli.manifest("alpha")
    cli.ok("apply", "--auto-approve")
    out = cli.ok("status", "--watch", "--interval", "0.1", "--format", "json").out
    lines = out.splitlines()
    assert len(lines) >= 2 and all(json.loads(line)["models"] for line in lines)


def test_multi_document_files_with_a_trailing_separator_or_comments_only_are_read(cli: Cli):
    """As kubectl: an empty or comment-only document (a trailing `---`) is skipped (issue 14 item 8)."""
    one = cli.manifest("alpha").read_text()
    two = cli.manifest("beta").read_text()
    (cli.workdir / "manifests" / "beta.yaml").unlink()
    (cli.workdir / "manifests" / "alpha.yaml").write_text(f"# two models\n---\n{one}---\n# nothing here\n---\n{two}---\n")
    assert "2 manifest(s) in 1 file(s) are valid." in cli.ok("validate").out


def test_validate_reports_every_kind_of_problem_in_one_run(cli: Cli, tmp_path, monkeypatch):
    """Field errors, a missing region and a duplicate name at its metadata.name line, all at once
    (issue 14 item 9)."""
    from tests.clihelp import write_config

    write_config(cli.workdir, region=None)
    bad = cli.manifest("alpha", epochs=None, spec={"supervisedTuningSpec": {"trainingDatasetUri": "nope"}})
    cli.manifest("alpha", folder="manifests/more")
    r = cli("validate")
    assert r.code == 1
    assert "trainingDatasetUri" in r.err and "spec.region: not set here" in r.err
    dup = [line for line in r.err.splitlines() if "duplicate name 'alpha'" in line]
    assert dup and ":4: metadata.name" in dup[0], r.err  # the name's line, not the document's
    assert bad.exists()


def test_environments_of_one_manifest_set(cli: Cli, emulator):
    """`--env NAME` (or RECONCILER_ENV): one manifest set, per-environment project, stack and state,
    and overrides of spec values for every model (`*`) or one; the plan names the environment
    (issue 14, missing #4)."""
    from tests.clihelp import write_config

    write_config(cli.workdir, environments={
        "staging": {"project": "staging-proj", "stack": "staging", "state": "staging.state.json",
                    "overrides": {"*": {"spec": {"supervisedTuningSpec": {"hyperParameters": {"epochCount": 1}}}},
                                  "alpha": {"metadata": {"labels": {"tier": "canary"}}}}},
        "prod": {"project": "prod-project", "stack": "prod", "state": "prod.state.json"},
    })
    cli.manifest("alpha", epochs=4)
    cli.manifest("beta", epochs=4)
    plan = cli.ok("--env", "staging", "plan", "--format", "json").json()
    assert plan["environment"] == "staging" and plan["stack"] == "staging"
    requests = {c["name"]: c["request"] for c in plan["changes"]}
    assert all(r["supervisedTuningSpec"]["hyperParameters"]["epochCount"] == "1" for r in requests.values())
    assert requests["alpha"]["labels"]["tier"] == "canary" and "tier" not in requests["beta"]["labels"]
    assert "environment staging" in cli.ok("--env", "staging", "plan").out.splitlines()[0]
    cli.ok("--env", "staging", "apply", "--auto-approve")
    cli.ok("--env", "prod", "apply", "--auto-approve")
    staging = emulator.jobs(project="staging-proj")
    prod = emulator.jobs(project="prod-project")
    assert len(staging) == 2 and len(prod) == 2
    assert {j["supervisedTuningSpec"]["hyperParameters"]["epochCount"] for j in prod} == {"4"}
    assert (cli.workdir / "staging.state.json").exists() and (cli.workdir / "prod.state.json").exists()
    r = cli("--env", "nope", "plan")
    assert r.code == 1 and "no environment 'nope'" in r.err and "prod, staging" in r.err


def test_ignore_changes_accepts_cosmetic_differences_as_they_are(cli: Cli, emulator):
    """A cosmetic change repeats its note on every plan; `spec.ignoreChanges` accepts it (as
    terraform's lifecycle.ignore_changes): no note, no re-tune (issue 14 item 12)."""
    cli.manifest("alpha", spec={"description": "first"})
    cli.ok("apply", "--auto-approve")
    cli.manifest("alpha", spec={"description": "second"})
    noted = cli.ok("plan", "--format", "json").json()["changes"][0]["notes"]
    assert noted and noted[0].startswith("description:")
    cli.manifest("alpha", spec={"description": "second", "ignoreChanges": ["description"]})
    plan = cli.ok("plan", "--format", "json").json()
    assert plan["changes"][0]["notes"] == [] and plan["summary"]["changes"] == 0
    bad = cli.manifest("beta", spec={"ignoreChanges": ["baseModel"]})
    r = cli("validate")
    assert r.code == 1 and "ignoreChanges" in r.err and bad.name in r.err
