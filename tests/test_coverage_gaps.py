"""Gaps an audit found, closed through the public CLI against the emulator (no mocks):

1. the base-model catalog in `validate` (a parameter a known model does not take; unknown models);
2. API answers that lack every optional field (no createTime, spec or tunedModel);
3. colour only on a terminal, and NO_COLOR / --no-color honoured there;
4. the access-token canary over the commands test_reliability does not run (probe, import,
   status NAME, force-unlock, state pull/push) and over a gs:// state.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from reconciler.emulator.app import create_app
from reconciler.emulator.backend import Backend, EmulatorConfig
from tests.clihelp import Cli, Result, write_config
from tests.conftest import Emulator
from tests.gcsfake import StrictGcs, new_bucket
from tests.localserver import LocalServer

PARENT = "projects/demo-project/locations/us-central1"
OWNED = {"managed-by": "vertex-tuning-reconciler", "reconciler-stack": "test"}


def clean(r: Result, *codes: int) -> Result:
    """The run ended with one of `codes` and neither crashed nor called itself buggy."""
    assert r.code in (codes or (0,)), f"exit {r.code}\nstdout:\n{r.out}\nstderr:\n{r.err}"
    for text in (r.out, r.err):
        assert "Traceback" not in text and "this is a bug" not in text and "unexpected" not in text, text
    return r


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# -- 1. base-model catalog in validate -----------------------------------------------------------
def manifest_text(name: str, base: str, hyper: str) -> str:
    """Lines: 6 baseModel, 10 epochCount, 11 the `hyper` line (when given)."""
    return (
        "apiVersion: reconciler/v1\n"  # 1
        "kind: TunedModel\n"  # 2
        "metadata:\n"  # 3
        f"  name: {name}\n"  # 4
        "spec:\n"  # 5
        f"  baseModel: {base}\n"  # 6
        "  supervisedTuningSpec:\n"  # 7
        f"    trainingDatasetUri: gs://bucket/{name}/train.jsonl\n"  # 8
        "    hyperParameters:\n"  # 9
        "      epochCount: 3\n"  # 10
        + (f"      {hyper}\n" if hyper else "")  # 11
    )


def test_validate_refuses_a_parameter_the_base_model_does_not_take(cli: Cli, emulator):
    manifests = cli.workdir / "manifests"
    write(manifests / "legacy.yaml", manifest_text("legacy", "gemini-1.0-pro-002", "adapterSize: ADAPTER_SIZE_FOUR"))
    r = cli("validate")
    assert r.code == 1, r.out + r.err
    assert ("manifests/legacy.yaml:11: spec.supervisedTuningSpec.hyperParameters.adapterSize: "
            "gemini-1.0-pro-002 does not accept adapterSize") in r.err
    assert "Traceback" not in r.err
    # With the publisher prefix the catalog still knows the model.
    write(manifests / "legacy.yaml", manifest_text("legacy", "publishers/google/models/gemini-1.0-pro-002",
                                                  "adapterSize: ADAPTER_SIZE_FOUR"))
    r = cli("validate")
    assert r.code == 1 and "legacy.yaml:11:" in r.err and "does not accept adapterSize" in r.err
    # plan refuses the same manifest before any API call.
    assert cli("plan").code == 1 and not any(emulator.stats()["requests"].values())
    # The model itself is fine: without adapterSize the manifest is valid.
    write(manifests / "legacy.yaml", manifest_text("legacy", "gemini-1.0-pro-002", "learningRateMultiplier: 1.0"))
    r = cli.ok("validate")
    assert "1 manifest(s) in 1 file(s) are valid." in r.out and "Warning" not in r.err


def test_validate_refuses_an_adapter_size_the_base_model_does_not_offer(cli: Cli):
    write(cli.workdir / "manifests" / "pro.yaml",
          manifest_text("pro", "gemini-1.5-pro-002", "adapterSize: ADAPTER_SIZE_EIGHT"))
    r = cli("validate")
    assert r.code == 1
    assert ("manifests/pro.yaml:11: spec.supervisedTuningSpec.hyperParameters.adapterSize: gemini-1.5-pro-002 "
            "accepts ADAPTER_SIZE_ONE, ADAPTER_SIZE_FOUR, not ADAPTER_SIZE_EIGHT") in r.err


def test_validate_only_warns_about_an_unknown_base_model(cli: Cli):
    write(cli.workdir / "manifests" / "novel.yaml",
          manifest_text("novel", "gemini-9.9-ultra-001", "adapterSize: ADAPTER_SIZE_THIRTY_TWO"))
    r = cli("validate")
    assert r.code == 0, r.out + r.err
    assert ("Warning: manifests/novel.yaml:6: spec.baseModel: 'gemini-9.9-ultra-001' is not in the "
            "reconciler's catalog of tunable models; the API will decide") in r.err
    assert "1 manifest(s) in 1 file(s) are valid." in r.out


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


# -- 3. colour only on a terminal ------------------------------------------------------------------
_SGR = re.compile(r"\x1b\[([0-9;]*)m")


def colour_codes(text: str) -> list[str]:
    """The SGR parameters that set a foreground or background colour."""
    found = []
    for match in _SGR.finditer(text):
        params = [int(p) for p in match[1].split(";") if p]
        for p in params:
            if 30 <= p <= 38 or 40 <= p <= 48 or 90 <= p <= 97 or 100 <= p <= 107:
                found.append(match[0])
    return found


def _reconciler_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("NO_COLOR", "FORCE_COLOR", "CLICOLOR_FORCE", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS")}
    env["TERM"] = "xterm-256color"
    env.update(extra)
    return env


def run_in_pty(workdir: Path, args: list[str], env: dict[str, str], timeout: float = 20) -> tuple[int, str]:
    """Run the CLI with stdout and stderr on a pseudo-terminal; return (exit code, all it wrote)."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "reconciler.cli", *args], cwd=workdir, env=env,
                                stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, close_fds=True)
    finally:
        os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"{args} did not finish in {timeout} s: {b''.join(chunks)!r}"
            ready, _, _ = select.select([master], [], [], left)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError as exc:  # EIO: every writer closed the terminal
                if exc.errno != errno.EIO:
                    raise
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, b"".join(chunks).decode("utf-8", "replace")


