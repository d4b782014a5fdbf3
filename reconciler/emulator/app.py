"""HTTP layer of the emulator: the Vertex AI REST routes and the admin routes over a Backend.

It only parses requests and serialises answers. API routes are served under `/v1/` (`/v1beta1/`
is answered 404: its schema is not emulated); errors use Google's envelope
`{"error": {"code", "message", "status", "details"}}` (a 429 with a google.rpc.RetryInfo detail
and a `Retry-After` header), except the HTML 502 of a lost create. Admin routes live under
`/_emulator/` and are never delayed, faulted or rate-limited.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from reconciler.emulator.backend import Backend
from reconciler.emulator.errors import ApiError, GatewayError, invalid_argument, not_found
from reconciler.emulator.wire import check_cancel_request

# Standard query parameters of every Google API method (discovery `parameters`); GAPIC sends
# them with a `$` prefix (`$alt=json;enum-encoding=int`).
_SYSTEM_PARAMS = frozenset(
    {
        "alt",
        "fields",
        "key",
        "prettyPrint",
        "quotaUser",
        "access_token",
        "oauth_token",
        "callback",
        "uploadType",
        "upload_protocol",
        ".xgafv",
    }
)
_LIST_PARAMS = frozenset({"filter", "pageSize", "pageToken"})
_ROUTES = (
    ("POST", re.compile(r"(.+)/tuningJobs"), "create"),
    ("GET", re.compile(r"(.+)/tuningJobs"), "list"),
    ("GET", re.compile(r"(.+/tuningJobs/[^/:]+)"), "get"),
    ("POST", re.compile(r"(.+/tuningJobs/[^/:]+):cancel"), "cancel"),
    ("POST", re.compile(r"(.+/endpoints/[^/:]+):generateContent"), "generateContent"),
)
_INT32 = 2**31

# What a Google front end answers when it loses its backend.
_GFE_502 = """<!DOCTYPE html>
<html lang=en>
  <meta charset=utf-8>
  <meta name=viewport content="initial-scale=1, minimum-scale=1, width=device-width">
  <title>Error 502 (Server Error)!!1</title>
  <a href=//www.google.com/><span id=logo aria-label=Google></span></a>
  <p><b>502.</b> <ins>That\u2019s an error.</ins>
  <p>The server encountered a temporary error and could not complete your request.<p>Please try
  again in 30 seconds.  <ins>That\u2019s all we know.</ins>
