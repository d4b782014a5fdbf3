"""HTTP transport for the Vertex AI API: retries with backoff and jitter, error mapping, counters.

Retried: 429, 500, 502, 503, 504, connection errors and timeouts; exponential backoff with
jitter (google-api-core's defaults: 1 s initial, x2, 60 s cap, 120 s total), `Retry-After`
honoured, bounded in attempts and in total time. A failure that may have reached the server
(a 5xx, a timeout after sending, a dropped connection) is *ambiguous*: callers for which a repeat
is not harmless (create) get a hook to settle it before the next attempt. A request that could not
even be built or sent as given (an illegal header value) is not retried.

Every wait (back-off, `Retry-After`, quota pacing) ends at once when the process is asked to stop
(`reconciler.interrupt`), and every message built from foreign text (httpx exceptions, the API's
error messages) is passed through `redact` first, so a token never reaches the terminal.

`http_client` builds every httpx client of the package: environment proxies are read here, not by
httpx, so that plain http (the loopback emulator) never goes through a proxy and https only
through one named for https (`HTTPS_PROXY`/`https_proxy`, else `ALL_PROXY`/`all_proxy`), minus
the hosts of `NO_PROXY`.
"""

from __future__ import annotations

import email.utils
import ipaddress
import json
import logging
import math
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from reconciler import interrupt
from reconciler.errors import (
    ApiError,
    ConfigError,
    MalformedResponseError,
    RequestNotSentError,
    TransportError,
    api_error,
)
from reconciler.vertex.ratelimit import SlidingWindowLimiter
from reconciler.vertex.redact import redact

RETRYABLE_HTTP = frozenset({429, 500, 502, 503, 504})
log = logging.getLogger("reconciler.api")  # method, URL and status only: never headers or bodies


@dataclass(frozen=True)
class RetryPolicy:
    """How failed calls are retried. Delays in seconds."""

    initial: float = 1.0
    multiplier: float = 2.0
    maximum: float = 60.0
    deadline: float = 120.0
    max_attempts: int = 10

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Delay before retry number `attempt` (1-based): exponential, capped, 'equal jitter'."""
        base = min(self.maximum, self.initial * self.multiplier ** (attempt - 1))
        return base / 2 + rng.uniform(0, base / 2)


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` as seconds (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_from_response(response: httpx.Response, service: str = "Vertex AI") -> ApiError:
    """Turn an error response into a typed ApiError, keeping the API's message and status."""
    code = response.status_code
    status: str | None = None
    message = ""
    details: list[Any] = []
    try:
        body = _loads(response.content)
    except (ValueError, RecursionError):
        body = None
    if isinstance(body, list) and body and isinstance(body[0], dict):
        body = body[0]  # some Google front ends wrap the envelope in a list
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        status = err.get("status") if isinstance(err.get("status"), str) else None
        message = str(err.get("message", ""))
        details = err.get("details") if isinstance(err.get("details"), list) else []
    if not message:
        text = response.text.strip().replace("\n", " ")
        message = (text[:200] + "…") if len(text) > 200 else (text or response.reason_phrase)
    message = redact(message.replace("\r", " ").replace("\n", " "))
    request = response.request
    return api_error(
        code,
        status,
        message,
        details=details,
        method=request.method,
        url=str(request.url.copy_with(query=None)),
        retry_after=parse_retry_after(response.headers.get("retry-after")),
        service=service,
    )


# Raised before a byte was sent: a retry cannot duplicate anything.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# The request cannot be sent as it is (an illegal header value, e.g. a token with a newline; a
# URL scheme httpx does not speak): nothing left, and a retry would fail the same way.
_UNSENDABLE = (httpx.LocalProtocolError, httpx.UnsupportedProtocol, httpx.InvalidURL, UnicodeEncodeError)


