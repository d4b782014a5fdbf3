"""The syntax of an API endpoint setting, checked without importing an HTTP library (the
settings check it as they are read; `reconciler.vertex.auth.check_endpoint` adds the rule about
plain http)."""

from __future__ import annotations

from urllib.parse import urlsplit

EXAMPLE = "https://us-central1-aiplatform.googleapis.com"


def endpoint_problem(url: str) -> str | None:
    """Why `url` is not a usable API root (one line, the value shown with repr), or None.

    Refused: whitespace or a control character anywhere (a pasted newline: urllib would drop it
    silently), a scheme other than http(s), no host, a port that is not 1–65535, a query,
    fragment or user info."""
    if not url or any(c.isspace() or not c.isprintable() for c in url):
        return f"API endpoint {url!r} holds whitespace or a control character; give e.g. {EXAMPLE}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"API endpoint {url!r} is not an http(s) URL; give e.g. {EXAMPLE}"
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0 or (port is None and parts.netloc.endswith(":")):
        return f"API endpoint {url!r} has an invalid port (a port is a number from 1 to 65535)"
    if parts.query or parts.fragment or parts.username or parts.password:
        return f"API endpoint {url!r} must not carry a query, fragment or user info"
    return None
