"""Issue 11, through the CLI against the emulator: never cancel what this run has no business
cancelling, at most one live job per create request, saved plans that cannot be edited, and
numbers on the command line that are numbers.

Each test is an attack that succeeded before the fix (see docs/reliability.md for the trials).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.clihelp import Cli, write_config

LIVE = ("JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_RUNNING")
# More trials for the figures of docs/reliability.md: SAFETY_TRIALS=30 python -m pytest tests/test_safety_plan.py
TRIALS = int(os.environ.get("SAFETY_TRIALS", "3"))


def owned(emulator, stack: str = "test") -> list[dict]:
    return [j for j in emulator.jobs() if j.get("labels", {}).get("reconciler-stack") == stack]


def address(name: str, parent: str = "projects/demo-project/locations/us-central1") -> str:
    """Where the reconciler calls about a job: the listed parent and the job's id."""
    return f"{parent}/tuningJobs/{name.rsplit('/', 1)[1]}"


def live_names(emulator) -> Counter[str]:
    return Counter(j["labels"]["reconciler-name"] for j in owned(emulator) if j["state"] in LIVE)


# -- 1. a subset of manifests prunes nothing ------------------------------------------------------
def test_applying_one_file_leaves_the_other_models_running(cli: Cli, emulator):
    for name in ("support-bot", "sales-bot", "legal-bot"):
        cli.manifest(name)
    cli.ok("apply", "--auto-approve")
    plan = cli.ok("plan", "manifests/support-bot.yaml")
    assert "Scope: a subset of the manifests" in plan.out and "No changes" in plan.out
    assert "partial run: 2 model(s)" in plan.out and "legal-bot, sales-bot" in plan.out
    cli.ok("apply", "--auto-approve", "manifests/support-bot.yaml")
    assert live_names(emulator) == {"support-bot": 1, "sales-bot": 1, "legal-bot": 1}
    assert emulator.stats()["requests"].get("cancel", 0) == 0
    # The JSON and markdown plans say it too.
    body = cli.ok("plan", "--format", "json", "manifests/support-bot.yaml").json()
    assert body["prune"] is False
    assert "Scope: a subset" in cli.ok("plan", "--format", "markdown", "manifests/support-bot.yaml").out


@pytest.mark.parametrize("spelling", ["manifests", "manifests/", "./manifests", "{abs}", "link"])
def test_the_manifest_root_however_spelled_is_the_whole_set(cli: Cli, emulator, spelling):
    cli.manifest("keep")
    gone = cli.manifest("gone")
    cli.ok("apply", "--auto-approve")
    gone.unlink()
    (cli.workdir / "link").symlink_to(cli.workdir / "manifests")
    path = spelling.format(abs=cli.workdir / "manifests")
    body = cli.ok("plan", "--format", "json", path).json()
    assert body["prune"] is True
    assert [(c["action"], c["name"]) for c in body["changes"] if c["action"] != "noop"] == [("cancel", "gone"), ("forget", "gone")]


def test_prune_flag_and_the_configured_root(cli: Cli, emulator):
    cli.manifest("a", folder="models")
    cli.manifest("b", folder="models")
    write_config(cli.workdir, manifests="models")
    cli.ok("apply", "--auto-approve")  # the default paths are the configured root
    assert live_names(emulator) == {"a": 1, "b": 1}
    (cli.workdir / "models" / "b.yaml").unlink()
    cli.manifest("a", folder="one")
    assert "No changes" in cli.ok("plan", "one").out
    pruned = cli.ok("plan", "--format", "json", "--prune", "one").json()
    assert [(c["action"], c["name"]) for c in pruned["changes"] if c["action"] != "noop"] == [("cancel", "b"), ("forget", "b")]


