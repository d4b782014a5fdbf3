"""A Starlette app served on 127.0.0.1 (an ephemeral port) in a thread, for test-local fakes."""

from __future__ import annotations

import threading
from typing import Any

import uvicorn


class LocalServer:
    """`with LocalServer(app) as url:` serves `app` until the block ends."""

    def __init__(self, app: Any, **config: Any) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", **config))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            threading.Event().wait(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        scheme = "https" if self.server.config.ssl_certfile else "http"
        return f"{scheme}://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(5)
