"""The local state store: atomic writes with a backup, and a lock file.

Writes go to a temporary file in the same folder, are fsynced, then renamed over the state (and
the folder fsynced), so a crash leaves either the previous or the next serial, never a torn file.
The previous content is kept as `PATH.backup`, as terraform keeps `terraform.tfstate.backup`.

Between two full writes, apply makes each change durable by appending it to `PATH.journal`
(JSON lines naming the serial they apply to, fsynced before the change counts as made); reading
the state replays the lines of its serial (a torn last line, whose write never completed, is
skipped), and the next full write makes them obsolete. So a run of 1,000 creates
writes 2,000 small lines instead of rewriting a large state 2,000 times.

The lock is an advisory `flock` on `PATH.lock`: only one process holds it, and the system
releases it when that process ends, however it ends (SIGKILL included), so a dead run never
blocks the next. The file records who holds it (id, host, pid, since, operation) for messages;
a record found under a free lock is reported as a stale lock broken. `--lock-timeout` waits for a
live holder; `reconciler force-unlock ID` clears a record whose process is gone.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import stat
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from reconciler import __version__
from reconciler.errors import ReconcilerError, StateConflictError, StateError, StateLockedError
from reconciler.models import TOOL
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


class JournalOpError(StateError):
    """A journal line that is not an operation this reconciler can apply; `unknown` when it is a
    well-formed line naming an operation this version does not know (a newer one wrote it)."""

    def __init__(self, message: str, *, unknown: bool = False) -> None:
        super().__init__(message)
        self.unknown = unknown


OPS = ("set", "drop", "intent", "settle")


def _field(op: dict[str, Any], key: str, kind: type) -> Any:
    value = op.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        what = "a string" if kind is str else "an object"
        raise JournalOpError(f"{op['op']!r} operation without {key!r} as {what}")
    return value


def apply_op(state: State, op: dict[str, Any]) -> None:
    """One journalled change: set or drop a model entry, open or settle a create intent.
    An operation of the wrong shape raises JournalOpError, and changes nothing."""
    kind = op.get("op") if isinstance(op, dict) else None
    if not isinstance(kind, str):
        raise JournalOpError("not a journal operation (no \"op\")")
    try:
        if kind == "set":
            name = _field(op, "name", str)
            state.models[name] = ModelEntry.model_validate(_field(op, "entry", dict))
        elif kind == "drop":
            state.models.pop(_field(op, "name", str), None)
        elif kind == "intent":
            state.journal.append(JournalEntry.model_validate(_field(op, "entry", dict)))
        elif kind == "settle":
            request_id = _field(op, "requestId", str)
            state.journal = [j for j in state.journal if j.request_id != request_id]
        else:
            raise JournalOpError(f"operation {one_line(repr(kind), 40)} is not known to this reconciler "
                                 f"(it knows {', '.join(OPS)})", unknown=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "entry"
        raise JournalOpError(f"{kind!r} operation with an invalid entry at {one_line(loc, 80)}: "
                             f"{one_line(first['msg'], 80)}") from None
    except RecursionError:
        raise JournalOpError(f"{kind!r} operation nested too deeply") from None


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
        at = f"{where}:{index + 1}"
        try:
            op = load_json(line)
        except ValueError as exc:
            stripped = line.strip()
            cut_short = (index == last or stripped.startswith(_LINE_START)
                         or _LINE_START.startswith(stripped) or not stripped.strip(b"\0"))
            if torn_tail and cut_short:
                continue  # its write never completed, so it was never durable
            raise StateError(f"{at}: {exc}; {_journal_advice(where)}") from None
        if not isinstance(op, dict):
            raise StateError(f"{at}: not a journal line (expected a JSON object); {_journal_advice(where)}")
        if stamped:
            lineage, serial = op.get("lineage"), op.get("serial")
            if not isinstance(lineage, str) or type(serial) is not int:
                raise StateError(f"{at}: not a journal line (no lineage and serial); {_journal_advice(where)}")
            if lineage != draft.lineage or serial != draft.serial:
                continue  # of an older serial: made obsolete by a full write
        try:
            apply_op(draft, op)
        except JournalOpError as exc:
            if exc.unknown:
                raise StateError(f"{at}: {exc}; a newer reconciler wrote it: upgrade the reconciler") from None
            raise StateError(f"{at}: {exc}; {_journal_advice(where)}") from None
        applied += 1
    return applied


def _journal_advice(where: str) -> str:
    return (f"no reconciler writes such a line. If the file was edited, restore it; else move {where} "
            "aside and run `reconciler refresh`, which rebuilds the state from the jobs' labels")


def serialize_state(state: State) -> bytes:
    return (json.dumps(state.to_json_dict(), indent=2, sort_keys=False, ensure_ascii=False) + "\n").encode()


class LocalStateStore:
    """A state file on local disk. The state, its backup, journal and lock are created 0600,
    whatever the umask: they hold the same entries (and the lock, who runs where)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self.backup_path = path.with_name(path.name + ".backup")
        self.journal_path = path.with_name(path.name + ".journal")
        self._read_serial: int | None = None
        self._read_lineage: str | None = None
        self._journal: int | None = None  # the journal's fd, kept open for the run
        self._lock_fd: int | None = None
        self._lock_id: str | None = None
        self.journal_pending = False  # the state read had journal lines folded in, not yet written

    def describe(self) -> str:
        return str(self.path)

    def read(self, *, stack: str) -> State:
        """The current state, or a new empty one if the file does not exist."""
        data = read_regular(self.path, "state file")
        if data is None:
            state = State(stack=stack, tool=f"{TOOL} {__version__}")
            self._read_serial, self._read_lineage = None, None
            return state
        state = parse_state(data, str(self.path))
        if state.stack != stack:
            raise StateError(
                f"{self.path} belongs to stack {one_line(repr(state.stack), 80)}, not {one_line(repr(stack), 80)}; "
                "pass --stack or use another --state"
            )
        self._read_serial, self._read_lineage = state.serial, state.lineage
        return self._replay(state)

    # -- the journal: progress of a run between two full writes ----------------------------------
    def append(self, ops: list[dict[str, Any]]) -> None:
        """Make changes durable without rewriting the state: lines appended to `PATH.journal`,
        then one fsync. Lines name the serial they apply on top of; a full write (the next
        serial) makes them obsolete, so a crash between the two loses nothing.

        A failed write (a full disk) raises a StateError naming the journal; what it may have
        written is a torn line, skipped on replay, and the next append starts a fresh line."""
        if self._read_serial is None:
            raise StateError(f"{self.path}: write the state once before journalling changes")
        lines = b"".join(
            (json.dumps({"lineage": self._read_lineage, "serial": self._read_serial, **op},
                        ensure_ascii=False, separators=(",", ":")) + "\n").encode()
            for op in ops
        )
        try:
            if self._journal is None:
                self._journal = _open_private(self.journal_path, os.O_RDWR | os.O_APPEND, "journal")
                size = os.fstat(self._journal).st_size
                if size and os.pread(self._journal, 1, size - 1) != b"\n":
                    lines = b"\n" + lines  # after a torn line (a crash mid-write), start a fresh one
            view = memoryview(lines)
            while view:
                view = view[os.write(self._journal, view):]
            os.fsync(self._journal)
        except OSError as exc:
            self.close()  # reopened by the next append, which then starts a fresh line
            raise StateError(f"{self.journal_path}: cannot write the journal: {os_problem(exc)}") from None

    def _replay(self, state: State) -> State:
        """The state with the journal's changes for its serial applied (a torn line, from a
        crash in the middle of an append, is ignored; a line of the wrong shape is an error)."""
        data = read_regular(self.journal_path, "journal")
        if data is None:
            return state
        draft = state.model_copy(deep=True)
        if not replay_lines(draft, data, str(self.journal_path), stamped=True, torn_tail=True):
            if self._lock_fd is not None and self._journal is None:
                # Only lines of older serials: a run died between its full write and removing the
                # journal. Under the lock nobody else appends, so the leftover can go.
                with contextlib.suppress(OSError):
                    self.journal_path.unlink(missing_ok=True)
            return state
        self.journal_pending = True
        return draft

    def close(self) -> None:
        if self._journal is not None:
            with contextlib.suppress(OSError):
                os.close(self._journal)
            self._journal = None

    def write(self, state: State) -> State:
        """Write `state` as the next serial; refuse if the file changed since it was read.
        A failed write (a full disk) leaves the previous state as it was."""
        data = read_regular(self.path, "state file")
        current = None if data is None else parse_state(data, str(self.path))
        on_disk: tuple[int | None, str | None] = (None, None) if current is None else (current.serial, current.lineage)
        if on_disk != (self._read_serial, self._read_lineage):
            raise StateConflictError(
                f"{self.path} changed since it was read (serial {self._read_serial} → {on_disk[0]}); "
                "another run wrote it. Run plan again."
            )
        new = state.model_copy(
            update={"serial": state.serial + 1 if current else max(state.serial, 0) + 1,
                    "updated": utc_now(), "tool": f"{TOOL} {__version__}"}
        )
        if data is not None:
            atomic_write(self.backup_path, data, error=StateError)
        atomic_write(self.path, serialize_state(new), error=StateError)
        self._read_serial, self._read_lineage = new.serial, new.lineage
        # The journal's lines all name older serials now: drop them (left behind, they are
        # never replayed, so a failure to remove them is harmless).
        self.journal_pending = False
        self.close()
        with contextlib.suppress(OSError):
            self.journal_path.unlink(missing_ok=True)
        return new

    # -- locking ------------------------------------------------------------------------------
    def lock(
        self,
        operation: str,
        *,
        timeout: float = 0.0,
        warn: Callable[[str], None] = lambda _m: None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> str:
        """Take the lock (waiting up to `timeout` seconds); return its id.

        The lock is an advisory `flock` on `PATH.lock`, which the system releases when the holding
        process ends, however it ends; the file records who holds it (for messages). A record
        found while the flock is free was left by a run that died: it is broken with a warning."""
        info = {**lock_holder(), "operation": operation}
        fd = _open_private(self.lock_path, os.O_RDWR, "lock file")
        deadline = time.monotonic() + timeout
        try:
            while not _try_flock(fd, self.lock_path):
                if time.monotonic() >= deadline:
                    raise StateLockedError(locked_message(self.describe(), self.lock_info()))
                sleep(min(1.0, max(0.05, deadline - time.monotonic())))
            try:
                previous = _record(os.pread(fd, 65536, 0))
                if previous is not None:
                    who, pid, since, old_id = (holder_field(previous, k) for k in ("who", "pid", "since", "id"))
                    warn(f"breaking stale lock {old_id}: its holder ({who}, pid {pid}, since {since}) "
                         "ended without releasing it")
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(info).encode(), 0)
                os.fsync(fd)
            except OSError as exc:
                raise StateError(f"{self.lock_path}: cannot record the lock: {os_problem(exc)}") from None
        except BaseException:
            os.close(fd)  # releases the flock
            raise
        self._lock_fd, self._lock_id = fd, str(info["id"])
        return self._lock_id

    def lock_info(self) -> dict[str, Any] | None:
        try:
            data = read_regular(self.lock_path, "lock file")
        except StateError:
            return {"id": "?", "who": "unknown (unreadable lock file)"}
        return None if data is None else _record(data)

    def unlock(self, lock_id: str) -> None:
        if self._lock_fd is not None and lock_id == self._lock_id:
            # No record: unlocked. Should clearing it fail, the next run reports a stale lock
            # broken, no worse; the flock itself always ends with the close.
            with contextlib.suppress(OSError):
                os.ftruncate(self._lock_fd, 0)
                os.fsync(self._lock_fd)
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = self._lock_id = None

    def force_unlock(self, lock_id: str) -> None:
        holder = self.lock_info()
        if holder is None:
            raise StateError(f"{self.describe()} is not locked")
        if holder.get("id") != lock_id:
            raise StateError(
                f"lock id {one_line(repr(lock_id), 80)} does not match the lock held on {self.describe()} "
                f"(id {one_line(repr(holder.get('id')), 80)}); nothing was removed"
            )
        fd = _open_private(self.lock_path, os.O_RDWR, "lock file", create=False)
        try:
            if not _try_flock(fd, self.lock_path):
                raise StateError(
                    f"lock {lock_id} on {self.describe()} is held by a running process ({holder_field(holder, 'who')}, "
                    f"pid {holder_field(holder, 'pid')}); stop that run instead — its lock ends with it"
                )
            try:
                os.ftruncate(fd, 0)
                os.fsync(fd)
            except OSError as exc:
                raise StateError(f"{self.lock_path}: cannot clear the lock: {os_problem(exc)}") from None
        finally:
            os.close(fd)


