"""The access-token canary over the commands test_reliability does not run (probe, import,
status NAME, force-unlock, state pull/push) and over a gs:// state: the token is never shown."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from reconciler.emulator.app import create_app
from reconciler.emulator.backend import Backend, EmulatorConfig
from tests.clihelp import PARENT, Cli, Result, write_config
from tests.conftest import Emulator
from tests.gcsfake import StrictGcs, new_bucket
from tests.localserver import LocalServer

# -- 4. the credential canary over more commands -----------------------------------------------------
CANARY = "ya29.gaps-canary-5f0e-NEVER-SHOWN-91ab"


class RecordAuth:
    """ASGI middleware: the Authorization header of every request, by path."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[tuple[str, str | None]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            auth = dict(scope["headers"]).get(b"authorization")
            self.seen.append((scope["path"], auth.decode() if auth is not None else None))
        await self.app(scope, receive, send)


@pytest.fixture
def recorded() -> Iterator[tuple[Emulator, RecordAuth]]:
    """The conftest emulator's configuration, served behind RecordAuth."""
    config = EmulatorConfig(clock="manual", pending_seconds=60, running_seconds=600, cancelling_seconds=30,
                            submissions_per_minute=0, requests_per_minute=0)
    app = RecordAuth(create_app(Backend(config)))
    with LocalServer(app, lifespan="off") as url:
        emu = Emulator(SimpleNamespace(url=url))  # type: ignore[arg-type]
        try:
            yield emu, app
        finally:
            emu.admin.close()


def test_access_token_never_shown_by_probe_import_status_unlock_or_state_commands(
    workdir: Path, recorded: tuple[Emulator, RecordAuth], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
):
    # In-process, pytest's own log handler keeps --debug's basicConfig from installing one: the
    # debug log is read from caplog here, and from the real stderr of the subprocess runs below.
    caplog.set_level(logging.DEBUG)
    emulator, api = recorded
    monkeypatch.setenv("RECONCILER_API_ENDPOINT", emulator.url)
    monkeypatch.setenv("RECONCILER_ACCESS_TOKEN", CANARY)
    write_config(workdir)
    cli = Cli(workdir, capsys)
    outputs: list[str] = []

    def run(*args: str, code: int = 0) -> Result:
        r = cli("--debug", *args)
        outputs.extend([r.out, r.err])
        assert r.code == code, f"{args}: exit {r.code}\n{r.out}\n{r.err}"
        return r

    cli.manifest("alpha", spec={"smokeTest": {"prompt": "hello", "expectContains": "says", "gate": False}})
    cli.manifest("beta")
    run("apply", "--auto-approve")
    emulator.advance(10_000)
    run("refresh")
    run("probe")
    run("probe", "alpha", "--format", "json", "--prompt", "again")
    # import: an unmanaged job into a new manifest; then an unknown job (an API error, traceback)
    [foreign] = emulator.seed([{"project": "demo-project", "location": "us-central1",
                                "baseModel": "gemini-3.5-flash", "state": "JOB_STATE_SUCCEEDED",
                                "supervisedTuningSpec": {"trainingDatasetUri": "gs://bucket/gamma/train.jsonl",
                                                         "hyperParameters": {"epochCount": 3}}}])
    cli.manifest("gamma")
    run("import", foreign, "--name", "gamma")
    run("import", f"{PARENT}/tuningJobs/424242", "--name", "gamma", code=1)
    run("status", "alpha")
    run("status", "gamma", "--format", "json")
    run("status", "nope", code=1)
    # force-unlock: a lock left by a dead run, a wrong id first
    lock = workdir / "reconciler.state.json.lock"
    lock.write_text(json.dumps({"id": "L-dead", "pid": 4242, "who": "ci@gone", "operation": "apply"}))
    run("force-unlock", "WRONG", code=1)
    run("force-unlock", "L-dead")
    pulled = run("state", "pull").out
    (workdir / "pulled.json").write_text(pulled)
    run("state", "push", "pulled.json")
    for args in (["probe", "alpha"], ["import", f"{PARENT}/tuningJobs/424242", "--name", "gamma"]):
        proc = subprocess.run([sys.executable, "-m", "reconciler.cli", "--debug", *args], cwd=workdir,
                              capture_output=True, text=True, timeout=20)
        outputs.extend([proc.stdout, proc.stderr])
        assert "DEBUG reconciler" in proc.stderr, proc.stderr  # the API call log is on

    # The same over a gs:// state (the strict Cloud Storage fake, no credentials: an emulator).
    strict = StrictGcs()
    gcs_auth = RecordAuth(strict.app)
    strict.app = gcs_auth
    with strict as gcs_url:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_url)
        bucket = new_bucket(gcs_url)
        uri = f"gs://{bucket}/stacks/test/reconciler.state.json"
        run("--state", uri, "state", "push", "pulled.json")
        run("--state", uri, "refresh")
        run("--state", uri, "plan")
        run("--state", uri, "status", "beta")
        run("--state", uri, "probe", "beta")
        run("--state", uri, "state", "pull")
        strict.objects[(bucket, "stacks/test/reconciler.state.json.lock")] = (
            1, json.dumps({"id": "G-dead", "who": "ci@elsewhere", "operation": "apply"}).encode())
        run("--state", uri, "apply", "--auto-approve", code=1)  # locked
        run("--state", uri, "force-unlock", "G-dead")
        run("--state", uri, "apply", "--auto-approve")
        stored = b"".join(data for (b, _), (_, data) in strict.objects.items() if b == bucket)

    assert b'"serial"' in stored  # the state did go to Cloud Storage
    outputs.append(caplog.text)
    assert ":generateContent -> 200" in caplog.text  # the debug log was captured
    assert CANARY not in "".join(outputs)
    assert any("Traceback" in o for o in outputs)  # --debug did show tracebacks
    written = b"".join(p.read_bytes() for p in workdir.rglob("*") if p.is_file())
    assert CANARY.encode() not in written
    assert CANARY.encode() not in stored
    # The canary was in play: every Vertex call carried it — lists, gets, creates, generateContent.
    bearer = f"Bearer {CANARY}"
    vertex = [(path, auth) for path, auth in api.seen if path.startswith("/v1")]
    assert vertex and all(auth == bearer for _, auth in vertex), vertex
    assert any(path.endswith(":generateContent") for path, _ in vertex)
    assert any(path.endswith("/tuningJobs/424242") for path, _ in vertex)  # import's get
    counts = emulator.stats()["requests"]
    assert all(counts.get(op, 0) > 0 for op in ("list", "get", "create", "generateContent")), counts
    # ...and, as with Google's own clients, none was sent to the storage emulator.
    assert gcs_auth.seen and all(auth is None for _, auth in gcs_auth.seen)


