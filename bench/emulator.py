"""The emulator as a child process (`reconciler emulator`), driven through its admin routes.

The emulator runs in its own process so that its CPU time (rendering pages, validating creates)
is not charged to the client being measured, as with a real service.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

_URL_LINE = re.compile(r"listening on (http://\S+)")
_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 10.0
SEED_BATCH = 2_000


class EmulatorProcess:
    """`python -m reconciler.cli emulator` on an ephemeral port with a manual clock.

    Quotas are off at start (`reset` restores that); latency applies to API routes only, never to
    the admin routes used here.
    """

    def __init__(self, latency_ms: float, log: Path) -> None:
        """`log` receives the child's stderr."""
        self.latency_ms = latency_ms
        self.url = ""
        self._log = log
        self._proc: subprocess.Popen[str] | None = None
        self._admin: httpx.Client | None = None

    def start(self) -> EmulatorProcess:
        """Start the child and wait for its `listening on URL` line."""
        command = [
            sys.executable, "-m", "reconciler.cli", "emulator",
            "--host", "127.0.0.1", "--port", "0", "--clock", "manual",
            "--latency-ms", f"{self.latency_ms:g}",
            "--submissions-per-minute", "0", "--requests-per-minute", "0",
        ]  # fmt: skip
        with self._log.open("w") as log:  # the child keeps its own descriptor
            self._proc = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1
            )
        assert self._proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._proc.stdout, selectors.EVENT_READ)
            ready = selector.select(timeout=_START_TIMEOUT_S)
        line = self._proc.stdout.readline() if ready else ""
        match = _URL_LINE.search(line)
        if match is None:
            self.stop()
            raise RuntimeError(f"the emulator did not start (first line {line!r}){self._error_tail()}")
        self.url = match[1]
        self._admin = httpx.Client(base_url=self.url, timeout=120)
        return self

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) the emulator process has used so far; None off Linux."""
        if self._proc is None:
            return None
        try:
            stat = Path(f"/proc/{self._proc.pid}/stat").read_text()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _error_tail(self) -> str:
        tail = self._log.read_text()[-2000:] if self._log.exists() else ""
        return f"\nemulator stderr:\n{tail}" if tail else ""

    def stop(self) -> None:
        """Stop the child (Ctrl-C first, as a user would, then harder)."""
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- admin routes ----------------------------------------------------------------------------
    def _call(self, method: str, route: str, body: Any = None) -> Any:
        if self._admin is None:
            raise RuntimeError("the emulator is not running")
        response = self._admin.request(method, f"/_emulator/{route}", json=body)
        if response.is_error:
            raise RuntimeError(f"{method} /_emulator/{route}: {response.status_code} {response.text}")
        return response.json()

    def config(self, **changes: Any) -> dict[str, Any]:
        """Change settings (none: just read them); return the whole configuration."""
        if changes:
            result: dict[str, Any] = self._call("POST", "config", changes)
        else:
            result = self._call("GET", "config")
        return result

    def reset(self) -> None:
        """Forget jobs, stats and quota windows; settings go back to the start-up ones."""
        self._call("POST", "reset", {})

    def seed(self, jobs: Sequence[dict[str, Any]]) -> None:
        """Insert jobs directly, in batches of SEED_BATCH."""
        for start in range(0, len(jobs), SEED_BATCH):
            self._call("POST", "seed", {"jobs": list(jobs[start : start + SEED_BATCH])})

    def stats(self) -> dict[str, Any]:
        """Requests per operation, injected faults (`quota_429`), number of jobs."""
        result: dict[str, Any] = self._call("GET", "stats")
        return result


def request_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    """API requests made between two stats snapshots, per operation (list, get, create, cancel)."""
    return {
        op: int(after["requests"].get(op, 0)) - int(before["requests"].get(op, 0))
        for op in ("list", "get", "create", "cancel")
    }


def arrivals_between(stats: dict[str, Any], start: float, end: float) -> list[float]:
    """The arrival times (Unix seconds) of the requests the emulator saw between two instants."""
    return sorted(t for t in stats.get("arrivals", []) if start <= t <= end)


def quota_429_delta(before: dict[str, Any], after: dict[str, Any]) -> int:
    """429s the emulator's quotas issued between two stats snapshots."""
    return int(after["faults"].get("quota_429", 0)) - int(before["faults"].get("quota_429", 0))