def test_a_rename_inside_a_subset_creates_no_second_job(cli: Cli, emulator):
    path = cli.manifest("old-name")
    cli.ok("apply", "--auto-approve")
    text = path.read_text().replace("name: old-name", "name: new-name")
    path.unlink()
    (cli.workdir / "manifests" / "new-name.yaml").write_text(text)
    body = cli.ok("plan", "--format", "json", "manifests/new-name.yaml").json()
    assert [(c["action"], c["name"]) for c in body["changes"]] == [("noop", "new-name")]
    assert "renamed from old-name" in body["changes"][0]["reason"]
    whole = cli.ok("plan", "--format", "json").json()
    assert [c["action"] for c in whole["changes"]] == ["move"]


# -- 3. a new state never cancels another checkout's jobs -----------------------------------------
def test_a_second_repository_on_the_same_stack_does_not_cancel_the_first(cli: Cli, emulator, tmp_path, monkeypatch):
    cli.manifest("team-a-bot")
    cli.ok("apply", "--auto-approve")
    repo_b = tmp_path / "repo-b"
    repo_b.mkdir()
    write_config(repo_b)
    monkeypatch.chdir(repo_b)
    other = Cli(repo_b, cli.capsys)
    other.manifest("team-b-bot")
    plan = other.ok("plan", "--format", "json")
    assert [(c["action"], c["name"]) for c in plan.json()["changes"] if c["action"] != "noop"] == [("create", "team-b-bot")]
    warning = " ".join(plan.json()["warnings"])
    assert "team-a-bot" in warning and "not recorded in this state" in warning and "--prune-unrecorded" in warning
    other.ok("apply", "--auto-approve", "--max-cancel", "0")
    assert live_names(emulator) == {"team-a-bot": 1, "team-b-bot": 1}
    assert "team-a-bot" not in other.state()["models"]
    other.ok("refresh")  # a refresh does not adopt it either
    assert "team-a-bot" not in other.state()["models"]
    assert "No changes" in other.ok("plan").out
    # Explicitly, it can be pruned.
    body = other.ok("plan", "--format", "json", "--prune-unrecorded").json()
    assert [(c["action"], c["name"]) for c in body["changes"] if c["action"] != "noop"] == [("cancel", "team-a-bot")]


def _other_checkout(cli: Cli, tmp_path: Path, name: str) -> Cli:
    repo = tmp_path / name
    repo.mkdir()
    write_config(repo)
    return Cli(repo, cli.capsys)


def test_two_checkouts_of_one_model_never_cancel_each_others_jobs(cli: Cli, emulator, tmp_path, monkeypatch):
    """r2 applies `delta`; r3 (its own new state, same project and stack) applies `delta` with
    another training URI. Neither state recorded the other's job: neither plan cancels it, as
    superseded or otherwise, however often they apply."""
    r2, r3 = cli, _other_checkout(cli, tmp_path, "r3")
    r2.manifest("delta")
    r2.ok("apply", "--auto-approve")
    [a] = owned(emulator)
    monkeypatch.chdir(r3.workdir)
    r3.manifest("delta", spec={"supervisedTuningSpec": {"trainingDatasetUri": "gs://bucket/delta/other.jsonl"}})
    r3.ok("apply", "--auto-approve")
    [b] = [j for j in owned(emulator) if j["name"] != a["name"]]
    for _ in range(2):
        for repo, theirs in ((r2, b), (r3, a)):
            monkeypatch.chdir(repo.workdir)
            body = repo.ok("plan", "--format", "json").json()
            assert body["summary"]["jobs_to_cancel"] == 0, body["changes"]
            assert any(theirs["name"] in w and "not recorded" in w for w in body["warnings"]), body["warnings"]
            repo.ok("apply", "--auto-approve")
    assert emulator.stats()["requests"].get("cancel", 0) == 0
    assert live_names(emulator) == {"delta": 2}
    assert r2.state()["models"]["delta"]["job"] == a["name"] and r2.state()["models"]["delta"]["jobs"] == [a["name"]]
    assert r3.state()["models"]["delta"]["job"] == b["name"] and r3.state()["models"]["delta"]["jobs"] == [b["name"]]


