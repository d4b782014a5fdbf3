"""Reliability: SIGKILL at random moments, concurrent runs, API faults, outages, secrets.

Each test tries to break one promise of docs/reliability.md against the emulator over HTTP.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from reconciler.cli import main
from tests.clihelp import Cli, write_config

LIVE = {"JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_RUNNING"}


def managed(emulator) -> list[dict]:
    return [j for j in emulator.jobs() if j.get("labels", {}).get("managed-by") == "vertex-tuning-reconciler"]


def spawn(workdir: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "reconciler.cli", *args], cwd=workdir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


# -- crash safety -----------------------------------------------------------------------------
NAMES = [f"model-{i}" for i in range(8)]


def unlocked(lock: Path) -> bool:
    """No run holds the lock: no lock file, or one without a holder record."""
    return not lock.exists() or not lock.read_text().strip()


def _read_json(path: Path) -> dict | None:
    if not path.exists():
        return None
    return json.loads(path.read_text())  # a torn file would raise here


@pytest.mark.slow
@pytest.mark.parametrize("chunk", range(5))
def test_sigkill_at_random_moments_never_duplicates_or_tears_state(cli: Cli, emulator, chunk: int):
    """10 trials per chunk, 50 in all: kill apply, check the files, apply again, check the jobs."""
    emulator.configure(latency_ms=25)
    for name in NAMES:
        cli.manifest(name)
    rng = random.Random(1000 + chunk)
    # Calibrate: how long does a full apply take here?
    start = time.monotonic()
    proc = spawn(cli.workdir, "apply", "--auto-approve", "--concurrency", "1")
    assert proc.wait(60) == 0, proc.stderr.read().decode() if proc.stderr else ""
    duration = time.monotonic() - start
    phases: Counter[str] = Counter()
    for trial in range(10):
        emulator.admin.post("/_emulator/reset").raise_for_status()
        emulator.configure(latency_ms=25)
        for leftover in cli.workdir.glob("reconciler.state.json*"):
            leftover.unlink()
        proc = spawn(cli.workdir, "apply", "--auto-approve", "--concurrency", str(1 + 3 * (trial % 2)))
        time.sleep(rng.uniform(0.0, duration * 1.1))
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        # The state is the previous or the next serial, never torn; so is its backup.
        state = _read_json(cli.workdir / "reconciler.state.json")
        backup = _read_json(cli.workdir / "reconciler.state.json.backup")
        if state is not None:
            # Each trial starts without a state; one apply writes serial 1 (its start) then 2 (its
            # end): a kill leaves one of those, whole.
            assert state["serial"] in (1, 2) and state["version"] == 1 and state["stack"] == "test"
            if backup is not None:  # killed between backup and state write: both hold the same serial
                assert backup["serial"] in (state["serial"] - 1, state["serial"])
                assert backup["lineage"] == state["lineage"]
        made = len(managed(emulator))
        phases["before creates" if made == 0 else "during creates" if made < len(NAMES) else "after creates"] += 1
        journal = cli.workdir / "reconciler.state.json.journal"
        if journal.exists() and b'"op":"intent"' in journal.read_bytes():
            phases["journal with intents"] += 1
        # Resume: the next run settles whatever the killed one left.
        assert main(["apply", "--auto-approve"]) == 0, f"trial {trial}"
        jobs = managed(emulator)
        per_name = Counter(j["labels"]["reconciler-name"] for j in jobs)
        assert per_name == Counter(NAMES), f"trial {trial}: {per_name}"  # exactly one job each, ever
        assert all(j["state"] in LIVE for j in jobs)
        final = _read_json(cli.workdir / "reconciler.state.json")
        assert final is not None and sorted(final["models"]) == sorted(NAMES) and final["journal"] == []
        assert not (cli.workdir / "reconciler.state.json.journal").exists()  # folded into the state
        assert unlocked(cli.workdir / "reconciler.state.json.lock")
    print(f"chunk {chunk}: full apply {duration:.2f} s; kill moments: {dict(phases)}")
    assert phases["before creates"] + phases["during creates"] + phases["after creates"] == 10


# -- concurrent runs ----------------------------------------------------------------------------
def test_second_apply_fails_at_once_naming_the_holder(cli: Cli, emulator):
    emulator.configure(latency_ms=400)
    cli.manifest("alpha")
    first = spawn(cli.workdir, "apply", "--auto-approve")
    lock = cli.workdir / "reconciler.state.json.lock"
    deadline = time.monotonic() + 20
    while not lock.exists():
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.02)
    r = cli("apply", "--auto-approve")  # it fails, rather than waiting for the holder to finish
    assert r.code == 1 and "is locked by" in r.err and f"pid {first.pid}" in r.err and "force-unlock" in r.err
    # --lock-timeout waits for the holder instead.
    r2 = cli("apply", "--auto-approve", "--lock-timeout", "30")
    assert first.wait(30) == 0
    assert r2.code == 0, r2.err
    assert len(managed(emulator)) == 1


def test_a_dead_holder_never_blocks_and_a_live_one_cannot_be_forced(cli: Cli, emulator):
    cli.manifest("alpha")
    lock = cli.workdir / "reconciler.state.json.lock"
    # A record left by a run that died (SIGKILL, power loss): its flock died with it.
    lock.write_text(json.dumps({"id": "L1", "host": "ci-runner-7", "pid": 4242, "who": "ci@ci-runner-7",
                                "since": "2026-01-01T00:00:00Z", "operation": "apply"}))
    r = cli("apply", "--auto-approve")
    assert r.code == 0 and "breaking stale lock L1" in r.err
    # A live holder (another process holding the flock) blocks, and cannot be forced away.
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, json, os, sys, time\n"
        f"fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.ftruncate(fd, 0); os.write(fd, json.dumps({'id': 'L2', 'pid': os.getpid(), 'who': 'me@here'}).encode())\n"
        "print('held', flush=True); time.sleep(60)\n")], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
        r = cli("apply", "--auto-approve")
        assert r.code == 1 and "locked by me@here" in r.err and "lock id L2" in r.err
        assert cli("force-unlock", "WRONG").code == 1
        r = cli("force-unlock", "L2")
        assert r.code == 1 and "held by a running process" in r.err
    finally:
        holder.kill()
        holder.wait()
    cli.ok("force-unlock", "L2")  # its process is gone: the record can be cleared
    assert unlocked(lock)
    cli.ok("apply", "--auto-approve")


# -- API faults ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_apply_converges_under_injected_faults(cli: Cli, emulator):
    names = [f"m{i:02d}" for i in range(20)]
    for name in names:
        cli.manifest(name)
    emulator.configure(rate_503=0.2, rate_429=0.05, retry_after_seconds=0.05, lost_create_rate=0.05,
                       latency_ms=5, fault_seed=11)
    started = time.monotonic()
    first = cli("apply", "--auto-approve")
    # Every action either succeeded, or its outcome is settled by the next run.
    runs = 1
    while first.code != 0 and runs < 4:
        first = cli("apply", "--auto-approve")
        runs += 1
    wall = time.monotonic() - started
    assert first.code == 0, first.err
    emulator.configure(rate_503=0.0, rate_429=0.0, lost_create_rate=0.0)
    per_name = Counter(j["labels"]["reconciler-name"] for j in managed(emulator))
    assert per_name == Counter(names)
    faults = emulator.stats()["faults"]
    assert faults["503"] > 0 and faults["lost_create"] > 0
    assert "retried" in first.err
    print(f"faults injected {faults}, runs {runs}, wall {wall:.2f} s; {first.err.strip().splitlines()[-1]}")


def test_long_outage_ends_in_a_clear_error_within_the_deadline(cli: Cli, emulator):
    write_config(cli.workdir, retry={"initial": 0.05, "maximum": 0.2, "deadline": 2})
    cli.manifest("alpha")
    emulator.configure(rate_503=1.0)
    started = time.monotonic()
    r = cli("apply", "--auto-approve")
    took = time.monotonic() - started
    assert r.code == 1 and took < 6
    assert "503 UNAVAILABLE" in r.err and "gave up after" in r.err and "Traceback" not in r.err
    assert len(r.err.strip().splitlines()) <= 3
    assert not (cli.workdir / "reconciler.state.json").exists()
    assert unlocked(cli.workdir / "reconciler.state.json.lock")


def test_a_run_retrying_for_a_while_says_so_before_it_gives_up(cli: Cli, emulator):
    # 429 with Retry-After 5 s: the first wait already takes the call to 5 s of retrying, which is
    # announced (once); the second would pass the 8 s deadline, so the run gives up at ~5 s.
    write_config(cli.workdir, retry={"initial": 0.01, "maximum": 0.02, "deadline": 8})
    cli.manifest("alpha")
    emulator.configure(rate_429=1.0, retry_after_seconds=5, fault_seed=1)
    r = cli("plan")
    notices = [line for line in r.err.splitlines() if "still retrying" in line]
    assert r.code == 1 and len(notices) == 1 and "gives up after 8 s" in notices[0], r.err
    assert notices[0].startswith("Warning:") and "429" in notices[0] and "Traceback" not in r.err


def test_quota_exhaustion_mid_apply_keeps_what_was_done(cli: Cli, emulator):
    write_config(cli.workdir, retry={"initial": 0.05, "maximum": 0.1, "deadline": 1})
    for name in ("a1", "a2", "a3", "a4"):
        cli.manifest(name)
    emulator.configure(requests_per_minute=3)  # the plan's list and two creates get through
    r = cli("apply", "--auto-approve", "--concurrency", "1")
    assert r.code == 1 and "RESOURCE_EXHAUSTED" in r.err and "Traceback" not in r.err
    state = json.loads((cli.workdir / "reconciler.state.json").read_text())
    emulator.configure(requests_per_minute=0)
    made = {j["labels"]["reconciler-name"] for j in managed(emulator)}
    # What was done is folded into the state file itself, with no create intent left open.
    assert len(made) == 2 and set(state["models"]) == made and state["journal"] == []
    assert not (cli.workdir / "reconciler.state.json.journal").exists()
    cli.ok("apply", "--auto-approve")
    assert len(managed(emulator)) == 4


# -- surprising API answers ----------------------------------------------------------------------
def test_unknown_job_state_is_shown_not_acted_on(cli: Cli, emulator):
    cli.manifest("alpha")
    cli.ok("apply", "--auto-approve")
    [job] = managed(emulator)
    emulator.patch(job["name"], {"state": "JOB_STATE_TELEPORTING", "futureField": [1, 2]})
    cli.manifest("alpha", epochs=7)  # would be a replace, if the state were known
    r = cli("plan", "--detailed-exitcode")
    assert r.code == 0 and "TELEPORTING" in r.out + r.err
    (cli.workdir / "manifests" / "alpha.yaml").unlink()
    cli.manifest("beta")
    r = cli("apply", "--auto-approve")
    assert r.code == 0
    assert emulator.stats()["requests"].get("cancel", 0) == 0
    status = cli.ok("status", "--format", "json").json()
    assert any(m["name"] == "alpha" for m in status["models"])


# -- security -------------------------------------------------------------------------------------
CANARY = "ya29.canary-TOKEN-d0-not-leak-8c1f"


def test_access_token_never_written_anywhere(cli: Cli, emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("RECONCILER_ACCESS_TOKEN", CANARY)
    cli.manifest("alpha")
    cli.manifest("beta")
    outputs: list[str] = []

    def run(*args: str) -> None:
        r = cli("--debug", *args)
        outputs.extend([r.out, r.err])

    run("validate")
    run("plan", "--out", "saved.plan")
    run("plan", "--format", "json")
    run("plan", "--format", "markdown")
    run("apply", "--auto-approve", "saved.plan")
    run("refresh")
    run("status")
    run("output")
    run("output", "--format", "env")
    emulator.configure(rate_503=1.0)
    write_config(cli.workdir, retry={"initial": 0.01, "maximum": 0.02, "deadline": 0.3})
    run("plan")  # an error path under --debug, with its traceback
    run("--api-endpoint", "http://192.0.2.1:9", "plan")  # a refused endpoint
    emulator.configure(rate_503=0.0)
    written = b"".join(p.read_bytes() for p in cli.workdir.rglob("*") if p.is_file())
    assert CANARY not in "".join(outputs)
    assert CANARY.encode() not in written
    assert any("Traceback" in o for o in outputs)  # --debug did show a traceback somewhere
    # The token did reach the API (so the canary was really in play).
    assert emulator.stats()["requests"]["list"] > 0


def test_unmanaged_job_named_by_state_and_manifest_is_never_cancelled(cli: Cli, emulator):
    [foreign] = emulator.seed([{"project": "demo-project", "location": "us-central1", "baseModel": "gemini-3.5-flash",
                                "supervisedTuningSpec": {"trainingDatasetUri": "gs://other/t.jsonl"},
                                "labels": {"reconciler-name": "alpha", "reconciler-stack": "test"}}])
    cli.manifest("keeper")
    cli.ok("apply", "--auto-approve")
    state_path = cli.workdir / "reconciler.state.json"
    state = json.loads(state_path.read_text())
    state["models"]["alpha"] = {"parent": "projects/demo-project/locations/us-central1", "job": foreign,
                                "state": "JOB_STATE_RUNNING", "specHash": "x"}
    state_path.write_text(json.dumps(state))
    cli.ok("apply", "--auto-approve")
    cli.manifest("alpha", epochs=9)
    cli.ok("apply", "--auto-approve")
    foreign_now = next(j for j in emulator.jobs() if j["name"] == foreign)
    assert foreign_now["state"] == "JOB_STATE_PENDING"
    assert emulator.stats()["requests"].get("cancel", 0) == 0


def test_plain_http_to_a_remote_host_is_refused(cli: Cli):
    cli.manifest("alpha")
    r = cli("--api-endpoint", "http://example.com", "plan")
    assert r.code == 1 and "--allow-insecure-http" in r.err


def test_tls_verification_stays_on(cli: Cli, tmp_path: Path):
    """A server with a self-signed certificate is refused with a clear message."""
    import shutil

    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from tests.localserver import LocalServer

    async def handler(request):  # never reached: the handshake must fail first
        return JSONResponse({})

    app = Starlette(routes=[Route("/{p:path}", handler)])
    os.environ["RECONCILER_ACCESS_TOKEN"] = "tls-test-token"
    try:
        with LocalServer(app, ssl_keyfile=str(key), ssl_certfile=str(cert)) as url:
            write_config(cli.workdir, retry={"initial": 0.01, "maximum": 0.02, "deadline": 0.5})
            cli.manifest("alpha")
            r = cli("--api-endpoint", url, "plan")
            assert r.code == 1 and "CERTIFICATE_VERIFY_FAILED" in r.err and "Traceback" not in r.err
    finally:
        del os.environ["RECONCILER_ACCESS_TOKEN"]


def test_apply_wait_does_not_hold_the_lock_while_jobs_run(cli: Cli, emulator):
    """Tuning takes hours: `apply --wait` releases the state lock while it polls (another run may
    refresh or apply meanwhile) and takes it again only to write the state."""
    cli.manifest("alpha")
    env = {**os.environ, "RECONCILER_API_ENDPOINT": emulator.url}
    waiting = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "apply", "--auto-approve", "--wait",
                                "--poll-interval", "0.2"], cwd=cli.workdir, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not emulator.jobs():
            assert time.monotonic() < deadline and waiting.poll() is None
            time.sleep(0.05)
        time.sleep(0.5)  # the apply is now polling
        assert waiting.poll() is None
        cli.ok("refresh", "--lock-timeout", "5")  # the lock is free
        emulator.advance(10_000)  # the job succeeds; the waiting apply writes the state and ends
        assert waiting.wait(timeout=30) == 0, waiting.stderr.read().decode() if waiting.stderr else ""
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert cli.state()["models"]["alpha"]["state"] == "JOB_STATE_SUCCEEDED"