class Transport:
    """Sends JSON requests with retries; counts attempts for reports. Thread-safe."""

    def __init__(
        self,
        http: httpx.Client,
        retry: RetryPolicy | None = None,
        *,
        sleep: Callable[[float], None] = interrupt.sleep,
        seed: int | None = None,
        requests_per_minute: int = 0,
        creates_per_minute: int = 0,
        service: str = "Vertex AI",
    ) -> None:
        self.http = http
        self.service = service
        self.retry = retry or RetryPolicy()
        self.request_limiter = SlidingWindowLimiter(requests_per_minute)
        self.create_limiter = SlidingWindowLimiter(creates_per_minute)
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        # Told (at most every NOTICE_EVERY seconds) when a call has been retrying for a while, so
        # that a run stuck on an unreachable endpoint says so long before it gives up.
        self.notify: Callable[[str], None] | None = None
        self._last_notice = -math.inf

    def _count(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1

    def _tell(self, message: str, retrying_for: float) -> None:
        if self.notify is None or retrying_for < NOTICE_AFTER:
            return
        with self._lock:
            now = time.monotonic()
            if now - self._last_notice < NOTICE_EVERY:
                return
            self._last_notice = now
        self.notify(redact(message))

    def send(
        self,
        method: str,
        url: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        before_retry: Callable[[bool], Any] | None = None,
        region: str = "",
        create: bool = False,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        raw: bool = False,
    ) -> Any:
        """Send one logical call; return the decoded JSON body (`{}` when empty), or with `raw`
        the body's bytes.

        `before_retry(ambiguous)` runs before each new attempt; a non-None result ends the call
        with that result (used by create to find a job that an ambiguous failure did make).
        `content` and `headers` send a body that is not JSON (Cloud Storage uploads).
        """
        policy = self.retry
        start = time.monotonic()
        paced = 0.0  # time spent waiting for the quota's window: not part of the retry deadline
        attempt = 0
        while True:
            attempt += 1
            interrupt.check()
            if create:
                paced += self.create_limiter.acquire(region)
            paced += self.request_limiter.acquire(region)
            self._count("attempts")
            error: Exception
            ambiguous: bool
            retry_after: float | None = None
            sent = time.monotonic()
            try:
                response = self.http.request(method, url, json=body, params=params, content=content,
                                             headers=headers)
            except _UNSENDABLE as exc:
                raise RequestNotSentError(
                    f"{method} {_strip_query(url)} could not be sent: {_describe(exc)} (nothing was "
                    "sent; check the access token and endpoint settings)") from None
            except _NOT_SENT as exc:
                error = TransportError(f"cannot connect to {_host(url)}: {_describe(exc)}")
                ambiguous = False
            except httpx.HTTPError as exc:
                error = TransportError(
                    f"{method} {_strip_query(url)} failed: {type(exc).__name__} {_describe(exc)}".strip()
                )
                ambiguous = True
            else:
                self._count(f"http_{response.status_code}")
                log.debug("%s %s -> %d (%.0f ms, attempt %d)", method, _strip_query(url),
                          response.status_code, (time.monotonic() - sent) * 1000, attempt)
                if response.is_success:
                    return response.content if raw else _json_body(response)
                api_err = error_from_response(response, self.service)
                if response.status_code not in RETRYABLE_HTTP:
                    raise api_err
                error, ambiguous, retry_after = api_err, response.status_code != 429, api_err.retry_after
            if isinstance(error, TransportError):
                log.debug("%s %s -> %s (attempt %d)", method, _strip_query(url), error, attempt)
            elapsed = time.monotonic() - start - paced
            delay = policy.backoff(attempt, self._rng)
            if retry_after is not None:
                delay = max(delay, retry_after)
            if attempt >= policy.max_attempts or elapsed + delay > policy.deadline:
                raise _give_up(error, attempt, elapsed)
            self._count("retries")
            self._tell(f"{error.args[0] if error.args else error}: still retrying "
                       f"({elapsed:.0f} s so far; gives up after {policy.deadline:.0f} s)", elapsed + delay)
            self._sleep(delay)
            if before_retry is not None:
                settled = before_retry(ambiguous)
                if settled is not None:
                    return settled


NOTICE_AFTER = 5.0  # seconds a call has been retrying before the user is told
NOTICE_EVERY = 30.0


def _give_up(error: Exception, attempts: int, elapsed: float) -> Exception:
    suffix = f" [gave up after {attempts} attempt{'s' if attempts != 1 else ''} in {elapsed:.1f} s]"
    error.args = (f"{error.args[0] if error.args else error}{suffix}",)
    return error


MAX_JSON_DEPTH = 64  # API answers nest a dozen levels; deeper is a broken or hostile server


def _loads(content: bytes) -> Any:
    """JSON of a body; ValueError if it is not JSON or nests deeper than MAX_JSON_DEPTH."""
    value = json.loads(content)
    stack: list[tuple[Any, int]] = [(value, 1)]
    pop, push = stack.pop, stack.append
    while stack:  # iterative, containers only: ~1/4 of the parse time of a 1000-job page
        item, depth = pop()
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
        for child in item.values() if type(item) is dict else item if type(item) is list else ():
            kind = type(child)
            if kind is dict or kind is list:
                push((child, depth + 1))
    return value


def _json_body(response: httpx.Response) -> Any:
    if not response.content.strip():
        return {}
    try:
        return _loads(response.content)
    except RecursionError:
        reason = "nested too deeply"
    except (json.JSONDecodeError, UnicodeDecodeError):
        reason = "not JSON"
    except ValueError as exc:
        reason = str(exc)
    raise MalformedResponseError(
        f"{response.request.method} {_strip_query(str(response.request.url))} "
        f"returned {response.status_code} with a body that is {reason}"
    )


def _describe(exc: BaseException) -> str:
    """A short, redacted, one-line reason for a failure (e.g. a failed certificate check)."""
    text = " ".join(redact(str(exc)).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "…"


# -- httpx clients ------------------------------------------------------------------------------
def proxy_for_https(environ: Mapping[str, str] | None = None) -> tuple[str | None, list[str]]:
    """(the proxy URL for https requests or None, the NO_PROXY entries) named by the environment.

    `https_proxy`, else `all_proxy`; a lower-case variable wins over its upper-case twin, as curl
    reads them. `http_proxy` is never used: plain http goes direct."""
    env = os.environ if environ is None else environ

    def read(name: str) -> str:
        for key in (name, name.upper()):
            if key in env:
                return env[key].strip()
        return ""

    proxy = read("https_proxy") or read("all_proxy") or None
    if proxy and "://" not in proxy:
        proxy = f"http://{proxy}"
    no_proxy = [host.strip() for host in read("no_proxy").split(",") if host.strip()]
    return proxy, no_proxy


def _no_proxy_pattern(host: str) -> str:
    """An httpx mount pattern for one NO_PROXY entry (curl's reading, as httpx's own)."""
    if "://" in host:
        return host
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return "all://localhost" if host.lower() == "localhost" else f"all://*{host}"
    return f"all://[{address}]" if address.version == 6 else f"all://{address}"


def http_client(*, limits: httpx.Limits | None = None, environ: Mapping[str, str] | None = None,
                **options: Any) -> httpx.Client:
    """An httpx.Client that reads no proxy from the environment by itself (`trust_env=False`):
    http goes direct; https through the proxy named for https, except NO_PROXY hosts.
    Certificates from SSL_CERT_FILE / SSL_CERT_DIR are still honoured."""
    limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
    proxy, no_proxy = proxy_for_https(environ)
    mounts: dict[str, httpx.BaseTransport | None] = {}
    if proxy and "*" not in no_proxy:
        try:
            mounts["https://"] = httpx.HTTPTransport(proxy=proxy, limits=limits, trust_env=True)
        except (ImportError, ValueError, httpx.HTTPError) as exc:
            raise ConfigError(
                "the proxy named by HTTPS_PROXY/ALL_PROXY cannot be used "
                f"({type(exc).__name__}; only http:// and https:// proxies are supported)"
            ) from None
        mounts.update({_no_proxy_pattern(host): None for host in no_proxy})
    return httpx.Client(
        transport=httpx.HTTPTransport(limits=limits, trust_env=True),
        mounts=mounts,
        trust_env=False,
        **options,
    )


def _strip_query(url: str) -> str:
    return url.split("?", 1)[0]


def _host(url: str) -> str:
    return httpx.URL(url).host or url
