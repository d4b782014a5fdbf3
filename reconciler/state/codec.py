"""The state's bytes: parsing and serialising the state and the journal's lines, atomic writes
and bounded reads of local files. Shared by the local and the Cloud Storage stores.

Every way the bytes can be wrong ends in a StateError with a one-line message naming the file
(and the line of a journal), and what to do; these messages are part of the interface (the
tests and docs/state-file.md quote them).

Journal lines are JSON objects written compactly (`ensure_ascii=False`, no spaces), one per
line; a local journal's lines begin with the `lineage` and `serial` they apply to, then the
operation's fields (see `journal`). This is the format version 0.1 wrote, byte for byte.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from reconciler.errors import ReconcilerError, StateError
from reconciler.state.journal import (
    OPS,
    DropEntry,
    JournalOp,
    OpenIntent,
    SetEntry,
    SettleIntent,
    apply_op,
)
from reconciler.state.model import STATE_VERSION, JournalEntry, ModelEntry, State


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# A state of 10,000 models is a few tens of MB; anything near this is not a state file (a 3 GB
# sparse file must not be read whole to find that out).
MAX_STATE_BYTES = 1 << 30

# What a journal line starts with, as `append` writes it: an unparsable line that starts like
# this (or is a prefix of it, or NUL bytes a crash left) is a write a crash cut short.
_LINE_START = b'{"lineage":'

_HINTS = {
    errno.ENOSPC: "free some space and run again",
    errno.EDQUOT: "the disk quota is exhausted: free some space and run again",
    errno.EFBIG: "the file size limit (ulimit -f) was reached",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "check the permissions of the file and its folder",
    errno.EPERM: "check the permissions of the file and its folder",
    errno.EISDIR: "a directory is in the way: move it away or choose another path",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
}


def one_line(text: str, limit: int = 200) -> str:
    """`text` safe to show on one line of an error: control characters escaped, length capped."""
    flat = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def os_problem(exc: OSError) -> str:
    """An OSError as `reason; what to do`, without the path (the caller names the file)."""
    reason = exc.strerror or type(exc).__name__
    hint = _HINTS.get(exc.errno or 0)
    return f"{reason}; {hint}" if hint else reason


def atomic_write(path: Path, data: bytes, *, error: type[ReconcilerError] = ReconcilerError) -> None:
    """Write `data` to `path` so that readers see the old or the new content, never a mix.

    The file is created 0600 (it may hold requests and endpoints). Any failure — a full disk, a
    read-only file system, a directory in the way — raises `error` naming `path`, and leaves
    whatever was at `path` as it was."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if path.is_dir():  # os.replace would say "Is a directory" without naming which
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise error(f"{path}: cannot write: {os_problem(exc)} (its previous content is unchanged)") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    _fsync_dir(path.parent)


