"""Credentials and control characters out of every message: the functions that clean foreign text.

Text that comes from outside the reconciler — an httpx exception (`Illegal header value
b'Bearer ya29…'`), an API error message that echoes a request header, a proxy's error page, a job's
labels or error message — may carry the access token, and may carry control characters that
forge terminal output (a newline then `Error: …`, an ESC colour sequence). Two functions:

- `redact` masks `Bearer …` credentials (any case; any whitespace, an NBSP, a zero-width character
  or an escape such as `\\n` between the word and the credential), Google OAuth access tokens
  (`ya29.…`) and the exact token values this process is using (registered by the auth classes);
- `clean` = `redact` after `escape_controls`: C0 and C1 controls, DEL, the line and paragraph
  separators U+2028/U+2029 and invisible format characters (bidi overrides, zero-width
  characters) are replaced by a visible escape — `\\n`, `\\r`, `\\t`, `\\x1b`, `\\u2028` — so
  one string is one line and shows what it holds.

`clean_tree` applies `clean` to every string (keys too) of a decoded JSON body: the transport runs
it on every answer, so nothing the API says reaches an error, the terminal, a plan or the state
unclean.
"""

from __future__ import annotations

import re
import threading
from typing import Any

MASK = "<redacted>"
# What may stand between "Bearer" and the credential: whitespace (\s covers NBSP and the other
# Unicode spaces), zero-width characters, percent/plus-encoded spaces, and the escapes that
# `escape_controls` or a repr leaves in place of a control character.
_GAP = r"(?:\s|[\u180e\u200b-\u200f\u2060-\u2064\ufeff]|%20|\+|\\[ntrvf]|\\x[0-9a-fA-F]{2}|\\u[0-9a-fA-F]{4})+"
# "Bearer <credential>" as a header value, in a repr (b'Bearer …'), or quoted in a message; and
# HTTP Basic credentials (base64). English words after "bearer" ("a Bearer token") stay.
_BEARER = re.compile(rf"(?i)\b(bearer)({_GAP})([^\s'\",;)\]}}]+)|\b(Basic)(\s+)([A-Za-z0-9+/]{{12,}}={{0,2}})")
_WORDS = frozenset({"token", "tokens", "auth", "authentication", "authorization", "credential", "credentials",
                    "header", "scheme", "is", "was", "the", "a", "an", "or", "and", "required", "missing"})
# Google OAuth 2.0 access tokens ("ya29." then base64url-ish), and refresh tokens ("1//…").
_GOOGLE_TOKENS = re.compile(r"\bya29\.[A-Za-z0-9_.~+/=-]+|\b1//[A-Za-z0-9_.~+/=-]{20,}")
# Shorter values would mask ordinary words. Static tokens shorter than
# reconciler.vertex.auth.MIN_TOKEN_LENGTH (12) are refused as a settings error; a shorter value
# reaching here (an odd credential library) is still masked from this length up.
_MIN_SECRET = 8
# C0 controls, DEL, C1 controls, soft hyphen, Arabic letter mark, Mongolian vowel separator,
# zero-width and directional marks, line/paragraph separators, bidi embeddings and overrides,
# invisible operators, bidi isolates, deprecated format characters, BOM, interlinear annotation.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e"
                       "\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# A quick test of whether a string needs `clean` at all (most of an API answer does not).
