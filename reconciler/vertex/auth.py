"""Credentials as `httpx.Auth`: a ready token, or Application Default Credentials refreshed over httpx.

google-auth ships transports for requests, urllib3 and aiohttp, not httpx; `HttpxRequest` is the
small adapter that lets google-auth refresh tokens through httpx, so `requests` is not needed.
No credential is ever logged, printed or stored: `repr` of these objects shows no token.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Generator, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from reconciler.errors import ConfigError, CredentialsError, EndpointError
from reconciler.http.clients import http_client
from reconciler.http.endpoint import endpoint_problem
from reconciler.http.redact import register_secret

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
# Google access tokens are hundreds of characters; a static token shorter than this is a
# mistake (a truncated paste, a placeholder) and could not be masked reliably in messages
# (reconciler.http.redact masks registered values, and short ones would mask ordinary words).
MIN_TOKEN_LENGTH = 12

_NO_CREDENTIALS_HELP = (
    "No Google credentials found for {endpoint}. Run `gcloud auth application-default login`, "
    "set GOOGLE_APPLICATION_CREDENTIALS to a key file, or set RECONCILER_ACCESS_TOKEN "
    "(e.g. from `gcloud auth print-access-token`)."
)


def is_loopback_http(url: str) -> bool:
    """True for an `http://` URL whose host is a loopback address (the local emulator)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


def check_endpoint(url: str, *, allow_insecure_http: bool = False) -> str:
    """Validate an API endpoint override and return it without a trailing slash or `/v1`.

    https is always accepted; http only on a loopback address, unless explicitly allowed, so a
    token can never travel in clear text to another host by mistake. A malformed URL (whitespace
    or a control character anywhere, no host, a port outside 1–65535, a query) is refused at
    once, shown with repr (`reconciler.http.endpoint`), never retried as "connection refused".
    """
    problem = endpoint_problem(url)
    if problem is not None:
        raise EndpointError(problem)
    parts = urlsplit(url)
    if parts.scheme == "http" and not is_loopback_http(url) and not allow_insecure_http:
        raise EndpointError(
            f"Refusing plain http to a non-loopback host ({parts.hostname}): use https, "
            "or pass --allow-insecure-http if this is really intended."
        )
    root = url.rstrip("/")
    for suffix in ("/v1", "/v1beta1"):
        root = root.removesuffix(suffix)
    return root


def clean_token(token: str, source: str = "RECONCILER_ACCESS_TOKEN") -> str:
    """The token without surrounding whitespace (a pasted token often ends in a newline).

    A token that is blank, shorter than MIN_TOKEN_LENGTH, or holds anything but printable ASCII
    inside (a space, a newline, a control character) is a settings error; the message never
    shows the token."""
    stripped = token.strip()
    register_secret(token)
    register_secret(stripped)
    if not stripped:
        raise ConfigError(f"{source} is set but blank; unset it or give an access token")
    bad = next((c for c in stripped if not 0x21 <= ord(c) <= 0x7E), None)
    if bad is not None:
        kind = "whitespace" if bad.isspace() else "a control character" if ord(bad) < 0x20 or ord(bad) == 0x7F \
            else "a character that is not ASCII"
        raise ConfigError(
            f"{source} holds {kind} inside it (at character {stripped.index(bad) + 1} of "
            f"{len(stripped)}): an access token is one word of printable ASCII; set it again "
            "(e.g. `export RECONCILER_ACCESS_TOKEN=$(gcloud auth print-access-token)`)"
        )
    if len(stripped) < MIN_TOKEN_LENGTH:
        raise ConfigError(
            f"{source} is too short to be an access token ({len(stripped)} characters; at least "
            f"{MIN_TOKEN_LENGTH}): set the whole token "
            "(e.g. `export RECONCILER_ACCESS_TOKEN=$(gcloud auth print-access-token)`)"
        )
    return stripped


class StaticTokenAuth(httpx.Auth):
    """A bearer token given ready-made (RECONCILER_ACCESS_TOKEN), surrounding whitespace stripped."""

    def __init__(self, token: str) -> None:
        self._token = clean_token(token)

    def __repr__(self) -> str:
        return "StaticTokenAuth(<redacted>)"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


