"""List filters for tuning jobs: a recursive-descent parser for a subset of AIP-160.

The subset is what the sibling Vertex job APIs document for their "standard list filter":

    filter      := [expression]
    expression  := sequence {"AND" sequence}
    sequence    := factor {factor}              juxtaposition means AND
    factor      := term {"OR" term}             OR binds tighter than AND (AIP-160)
    term        := ["NOT" | "-"] simple
    simple      := "(" expression ")" | restriction
    restriction := field comparator value

Fields: `state` (`=`, `!=`; a JobState name), `labels.KEY` (`=`, `!=`, `:`; `labels.KEY:*` means
the label is present), `labels:KEY` (present) and `create_time` (`=`, `!=`, `<`, `<=`, `>`,
`>=`; RFC 3339). Values may be quoted. Anything else is 400 INVALID_ARGUMENT.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from reconciler.emulator.errors import ApiError, invalid_argument
from reconciler.emulator.wire import JOB_STATES, parse_timestamp


@dataclass(frozen=True)
class JobView:
    """What a filter can see of a job."""

    state: str
    labels: Mapping[str, str]
    create_time: int  # microseconds since the epoch


Predicate = Callable[[JobView], bool]

_COMPARATORS = ("<=", ">=", "!=", "=", "<", ">", ":")
_ORDERING = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_WORD_STOP = frozenset('()<>=!:"')


@dataclass(frozen=True)
class _Token:
    kind: str  # ( ) - AND OR NOT CMP WORD STRING END
    text: str
    pos: int


def compile_filter(text: str) -> Predicate:
    """A predicate over jobs for an AIP-160 filter; 400 INVALID_ARGUMENT when malformed."""
    return _Parser(text).parse()


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    after_comparator = False
    while i < len(text):
        char = text[i]
        if char.isspace():
            i += 1
            continue
        start = i
        if char == '"':
            i, value = _quoted(text, i)
            tokens.append(_Token("STRING", value, start))
        elif after_comparator:  # a bare value runs to the next space or ")": 2024-01-01T00:00:00Z
            while i < len(text) and not text[i].isspace() and text[i] != ")":
                i += 1
            tokens.append(_Token("WORD", text[start:i], start))
        elif char in "()-":
            i += 1
            tokens.append(_Token(char, char, start))
        elif comparator := next((c for c in _COMPARATORS if text.startswith(c, i)), None):
            i += len(comparator)
            tokens.append(_Token("CMP", comparator, start))
        else:
            while i < len(text) and not text[i].isspace() and text[i] not in _WORD_STOP:
                i += 1
            if i == start:
                raise _error(text, f"unexpected character {char!r}", start)
            word = text[start:i]
            tokens.append(_Token(word if word in ("AND", "OR", "NOT") else "WORD", word, start))
        after_comparator = tokens[-1].kind == "CMP"
    tokens.append(_Token("END", "", len(text)))
    return tokens


def _quoted(text: str, i: int) -> tuple[int, str]:
    chars = []
    i += 1
    while i < len(text) and text[i] != '"':
        if text[i] == "\\" and i + 1 < len(text):
            i += 1
        chars.append(text[i])
        i += 1
    if i >= len(text):
        raise _error(text, "unterminated string", i)
    return i + 1, "".join(chars)


def _error(text: str, reason: str, pos: int) -> ApiError:
    return invalid_argument(f"Invalid filter {text!r}: {reason} at position {pos}.")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def accept(self, kind: str) -> _Token | None:
        token = self.tokens[self.i]
        if token.kind != kind:
            return None
        self.i += 1
        return token

    def expect(self, *kinds: str) -> _Token:
        token = self.peek()
        if token.kind not in kinds:
            found = token.text or "end of filter"
            raise _error(self.text, f"expected {' or '.join(kinds)}, found {found!r}", token.pos)
        self.i += 1
        return token

    def parse(self) -> Predicate:
        if self.accept("END"):
            return lambda job: True
        predicate = self.expression()
        self.expect("END")
        return predicate

    def expression(self) -> Predicate:
        parts = [self.sequence()]
        while self.accept("AND"):
            parts.append(self.sequence())
        return _all(parts)

    def sequence(self) -> Predicate:
        parts = [self.factor()]
        while self.peek().kind in ("(", "-", "NOT", "WORD"):
            parts.append(self.factor())
        return _all(parts)

    def factor(self) -> Predicate:
        parts = [self.term()]
        while self.accept("OR"):
            parts.append(self.term())
        return lambda job: any(part(job) for part in parts)

    def term(self) -> Predicate:
        if self.accept("NOT") or self.accept("-"):
            inner = self.simple()
            return lambda job: not inner(job)
        return self.simple()

    def simple(self) -> Predicate:
        if self.accept("("):
            inner = self.expression()
            self.expect(")")
            return inner
        field = self.expect("WORD")
        comparator = self.expect("CMP")
        value = self.expect("WORD", "STRING")
        return self.restriction(field, comparator.text, value.text)

    def restriction(self, field: _Token, comparator: str, value: str) -> Predicate:
        name = field.text
        if name == "state" and comparator in ("=", "!="):
            if value not in JOB_STATES:
                raise _error(self.text, f"unknown state {value!r}", field.pos)
            equal = comparator == "="
            return lambda job: (job.state == value) == equal
        if name == "labels" and comparator == ":":
            return lambda job: bool(job.labels) if value == "*" else value in job.labels
        if (
            name.startswith("labels.")
            and len(name) > len("labels.")
            and comparator in ("=", "!=", ":")
        ):
            key = name[len("labels.") :]
            if comparator == ":" and value == "*":
                return lambda job: key in job.labels
            equal = comparator != "!="
            return lambda job: (job.labels.get(key) == value) == equal
        if name == "create_time" and comparator in _ORDERING:
            try:
                bound = parse_timestamp(value)
            except ValueError as exc:
                raise _error(self.text, str(exc), field.pos) from None
            compare = _ORDERING[comparator]
            return lambda job: compare(job.create_time, bound)
        raise _error(self.text, f"unsupported restriction {name}{comparator}{value}", field.pos)


def _all(parts: list[Predicate]) -> Predicate:
    if len(parts) == 1:
        return parts[0]
    return lambda job: all(part(job) for part in parts)