_WORDS_SUSPECT = r"(?i:bearer|basic|ya29\.|1//)"
_SUSPECT = re.compile(rf"{_CONTROLS.pattern}|{_WORDS_SUSPECT}")
# The same test over the text of a whole JSON answer (`clean_json`), on its bytes. Tab, LF and CR
# there can only be whitespace between tokens (a JSON string holds them escaped; the decoders
# refuse them raw), so they are allowed; any backslash escape but `\"` and `\\` may spell
# anything once decoded (`\n`, `\u001b`, `\u0062earer`, `\/`), so it counts as suspect.
_RAW_ESCAPE = re.compile(rb'\\[^"\\]')
_RAW_PLAIN_ASCII = bytes(range(0x20, 0x7F)) + b"\t\n\r"
_RAW_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f" + _CONTROLS.pattern[len("[\x00-\x1f"):])
_RAW_WORDS = ("bearer", "basic", "ya29.", "1//")
_RAW_WORDS_BYTES = tuple(word.encode() for word in _RAW_WORDS)
# The characters other than ASCII letters that `(?i:…)` takes for a letter of those words.
_FOLDS_TO_ASCII = "\u0130\u0131\u017f"
_RAW_CHUNK = 1 << 20  # bytes of an answer scanned at a time (a page may be hundreds of MB)

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


def _secrets_now() -> list[str]:
    with _lock:
        return sorted((s for s in _secrets if len(s) >= _MIN_SECRET), key=len, reverse=True)


def redact(text: str) -> str:
    """`text` with bearer credentials, Google access tokens and registered secrets masked."""
    if not text:
        return text
    return _redact(text, _secrets_now())


def _redact(text: str, secrets: list[str]) -> str:
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


def _escape(match: re.Match[str]) -> str:
    char = match[0]
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def escape_controls(text: str) -> str:
    """`text` with every control, separator and invisible format character shown as an escape."""
    return _CONTROLS.sub(_escape, text) if text else text


def clean(text: str) -> str:
    """Foreign text made safe to show and store: one line, no controls, no credentials."""
    if not text:
        return text
    return _redact(escape_controls(text), _secrets_now())


def clean_tree(data: Any) -> Any:
    """A decoded JSON value with `clean` applied to every string in it, keys included."""
    secrets = _secrets_now()

    def walk(value: Any) -> Any:
        kind = type(value)
        if kind is str:
            if _SUSPECT.search(value) or any(s in value for s in secrets):
                return _redact(escape_controls(value), secrets)
            return value
        if kind is dict:
            return {walk(k): walk(v) for k, v in value.items()}
        if kind is list:
            return [walk(v) for v in value]
        return value

    return walk(data)


def clean_json(data: Any, text: bytes) -> Any:
    """`clean_tree(data)` for `data` decoded from the JSON `text`: `data` itself when no string
    of it can need cleaning, which one scan of the text tells (no control or invisible character,
    no credential word, no registered secret, no escape but `\\"` and `\\\\`) — a tenth of the cost
    of walking a page of jobs, and no second copy of it."""
    secrets = _secrets_now()
    if any('"' in s or "\\" in s for s in secrets) or not _plain_text(text, secrets):
        return clean_tree(data)
    return data


def _plain_text(text: bytes, secrets: list[str]) -> bool:
    """Whether the UTF-8 `text` holds nothing `clean` would change, read in chunks that overlap by
    the longest word searched (nothing is missed at a chunk's edge; no copy of a huge page)."""
    needles = [secret.encode() for secret in secrets]  # a UTF-8 substring is a text substring
    overlap = max([len("bearer"), *map(len, needles)]) - 1
    for start in range(0, len(text), _RAW_CHUNK):
        chunk = text[max(0, start - overlap):start + _RAW_CHUNK]
        if _suspect_chunk(chunk) or any(needle in chunk for needle in needles):
            return False
    return True


def _suspect_chunk(chunk: bytes) -> bool:
    if b"\\" in chunk and _RAW_ESCAPE.search(chunk):
        return True
    if chunk.isascii():  # the common case: C-speed checks only
        return bool(chunk.translate(None, _RAW_PLAIN_ASCII)) or any(w in chunk.lower() for w in _RAW_WORDS_BYTES)
    text = chunk.decode("utf-8", "replace")  # a character cut at an edge is whole in the next chunk
    return (bool(_RAW_CONTROLS.search(text)) or any(c in text for c in _FOLDS_TO_ASCII)
            or any(w in text.lower() for w in _RAW_WORDS))