def test_apply_wait_follows_only_this_states_jobs(cli: Cli, emulator):
    """Another checkout's running job of one of our models (same name, another spec): this
    plan neither cancels it nor waits for it, and `apply --wait` shows our job, not theirs."""
    cli.manifest("team-b-bot")
    cli.ok("apply", "--auto-approve")
    [ours] = owned(emulator)
    emulator.advance(3600)  # our job finishes
    [theirs] = emulator.seed([{"project": "demo-project", "location": "us-central1", "state": "JOB_STATE_RUNNING",
                               "baseModel": "gemini-3.5-flash",
                               "supervisedTuningSpec": {"trainingDatasetUri": "gs://bucket/b/other.jsonl"},
                               "labels": {"managed-by": "vertex-tuning-reconciler", "reconciler-stack": "test",
                                          "reconciler-name": "team-b-bot", "reconciler-spec": "0" * 20}}])
    r = cli("apply", "--auto-approve", "--wait", "--wait-timeout", "3", "--poll-interval", "0.2")
    assert r.code == 0, r.err
    shown = [line for line in r.err.splitlines() if "] team-b-bot:" in line]
    assert shown and all(ours["name"] in line for line in shown), r.err
    assert {j["name"]: j["state"] for j in emulator.jobs()}[theirs] == "JOB_STATE_RUNNING"


def test_a_job_named_by_another_projects_number_is_never_cancelled_at_its_path(cli: Cli, emulator):
    """A fresh project's list names a job by a victim project's NUMBER, with our labels: the
    service names jobs by number, so observe cannot tell. Every call about it goes to the listed
    parent plus the id, which the service resolves in our project: the victim's job is untouched."""
    fresh = "projects/fresh-proj1/locations/us-central1"
    write_config(cli.workdir, project="fresh-proj1")
    path = cli.manifest("delta")
    spec_hash = cli.ok("plan", "--format", "json").json()["changes"][0]["spec_hash"]
    [victim] = emulator.seed([{"project": "374143254140", "location": "us-central1", "listedIn": [fresh],
                               "baseModel": "gemini-3.5-flash",
                               "supervisedTuningSpec": {"trainingDatasetUri": "gs://bucket/delta/train.jsonl",
                                                        "hyperParameters": {"epochCount": "3"}},
                               "labels": {"managed-by": "vertex-tuning-reconciler", "reconciler-stack": "test",
                                          "reconciler-name": "delta", "reconciler-spec": spec_hash}}])
    cli.ok("apply", "--auto-approve")  # up to date: the state records the job it sees
    assert cli.state()["models"]["delta"]["job"] == victim
    path.unlink()
    body = cli.ok("plan", "--format", "json", "--allow-empty").json()
    assert [c["cancel_jobs"] for c in body["changes"]] == [[address(victim, fresh)], []]  # the cancel, the forget
    r = cli.ok("apply", "--auto-approve", "--allow-empty")
    assert "no longer exists" in r.err, r.err
    [job] = emulator.jobs("374143254140", "us-central1")
    assert job["state"] in LIVE and emulator.stats()["requests"]["cancel"] == 1


def test_a_lost_state_still_never_creates_a_duplicate(cli: Cli, emulator):
    for name in ("alpha", "beta"):
        cli.manifest(name)
    cli.ok("apply", "--auto-approve")
    (cli.workdir / "reconciler.state.json").unlink()
    assert "No changes" in cli.ok("plan").out
    cli.ok("apply", "--auto-approve")
    assert live_names(emulator) == {"alpha": 1, "beta": 1}
    assert set(cli.state()["models"]) == {"alpha", "beta"}


