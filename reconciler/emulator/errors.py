"""Errors of the emulated API, carried as exceptions from the backend to the HTTP layer.

An `ApiError` becomes the Google error envelope
`{"error": {"code": <http>, "message": ..., "status": <CANONICAL>, "details": [...]}}`;
a `GatewayError` becomes the HTML page a Google front end sends when a backend is lost.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"
RETRY_INFO_TYPE = "type.googleapis.com/google.rpc.RetryInfo"


def duration(seconds: float) -> str:
    """A google.protobuf.Duration in JSON, as protobuf prints it: 0, 3, 6 or 9 decimals and `s`."""
    nanos = round(seconds * 1_000_000_000)
    whole, fraction = divmod(nanos, 1_000_000_000)
    if not fraction:
        return f"{whole}s"
    for digits in (3, 6, 9):
        scale = 10 ** (9 - digits)
        if fraction % scale == 0:
            return f"{whole}.{fraction // scale:0{digits}d}s"
    raise AssertionError("unreachable")


def retry_info(seconds: float) -> dict[str, Any]:
    """The google.rpc.RetryInfo detail: when the client should retry."""
    return {"@type": RETRY_INFO_TYPE, "retryDelay": duration(seconds)}


class ApiError(Exception):
    """A failed API call: HTTP code, canonical status name, message, optional details."""

    def __init__(
        self,
        http_code: int,
        status: str,
        message: str,
        details: Sequence[Mapping[str, Any]] = (),
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.http_code = http_code
        self.status = status
        self.message = message
        self.details = list(details)
        self.retry_after = retry_after

    def envelope(self) -> dict[str, Any]:
        """The JSON body Google APIs send for this error."""
        error: dict[str, Any] = {
            "code": self.http_code,
            "message": self.message,
            "status": self.status,
        }
        if self.details:
            error["details"] = self.details
        return {"error": error}


class GatewayError(ApiError):
    """A 502 from the front end: the body is HTML, not the JSON envelope."""

    def __init__(self) -> None:
        super().__init__(502, "UNAVAILABLE", "Bad Gateway")


def invalid_argument(message: str, violations: Sequence[tuple[str, str]] = ()) -> ApiError:
    """400 INVALID_ARGUMENT, with a google.rpc.BadRequest listing (field, description) pairs."""
    details = []
    if violations:
        field_violations = [{"field": f, "description": d} for f, d in violations]
        details.append({"@type": BAD_REQUEST_TYPE, "fieldViolations": field_violations})
    return ApiError(400, "INVALID_ARGUMENT", message, details)


def not_found(message: str) -> ApiError:
    """404 NOT_FOUND."""
    return ApiError(404, "NOT_FOUND", message)
