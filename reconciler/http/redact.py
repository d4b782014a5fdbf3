"""Credentials out of every message: the one function that cleans foreign text before it is shown.

Text that comes from outside the reconciler — an httpx exception (`Illegal header value
b'Bearer ya29…'`), an API error message that echoes a request header, a proxy's error page — may
carry the access token. Every error, warning and log line that the transport, the Vertex client
and the Cloud Storage client build from such text goes through `redact` first: it masks `Bearer …`
credentials, Google OAuth access tokens (`ya29.…`) and the exact token values this process is
using (registered by the auth classes).
"""

from __future__ import annotations

import re
import threading

MASK = "<redacted>"
# "Bearer <credential>" as a header value, in a repr (b'Bearer …'), or quoted in a message; and
# HTTP Basic credentials (base64). English words after "bearer" ("a Bearer token") stay.
_BEARER = re.compile(r"(?i)\b(bearer)(\s+|%20|\+)([^\s'\",;)\]}]+)|\b(Basic)(\s+)([A-Za-z0-9+/]{12,}={0,2})")
_WORDS = frozenset({"token", "tokens", "auth", "authentication", "authorization", "credential", "credentials",
                    "header", "scheme", "is", "was", "the", "a", "an", "or", "and", "required", "missing"})
# Google OAuth 2.0 access tokens ("ya29." then base64url-ish), and refresh tokens ("1//…").
_GOOGLE_TOKENS = re.compile(r"\bya29\.[A-Za-z0-9_.~+/=-]+|\b1//[A-Za-z0-9_.~+/=-]{20,}")
_MIN_SECRET = 8  # shorter values would mask ordinary words; such tokens are refused anyway

_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Mask `value` (a token this process sends) wherever it appears in a message from now on."""
    if not value:
        return
    with _lock:
        _secrets.add(value)
        stripped = value.strip()
        if len(stripped) >= _MIN_SECRET:
            _secrets.add(stripped)


def redact(text: str) -> str:
    """`text` with bearer credentials, Google access tokens and registered secrets masked."""
    if not text:
        return text
    with _lock:
        secrets = sorted((s for s in _secrets if len(s) >= _MIN_SECRET), key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
        escaped = secret.encode("unicode_escape").decode("ascii", "replace")
        if escaped != secret and escaped in text:  # as it appears in a repr (b'…\n')
            text = text.replace(escaped, MASK)
    text = _BEARER.sub(_mask_credential, text)
    return _GOOGLE_TOKENS.sub(MASK, text)


def _mask_credential(match: re.Match[str]) -> str:
    scheme, space, credential = (match[1], match[2], match[3]) if match[1] else (match[4], match[5], match[6])
    if credential == MASK or credential.lower() in _WORDS:
        return match[0]
    return f"{scheme}{space}{MASK}"