# -- 4. at most one live job per create request -----------------------------------------------------
def _spawn(workdir: Path, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "reconciler.cli", *args], cwd=workdir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(TRIALS))
def test_two_checkouts_applying_at_once_leave_one_live_job_per_model(cli: Cli, emulator, tmp_path, trial):
    """Both runs list before either creates (the emulator answers slowly), so both create every
    model; after the two applies, every model has exactly one live job: the younger of each pair
    was cancelled by a run that saw both."""
    names = [f"m{i}" for i in range(4)]
    repos = []
    for repo in ("one", "two"):
        workdir = tmp_path / repo
        workdir.mkdir()
        write_config(workdir)
        for name in names:
            Cli(workdir, cli.capsys).manifest(name)
        repos.append(workdir)
    emulator.configure(latency_ms=300 + 100 * (trial % 3))
    env = {**os.environ, "RECONCILER_API_ENDPOINT": emulator.url}
    runs = [_spawn(w, env, "apply", "--auto-approve") for w in repos]
    results = [r.communicate(timeout=120) for r in runs]
    assert [r.returncode for r in runs] == [0, 0], [e.decode() for _, e in results]
    emulator.configure(latency_ms=0)
    jobs = owned(emulator)
    assert len(jobs) == 2 * len(names), "the two runs did not race: the trial proves nothing"
    by_request = Counter(j["labels"]["reconciler-request"] for j in jobs if j["state"] in LIVE)
    assert by_request and max(by_request.values()) == 1, by_request
    assert live_names(emulator) == dict.fromkeys(names, 1)
    # Each state serves the job that survived; a later plan from either is clean.
    survivors = {j["labels"]["reconciler-name"]: j["name"] for j in jobs if j["state"] in LIVE}
    for workdir in repos:
        state = json.loads((workdir / "reconciler.state.json").read_text())
        assert {n: e["job"] for n, e in state["models"].items()} == survivors
        plan = subprocess.run([sys.executable, "-m", "reconciler.cli", "plan", "--detailed-exitcode"],
                              cwd=workdir, env=env, capture_output=True, text=True, timeout=60)
        assert plan.returncode == 0, plan.stdout + plan.stderr


def test_a_duplicate_seen_later_is_cancelled_by_a_plain_plan_and_apply(cli: Cli, emulator):
    """Two jobs with one request id (a server finished a create after its client gave up): the
    next run keeps the older and cancels the younger, even on a protected model."""
    cli.manifest("alpha", metadata={}, spec={"protect": True})
    cli.ok("apply", "--auto-approve")
    [first] = owned(emulator)
    emulator.advance(1)
    seed = {k: first[k] for k in ("baseModel", "supervisedTuningSpec", "labels", "tunedModelDisplayName")}
    [second] = emulator.seed([{"project": "demo-project", "location": "us-central1", **seed}])
    body = cli.ok("plan", "--format", "json").json()
    cancels = [c for c in body["changes"] if c["action"] == "cancel"]
    assert [c["cancel_jobs"] for c in cancels] == [[address(second)]] and "duplicate of" in cancels[0]["reason"]
    cli.ok("apply", "--auto-approve")
    states = {j["name"]: j["state"] for j in owned(emulator)}
    assert states[first["name"]] in LIVE and states[second] == "JOB_STATE_CANCELLING"
    assert cli.state()["models"]["alpha"]["job"] == first["name"]


# -- 5. an edited saved plan is refused -------------------------------------------------------------
def _edit(path: Path, edit) -> None:
    body = json.loads(path.read_text())
    edit(body)
    path.write_text(json.dumps(body))


