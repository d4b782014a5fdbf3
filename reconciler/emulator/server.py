"""Serving the emulator with uvicorn: in a background thread (tests, embedded use by the CLI)
or in the foreground (`serve`, for a CLI command).

Uvicorn logs only warnings and errors, through its own loggers, without configuring logging for
the process: the CLI's output stays the user's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import uvicorn

from reconciler import interrupt
from reconciler.emulator.app import create_app
from reconciler.emulator.backend import Backend, EmulatorConfig

if TYPE_CHECKING:
    from typing_extensions import Self

_START_TIMEOUT_SECONDS = 10.0
EMBEDDED_STATE_FILE = "emulator-state.json"


class _Server(uvicorn.Server):
    """A uvicorn server that wakes up as soon as it is asked to stop, instead of polling its
    `should_exit` flag every 0.1 s (per-test servers then stop in about 0.1 s, not 0.2 s)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = asyncio.Event()

    async def main_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        while not await self.on_tick(0):  # on_tick(0) also refreshes the Date header
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=1.0)

    def request_stop(self) -> None:
        """Ask the server to stop; safe from any thread."""
        self.should_exit = True
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self._loop.call_soon_threadsafe(self._stop.set)


class EmulatorServer:
    """An emulator served on host:port by uvicorn in a daemon thread; port 0 picks a free port."""

    def __init__(
        self,
        backend: Backend,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
    ) -> None:
        self.backend = backend
        self.host = host
        self.port = port
        self._log_level = log_level
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """`http://HOST:PORT` with the real port, no trailing slash."""
        return _url(self.host, self.port)

    def start(self) -> Self:
        """Start serving; return once the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError(f"the emulator server at {self.url} is already started")
        sock = _listen(self.host, self.port)
        self.port = sock.getsockname()[1]
        self._server = _Server(_uvicorn_config(self.backend, self._log_level))
        self._thread = threading.Thread(
            target=_serve,
            args=(self._server, sock),
            name=f"vertex-emulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                sock.close()
                raise RuntimeError(f"the emulator server at {self.url} did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Stop serving and wait for the server thread to end."""
        if self._server is None or self._thread is None:
            return
        self._server.request_stop()
        self._thread.join(timeout=_START_TIMEOUT_SECONDS)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        """Start the server unless it is already (e.g. from `start_embedded`)."""
        return self if self._thread is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def serve(host: str, port: int, backend: Backend) -> None:
    """Serve in the foreground until Ctrl-C, after printing one line with the URL."""
    sock = _listen(host, port)
    print(f"Vertex AI emulator listening on {_url(host, sock.getsockname()[1])}", flush=True)
    try:
        uvicorn.Server(_uvicorn_config(backend, "warning")).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled
        pass
    finally:
        sock.close()


def start_embedded(data_path: Path, config: EmulatorConfig | None = None) -> EmulatorServer:
    """A started background emulator on 127.0.0.1 (ephemeral port) whose jobs persist in
    `data_path` (a JSON file, or a directory to hold `emulator-state.json`).

    Without `config`: real clock, jobs pending 2 s, running 8 s, cancelling 1 s.
    """
    path = Path(data_path)
    if path.is_dir():
        path = path / EMBEDDED_STATE_FILE
    base = config or EmulatorConfig(
        pending_seconds=2.0, running_seconds=8.0, cancelling_seconds=1.0
    )
    backend = Backend(dataclasses.replace(base, data_path=str(path)))
    return EmulatorServer(backend).start()


def _uvicorn_config(backend: Backend, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(backend),
        log_level=log_level,
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,
    )


def _listen(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    # proto must say TCP: asyncio turns TCP_NODELAY on only for such sockets' connections, and
    # without it each answer on a kept-alive connection waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen()
    return sock


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _serve(server: _Server, sock: socket.socket) -> None:
    """The server thread: signals are left to the main thread (reconciler.interrupt)."""
    interrupt.worker_thread()
    server.run(sockets=[sock])
