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
import socket
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from reconciler import __version__
from reconciler.errors import StateConflictError, StateError, StateLockedError
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


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old or the new content, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def parse_state(data: bytes, where: str) -> State:
    try:
        raw = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StateError(f"{where}: not valid JSON ({exc}); restore it from {where}.backup") from None
    if not isinstance(raw, dict):
        raise StateError(f"{where}: not a state file (expected a JSON object)")
    version = raw.get("version")
    if version != STATE_VERSION:
        raise StateError(
            f"{where}: state format version {version!r} is not supported by this reconciler "
            f"(supports {STATE_VERSION}); upgrade the reconciler"
        )
    try:
        return State.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise StateError(f"{where}: invalid state file at {loc}: {first['msg']}") from None


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


def apply_op(state: State, op: dict[str, Any]) -> None:
    """One journalled change: set or drop a model entry, open or settle a create intent."""
    kind = op.get("op")
    if kind == "set":
        state.models[op["name"]] = ModelEntry.model_validate(op["entry"])
    elif kind == "drop":
        state.models.pop(op["name"], None)
    elif kind == "intent":
        state.journal.append(JournalEntry.model_validate(op["entry"]))
    elif kind == "settle":
        state.journal = [j for j in state.journal if j.request_id != op["requestId"]]
    else:
        raise StateError(f"unknown journal operation {kind!r}; upgrade the reconciler")


def serialize_state(state: State) -> bytes:
    return (json.dumps(state.to_json_dict(), indent=2, sort_keys=False, ensure_ascii=False) + "\n").encode()


