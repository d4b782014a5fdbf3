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
import fcntl
import json
import os
import stat
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from reconciler import __version__
from reconciler.errors import StateConflictError, StateError
from reconciler.models import TOOL

# Re-exported: the CLI and older callers import these from here (their home is `codec`, `lock`,
# `journal`).
from reconciler.state.codec import (
    MAX_STATE_BYTES,
    JournalOpError,
    RawOp,
    atomic_write,
    journal_lines,
    load_json,
    one_line,
    os_problem,
    parse_state,
    read_regular,
    replay_lines,
    serialize_state,
    utc_now,
)
from reconciler.state.journal import JournalOp, apply_op
from reconciler.state.lock import (
    Attempt,
    Held,
    Taken,
    holder_field,
    lock_holder,
    locked_message,
    take_lock,
)
from reconciler.state.model import State

__all__ = [
    "MAX_STATE_BYTES",
    "JournalOpError",
    "LocalStateStore",
    "apply_op",
    "atomic_write",
    "holder_field",
    "load_json",
    "lock_holder",
    "locked_message",
    "one_line",
    "os_problem",
    "parse_state",
    "read_regular",
    "replay_lines",
    "serialize_state",
    "utc_now",
]


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
    def append(self, ops: Sequence[JournalOp | RawOp]) -> None:
        """Make changes durable without rewriting the state: lines appended to `PATH.journal`,
        then one fsync. Lines name the serial they apply on top of; a full write (the next
        serial) makes them obsolete, so a crash between the two loses nothing.

        A failed write (a full disk) raises a StateError naming the journal; what it may have
        written is a torn line, skipped on replay, and the next append starts a fresh line."""
        if self._read_serial is None or self._read_lineage is None:
            raise StateError(f"{self.path}: write the state once before journalling changes")
        lines = journal_lines(ops, stamp=(self._read_lineage, self._read_serial))
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
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> str:
        """Take the lock (waiting up to `timeout` seconds, see `lock.take_lock`); return its id.

        The lock is an advisory `flock` on `PATH.lock`, which the system releases when the holding
        process ends, however it ends; the file records who holds it (for messages). A record
        found while the flock is free was left by a run that died: it is broken with a warning."""
        info = {**lock_holder(), "operation": operation}
        fd = _open_private(self.lock_path, os.O_RDWR, "lock file")
        try:
            take_lock(lambda: self._try_once(fd), self.describe(), timeout=timeout, warn=warn,
                      clock=clock, sleep=sleep)
            try:
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

    def _try_once(self, fd: int) -> Attempt:
        """One attempt at the flock; once taken, the record found in the file is a dead run's."""
        if not _try_flock(fd, self.lock_path):
            return Held(self.lock_info())
        try:
            return Taken(stale=_record(os.pread(fd, 65536, 0)))
        except OSError as exc:
            raise StateError(f"{self.lock_path}: cannot record the lock: {os_problem(exc)}") from None

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
