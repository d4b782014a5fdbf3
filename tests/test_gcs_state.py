"""State in Cloud Storage: conditional writes, the lock object, racing and killed appliers,
state pull/push — against fake-gcs-server and, for what it does not enforce, a strict fake.

Which guarantee each test proves, and against what:
- multipart uploads with ifGenerationMatch (state writes, lock creation, journal objects):
  fake-gcs-server enforces them, so those tests run against it *and* the strict fake;
- generation-matched delete (releasing a lock never removes another run's lock): only the strict
  fake enforces it, so `test_release_never_removes_a_lock_taken_meanwhile` runs against it alone.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from reconciler.errors import StateConflictError, StateLockedError
from reconciler.http.retry import RetryPolicy
from reconciler.state.gcs import GcsStateStore
from reconciler.storage import StorageClient
from tests.clihelp import Cli, write_config
from tests.gcsfake import new_bucket


def store(url: str, uri: str) -> GcsStateStore:
    return GcsStateStore(uri, StorageClient(endpoint=url, retry=RetryPolicy(initial=0.01, maximum=0.05, deadline=5)))


def test_conditional_writes_make_lost_updates_impossible(gcs: str):
    uri = f"gs://{new_bucket(gcs)}/team/reconciler.state.json"
    first = store(gcs, uri)
    first.write(first.read(stack="s"))
    a, b = store(gcs, uri), store(gcs, uri)
    state_a, state_b = a.read(stack="s"), b.read(stack="s")
    a.write(state_a)
    with pytest.raises(StateConflictError, match="changed since it was read"):
        b.write(state_b)
    fresh = store(gcs, uri).read(stack="s")
    assert fresh.serial == 2


def test_first_write_races_too(gcs: str):
    uri = f"gs://{new_bucket(gcs)}/reconciler.state.json"
    a, b = store(gcs, uri), store(gcs, uri)
    state_a, state_b = a.read(stack="s"), b.read(stack="s")
    a.write(state_a)
    with pytest.raises(StateConflictError):
        b.write(state_b)


def test_lock_object_admits_one_holder_and_force_unlock_checks_the_id(gcs: str):
    uri = f"gs://{new_bucket(gcs)}/reconciler.state.json"
    holder = store(gcs, uri)
    lock_id = holder.lock("apply")
    with pytest.raises(StateLockedError, match=f"lock id {lock_id}"):
        store(gcs, uri).lock("apply")
    other = store(gcs, uri)
    with pytest.raises(Exception, match="does not match"):
        other.force_unlock("not-the-id")
    other.force_unlock(lock_id)
    again = store(gcs, uri).lock("apply")
    assert again != lock_id


def test_release_never_removes_a_lock_taken_meanwhile(strict_gcs: str):
    uri = f"gs://{new_bucket(strict_gcs)}/reconciler.state.json"
    slow = store(strict_gcs, uri)
    slow_id = slow.lock("apply")
    store(strict_gcs, uri).force_unlock(slow_id)  # an operator broke the lock of a slow run
    newcomer = store(strict_gcs, uri)
    new_id = newcomer.lock("apply")
    slow.unlock(slow_id)  # the slow run finishes: its delete is matched to *its* generation
    holder = store(strict_gcs, uri).lock_info()
    assert holder is not None and holder["id"] == new_id


def test_journal_objects_are_replayed_and_removed_by_the_next_write(gcs: str):
    uri = f"gs://{new_bucket(gcs)}/reconciler.state.json"
    s = store(gcs, uri)
    state = s.write(s.read(stack="s"))
    s.append([{"op": "set", "name": "alpha", "entry": {"parent": "projects/p-roject/locations/us-central1"}}])
    s.append([{"op": "drop", "name": "alpha"},
              {"op": "set", "name": "beta", "entry": {"parent": "projects/p-roject/locations/us-central1"}}])
    reader = store(gcs, uri)
    replayed = reader.read(stack="s")
    assert list(replayed.models) == ["beta"] and reader.journal_pending and replayed.serial == state.serial
    reader.write(replayed)
    assert store(gcs, uri).client.list(reader.bucket, f"{reader.name}.journal/") == []


# -- through the CLI --------------------------------------------------------------------------------
@pytest.fixture
def cli(cli: Cli, gcs: str) -> Cli:
    write_config(cli.workdir, state=f"gs://{new_bucket(gcs)}/stacks/test/reconciler.state.json")
    return cli


def managed(emulator) -> list[dict]:
    return [j for j in emulator.jobs() if j.get("labels", {}).get("managed-by") == "vertex-tuning-reconciler"]


def test_apply_plan_and_output_with_remote_state(cli: Cli, emulator):
    cli.manifest("alpha")
    cli.manifest("beta")
    cli.ok("apply", "--auto-approve")
    assert cli("plan", "--detailed-exitcode").code == 0
    emulator.advance(10_000)
    cli.ok("refresh")
    pulled = json.loads(cli.ok("state", "pull").out)
    assert set(pulled["models"]) == {"alpha", "beta"} and pulled["models"]["alpha"]["tunedModel"]["endpoint"]
    assert json.loads(cli.ok("output").out)["beta"]["endpoint"]
    assert not (cli.workdir / "reconciler.state.json").exists()


def test_state_push_and_pull_move_state_between_local_and_remote(cli: Cli, emulator):
    cli.manifest("alpha")
    cli.ok("--state", "local.json", "apply", "--auto-approve")
    local = json.loads((cli.workdir / "local.json").read_text())
    cli.ok("state", "push", "local.json")
    pulled = json.loads(cli.ok("state", "pull").out)
    assert pulled["lineage"] == local["lineage"] and pulled["serial"] > local["serial"]
    assert cli("plan", "--detailed-exitcode").code == 0  # remote state, same jobs: no change
    # A state of another lineage is refused unless --force.
    (cli.workdir / "other.json").write_text(json.dumps({**local, "lineage": "another", "serial": 99}))
    r = cli("state", "push", "other.json")
    assert r.code == 1 and "another lineage" in r.err
    cli.ok("state", "push", "other.json", "--force")
    assert json.loads(cli.ok("state", "pull").out)["lineage"] == "another"


def _spawn(workdir: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "reconciler.cli", *args], cwd=workdir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_two_appliers_racing_make_one_job_each(cli: Cli, emulator):
    emulator.configure(latency_ms=150)
    for name in ("alpha", "beta", "gamma"):
        cli.manifest(name)
    runs = [_spawn(cli.workdir, "apply", "--auto-approve") for _ in range(2)]
    results = [(p.wait(60), p.stderr.read().decode() if p.stderr else "") for p in runs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    loser = next(err for code, err in results if code == 1)
    assert "is locked by" in loser
    assert Counter(j["labels"]["reconciler-name"] for j in managed(emulator)) == Counter(["alpha", "beta", "gamma"])


@pytest.mark.slow
def test_killed_holder_leaves_a_lock_that_only_force_unlock_removes(cli: Cli, emulator):
    emulator.configure(latency_ms=400)
    for name in ("alpha", "beta"):
        cli.manifest(name)
    proc = _spawn(cli.workdir, "apply", "--auto-approve", "--concurrency", "1")
    deadline = time.monotonic() + 30
    while emulator.stats()["requests"].get("create", 0) < 1:  # kill it between its two creates
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    emulator.configure(latency_ms=0)
    # A remote lock's holder may live on another machine with the same host name: never guessed.
    r = cli("apply", "--auto-approve")
    assert r.code == 1 and "is locked by" in r.err
    lock_id = re.search(r"force-unlock (\S+)", r.err).group(1)
    cli.ok("force-unlock", lock_id)
    r = cli("apply", "--auto-approve")
    assert r.code == 0, r.err
    assert Counter(j["labels"]["reconciler-name"] for j in managed(emulator)) == Counter(["alpha", "beta"])
    assert set(json.loads(cli.ok("state", "pull").out)["models"]) == {"alpha", "beta"}