@pytest.mark.parametrize("what", ["request-uri", "service-account", "desired", "cancel", "prune", "format", "parents"])
def test_an_edited_plan_file_is_refused_and_nothing_runs(cli: Cli, emulator, what):
    cli.manifest("alpha")
    cli.ok("plan", "--out", "plan.json")
    path = cli.workdir / "plan.json"

    def edit(body: dict) -> None:
        change = body["changes"][0]
        if what == "request-uri":
            change["request"]["supervisedTuningSpec"]["trainingDatasetUri"] = "gs://attacker/train.jsonl"
        elif what == "service-account":
            change["request"]["serviceAccount"] = "evil@attacker.iam.gserviceaccount.com"
        elif what == "desired":
            body["desired"][0]["training_dataset_uri"] = "gs://attacker/train.jsonl"
            change["request"]["supervisedTuningSpec"]["trainingDatasetUri"] = "gs://attacker/train.jsonl"
        elif what == "cancel":
            change["cancel_jobs"] = ["projects/demo-project/locations/us-central1/tuningJobs/1"]
        elif what == "prune":
            body["prune_unrecorded"] = True
        elif what == "parents":  # apply would list the victim's project with the user's credentials
            body["parents"].append("projects/victim/locations/us-central1")
        else:
            body["format_version"] = 99

    _edit(path, edit)
    r = cli("apply", "plan.json")
    assert r.code == 1 and "Run plan again" in r.err, r.err
    assert "unexpected" not in r.err and len(r.err.strip().splitlines()) <= 2
    assert emulator.stats()["requests"].get("create", 0) == 0 and not owned(emulator)


# Fields that explain a plan and are not acted on: outside the fingerprint by design.
EXPLAINING = {"reason", "notes", "warnings", "diff", "cost_usd", "cost_note", "errors", "tool_version", "environment",
              "job_state", "error", "source"}


def _leaves(value, path=()):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(value, list) and value:
        for i, v in enumerate(value):
            yield from _leaves(v, (*path, i))
    else:
        yield path, value