@pytest.fixture
def colour_workdir(cli: Cli) -> Path:
    """A work dir whose plan has a change (a create) and a warning (an unknown base model)."""
    cli.manifest("alpha")
    cli.manifest("novel", base="gemini-9.9-ultra-001")
    return cli.workdir


def test_plan_is_coloured_on_a_terminal(colour_workdir: Path):
    code, text = run_in_pty(colour_workdir, ["plan"], _reconciler_env())
    assert code == 0, text
    assert "2 to create" in text and "is not in the reconciler's catalog" in text
    assert colour_codes(text), repr(text)


@pytest.mark.parametrize("how", ["NO_COLOR=1", "--no-color"])
def test_no_colour_on_a_terminal_when_asked(colour_workdir: Path, how: str):
    env = _reconciler_env(NO_COLOR="1") if how == "NO_COLOR=1" else _reconciler_env()
    args = ["--no-color", "plan"] if how == "--no-color" else ["plan"]
    code, text = run_in_pty(colour_workdir, args, env)
    assert code == 0, text
    assert "2 to create" in text and "is not in the reconciler's catalog" in text
    assert "\x1b" not in text, repr(text)  # no colour, and no bold either: no escape at all


def test_json_plan_on_a_terminal_is_plain_json(colour_workdir: Path):
    code, text = run_in_pty(colour_workdir, ["plan", "--format", "json"], _reconciler_env())
    assert code == 0, text
    body = text[text.index("{"):]  # the (coloured) warning on stderr comes first
    assert "\x1b" not in body, repr(body)
    assert json.loads(body.replace("\r\n", "\n"))["summary"]["create"] == 2


def test_no_escapes_at_all_when_piped(colour_workdir: Path):
    for args in (["plan"], ["status"]):
        r = subprocess.run([sys.executable, "-m", "reconciler.cli", *args], cwd=colour_workdir,
                           env=_reconciler_env(), capture_output=True, text=True, timeout=20)
        assert r.returncode == 0, r.stderr
        assert "\x1b" not in r.stdout and "\x1b" not in r.stderr, repr(r.stdout + r.stderr)
        assert r.stdout.strip()
    assert "is not in the reconciler's catalog" in r.stderr


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
                                "baseModel": "gemini-2.0-flash-001", "state": "JOB_STATE_SUCCEEDED",
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

