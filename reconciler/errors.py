"""Every error the reconciler raises on purpose, in one tree.

    ReconcilerError                 base; `str(err)` is the one- or two-line message a user sees
    ├── ConfigError                 reconciler.yaml, environment or flags are wrong
    ├── UnknownNameError            a command names a model, manifest or file that is not there
    ├── InvalidNameError            a resource name or id is not of the shape the API uses
    ├── WaitTimeoutError            `--wait` gave up before the jobs ended (they go on)
    ├── ImportRefusedError          `import` cannot adopt that job into that manifest
    ├── ManifestError               one or more manifests are invalid (carries every problem)
    ├── PlanError                   the plan cannot be made or is refused (protect, empty, limits)
    │   └── StalePlanError          a saved plan no longer matches what the API shows
    ├── StateError                  the state file cannot be read or written
    │   ├── StateLockedError        another run holds the lock
    │   └── StateConflictError      the state changed under us (serial, lineage or generation)
    ├── CredentialsError            no usable credentials for a real endpoint
    ├── EndpointError               an API endpoint that is refused (plain http to a remote host)
    ├── TransportError              the API could not be reached (after retries)
    │   ├── MalformedResponseError  an answer that is not the documented shape (names the call)
    │   └── RequestNotSentError     a request that never left (e.g. an illegal header value)
    ├── AmbiguousCreateError        a create may or may not have happened and could not be settled
    └── ApiError                    the API answered with an error envelope
        ├── InvalidArgumentError    400 INVALID_ARGUMENT / OUT_OF_RANGE
        ├── FailedPreconditionError 400 FAILED_PRECONDITION
        ├── UnauthenticatedError    401
        ├── PermissionDeniedError   403
        ├── NotFoundError           404
        ├── ConflictError           409 ALREADY_EXISTS / ABORTED
        ├── ResourceExhaustedError  429
        ├── InternalError           500 INTERNAL / UNKNOWN / DATA_LOSS
        ├── UnimplementedError      501
        ├── UnavailableError        503 (and 502 from a front end)
        └── DeadlineExceededError   504
"""

from __future__ import annotations

from typing import Any


class ReconcilerError(Exception):
    """Base of every error raised on purpose. Its message is what a user sees."""


class ConfigError(ReconcilerError):
    """Settings from reconciler.yaml, the environment or flags are invalid."""


class UnknownNameError(ReconcilerError):
    """A command names a model, manifest or file that the state or the manifests do not have."""


class InvalidNameError(ReconcilerError):
    """A project, region, job, endpoint or Cloud Storage name that is not of the API's shape
    (refused before anything is sent, so it can never steer a request elsewhere)."""


class WaitTimeoutError(ReconcilerError):
    """`apply --wait` gave up after --wait-timeout; the jobs go on running."""


class ImportRefusedError(ReconcilerError):
    """`reconciler import` cannot adopt that job into that manifest (and says why)."""


class ManifestError(ReconcilerError):
    """Manifests failed validation; `problems` holds every `file:line: path: message`."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        self.summary = f"{count} {noun} in manifests; nothing was changed."
        super().__init__("\n".join(self.problems + [self.summary]))


class PlanError(ReconcilerError):
    """A plan cannot be computed or is refused before anything runs."""


class StalePlanError(PlanError):
    """A saved plan no longer matches what a fresh observation shows."""


class StateError(ReconcilerError):
    """The state file cannot be read, parsed or written."""


class StateLockedError(StateError):
    """Another run holds the state lock."""


class StateConflictError(StateError):
    """The state changed between read and write."""


class CredentialsError(ReconcilerError):
    """No credentials could be found for a real (non-loopback) endpoint."""


class EndpointError(ReconcilerError):
    """An API endpoint that the reconciler refuses to talk to."""


class TransportError(ReconcilerError):
    """The API could not be reached: connection failures or timeouts after every retry."""


class AmbiguousCreateError(ReconcilerError):
    """A create failed in a way that leaves open whether the job exists, and lookups failed too."""


class ApiError(ReconcilerError):
    """The API answered with `{"error": {"code", "message", "status", "details"}}`."""

    def __init__(
        self,
        code: int,
        status: str,
        message: str,
        *,
        details: list[Any] | None = None,
        method: str = "",
        url: str = "",
        retry_after: float | None = None,
        service: str = "Vertex AI",
    ) -> None:
        self.code = code
        self.service = service
        self.status = status
        self.message = message
        self.details = details or []
        self.method = method
        self.url = url
        self.retry_after = retry_after
        where = f" ({method} {url})" if method else ""
        super().__init__(f"{service} API error {code} {status}: {message}{where}")


class InvalidArgumentError(ApiError):
    """400 INVALID_ARGUMENT or OUT_OF_RANGE."""


class FailedPreconditionError(ApiError):
    """400 FAILED_PRECONDITION, e.g. cancel of a finished job."""


class UnauthenticatedError(ApiError):
    """401 UNAUTHENTICATED."""


class PermissionDeniedError(ApiError):
    """403 PERMISSION_DENIED."""


class NotFoundError(ApiError):
    """404 NOT_FOUND."""


class ConflictError(ApiError):
    """409 ALREADY_EXISTS or ABORTED."""


class ResourceExhaustedError(ApiError):
    """429 RESOURCE_EXHAUSTED (quota or rate limit)."""


class InternalError(ApiError):
    """500 INTERNAL, UNKNOWN or DATA_LOSS."""


class UnimplementedError(ApiError):
    """501 UNIMPLEMENTED."""


class UnavailableError(ApiError):
    """503 UNAVAILABLE (or a 502 from a front end)."""


class DeadlineExceededError(ApiError):
    """504 DEADLINE_EXCEEDED."""


_BY_STATUS: dict[str, type[ApiError]] = {
    "INVALID_ARGUMENT": InvalidArgumentError,
    "OUT_OF_RANGE": InvalidArgumentError,
    "FAILED_PRECONDITION": FailedPreconditionError,
    "UNAUTHENTICATED": UnauthenticatedError,
    "PERMISSION_DENIED": PermissionDeniedError,
    "NOT_FOUND": NotFoundError,
    "ALREADY_EXISTS": ConflictError,
    "ABORTED": ConflictError,
    "RESOURCE_EXHAUSTED": ResourceExhaustedError,
    "INTERNAL": InternalError,
    "UNKNOWN": InternalError,
    "DATA_LOSS": InternalError,
    "UNIMPLEMENTED": UnimplementedError,
    "UNAVAILABLE": UnavailableError,
    "DEADLINE_EXCEEDED": DeadlineExceededError,
}

# When the body carries no canonical status (a proxy's HTML page), fall back on the HTTP code.
_STATUS_BY_HTTP: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    412: "FAILED_PRECONDITION",  # Cloud Storage: ifGenerationMatch not met
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def api_error(
    code: int,
    status: str | None,
    message: str,
    **kwargs: Any,
) -> ApiError:
    """Build the typed ApiError for a canonical status (or, lacking one, an HTTP code)."""
    canonical = status or _STATUS_BY_HTTP.get(code, "UNKNOWN")
    cls = _BY_STATUS.get(canonical, ApiError)
    return cls(code, canonical, message, **kwargs)


class MalformedResponseError(TransportError):
    """The API answered 2xx with a body of the wrong shape (not JSON, too deeply nested, a field
    of the wrong type, a created job without a name): the message names the call. A subclass of
    TransportError, since what happened on the server is as unknown as after a lost answer."""


class RequestNotSentError(TransportError):
    """A request that could not be sent as it is (an illegal header value, an unsupported URL):
    nothing reached the server, and a retry would fail the same way."""