def _mutated(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if value is None or value == [] or value == {}:
        return "x"
    return str(value) + "x"


def test_every_acted_on_field_of_a_saved_plan_is_sealed(cli: Cli, emulator):
    """Each leaf of a saved plan (create with a cancel, on a recorded model) is changed in turn:
    every change to a field apply acts on is refused before any API call."""
    cli.manifest("alpha", spec={"description": "d"}, metadata={"labels": {"team": "a"}})
    cli.manifest("beta")
    cli.ok("apply", "--auto-approve")
    cli.manifest("alpha", epochs=5, spec={"description": "d"}, metadata={"labels": {"team": "a"}})
    (cli.workdir / "manifests" / "beta.yaml").unlink()
    cli.ok("plan", "--out", "plan.json")
    path = cli.workdir / "plan.json"
    original = json.loads(path.read_text())
    requests_before = emulator.stats()["requests"]
    refused = tried = 0
    for leaf, value in _leaves(original):
        if leaf[0] == "fingerprint" or EXPLAINING & {p for p in leaf if isinstance(p, str)}:
            continue
        body = json.loads(json.dumps(original))
        target = body
        for key in leaf[:-1]:
            target = target[key]
        target[leaf[-1]] = _mutated(value)
        path.write_text(json.dumps(body))
        tried += 1
        r = cli("apply", "plan.json")
        assert r.code == 1 and "unexpected" not in r.err, (leaf, r.err)
        refused += 1
    with cli.capsys.disabled():
        print(f"\nsealed-plan trial: {refused} of {tried} edited fields refused")
    assert tried >= 40, tried
    assert refused == tried and emulator.stats()["requests"] == requests_before
    path.write_text(json.dumps(original))
    cli.ok("apply", "plan.json")


def test_an_untouched_plan_file_applies_what_it_shows(cli: Cli, emulator):
    cli.manifest("alpha")
    cli.ok("plan", "--out", "plan.json")
    cli.ok("apply", "plan.json")
    [job] = owned(emulator)
    assert job["supervisedTuningSpec"]["trainingDatasetUri"] == "gs://bucket/alpha/train.jsonl"
    assert "No changes" in cli.ok("plan").out


# -- 12. numbers on the command line --------------------------------------------------------------
@pytest.mark.parametrize("args", [
    ("apply", "--poll-interval", "-1"), ("apply", "--poll-interval", "0"), ("apply", "--wait-timeout", "nan"),
    ("apply", "--max-cancel", "-1"), ("apply", "--max-cost", "inf"), ("apply", "--lock-timeout", "-5"),
    ("apply", "--concurrency", "0"), ("status", "--watch", "--interval", "nan"),
    ("emulator", "--rate-503", "2"), ("emulator", "--latency-ms", "-1"),
])
def test_bad_numbers_are_usage_errors(cli: Cli, emulator, args):
    cli.manifest("alpha")
    r = cli(*args)
    assert r.code == 1 and "Invalid value for" in r.err and "unexpected" not in r.err, r.err
    assert len(r.err.strip().splitlines()) == 2
    assert not owned(emulator)


def _kill_during_a_held_create(cli: Cli, emulator, trial: int, delay: float) -> None:
    """Start `apply`, SIGKILL it while its create is held by the server (which finishes it
    `delay` s after it arrived, though the client is gone)."""
    import time

    emulator.configure(create_delay_seconds=delay)
    env = {**os.environ, "RECONCILER_API_ENDPOINT": emulator.url}
    first = _spawn(cli.workdir, env, "apply", "--auto-approve")
    deadline = time.monotonic() + 30
    journal = cli.workdir / "reconciler.state.json.journal"
    while not (journal.exists() and "intent" in journal.read_text()):
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.02)
    time.sleep(0.1 + 0.5 * ((trial * 7) % 10) / 10)  # the create is on its way or held by the server
    first.kill()
    first.wait()
    assert not owned(emulator)  # not made yet


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(max(2, TRIALS - 1)))
def test_kill_during_a_create_the_server_finishes_later_then_an_immediate_rerun(cli: Cli, emulator, trial):
    """The client dies (SIGKILL) while its create is in flight; the server makes the job anyway,
    after the rerun has started. The rerun finds the intent in the journal and, since the create
    may still be in flight (less than the client's request timeout ago), keeps looking for its
    job instead of creating: exactly one job is ever made."""
    cli.manifest("alpha")
    _kill_during_a_held_create(cli, emulator, trial, delay=2.0)
    rerun = cli("apply", "--auto-approve")
    assert rerun.code == 0, rerun.err
    assert "found job created by an interrupted run" in rerun.err, rerun.err
    emulator.configure(create_delay_seconds=0)
    jobs = owned(emulator)
    assert len(jobs) == 1, jobs
    assert live_names(emulator) == {"alpha": 1}
    assert cli.state()["models"]["alpha"]["job"] == jobs[0]["name"]
    assert cli.state()["models"]["alpha"]["jobs"] == [jobs[0]["name"]]
    assert emulator.stats()["requests"].get("cancel", 0) == 0
    assert "No changes" in cli.ok("plan").out


def test_a_create_finishing_after_the_window_is_cancelled_by_apply_wait(cli: Cli, emulator):
    """The server finishes the killed run's create after the rerun's window (requestTimeout) has
    passed and the rerun created again: `apply --wait` cancels the younger job at the poll that
    first shows it, not at some later plan."""
    cli.manifest("alpha")
    write_config(cli.workdir, requestTimeout=1)
    _kill_during_a_held_create(cli, emulator, 0, delay=3.0)
    emulator.configure(create_delay_seconds=0)  # the rerun's own create is made at once
    rerun = cli("apply", "--auto-approve", "--wait", "--wait-timeout", "5", "--poll-interval", "0.2")
    assert "created " in rerun.err, rerun.err
    jobs = sorted(owned(emulator), key=lambda j: int(j["name"].rsplit("/", 1)[1]))
    assert len(jobs) == 2, "the server did not finish the killed run's create: the trial proves nothing"
    states = {j["name"]: j["state"] for j in jobs}
    younger, older = jobs[1]["name"], jobs[0]["name"]
    assert states[older] in LIVE and states[younger] == "JOB_STATE_CANCELLING", states
    assert emulator.stats()["requests"]["cancel"] == 1  # at the listed parent's path: it resolved
    assert cli.state()["models"]["alpha"]["job"] == older
