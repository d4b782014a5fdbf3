"""A small Cloud Storage JSON API client over httpx (state files, locks, dataset metadata).

Only what the reconciler needs: object metadata, download, multipart upload with
`ifGenerationMatch` (0 = only if absent), generation-matched delete, and listing by prefix.
`STORAGE_EMULATOR_HOST` — the variable Google's own storage clients honour — points it at an
emulator (then no credentials are sent, as Google's clients do). Retries and error mapping are
the shared transport's (`reconciler.http.transport`, as "Cloud Storage"); a 412 (precondition
failed) becomes `FailedPreconditionError`. Like the Vertex client, it takes an injected
`httpx.Client` or `Transport`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from typing import Any
from urllib.parse import quote

import httpx

from reconciler import interrupt
from reconciler.errors import (
    FailedPreconditionError,
    InvalidNameError,
    MalformedResponseError,
    NotFoundError,
)
from reconciler.http.clients import USER_AGENT, http_client
from reconciler.http.paging import Pager
from reconciler.http.retry import RetryPolicy
from reconciler.http.transport import Transport

DEFAULT_ENDPOINT = "https://storage.googleapis.com"
_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")  # fullmatch only
MAX_LIST_PAGES = 10_000  # a listing of more pages is a server that never stops
MAX_LISTED_OBJECTS = 1_000_000  # state, journal and lock objects: far fewer in earnest


def parse_gs_uri(uri: str) -> tuple[str, str]:
    """(bucket, object) of `gs://bucket/object`; raises on anything else."""
    if not uri.startswith("gs://"):
        raise InvalidNameError(f"not a Cloud Storage URI: {uri!r} (expected gs://BUCKET/OBJECT)")
    bucket, _, name = uri[5:].partition("/")
    if not _BUCKET.fullmatch(bucket) or not name or len(name.encode()) > 1024 or any(c in name for c in "\r\n"):
        raise InvalidNameError(f"not a valid Cloud Storage object URI: {uri!r}")
    return bucket, name


def emulator_endpoint(value: str) -> str:
    """`STORAGE_EMULATOR_HOST` as a URL (Google's clients accept `host:port` or a URL)."""
    return value.rstrip("/") if "://" in value else f"http://{value.rstrip('/')}"


def md5_base64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


class StorageClient:
    """Cloud Storage objects over the JSON API."""

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        auth: httpx.Auth | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 60.0,
        http: httpx.Client | None = None,
        transport: Transport | None = None,
    ) -> None:
        """Injection points: `http`, the httpx.Client to send through (e.g. one over
        httpx.MockTransport), or `transport`, a ready `Transport` (its client, retry policy, sleep
        and clock; `auth`, `retry` and `timeout` are then unused). Either is closed by `close`."""
        if http is not None and transport is not None:
            raise TypeError("give http or transport, not both")
        self.endpoint = (endpoint or DEFAULT_ENDPOINT).rstrip("/")
        if transport is None:
            http = http or http_client(
                auth=auth,
                timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
                headers={"user-agent": USER_AGENT},
            )
            transport = Transport(http, retry, service="Cloud Storage")
        self.transport = transport
        self._http = transport.http

    def close(self) -> None:
        self._http.close()

    def _object_url(self, bucket: str, name: str) -> str:
        return f"{self.endpoint}/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}"

    def metadata(self, bucket: str, name: str) -> dict[str, Any] | None:
        """The object's resource (generation, size, md5Hash, crc32c, …), or None if absent."""
        try:
            result = self.transport.send("GET", self._object_url(bucket, name))
        except NotFoundError:
            return None
        return _object(result, f"the metadata of gs://{bucket}/{name}")

    def download(self, bucket: str, name: str, generation: int | None = None) -> bytes:
        params = {"alt": "media"}
        if generation is not None:
            params["generation"] = str(generation)
        data: bytes = self.transport.send("GET", self._object_url(bucket, name), params=params, raw=True)
        return data

    def upload(
        self, bucket: str, name: str, data: bytes, *, if_generation_match: int | None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """Write an object with a multipart upload; with `if_generation_match` only if the object
        is at that generation (0: only if it does not exist), else FailedPreconditionError.

        A retried upload that the server did apply (the answer was lost) then meets its own
        precondition: an object holding exactly our bytes counts as our success."""
        boundary = f"reconciler-{uuid.uuid4().hex}"
        meta = json.dumps({"name": name, "contentType": content_type}).encode()
        body = b"".join([
            f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n".encode(), meta,
            f"\r\n--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode(), data,
            f"\r\n--{boundary}--\r\n".encode(),
        ])
        params = {"uploadType": "multipart"}
        if if_generation_match is not None:
            params["ifGenerationMatch"] = str(if_generation_match)
        url = f"{self.endpoint}/upload/storage/v1/b/{quote(bucket, safe='')}/o"
        ambiguous_seen = False

        def note(ambiguous: bool) -> None:
            nonlocal ambiguous_seen
            ambiguous_seen = ambiguous_seen or ambiguous

        try:
            result = self.transport.send(
                "POST", url, params=params, content=body, before_retry=note,
                headers={"Content-Type": f"multipart/related; boundary={boundary}"})
            return _object(result, f"the upload of gs://{bucket}/{name}")
        except FailedPreconditionError:
            if ambiguous_seen:
                current = self.metadata(bucket, name)
                if current is not None and current.get("md5Hash") == md5_base64(data):
                    return current
            raise

    def delete(self, bucket: str, name: str, *, if_generation_match: int | None) -> None:
        params = {} if if_generation_match is None else {"ifGenerationMatch": str(if_generation_match)}
        self.transport.send("DELETE", self._object_url(bucket, name), params=params)

    def list(self, bucket: str, prefix: str) -> list[dict[str, Any]]:
        """Every object whose name starts with `prefix` (all pages)."""
        url = f"{self.endpoint}/storage/v1/b/{quote(bucket, safe='')}/o"
        items: list[dict[str, Any]] = []
        where = f"the listing of gs://{bucket}/{prefix}*"
        pager = Pager(where, "objects", max_pages=MAX_LIST_PAGES, max_items=MAX_LISTED_OBJECTS)
        for pages in pager:
            interrupt.check()
            params = {"prefix": prefix}
            if pager.token:
                params["pageToken"] = pager.token
            page = _object(self.transport.send("GET", url, params=params), f"{where} (page {pages})")
            found = page.get("items") or []
            if not isinstance(found, list) or not all(isinstance(item, dict) for item in found):
                raise MalformedResponseError(f"Cloud Storage answered {where} (page {pages}) with a malformed "
                                             "body: items is not a list of objects")
            items.extend(found)
            token = page.get("nextPageToken") or ""
            if not isinstance(token, str):
                raise MalformedResponseError(f"Cloud Storage answered {where} (page {pages}) with a malformed "
                                             "body: nextPageToken is not a string")
            pager.took(len(found), token)
        return items


def _object(result: Any, what: str) -> dict[str, Any]:
    if not isinstance(result, dict):
        raise MalformedResponseError(f"Cloud Storage answered {what} with a JSON {type(result).__name__}, "
                                     "not an object")
    return result