"""


def create_app(backend: Backend) -> Starlette:
    """A Starlette app serving `backend` over the Vertex AI REST routes and the admin routes."""
    # Creates held by `create_delay_seconds`, each a task of its own (see `_held_create`).
    held: set[asyncio.Task[dict[str, Any]]] = set()

    async def api(request: Request) -> Response:
        latency = backend.config.latency_ms
        if latency:
            await asyncio.sleep(latency / 1000)
        path = request.path_params["path"]
        for method, pattern, operation in _ROUTES:  # noqa: B007 (used after the loop)
            match = pattern.fullmatch(path)
            if match and request.method == method:
                break
        else:
            raise _unknown_route(request)
        resource = match[1]
        query = request.query_params
        _check_params(request, _LIST_PARAMS if operation == "list" else frozenset())
        enum_int = any(
            "enum-encoding=int" in value
            for key, value in query.multi_items()
            if key in ("$alt", "alt")
        )
        if operation == "create":
            body = await _object_body(request)
            if backend.config.create_delay_seconds:
                return _json(await _held_create(backend, held, resource, body, enum_int))
            return _json(backend.create_tuning_job(resource, body, enum_int))
        if operation == "list":
            page = backend.list_tuning_jobs(
                resource,
                query.get("filter", ""),
                _page_size(query.get("pageSize", "")),
                query.get("pageToken", ""),
                enum_int,
            )
            return _json(page)
        if operation == "get":
            return _json(backend.get_tuning_job(resource, enum_int))
        if operation == "cancel":
            check_cancel_request(await _object_body(request))
            return _json(backend.cancel_tuning_job(resource))
        return _json(backend.generate_content(resource, await _object_body(request)))

    async def v1beta1(request: Request) -> Response:
        # Only v1 is emulated: v1beta1 has a schema of its own (more tuning kinds and fields),
        # and answering it with v1's would accept or refuse the wrong bodies (docs/emulator.md).
        raise not_found(
            f"The requested URL {request.url.path} was not found on this server. This emulator"
            " serves the Vertex AI v1 API only: use /v1/ (google-genai:"
            ' HttpOptions(api_version="v1")).'
        )

    async def reset(request: Request) -> Response:
        backend.reset()
        return _json({})

    async def config(request: Request) -> Response:
        changes = await _object_body(request) if request.method == "POST" else {}
        return _json(backend.configure(changes))

    async def advance(request: Request) -> Response:
        now = backend.advance((await _object_body(request)).get("seconds"))
        if held:  # the advance released every held create: answer once they are made
            await asyncio.wait(list(held))
        return _json(now)

    async def seed(request: Request) -> Response:
        return _json({"names": backend.seed((await _object_body(request)).get("jobs"))})

    async def fail(request: Request) -> Response:
        return _json({"names": backend.fail(await _object_body(request))})

    async def patch(request: Request) -> Response:
        body = await _object_body(request)
        return _json(backend.patch(str(body.get("name", "")), body.get("fields")))

    async def stats(request: Request) -> Response:
        return _json(backend.stats())

    async def replies(request: Request) -> Response:
        body = await _object_body(request)
        backend.set_reply(str(body.get("endpoint", "*")), body.get("text"))
        return _json({})

    routes = [
        Route("/_emulator/reset", reset, methods=["POST"]),
        Route("/_emulator/config", config, methods=["GET", "POST"]),
        Route("/_emulator/advance", advance, methods=["POST"]),
        Route("/_emulator/seed", seed, methods=["POST"]),
        Route("/_emulator/fail", fail, methods=["POST"]),
        Route("/_emulator/patch", patch, methods=["POST"]),
        Route("/_emulator/stats", stats, methods=["GET"]),
        Route("/_emulator/replies", replies, methods=["POST"]),
        Route("/v1/{path:path}", api, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        Route("/v1beta1/{path:path}", v1beta1, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
    )


async def _held_create(
    backend: Backend,
    held: set[asyncio.Task[dict[str, Any]]],
    parent: str,
    body: dict[str, Any],
    enum_int: bool,
) -> dict[str, Any]:
    """The create after `create_delay_seconds` of wall time or the next advance, whichever comes
    first; shielded, so that it is made even if the client has gone meanwhile."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + backend.config.create_delay_seconds
    mark = backend.advances

    async def finish() -> dict[str, Any]:
        while loop.time() < deadline and backend.advances == mark:
            await asyncio.sleep(min(0.01, max(0.0, deadline - loop.time())))
        return backend.create_tuning_job(parent, body, enum_int)

    task = asyncio.ensure_future(finish())
    held.add(task)  # kept: it finishes even when the request that started it is gone
    task.add_done_callback(held.discard)
    task.add_done_callback(lambda t: t.cancelled() or t.exception())  # an error nobody awaits
    return await asyncio.shield(task)


def _json(body: Any) -> Response:
    return JSONResponse(body)


def _unknown_route(request: Request) -> ApiError:
    return not_found(f"The requested URL {request.url.path} was not found on this server.")


def _check_params(request: Request, allowed: frozenset[str]) -> None:
    """Unknown query parameters are rejected as Google's front end rejects them."""
    for key in request.query_params:
        if key.removeprefix("$") not in _SYSTEM_PARAMS and key not in allowed:
            raise invalid_argument(
                f'Invalid JSON payload received. Unknown name "{key}": Cannot bind query '
                f"parameter. Field '{key}' could not be found in request message.",
                [(key, "unknown query parameter")],
            )


def _page_size(text: str) -> int:
    if not text:
        return 0
    if not re.fullmatch(r"-?\d+", text) or not -_INT32 <= int(text) < _INT32:
        raise invalid_argument(
            f"Invalid value at 'page_size' (TYPE_INT32), {json.dumps(text)}",
            [("page_size", "not an int32")],
        )
    return int(text)


async def _object_body(request: Request) -> dict[str, Any]:
    """The JSON object in the request body; no body, an empty one or `null` count as `{}`."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise invalid_argument(f"Invalid JSON payload received. {exc}.") from None
    if body is None:  # proto3 JSON: null is the empty message
        return {}
    if not isinstance(body, dict):
        raise invalid_argument("Invalid JSON payload received. Root element must be a message.")
    return body


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    if isinstance(exc, GatewayError):
        return HTMLResponse(_GFE_502, status_code=502)
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return JSONResponse(exc.envelope(), status_code=exc.http_code, headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (unknown admin path or method) in Google's envelope."""
    return await _api_error(request, _unknown_route(request))


async def _internal_error(request: Request, exc: Exception) -> Response:
    return await _api_error(request, ApiError(500, "INTERNAL", "Internal error encountered."))
