"""The state of a run being applied: every change is applied in memory, made durable as a
journal operation, and folded into a full write of the state at the end (`commit`).

Journal writes are group-committed: while one batch is being written (an fsync, or an object
upload for a remote state), changes of other workers queue and go out together in the next
batch, so durability costs one write per batch, not one per change. A batch that fails to be
written is put back at the head of the queue: the next flush (another worker's, or the final
commit's full write) carries it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from reconciler.state.journal import (
    DropEntry,
    JournalOp,
    OpenIntent,
    SetEntry,
    SettleIntent,
    apply_op,
)
from reconciler.state.model import JournalEntry, ModelEntry, State
from reconciler.state.store import StateStore


class Recorder:
    """Records the changes of apply's workers (thread-safe) in a StateStore."""

    def __init__(self, store: StateStore, state: State) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        # Journal lines name the serial they apply to: a state never written gets serial 1 first.
        self.state = state if state.serial else store.write(state)
        self._dirty = store.journal_pending
        self._pending: list[JournalOp] = []
        self._queued = 0
        self._flushed = 0

    @classmethod
    def of(cls, target: Recorder | StateStore, state: State) -> Recorder:
        """`target` itself if it is a recorder already, else a new recorder of `state` in it."""
        return target if isinstance(target, Recorder) else cls(target, state)

    # -- changes, each durable when the call returns --------------------------------------------
    def set_entry(self, name: str, entry: ModelEntry) -> None:
        self._record(SetEntry(name=name, entry=entry.model_copy(deep=True)))

    def drop_entry(self, name: str) -> None:
        self._record(DropEntry(name=name))

    def open_intent(self, intent: JournalEntry) -> None:
        self._record(OpenIntent(entry=intent.model_copy(deep=True)))

    def settle(self, request_id: str) -> None:
        self._record(SettleIntent(requestId=request_id))

    def entry(self, name: str) -> ModelEntry | None:
        with self._lock:
            return self.state.models.get(name)

    def modify(self, name: str, change: Callable[[ModelEntry | None], ModelEntry | None]) -> None:
        """Read-modify-write of one entry, atomic against the other workers (`change` returns
        None: nothing to change)."""
        with self._lock:
            new = change(self.state.models.get(name))
            if new is None:
                return
            mine = self._enqueue(SetEntry(name=name, entry=new.model_copy(deep=True)))
        self._flush(mine)

    def commit(self, mutate: Callable[[State], None]) -> None:
        """Write the whole state with `mutate` applied (skipped when nothing changed)."""
        with self._lock:
            draft = self.state.model_copy(deep=True)
            mutate(draft)
            if draft != self.state or self._dirty:
                self.state = self._store.write(draft)
                self._dirty = self._store.journal_pending

    # -- group commit ---------------------------------------------------------------------------
    def _record(self, op: JournalOp) -> None:
        with self._lock:
            mine = self._enqueue(op)
        self._flush(mine)

    def _enqueue(self, op: JournalOp) -> int:
        """Apply `op` in memory and queue it for the journal (the caller holds `_lock`); its
        queue number, for `_flush`."""
        apply_op(self.state, op)
        self._pending.append(op)
        self._queued += 1
        self._dirty = True
        return self._queued

    def _flush(self, mine: int) -> None:
        """Return once the change numbered `mine` is durable: written by this call, in a batch
        with every change queued so far, or already by another worker's batch."""
        with self._flush_lock:
            if self._flushed >= mine:
                return  # another worker's batch carried this change
            with self._lock:
                batch, upto = self._pending, self._queued
                self._pending = []
            try:
                self._store.append(batch)
            except BaseException:
                with self._lock:  # not durable: the next flush (another worker's) writes it again
                    self._pending = batch + self._pending
                raise
            self._flushed = upto
