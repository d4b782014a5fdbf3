"""The retrying transport shared by Vertex AI and Cloud Storage: retries with backoff and jitter,
error mapping, counters, and the cleaning of every answer.

Retried: 408, 429, 500, 502, 503, 504, connection errors and timeouts; exponential backoff with
jitter (`RetryPolicy`), bounded in attempts and in total time. The server's own hint of when to
retry is honoured (never beyond the retry deadline): a `google.rpc.RetryInfo` in `error.details`
(`{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3.500s"}`, what Google's
APIs send), else a `Retry-After` header. A failure that may have reached the server (a 408, a
5xx, a timeout after sending, a dropped connection) is *ambiguous*: callers for which a repeat is not harmless (create) get a hook to settle it before
the next attempt. A request that could not even be built or sent as given (an illegal header
value) is not retried. Error responses become typed `ApiError`s named after the service
(`service=`, "Vertex AI" or "Cloud Storage").

Every wait (back-off, `Retry-After`, quota pacing) ends at once when the process is asked to stop
(`reconciler.interrupt`). Every message built from foreign text (httpx exceptions, the API's
error messages) and every string of a decoded JSON answer is passed through `redact.clean`
first: a token never reaches the terminal, a plan or the state, and no control character from a
server (a newline forging an `Error:` line, an ESC sequence) reaches the output.

Injectable for tests: the `httpx.Client` (e.g. over `httpx.MockTransport`), `sleep` and `clock`.
"""

from __future__ import annotations

import dataclasses
import email.utils
import json
import logging
import math
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic_core import from_json

from reconciler import interrupt
from reconciler.errors import (
    ApiError,
    MalformedResponseError,
    RequestNotSentError,
    TransportError,
    api_error,
)
from reconciler.http.ratelimit import SlidingWindowLimiter
from reconciler.http.redact import clean, clean_json, clean_tree, redact
from reconciler.http.retry import RetryPolicy

# 408 too: google-genai and google-auth retry it (api-core does not); for a create it is
# ambiguous, like a 5xx, so the request-id lookup runs before any new attempt.
RETRYABLE_HTTP = frozenset({408, 429, 500, 502, 503, 504})
RETRY_INFO_TYPE = "type.googleapis.com/google.rpc.RetryInfo"
_DURATION = re.compile(r"(\d+)(\.\d{1,9})?s")
log = logging.getLogger("reconciler.api")  # method, URL and status only: never headers or bodies


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


def parse_retry_info(details: Any) -> float | None:
    """The `retryDelay` of the first google.rpc.RetryInfo in an error's details, in seconds, or
    None (no RetryInfo, or a delay that is not a protobuf Duration such as `"3.500s"`)."""
    if not isinstance(details, list):
        return None
    for detail in details:
        if isinstance(detail, dict) and detail.get("@type") == RETRY_INFO_TYPE:
            delay = detail.get("retryDelay")
            match = _DURATION.fullmatch(delay) if isinstance(delay, str) else None
            if match:
                return int(match[1]) + float("0" + (match[2] or ""))
    return None


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
    message = clean(message.replace("\r", " ").replace("\n", " "))
    request = response.request
    return api_error(
        code,
        clean(status) if status else status,
        message,
        details=clean_tree(details),
        method=request.method,
        url=str(request.url.copy_with(query=None)),
        retry_after=_retry_hint(details, response.headers.get("retry-after")),
        service=service,
    )


def _retry_hint(details: list[Any], header: str | None) -> float | None:
    """When the server asks to be retried: RetryInfo first, `Retry-After` as the fallback."""
    delay = parse_retry_info(details)
    return delay if delay is not None else parse_retry_after(header)


# Raised before a byte was sent: a retry cannot duplicate anything.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# The request cannot be sent as it is (an illegal header value, e.g. a token with a newline; a
# URL scheme httpx does not speak): nothing left, and a retry would fail the same way.
_UNSENDABLE = (httpx.LocalProtocolError, httpx.UnsupportedProtocol, httpx.InvalidURL, UnicodeEncodeError)


@dataclass
class _Call:
    """One logical call across its attempts."""

    method: str
    url: str
    region: str
    create: bool
    start: float
    attempt: int = 0
    paced: float = 0.0  # time spent waiting for the quota's window: not part of the retry deadline

    @property
    def where(self) -> str:
        return f"{self.method} {_strip_query(self.url)}"


@dataclass(frozen=True)
class _Failure:
    """A failed attempt that may be retried."""

    error: Exception
    ambiguous: bool  # the request may have reached the server
    retry_after: float | None = None
    unreachable: bool = False  # no connection was ever made: a wrong or dead endpoint, not a busy one


