"""A local emulator of the Vertex AI REST API v1 tuning-jobs service.

`backend` holds jobs and rules (no HTTP), `app` maps the REST routes and admin routes onto a
backend, `server` serves it (background thread, foreground, or embedded with persistence).
It imports nothing from the rest of the `reconciler` package: it is an independent reading of
the REST contract, so that client and emulator cannot agree on a wrong wire format.
"""

from reconciler.emulator.backend import Backend, EmulatorConfig
from reconciler.emulator.errors import ApiError

__all__ = ["ApiError", "Backend", "EmulatorConfig"]