def read_regular(path: Path, what: str) -> bytes | None:
    """The bytes of the regular file at `path`, or None when there is none. A directory, a FIFO
    or a device there, an unreadable or absurdly large file: a StateError naming `path`."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"{path}: cannot read the {what}: {os_problem(exc)}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise StateError(f"{path}: the {what} is a directory; move it away or choose another --state")
        if not stat.S_ISREG(info.st_mode):
            raise StateError(f"{path}: the {what} is not a regular file; move it away or choose another --state")
        if info.st_size > MAX_STATE_BYTES:
            raise StateError(f"{path}: the {what} is {info.st_size:,} bytes, more than any state "
                             f"({MAX_STATE_BYTES:,} bytes at most); it is not a state file")
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise StateError(f"{path}: cannot read the {what}: {os_problem(exc)}") from None
    finally:
        os.close(fd)


def load_json(data: bytes) -> Any:
    """json.loads, with every way it can refuse input as a ValueError with a one-line message."""
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except RecursionError:
        raise ValueError("not a state: its JSON is nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise ValueError(f"not valid JSON ({one_line(str(exc), 80)})") from None


def parse_state(data: bytes, where: str) -> State:
    try:
        raw = load_json(data)
    except ValueError as exc:
        raise StateError(f"{where}: {exc}; restore it from {where}.backup") from None
    if not isinstance(raw, dict):
        raise StateError(f"{where}: not a state file (expected a JSON object)")
    version = raw.get("version")
    if type(version) is not int or version < 1:  # not bool, not 1.0: as written by a reconciler
        raise StateError(f"{where}: not a state file of this reconciler (\"version\" is "
                         f"{one_line(repr(version), 40)}, expected {STATE_VERSION})")
    if version != STATE_VERSION:
        raise StateError(
            f"{where}: state format version {one_line(str(version), 40)} is newer than this reconciler reads "
            f"({STATE_VERSION}); a newer reconciler wrote it: upgrade the reconciler"
        )
    try:
        return State.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "the top level"
        raise StateError(f"{where}: invalid state file at {one_line(loc, 120)}: {one_line(first['msg'], 120)}") from None
    except RecursionError:
        raise StateError(f"{where}: not a state: its JSON is nested too deeply") from None


def serialize_state(state: State) -> bytes:
    return (json.dumps(state.to_json_dict(), indent=2, sort_keys=False, ensure_ascii=False) + "\n").encode()


# -- journal lines ----------------------------------------------------------------------------
class JournalOpError(StateError):
    """A journal line that is not an operation this reconciler can apply; `unknown` when it is a
    well-formed line naming an operation this version does not know (a newer one wrote it)."""

    def __init__(self, message: str, *, unknown: bool = False) -> None:
        super().__init__(message)
        self.unknown = unknown


# An operation already as the JSON object of its line, written as is: how tests write lines that
# no reconciler writes (of the wrong shape, or of an unknown op). Apply records JournalOps only.
RawOp = Mapping[str, Any]


def op_dict(op: JournalOp | RawOp) -> dict[str, Any]:
    """`op` as the JSON object of its journal line (without lineage and serial)."""
    return dict(op) if isinstance(op, Mapping) else op.model_dump(by_alias=True, mode="json")


def journal_lines(ops: Iterable[JournalOp | RawOp], *, stamp: tuple[str, int] | None = None) -> bytes:
    """The journal lines of `ops`; with `stamp`, each names the (lineage, serial) it applies to."""
    head: dict[str, Any] = {} if stamp is None else {"lineage": stamp[0], "serial": stamp[1]}
    return b"".join(
        (json.dumps({**head, **op_dict(op)}, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        for op in ops
    )


def _field(raw: dict[str, Any], key: str, kind: type) -> Any:
    value = raw.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        what = "a string" if kind is str else "an object"
        raise JournalOpError(f"{raw['op']!r} operation without {key!r} as {what}")
    return value


def _build(kind: str, raw: dict[str, Any]) -> JournalOp:
    """The operation `kind` from the fields of `raw`, checked in this order (the messages name
    the first field at fault)."""
    if kind == "set":
        name = _field(raw, "name", str)
        return SetEntry(name=name, entry=ModelEntry.model_validate(_field(raw, "entry", dict)))
    if kind == "drop":
        return DropEntry(name=_field(raw, "name", str))
    if kind == "intent":
        return OpenIntent(entry=JournalEntry.model_validate(_field(raw, "entry", dict)))
    if kind == "settle":
        return SettleIntent(requestId=_field(raw, "requestId", str))
    raise JournalOpError(f"operation {one_line(repr(kind), 40)} is not known to this reconciler "
                         f"(it knows {', '.join(OPS)})", unknown=True)


def parse_op(raw: Any) -> JournalOp:
    """The operation of a parsed journal line (other keys, such as lineage and serial, are
    ignored). Checked by hand rather than through pydantic's union so that a line of the wrong
    shape raises JournalOpError with the one-line message users know."""
    kind = raw.get("op") if isinstance(raw, dict) else None
    if not isinstance(kind, str):
        raise JournalOpError("not a journal operation (no \"op\")")
    try:
        return _build(kind, raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "entry"
        raise JournalOpError(f"{kind!r} operation with an invalid entry at {one_line(loc, 80)}: "
                             f"{one_line(first['msg'], 80)}") from None
    except RecursionError:
        raise JournalOpError(f"{kind!r} operation nested too deeply") from None


def _cut_short(line: bytes, is_last: bool) -> bool:
    """Whether an unparsable line looks like an append a crash cut short."""
    stripped = line.strip()
    return (is_last or stripped.startswith(_LINE_START) or _LINE_START.startswith(stripped)
            or not stripped.strip(b"\0"))


def _line_op(draft: State, line: bytes, at: str, where: str, *, stamped: bool, torn: bool) -> JournalOp | None:
    """The operation of one journal line; None for a line to skip (torn, or of another serial).
    `torn`: the line, if unparsable, is a write a crash cut short."""
    try:
        raw = load_json(line)
    except ValueError as exc:
        if torn:
            return None  # its write never completed, so it was never durable
        raise StateError(f"{at}: {exc}; {_journal_advice(where)}") from None
    if not isinstance(raw, dict):
        raise StateError(f"{at}: not a journal line (expected a JSON object); {_journal_advice(where)}")
    if stamped:
        lineage, serial = raw.get("lineage"), raw.get("serial")
        if not isinstance(lineage, str) or type(serial) is not int:
            raise StateError(f"{at}: not a journal line (no lineage and serial); {_journal_advice(where)}")
        if lineage != draft.lineage or serial != draft.serial:
            return None  # of an older serial: made obsolete by a full write
    try:
        return parse_op(raw)
    except JournalOpError as exc:
        if exc.unknown:
            raise StateError(f"{at}: {exc}; a newer reconciler wrote it: upgrade the reconciler") from None
        raise StateError(f"{at}: {exc}; {_journal_advice(where)}") from None


def replay_lines(draft: State, data: bytes, where: str, *, stamped: bool, torn_tail: bool) -> int:
    """Apply to `draft` the operations in the JSON lines `data`; return how many applied.

    `stamped`: lines carry the lineage and serial they apply to (a local journal); lines of
    another lineage or serial are stale and skipped. `torn_tail`: a line cut short by a crash
    (unparsable, and last or starting like a journal line) is skipped. Any other line that is
    not an operation is an error naming `where` and the line number, and what to do."""
    lines = data.split(b"\n")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    applied = 0
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        op = _line_op(draft, line, f"{where}:{index + 1}", where, stamped=stamped,
                      torn=torn_tail and _cut_short(line, index == last))
        if op is not None:
            apply_op(draft, op)
            applied += 1
    return applied


def _journal_advice(where: str) -> str:
    return (f"no reconciler writes such a line. If the file was edited, restore it; else move {where} "
            "aside and run `reconciler refresh`, which rebuilds the state from the jobs' labels")