class _HttpxResponse:
    """google.auth.transport.Response over an httpx.Response."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status_code

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    @property
    def data(self) -> bytes:
        return self._response.content


class HttpxRequest:
    """google.auth.transport.Request implemented with httpx, for token refreshes."""

    def __init__(self, client: httpx.Client | None = None) -> None:
        self._client = client or http_client(timeout=30)  # http (the metadata server) never via a proxy

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> _HttpxResponse:
        from google.auth import exceptions

        try:
            response = self._client.request(
                method, url, content=body, headers=headers, timeout=timeout or 30
            )
        except httpx.HTTPError as exc:
            raise exceptions.TransportError(  # type: ignore[no-untyped-call]
                f"token refresh failed: {type(exc).__name__}"
            ) from exc
        return _HttpxResponse(response)


class GoogleCredentialsAuth(httpx.Auth):
    """google-auth credentials, refreshed before expiry (and once more on a 401)."""

    def __init__(self, credentials: Any, request: HttpxRequest | None = None) -> None:
        self._credentials = credentials
        self._request = request or HttpxRequest()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"GoogleCredentialsAuth({type(self._credentials).__name__})"

    def _refresh(self, force: bool = False) -> None:
        from google.auth import exceptions

        with self._lock:
            if force or not self._credentials.valid:
                try:
                    self._credentials.refresh(self._request)
                except exceptions.GoogleAuthError as exc:
                    raise CredentialsError(
                        f"Could not refresh Google credentials ({type(exc).__name__}); "
                        "run `gcloud auth application-default login` or check GOOGLE_APPLICATION_CREDENTIALS."
                    ) from None

    def _apply(self, request: httpx.Request) -> None:
        register_secret(self._credentials.token)
        request.headers["Authorization"] = f"Bearer {self._credentials.token}"
        quota_project = getattr(self._credentials, "quota_project_id", None)
        if quota_project:
            request.headers["x-goog-user-project"] = quota_project

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self._refresh()
        self._apply(request)
        response = yield request
        if response.status_code == 401:
            self._refresh(force=True)
            self._apply(request)
            yield request


def resolve_auth(endpoint_root: str | None, access_token: str | None, *,
                 service: str = "the Vertex AI API") -> httpx.Auth | None:
    """Pick credentials: a given token, none for the loopback emulator, else ADC.

    `endpoint_root` is the override (None means the real regional endpoints).
    """
    if access_token is not None and access_token != "":
        return StaticTokenAuth(access_token)  # stripped; refused (ConfigError) if malformed
    if endpoint_root is not None and is_loopback_http(endpoint_root):
        return None
    import google.auth
    from google.auth import exceptions

    try:
        credentials, _project = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
    except exceptions.GoogleAuthError as exc:
        where = endpoint_root or service
        cause = _credentials_file_problem(exc)
        if cause:  # GOOGLE_APPLICATION_CREDENTIALS names a file that is missing or not a key
            raise CredentialsError(f"Google credentials for {where} could not be loaded: {cause}. Point "
                                   "GOOGLE_APPLICATION_CREDENTIALS at a valid key file (or unset it to use "
                                   "`gcloud auth application-default login`).") from None
        raise CredentialsError(_NO_CREDENTIALS_HELP.format(endpoint=where)) from None
    return GoogleCredentialsAuth(credentials)


def _credentials_file_problem(exc: Exception) -> str | None:
    """What is wrong with the credentials file google-auth tried, in one line; None when it
    found no credentials at all. Its messages name the file ('File X was not found.', 'File X is
    not a valid json file.', 'Failed to load service account credentials from X')."""
    from reconciler.http.redact import clean

    first = exc.args[0] if exc.args else str(exc)
    text = str(first).strip()
    if not (text.startswith("File ") or "credentials from" in text or "json file" in text):
        return None
    return clean(" ".join(text.split()))[:300].rstrip(".")