class LocalStateStore:
    """A state file on local disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self.backup_path = path.with_name(path.name + ".backup")
        self.journal_path = path.with_name(path.name + ".journal")
        self._read_serial: int | None = None
        self._read_lineage: str | None = None
        self._journal: IO[bytes] | None = None
        self._lock_fd: int | None = None
        self._lock_id: str | None = None
        self.journal_pending = False  # the state read had journal lines folded in, not yet written

    def describe(self) -> str:
        return str(self.path)

    def read(self, *, stack: str) -> State:
        """The current state, or a new empty one if the file does not exist."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            state = State(stack=stack, tool=f"{TOOL} {__version__}")
            self._read_serial, self._read_lineage = None, None
            return state
        except OSError as exc:
            raise StateError(f"{self.path}: cannot read: {exc.strerror}") from None
        state = parse_state(data, str(self.path))
        if state.stack != stack:
            raise StateError(
                f"{self.path} belongs to stack {state.stack!r}, not {stack!r}; "
                "pass --stack or use another --state"
            )
        self._read_serial, self._read_lineage = state.serial, state.lineage
        return self._replay(state)

    # -- the journal: progress of a run between two full writes ----------------------------------
    def append(self, ops: list[dict[str, Any]]) -> None:
        """Make changes durable without rewriting the state: lines appended to `PATH.journal`,
        then one fsync. Lines name the serial they apply on top of; a full write (the next
        serial) makes them obsolete, so a crash between the two loses nothing."""
        if self._read_serial is None:
            raise StateError(f"{self.path}: write the state once before journalling changes")
        lines = b"".join(
            (json.dumps({"lineage": self._read_lineage, "serial": self._read_serial, **op},
                        ensure_ascii=False, separators=(",", ":")) + "\n").encode()
            for op in ops
        )
        if self._journal is None:
            self._journal = open(self.journal_path, "ab")  # noqa: SIM115 (kept open for the run)
            if self._journal.tell() and not _ends_with_newline(self.journal_path):
                lines = b"\n" + lines  # after a torn line (a crash mid-write), start a fresh one
        self._journal.write(lines)
        self._journal.flush()
        os.fsync(self._journal.fileno())

    def _replay(self, state: State) -> State:
        """The state with the journal's changes for its serial applied (a torn last line, from a
        crash in the middle of an append, is ignored)."""
        try:
            lines = self.journal_path.read_bytes().splitlines()
        except FileNotFoundError:
            return state
        ops: list[dict[str, Any]] = []
        for line in lines:
            try:
                op = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue  # a torn line: its write never completed, so it was never durable
            if isinstance(op, dict) and op.get("lineage") == state.lineage and op.get("serial") == state.serial:
                ops.append(op)
        if not ops:
            if self._lock_fd is not None and self._journal is None:
                # Only lines of older serials: a run died between its full write and removing the
                # journal. Under the lock nobody else appends, so the leftover can go.
                self.journal_path.unlink(missing_ok=True)
            return state
        self.journal_pending = True
        draft = state.model_copy(deep=True)
        for op in ops:
            apply_op(draft, op)
        return draft

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    def write(self, state: State) -> State:
        """Write `state` as the next serial; refuse if the file changed since it was read."""
        try:
            current = parse_state(self.path.read_bytes(), str(self.path))
            on_disk: tuple[int | None, str | None] = (current.serial, current.lineage)
        except FileNotFoundError:
            current = None
            on_disk = (None, None)
        if on_disk != (self._read_serial, self._read_lineage):
            raise StateConflictError(
                f"{self.path} changed since it was read (serial {self._read_serial} → {on_disk[0]}); "
                "another run wrote it. Run plan again."
            )
        new = state.model_copy(
            update={"serial": state.serial + 1 if current else max(state.serial, 0) + 1,
                    "updated": utc_now(), "tool": f"{TOOL} {__version__}"}
        )
        if current is not None:
            atomic_write(self.backup_path, self.path.read_bytes())
        atomic_write(self.path, serialize_state(new))
        self._read_serial, self._read_lineage = new.serial, new.lineage
        # The journal's lines all name older serials now: drop them.
        self.journal_pending = False
        self.close()
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
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + timeout
        try:
            while not _try_flock(fd):
                if time.monotonic() >= deadline:
                    raise StateLockedError(locked_message(self.describe(), self.lock_info()))
                sleep(min(1.0, max(0.05, deadline - time.monotonic())))
            previous = _record(os.pread(fd, 65536, 0))
            if previous is not None:
                warn(f"breaking stale lock {previous.get('id')}: its holder ({previous.get('who', '?')}, pid "
                     f"{previous.get('pid', '?')}, since {previous.get('since', '?')}) ended without releasing it")
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd, self._lock_id = fd, str(info["id"])
        return self._lock_id

    def lock_info(self) -> dict[str, Any] | None:
        try:
            return _record(self.lock_path.read_bytes())
        except FileNotFoundError:
            return None
        except OSError:
            return {"id": "?", "who": "unknown (unreadable lock file)"}

    def unlock(self, lock_id: str) -> None:
        if self._lock_fd is not None and lock_id == self._lock_id:
            os.ftruncate(self._lock_fd, 0)  # no record: unlocked
            os.fsync(self._lock_fd)
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = self._lock_id = None

    def force_unlock(self, lock_id: str) -> None:
        holder = self.lock_info()
        if holder is None:
            raise StateError(f"{self.describe()} is not locked")
        if holder.get("id") != lock_id:
            raise StateError(
                f"lock id {lock_id!r} does not match the lock held on {self.describe()} "
                f"(id {holder.get('id')!r}); nothing was removed"
            )
        fd = os.open(self.lock_path, os.O_RDWR)
        try:
            if not _try_flock(fd):
                raise StateError(
                    f"lock {lock_id} on {self.describe()} is held by a running process ({holder.get('who', '?')}, "
                    f"pid {holder.get('pid', '?')}); stop that run instead — its lock ends with it"
                )
            os.ftruncate(fd, 0)
            os.fsync(fd)
        finally:
            os.close(fd)


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _record(data: bytes) -> dict[str, Any] | None:
    """A lock file's holder record; None for an empty file (unlocked)."""
    if not data.strip():
        return None
    try:
        raw = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
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


def locked_message(where: str, holder: dict[str, Any] | None) -> str:
    if holder is None:
        return f"state {where} is locked by another run"
    return (
        f"state {where} is locked by {holder.get('who', '?')} (pid {holder.get('pid', '?')}, "
        f"{holder.get('operation', '?')} since {holder.get('since', '?')}), lock id {holder.get('id')}. "
        f"Wait with --lock-timeout, or if that run is dead: reconciler force-unlock {holder.get('id')}"
    )