def _open_private(path: Path, flags: int, what: str, *, create: bool = True) -> int:
    """Open (creating it 0600, whatever the umask) the regular file at `path`; an fd. A file
    left readable to others by an older version is narrowed to 0600. Any failure, or something
    other than a regular file there: a StateError naming `path`."""
    try:
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        # O_NONBLOCK: a FIFO there must not block the open; it is refused below.
        fd = os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC | (os.O_CREAT if create else 0), 0o600)
    except OSError as exc:
        raise StateError(f"{path}: cannot open the {what}: {os_problem(exc)}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise StateError(f"{path}: the {what} is not a regular file; move it away or choose another --state")
        if info.st_mode & 0o077 and info.st_uid == os.geteuid():
            with contextlib.suppress(OSError):
                os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _try_flock(fd: int, path: Path) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        raise StateError(f"{path}: cannot lock: {os_problem(exc)}") from None
    return True


def _record(data: bytes) -> dict[str, Any] | None:
    """A lock file's holder record; None for an empty file (unlocked)."""
    if not data.strip():
        return None
    try:
        raw = load_json(data)
    except ValueError:
        return {"id": "?", "who": "unknown (unreadable lock file)"}
    return raw if isinstance(raw, dict) else {"id": "?"}


def lock_holder() -> dict[str, Any]:
    """What a new lock records about its holder."""
    import getpass

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return {
        "id": str(uuid.uuid4()),
        "who": f"{user}@{socket.gethostname()}",
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "since": utc_now(),
        "version": __version__,
    }


def holder_field(holder: dict[str, Any], key: str) -> str:
    """One field of a lock's holder record, fit for a one-line message (the record is read from
    a file anyone may have written)."""
    value = holder.get(key, "?")
    return one_line(value if isinstance(value, str) else str(value), 100)


def locked_message(where: str, holder: dict[str, Any] | None) -> str:
    if holder is None:
        return f"state {where} is locked by another run"
    who, pid, operation, since, lock_id = (holder_field(holder, k) for k in ("who", "pid", "operation", "since", "id"))
    return (
        f"state {where} is locked by {who} (pid {pid}, {operation} since {since}), lock id {lock_id}. "
        f"Wait with --lock-timeout, or if that run is dead: reconciler force-unlock {lock_id}"
    )