class Transport:
    """Sends JSON requests with retries; counts attempts for reports. Thread-safe.

    `http` is any `httpx.Client` (tests give one over `httpx.MockTransport`); `sleep` and `clock`
    serve the back-off, the retry deadline and the quota pacing (tests give fakes: no real wait)."""

    def __init__(
        self,
        http: httpx.Client,
        retry: RetryPolicy | None = None,
        *,
        sleep: Callable[[float], None] = interrupt.sleep,
        clock: Callable[[], float] = time.monotonic,
        seed: int | None = None,
        requests_per_minute: int = 0,
        creates_per_minute: int = 0,
        service: str = "Vertex AI",
    ) -> None:
        self.http = http
        self.service = service
        self.retry = retry or RetryPolicy()
        self.request_limiter = SlidingWindowLimiter(requests_per_minute, clock=clock, sleep=sleep)
        self.create_limiter = SlidingWindowLimiter(creates_per_minute, clock=clock, sleep=sleep)
        self._sleep = sleep
        self._clock = clock
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        # Told (at most every NOTICE_EVERY seconds) when a call has been retrying for a while, so
        # that a run stuck on an unreachable endpoint says so long before it gives up.
        self.notify: Callable[[str], None] | None = None
        self._last_notice = -math.inf
        self.request_limiter.on_wait = lambda key, delay: self._paced("request", requests_per_minute, key, delay)
        self.create_limiter.on_wait = lambda key, delay: self._paced("job submission", creates_per_minute, key, delay)

    def _paced(self, what: str, limit: int, region: str, delay: float) -> None:
        """Say what a paced call waits for: silence for up to a minute reads as a hang."""
        if self.notify is not None:
            self.notify(f"{region}: {limit} {what}s a minute reached (rateLimit in reconciler.yaml); "
                        f"waiting {delay:.0f} s for the quota's window")

    def _count(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1

    def _tell(self, message: str, retrying_for: float) -> None:
        if self.notify is None or retrying_for < NOTICE_AFTER:
            return
        with self._lock:
            now = self._clock()
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
        lazy: bool = False,
        sent: threading.Event | None = None,
    ) -> Any:
        """Send one logical call; return the decoded JSON body (`{}` when empty), with `raw` the
        body's bytes, with `lazy` an `Answer` (the body decoded when asked for).

        `before_retry(ambiguous)` runs before each new attempt; a non-None result ends the call
        with that result (used by create to find a job that an ambiguous failure did make).
        `content` and `headers` send a body that is not JSON (Cloud Storage uploads). `sent` is
        set once the request has been written and its answer is awaited (or the call has ended).
        """
        call = _Call(method, url, region, create, start=self._clock())
        extensions = {"trace": _on_written(sent)} if sent is not None else None

        def request() -> httpx.Response:
            return self.http.request(method, url, json=body, params=params, content=content, headers=headers,
                                     extensions=extensions)

        try:
            while True:
                outcome = self._attempt(call, request)
                if isinstance(outcome, httpx.Response):
                    answer = Answer(outcome)
                    return answer if lazy else answer.content if raw else answer.decoded()
                self._back_off(call, outcome)
                if before_retry is not None:
                    settled = before_retry(outcome.ambiguous)
                    if settled is not None:
                        return settled
        finally:
            if sent is not None:
                sent.set()

    def _attempt(self, call: _Call, request: Callable[[], httpx.Response]) -> httpx.Response | _Failure:
        """One attempt, paced: the successful response, a failure worth retrying, or an error."""
        call.attempt += 1
        interrupt.check()
        if call.create:
            call.paced += self.create_limiter.acquire(call.region)
        call.paced += self.request_limiter.acquire(call.region)
        self._count("attempts")
        sent = self._clock()
        try:
            response = request()
        except _UNSENDABLE as exc:
            raise RequestNotSentError(
                f"{call.where} could not be sent: {_describe(exc)} (nothing was "
                "sent; check the access token and endpoint settings)") from None
        except _NOT_SENT as exc:
            failure = self._broken(call, f"cannot connect to {_host(call.url)}: {_describe(exc)}", ambiguous=False)
            return dataclasses.replace(failure, unreachable=True)
        except httpx.HTTPError as exc:
            return self._broken(call, f"{call.where} failed: {type(exc).__name__} {_describe(exc)}".strip(),
                                ambiguous=True)
        return self._answered(call, response, sent)

    def _broken(self, call: _Call, message: str, *, ambiguous: bool) -> _Failure:
        """A transport failure (no HTTP answer)."""
        error = TransportError(message)
        log.debug("%s -> %s (attempt %d)", call.where, error, call.attempt)
        return _Failure(error, ambiguous)

    def _answered(self, call: _Call, response: httpx.Response, sent: float) -> httpx.Response | _Failure:
        """The response if it succeeded; a retryable one as a failure; else its typed ApiError."""
        self._count(f"http_{response.status_code}")
        log.debug("%s -> %d (%.0f ms, attempt %d)", call.where, response.status_code,
                  (self._clock() - sent) * 1000, call.attempt)
        if response.is_success:
            return response
        error = error_from_response(response, self.service)
        if response.status_code not in RETRYABLE_HTTP:
            raise error
        return _Failure(error, response.status_code != 429, error.retry_after)

    def _back_off(self, call: _Call, failure: _Failure) -> None:
        """Wait before the next attempt, or raise the failure when the policy says stop."""
        policy = self.retry
        elapsed = self._clock() - call.start - call.paced
        delay = policy.backoff(call.attempt, self._rng)
        if failure.retry_after is not None:
            delay = max(delay, failure.retry_after)
        if failure.unreachable and call.attempt >= CONNECT_ATTEMPTS:
            # Retries are for answers that say "try again"; a host that never answered the
            # connection (refused, no route, no such name) is a wrong or dead endpoint: say so now.
            raise _give_up(failure.error, call.attempt, elapsed)
        if call.attempt >= policy.max_attempts or elapsed + delay > policy.deadline:
            raise _give_up(failure.error, call.attempt, elapsed)
        self._count("retries")
        error = failure.error
        self._tell(f"{error.args[0] if error.args else error}: still retrying "
                   f"({elapsed:.0f} s so far; gives up after {policy.deadline:.0f} s)", elapsed + delay)
        self._sleep(delay)


