"""The state in Cloud Storage (`--state gs://bucket/path/reconciler.state.json`), as terraform's
gcs backend keeps it: the same format as the local file, with locking and conditional writes.

- Every state write is a multipart upload with `ifGenerationMatch` = the generation that was
  read (0 when there was none): a lost update is impossible even without the lock; a conflict is
  a clear error. The previous content is kept as `PATH.backup`.
- The lock is the object `PATH.lock`, created with `ifGenerationMatch=0` (only one run can win),
  holding who and since when; it is released with a delete matched to its generation, so a run
  can never remove a lock another run took meanwhile. A lock left by a dead run is never guessed
  stale (runners elsewhere share host names and pid spaces): `force-unlock ID` removes it, after
  checking the id, with the same generation match.
- Between full writes, apply journals each batch of changes as one small object under
  `PATH.journal/LINEAGE/SERIAL/` (created with `ifGenerationMatch=0`); reading replays the
  journal of the serial read, and the next full write deletes it.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from reconciler import __version__
from reconciler.errors import FailedPreconditionError, NotFoundError, StateConflictError, StateError
from reconciler.models import TOOL
from reconciler.state.codec import (
    RawOp,
    journal_lines,
    load_json,
    parse_state,
    replay_lines,
    serialize_state,
    utc_now,
)
from reconciler.state.journal import JournalOp
from reconciler.state.lock import Attempt, Freed, Held, Taken, lock_holder, take_lock
from reconciler.state.model import State
from reconciler.storage import StorageClient, parse_gs_uri


def _seq_of(name: str) -> int:
    stem = name.rsplit("/", 1)[-1].split(".", 1)[0]
    return int(stem) if stem.isdigit() else 0


class GcsStateStore:
    """A state object in Cloud Storage."""

    def __init__(self, uri: str, client: StorageClient) -> None:
        self.uri = uri
        self.bucket, self.name = parse_gs_uri(uri)
        self.client = client
        self.lock_name = self.name + ".lock"
        self.backup_name = self.name + ".backup"
        self._generation = 0  # of the state object as read; 0 = it did not exist
        self._lineage: str | None = None
        self._serial: int | None = None
        self._seq = 0
        self._lock_generation: int | None = None
        self._lock_id: str | None = None
        self.journal_pending = False

    def describe(self) -> str:
        return self.uri

    def _journal_prefix(self, lineage: str | None, serial: int | None) -> str:
        return f"{self.name}.journal/{lineage}/{serial}/"

    # -- state --------------------------------------------------------------------------------
    def read(self, *, stack: str) -> State:
        meta = self.client.metadata(self.bucket, self.name)
        if meta is None:
            self._generation, self._lineage, self._serial = 0, None, None
            return State(stack=stack, tool=f"{TOOL} {__version__}")
        generation = int(meta["generation"])
        try:
            data = self.client.download(self.bucket, self.name, generation)
        except NotFoundError:
            raise StateConflictError(f"{self.uri} changed while it was read; run again") from None
        state = parse_state(data, self.uri)
        if state.stack != stack:
            raise StateError(f"{self.uri} belongs to stack {state.stack!r}, not {stack!r}; "
                             "pass --stack or use another --state")
        self._generation, self._lineage, self._serial = generation, state.lineage, state.serial
        return self._replay(state)

    def write(self, state: State) -> State:
        """Write the next serial, only if the object is still the generation that was read."""
        existed = self._generation != 0
        new = state.model_copy(update={"serial": state.serial + 1 if existed else max(state.serial, 0) + 1,
                                       "updated": utc_now(), "tool": f"{TOOL} {__version__}"})
        if existed:
            try:
                previous = self.client.download(self.bucket, self.name, self._generation)
            except NotFoundError:
                previous = None
            if previous is None:
                raise self._conflict()
            self.client.upload(self.bucket, self.backup_name, previous, if_generation_match=None)
        try:
            meta = self.client.upload(self.bucket, self.name, serialize_state(new),
                                      if_generation_match=self._generation)
        except FailedPreconditionError:
            raise self._conflict() from None
        self._generation, self._lineage, self._serial = int(meta["generation"]), new.lineage, new.serial
        self.journal_pending = False
        self._seq = 0
        # Every journal object of an older serial is obsolete now, including any a crash left
        # behind after an earlier write; best effort (they are never replayed either way).
        live_prefix = self._journal_prefix(new.lineage, new.serial)
        for item in self.client.list(self.bucket, f"{self.name}.journal/{new.lineage}/"):
            if not str(item["name"]).startswith(live_prefix):
                with contextlib.suppress(NotFoundError, FailedPreconditionError):
                    self.client.delete(self.bucket, item["name"], if_generation_match=int(item["generation"]))
        return new

    def _conflict(self) -> StateConflictError:
        now = self.client.metadata(self.bucket, self.name)
        current = now.get("generation") if now else "deleted"
        return StateConflictError(
            f"{self.uri} changed since it was read (generation {self._generation or 'none'}, now "
            f"{current}): another run wrote it. Nothing was overwritten; run plan again."
        )

    # -- journal ------------------------------------------------------------------------------
    def append(self, ops: Sequence[JournalOp | RawOp]) -> None:
        if self._serial is None:
            raise StateError(f"{self.uri}: write the state once before journalling changes")
        self._seq += 1
        name = f"{self._journal_prefix(self._lineage, self._serial)}{self._seq:08d}.jsonl"
        data = journal_lines(ops)
        self.client.upload(self.bucket, name, data, if_generation_match=0, content_type="application/x-ndjson")

    def _replay(self, state: State) -> State:
        items = sorted(self.client.list(self.bucket, self._journal_prefix(state.lineage, state.serial)),
                       key=lambda item: str(item["name"]))
        if not items:
            return state
        draft = state.model_copy(deep=True)
        for item in items:
            # Objects are written whole (never torn): any line that is not an operation is an error.
            replay_lines(draft, self.client.download(self.bucket, item["name"]),
                         f"gs://{self.bucket}/{item['name']}", stamped=False, torn_tail=False)
        self._seq = max(_seq_of(str(item["name"])) for item in items)  # a failed append leaves a gap
        self.journal_pending = True
        return draft

    def close(self) -> None:
        """Nothing is held open between calls."""

    # -- lock ---------------------------------------------------------------------------------
    def lock(
        self,
        operation: str,
        *,
        timeout: float = 0.0,
        warn: Callable[[str], None] = lambda _m: None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> str:
        """Create the lock object (waiting up to `timeout` seconds, see `lock.take_lock`); its id.

        Whether a holder elsewhere is alive cannot be told from here (runners share host names,
        pids are per machine): as terraform's gcs backend, never guess; a dead run's lock is
        removed with force-unlock. So no attempt here finds a stale holder to break."""
        info = {**lock_holder(), "operation": operation}
        body = json.dumps(info).encode()
        take_lock(lambda: self._try_once(body), self.describe(), timeout=timeout, warn=warn,
                  clock=clock, sleep=sleep)
        self._lock_id = str(info["id"])
        return self._lock_id

    def _try_once(self, body: bytes) -> Attempt:
        try:
            meta = self.client.upload(self.bucket, self.lock_name, body, if_generation_match=0)
        except FailedPreconditionError:
            holder, _generation = self._lock_object()
            return Freed() if holder is None else Held(holder)
        self._lock_generation = int(meta["generation"])
        return Taken()

    def _lock_object(self) -> tuple[dict[str, Any] | None, int | None]:
        meta = self.client.metadata(self.bucket, self.lock_name)
        if meta is None:
            return None, None
        generation = int(meta["generation"])
        try:
            raw = load_json(self.client.download(self.bucket, self.lock_name, generation))
        except NotFoundError:
            return None, None
        except ValueError:
            raw = {"id": "?", "who": "unknown (unreadable lock object)"}
        return (raw if isinstance(raw, dict) else {"id": "?"}), generation

    def _delete_lock(self, generation: int | None) -> None:
        # Gone, or another run's lock by now (another generation): never remove that one.
        with contextlib.suppress(NotFoundError, FailedPreconditionError):
            self.client.delete(self.bucket, self.lock_name, if_generation_match=generation)

    def lock_info(self) -> dict[str, Any] | None:
        return self._lock_object()[0]

    def unlock(self, lock_id: str) -> None:
        if lock_id == self._lock_id and self._lock_generation is not None:
            self._delete_lock(self._lock_generation)
            self._lock_generation = self._lock_id = None

    def force_unlock(self, lock_id: str) -> None:
        holder, generation = self._lock_object()
        if holder is None:
            raise StateError(f"{self.describe()} is not locked")
        if holder.get("id") != lock_id:
            raise StateError(f"lock id {lock_id!r} does not match the lock held on {self.describe()} "
                             f"(id {holder.get('id')!r}); nothing was removed")
        try:
            self.client.delete(self.bucket, self.lock_name, if_generation_match=generation)
        except FailedPreconditionError:
            raise StateError(f"the lock on {self.describe()} changed while it was being removed; "
                             "nothing was removed") from None
