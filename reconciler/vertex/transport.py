"""Moved to `reconciler.http` (shared by Vertex AI and Cloud Storage); kept importable for code
not yet moved. New code imports from `reconciler.http.transport`, `.retry` and `.clients`."""

from reconciler.http.clients import http_client, proxy_for_https
from reconciler.http.retry import RetryPolicy
from reconciler.http.transport import (
           RETRYABLE_HTTP,
           Transport,
           error_from_response,
           parse_retry_after,
)

__all__ = ["RETRYABLE_HTTP", "RetryPolicy", "Transport", "error_from_response", "http_client",
           "parse_retry_after", "proxy_for_https"]