NOTICE_AFTER = 5.0  # seconds a call has been retrying before the user is told
CONNECT_ATTEMPTS = 3  # attempts to open a connection before an endpoint counts as unreachable
NOTICE_EVERY = 30.0


def _give_up(error: Exception, attempts: int, elapsed: float) -> Exception:
    suffix = f" [gave up after {attempts} attempt{'s' if attempts != 1 else ''} in {elapsed:.1f} s]"
    error.args = (f"{error.args[0] if error.args else error}{suffix}",)
    return error


MAX_JSON_DEPTH = 64  # API answers nest a dozen levels; deeper is a broken or hostile server


def _decode(content: bytes) -> Any:
    """JSON of a body, with pydantic-core's parser (Rust: ~1.7× faster than `json.loads` on a
    page of jobs); what it refuses goes to `json.loads`, so that the answers accepted and the
    errors raised stay those of the standard library (a BOM, UTF-16, lone surrogates)."""
    try:
        return from_json(content)
    except ValueError as exc:
        if str(exc).startswith("recursion limit"):  # its own depth bound (~200), far past ours
            raise RecursionError(str(exc)) from None
    return json.loads(content)


def _loads(content: bytes) -> Any:
    """JSON of a body; ValueError if it is not JSON or nests deeper than MAX_JSON_DEPTH."""
    value = _decode(content)
    level = [value] if type(value) is dict or type(value) is list else []
    depth = 0
    while level:  # level by level, containers only (9 ms against 12 ms for a stack of pairs, 1,000 jobs)
        depth += 1
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
        below: list[Any] = []
        keep = below.append
        for item in level:
            for child in item.values() if type(item) is dict else item:
                kind = type(child)
                if kind is dict or kind is list:
                    keep(child)
        level = below
    return value


@dataclass(frozen=True)
class Answer:
    """A successful response whose body is decoded (and cleaned) only when asked: its bytes can
    be looked at first (a list page's next token, to send the next request before decoding)."""

    response: httpx.Response

    @property
    def content(self) -> bytes:
        return self.response.content

    def decoded(self) -> Any:
        """The body as `send` returns it: decoded JSON, cleaned; MalformedResponseError if not."""
        return _json_body(self.response)


def _on_written(sent: threading.Event) -> Callable[[str, Any], None]:
    """An httpcore trace callback that sets `sent` once the request is written and the answer's
    headers are awaited (the thread then waits on the network, not on the GIL)."""

    def trace(event: str, info: Any) -> None:
        if event.endswith("receive_response_headers.started"):
            sent.set()

    return trace


def _json_body(response: httpx.Response) -> Any:
    """The decoded body, every string in it cleaned (`redact.clean`: no control characters, no
    credentials): whatever the API says may be shown or stored. `clean_json` looks at the body's
    text first and walks the decoded value only when some string of it may need cleaning."""
    content = response.content
    if not content.strip():
        return {}
    try:
        return clean_json(_loads(content), content)
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
    text = " ".join(clean(" ".join(str(exc).split())).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "…"


def _strip_query(url: str) -> str:
    return url.split("?", 1)[0]


def _host(url: str) -> str:
    """`host:port` of a URL (the port said even when it is the scheme's default)."""
    parsed = httpx.URL(url)
    if not parsed.host:
        return url
    port = parsed.port or {"https": 443, "http": 80}.get(parsed.scheme)
    return f"{parsed.host}:{port}" if port else parsed.host
